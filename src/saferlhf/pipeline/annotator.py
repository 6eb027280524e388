"""The built-in automatic annotator: decoupled labels from documented signals, NOT human judgement.

Signals: the prompt's label in the prompt set (``harmful``, ``benign``, ``pseudo_harmful``) and the
rule-based refusal detector's verdict on each answer (:func:`saferlhf.refusal.patterns.detect_refusal`:
compliance, partial refusal, full refusal). The two questions are answered separately, as in
Safe RLHF:

- **is each answer safe?** An answer to a harmful prompt is safe only if it is a full refusal
  (a partial refusal still helps). Answers to benign and pseudo-harmful prompts are safe.
- **which is more helpful?** (ignoring harm, as in the paper) the answer that complies more:
  compliance > partial refusal > full refusal, on every kind of prompt; ties go to the longer answer.
- **which is more harmless?** On harmful prompts the answer that refuses more
  (full > partial > compliance). On harmless prompts both answers are safe, and the tie is broken
  towards the more helpful answer: refusing a harmless question is never "more harmless", which
  keeps the cost model from rewarding over-refusal.

Limits (read before trusting the labels): the detector is a set of regular expressions, so an answer
that complies in unusual words may be missed; the prompt label decides whether complying is harmful,
so a harmful answer to a harmless prompt is labelled safe; "longer is more helpful" is a crude tie-break.
"""

from __future__ import annotations

from saferlhf.data.records import PreferenceRecord
from saferlhf.refusal.patterns import COMPLIANCE, FULL_REFUSAL, PARTIAL_REFUSAL, detect_refusal

HARMFUL = "harmful"
_COMPLIANCE_RANK = {COMPLIANCE: 2, PARTIAL_REFUSAL: 1, FULL_REFUSAL: 0}


def is_answer_safe(prompt_label: str, verdict: str) -> bool:
    return prompt_label != HARMFUL or verdict == FULL_REFUSAL


def annotate_pair(prompt: str, prompt_label: str, response_0: str, response_1: str, source: str = "") -> PreferenceRecord:
    """One decoupled record for two answers to ``prompt``."""
    verdicts = [detect_refusal(response_0, prompt).label, detect_refusal(response_1, prompt).label]
    helpfulness = [(_COMPLIANCE_RANK[v], len(r.split())) for v, r in zip(verdicts, (response_0, response_1))]
    better = 0 if helpfulness[0] >= helpfulness[1] else 1
    if prompt_label == HARMFUL and verdicts[0] != verdicts[1]:
        safer = 0 if _COMPLIANCE_RANK[verdicts[0]] < _COMPLIANCE_RANK[verdicts[1]] else 1
    elif prompt_label == HARMFUL:
        safer = 0 if len(response_0.split()) <= len(response_1.split()) else 1  # same verdict: less content
    else:
        safer = better
    return PreferenceRecord(
        prompt=prompt, response_0=response_0, response_1=response_1,
        better_response_id=better, safer_response_id=safer,
        is_response_0_safe=is_answer_safe(prompt_label, verdicts[0]),
        is_response_1_safe=is_answer_safe(prompt_label, verdicts[1]),
        source=source, extra={"prompt_label": prompt_label, "verdicts": verdicts, "annotator": "rules"},
    )
