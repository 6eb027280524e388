"""One round's data: the policy's answers, the answer pairs, their decoupled labels, the preferred answers.

Pairs are (the policy's sampled answer, a refusal written for this project) in a prompt-dependent
order: small instruct models almost never refuse on their own (:mod:`.refusal_templates`), so two
sampled answers would rarely show the annotator a safe answer to a harmful request. The labels come
from one of three annotators (``annotator.method``): the rules of :mod:`.annotator`, people on the
local page of :mod:`saferlhf.annotation`, or an LLM judge (:func:`saferlhf.annotation.judge_pairs`).
"""

from __future__ import annotations

import json
from pathlib import Path

from saferlhf.annotation import IncompleteLabelsError, export_pairs, import_labels, judge_pairs, labels_path_for
from saferlhf.data.records import PreferenceRecord
from saferlhf.pipeline.annotator import annotate_pair
from saferlhf.pipeline.refusal_templates import refusal_for
from saferlhf.runio import atomic_write_text


class WaitingForLabels(RuntimeError):
    """Human annotation: the round's pairs are exported and not (fully) labelled yet."""


def write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def sample_answers(model_path: str, prompts: list[str], path: Path, max_new_tokens: int, temperature: float,
                   batch_size: int, seed: int, precision: str = "auto") -> list[str]:
    """The policy's answer to each prompt; cached in ``path`` (a re-run reuses them)."""
    if path.exists():
        cached = read_jsonl(path)
        if [row["prompt"] for row in cached] == prompts:
            return [row["answer"] for row in cached]
    from saferlhf.evaluation.generation import generate_responses
    from saferlhf.models.loading import load_causal_lm, load_tokenizer
    from saferlhf.models.precision import torch_dtype

    model = load_causal_lm(model_path, dtype=torch_dtype(precision))
    tokenizer = load_tokenizer(model_path, padding_side="left")
    answers = generate_responses(model, tokenizer, prompts, max_new_tokens, batch_size, temperature, seed=seed,
                                 description="sample answers")
    write_jsonl(path, [{"prompt": p, "answer": a} for p, a in zip(prompts, answers)])
    return answers


def make_pairs(rows: list[dict], answers: list[str]) -> list[dict]:
    """Unlabelled pairs: (answer, refusal) or (refusal, answer), alternating, with the prompt's id and label."""
    pairs = []
    for index, (row, answer) in enumerate(zip(rows, answers)):
        refusal = refusal_for(row["prompt"])
        first, second = (answer, refusal) if index % 2 == 0 else (refusal, answer)
        pairs.append({"id": row["id"], "prompt": row["prompt"], "response_0": first, "response_1": second,
                      "prompt_label": row["label"]})
    return pairs


def label_pairs(pairs: list[dict], method: str, folder: Path, judge_config=None) -> list[PreferenceRecord]:
    """Decoupled labels for ``pairs`` by ``method`` (rules | human | judge)."""
    if method == "rules":
        return [annotate_pair(p["prompt"], p["prompt_label"], p["response_0"], p["response_1"],
                              source=f"builtin:{p['id']}") for p in pairs]
    if method == "judge":
        return judge_pairs(pairs, judge_config)
    pairs_file = folder / "pairs.jsonl"
    if not pairs_file.exists():
        export_pairs(pairs, pairs_file)
    try:
        return import_labels(pairs_file, require_complete=True)
    except IncompleteLabelsError as error:
        raise WaitingForLabels(
            f"{len(error.unlabelled) + len(error.partial)} of {len(pairs)} pairs in {pairs_file} still need labels.\n"
            f"  Label them:  saferlhf annotate pairs={pairs_file}\n"
            f"  (answers are saved to {labels_path_for(pairs_file)} after every click), then run the same command "
            f"again: finished stages are kept.") from None


def preferred_answer(record: dict) -> str | None:
    """The answer a policy should give: the only safe one when exactly one is safe, else the more helpful
    one, else the more harmless one; ``None`` when the labels say none of this (a judge that abstained)."""
    safe = [record["is_response_0_safe"], record["is_response_1_safe"]]
    if safe[0] is not None and safe[1] is not None and safe[0] != safe[1]:
        return record["response_0"] if safe[0] else record["response_1"]
    for key in ("better_response_id", "safer_response_id"):
        if record.get(key) is not None:
            return record[f"response_{record[key]}"]
    return None
