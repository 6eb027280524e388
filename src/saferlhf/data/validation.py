"""Validate preference records and report every bad row with its location and reason.

Each record is checked for the reasons in :data:`REASONS`; every issue is recorded as
``(source, reason, detail)`` where ``source`` is the row's ``file:line`` (see
:mod:`saferlhf.data.readers`). The policy decides what happens to rows with issues:

- ``error``: raise :class:`DataValidationError` naming the first rows and the counts per reason;
- ``drop``: remove them (the report counts each reason, nothing disappears silently);
- ``keep``: keep them, except rows that cannot be used at all (:data:`UNUSABLE`: unreadable, a
  field missing or of the wrong type, a malformed transcript, an id other than 0/1, or no label of
  the kind the model needs). Those are removed under every policy.

``need`` says which judgement the consumer uses: ``helpfulness`` (a reward model needs
``better_response_id``), ``harmlessness`` (a cost model needs ``safer_response_id``) or ``any``
(at least one of them). The PKU-SafeRLHF fault check (``unsafe_safer_response``, safe-rlhf issue
#181: the response labelled safer is labelled unsafe while the other is labelled safe) concerns the
safety labels only and is skipped when ``need="helpfulness"``. An unpaired record (one response with an
absolute safety label, :attr:`PreferenceRecord.unpaired`) serves ``harmlessness`` and ``any`` when it has
its safety label, never ``helpfulness`` (``missing_label``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from saferlhf.data.adapters import ERRORS_KEY
from saferlhf.data.records import PreferenceRecord
from saferlhf.data.templates import encode

REASONS = {
    "unreadable_row": "the row could not be parsed (invalid JSON line, more CSV cells than columns)",
    "missing_field": "a required column (prompt, responses, chosen/rejected) is absent or null",
    "wrong_type": "a value has the wrong type (e.g. a response that is not a string)",
    "malformed_transcript": "a conversation cannot be split into prompt and final answers",
    "id_not_binary": "better_response_id / safer_response_id is not 0 or 1",
    "missing_label": "the row lacks the label the model needs (see `need`)",
    "empty_response": "a response is empty or whitespace",
    "empty_prompt": "the prompt is empty or whitespace",
    "identical_responses": "both responses are the same text (nothing to rank)",
    "unsafe_safer_response": "the safer response is labelled unsafe while the other is labelled safe",
    "overlong": "a response alone does not fit in max_length tokens (after truncating the prompt)",
    "duplicate_row": "the same prompt, responses and labels as an earlier row (the first one is kept)",
}
UNUSABLE = frozenset({"unreadable_row", "missing_field", "wrong_type", "malformed_transcript",
                      "id_not_binary", "missing_label"})
POLICIES = ("error", "drop", "keep")
NEEDS = ("any", "helpfulness", "harmlessness")
ROLES = ("system", "user", "assistant")


class DataValidationError(ValueError):
    """Rows failed validation under policy ``error`` (or no usable row is left)."""


@dataclass
class ValidationReport:
    policy: str = "drop"
    need: str = "any"
    total: int = 0  # rows checked
    kept: int = 0  # rows returned
    rows_with_issues: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    issues: list[tuple[str, str, str]] = field(default_factory=list)  # (source, reason, detail)

    @property
    def dropped(self) -> int:
        return self.total - self.kept

    def add(self, source: str, reason: str, detail: str) -> None:
        self.counts[reason] += 1
        self.issues.append((source, reason, detail))

    def merge(self, other: "ValidationReport") -> "ValidationReport":
        """One report covering both (for train and eval sources read separately)."""
        merged = ValidationReport(self.policy, self.need, self.total + other.total, self.kept + other.kept,
                                  self.rows_with_issues + other.rows_with_issues)
        merged.counts = {r: self.counts.get(r, 0) + other.counts.get(r, 0) for r in REASONS}
        merged.issues = self.issues + other.issues
        return merged

    def summary(self, examples: int = 5) -> str:
        """Multi-line text: totals, one line per reason that occurred, the first ``examples`` issues."""
        lines = [f"data validation (policy={self.policy}, need={self.need}): {self.total} rows checked, "
                 f"{self.kept} kept, {self.dropped} dropped, {self.rows_with_issues} rows with issues"]
        width = max(len(r) for r in REASONS)
        lines += [f"  {reason:<{width}}  {count}" for reason, count in self.counts.items() if count]
        if self.issues:
            lines.append(f"  first {min(examples, len(self.issues))} of {len(self.issues)} issues:")
            lines += [f"    {source}: {reason}: {detail}" for source, reason, detail in self.issues[:examples]]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "need": self.need, "total": self.total, "kept": self.kept,
                "dropped": self.dropped, "rows_with_issues": self.rows_with_issues,
                "counts": dict(self.counts), "issues": [list(issue) for issue in self.issues]}


def validate_records(records: list[PreferenceRecord], tokenizer=None, max_length: int | None = None,
                     policy: str = "drop", need: str = "any") -> tuple[list[PreferenceRecord], ValidationReport]:
    """Check every record; return the records the policy keeps and the report of all issues."""
    if policy not in POLICIES:
        raise ValueError(f"invalid_rows policy '{policy}' is not one of {', '.join(POLICIES)}")
    if need not in NEEDS:
        raise ValueError(f"need '{need}' is not one of {', '.join(NEEDS)}")
    if tokenizer is not None and not max_length:
        raise ValueError("validate_records: max_length is required with a tokenizer (over-long check)")
    report = ValidationReport(policy=policy, need=need, total=len(records))
    kept, first_seen = [], {}
    show_progress = tokenizer is not None and len(records) >= 1000
    for record in tqdm(records, desc="validating records", disable=not show_progress):
        problems = check_record(record, need, tokenizer, max_length)
        if not any(reason in UNUSABLE for reason, _ in problems):
            key = _duplicate_key(record)
            if key in first_seen:
                problems.append(("duplicate_row", f"repeats {first_seen[key]}"))
            first_seen.setdefault(key, record.source)
        for reason, detail in problems:
            report.add(record.source, reason, detail)
        if problems:
            report.rows_with_issues += 1
        if not problems or (policy == "keep" and not any(reason in UNUSABLE for reason, _ in problems)):
            kept.append(record)
    report.kept = len(kept)
    if policy == "error" and report.issues:
        raise DataValidationError(error_message(report))
    return kept, report


def _duplicate_key(record: PreferenceRecord) -> str:
    """What makes two rows the same example (the source and free-form extras aside)."""
    fields = record.to_dict()
    fields.pop("source")
    fields.pop("extra")
    return json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str)


def error_message(report: ValidationReport, examples: int = 5) -> str:
    counts = ", ".join(f"{reason}={count}" for reason, count in report.counts.items() if count)
    lines = [f"{report.rows_with_issues} of {report.total} rows failed data validation "
             f"(invalid_rows policy '{report.policy}'; use 'drop' or 'keep' to go on): {counts}"]
    lines += [f"  {source}: {reason}: {detail}" for source, reason, detail in report.issues[:examples]]
    if len(report.issues) > examples:
        lines.append(f"  ... and {len(report.issues) - examples} more issues")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Checks of one record


def check_record(record: PreferenceRecord, need: str = "any", tokenizer=None,
                 max_length: int | None = None) -> list[tuple[str, str]]:
    """All ``(reason, detail)`` problems of one record; unusable ones stop further checks."""
    if record.extra.get(ERRORS_KEY):
        return [tuple(error) for error in record.extra[ERRORS_KEY]]
    problems = prompt_problems(record.prompt) + _type_problems(record)
    if any(reason in UNUSABLE for reason, _ in problems):
        return problems
    problems += _label_problems(record, need)
    if any(reason in UNUSABLE for reason, _ in problems):
        return problems
    responses = (0,) if record.unpaired else (0, 1)  # an unpaired record's response_1 repeats response_0
    empty = [i for i in responses if not record.response(i).strip()]
    problems += [("empty_response", f"response {i} is empty") for i in empty]
    if not empty and not record.unpaired and record.response_0.strip() == record.response_1.strip():
        problems.append(("identical_responses", "response 0 and response 1 are the same text"))
    if tokenizer is not None and not empty:
        for i in responses:
            if encode(tokenizer, record.prompt, record.response(i), max_length).overlong:
                length = len(tokenizer(record.response(i), add_special_tokens=False)["input_ids"])
                problems.append(("overlong", f"response {i} has {length} tokens; with the prompt cut to its "
                                             f"last tokens it still exceeds max_length={max_length}"))
    return problems


def prompt_problems(prompt: Any) -> list[tuple[str, str]]:
    if prompt is None:
        return [("missing_field", "prompt is missing")]
    if isinstance(prompt, str):
        return [] if prompt.strip() else [("empty_prompt", "prompt is empty")]
    if not isinstance(prompt, list):
        return [("wrong_type", f"prompt is a {type(prompt).__name__}, expected a string or a list of messages")]
    for index, message in enumerate(prompt):
        if (not isinstance(message, dict) or message.get("role") not in ROLES
                or not isinstance(message.get("content"), str)):
            return [("wrong_type", f"prompt message {index} is not {{'role': {'|'.join(ROLES)}, 'content': str}}")]
    if not prompt or prompt[-1]["role"] != "user":
        return [("malformed_transcript", "prompt messages must end with a user turn")]
    if not any(message["content"].strip() for message in prompt):
        return [("empty_prompt", "every prompt message is empty")]
    return []


def _type_problems(record: PreferenceRecord) -> list[tuple[str, str]]:
    problems = []
    responses = (0,) if record.unpaired else (0, 1)  # an unpaired record's second slot repeats the first
    for i in responses:
        value = record.response(i)
        if value is None:
            problems.append(("missing_field", f"response_{i} is missing"))
        elif not isinstance(value, str):
            problems.append(("wrong_type", f"response_{i} is a {type(value).__name__}, expected a string"))
    for name in ("better_response_id", "safer_response_id"):
        value = getattr(record, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            problems.append(("wrong_type", f"{name} is {value!r}, expected 0 or 1"))
    for i in responses:
        safe = getattr(record, f"is_response_{i}_safe")
        if safe is not None and not isinstance(safe, bool):
            problems.append(("wrong_type", f"is_response_{i}_safe is {safe!r}, expected true/false"))
        level = getattr(record, f"response_{i}_severity_level")
        if level is not None and (isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 3):
            problems.append(("wrong_type", f"response_{i}_severity_level is {level!r}, expected an integer 0-3"))
        categories = getattr(record, f"response_{i}_harm_category")
        if categories is not None and not (isinstance(categories, dict)
                                           and all(isinstance(v, bool) for v in categories.values())):
            problems.append(("wrong_type", f"response_{i}_harm_category must map category names to true/false"))
    return problems


def _label_problems(record: PreferenceRecord, need: str) -> list[tuple[str, str]]:
    problems = [("id_not_binary", f"{name} is {getattr(record, name)}, expected 0 or 1")
                for name in ("better_response_id", "safer_response_id")
                if getattr(record, name) not in (None, 0, 1)]
    if problems:
        return problems
    if record.unpaired:
        if need == "helpfulness":
            return [("missing_label", "an unpaired row (one response, a safety label) has no helpfulness ranking")]
        if record.is_response_0_safe is None:
            return [("missing_label", "an unpaired row needs its safety label (label / is_safe)")]
        return []
    if need == "helpfulness" and record.better_response_id is None:
        problems.append(("missing_label", "no better_response_id (a reward model needs helpfulness labels)"))
    elif need == "harmlessness" and record.safer_response_id is None:
        problems.append(("missing_label", "no safer_response_id (a cost model needs harmlessness labels)"))
    elif need == "any" and record.better_response_id is None and record.safer_response_id is None:
        problems.append(("missing_label", "neither better_response_id nor safer_response_id is set"))
    safer = record.safer_response_id
    if need != "helpfulness" and safer is not None:
        if record.is_safe(safer) is False and record.is_safe(1 - safer) is True:
            problems.append(("unsafe_safer_response", f"safer_response_id={safer} but is_response_{safer}_safe"
                                                      f"=false and is_response_{1 - safer}_safe=true"))
    return problems

