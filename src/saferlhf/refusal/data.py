"""Labelled (prompt, response) data for refusal detection: chatgpt-refusals and XSTest completions.

**chatgpt-refusals** (Reuter & Schulze 2023, github.com/maxwellreuter/chatgpt-refusals): JSON list
of ``{"prompt", "response", "tone", ...}`` with gpt-3.5-turbo responses hand-labelled by *tone*:
``complied`` (1,060 of 1,721), ``rejected`` (346), ``redirected`` (215), ``contradicted`` (61),
``disclaimed`` (21), ``dontknow`` (12), ``incoherent`` (3), ``counseling`` (3). The paper maps
everything except ``complied`` to "refusal" and drops ``dontknow``/``incoherent``. It has no
partial-refusal class, so :data:`DEFAULT_TONE_MAP` maps tones onto XSTest's three classes by
XSTest's own definitions (full compliance = any direct attempt to answer; full refusal = no answer;
partial = any mix of refusal and compliance):

- ``complied`` -> compliance; ``rejected`` -> full refusal (ethical);
- ``redirected``, ``disclaimed``, ``contradicted``, ``counseling`` -> partial refusal: a disclaimer
  or refusal of the framing ("As an AI I have no opinions, but...") followed by an answer;
- ``dontknow``, ``incoherent`` -> full refusal, *technical* kind ("I need more information", "I
  have no physical form, so I cannot draw").

The mapping is a config field; a tone mapped to ``"drop"`` is counted and skipped.

**XSTest** (Röttger et al. 2024): ``model_completions/xstest_v2_completions_<model>.csv`` with
``id,type,prompt,completion,annotation_1,annotation_2,agreement,final_label``;
``final_label`` in ``1_full_compliance`` / ``2_full_refusal`` / ``3_partial_refusal``. Beside them,
``evaluation/automated_evaluation_labels/<same stem>_streval.csv`` (column ``strmatch_label``) and
``_gpteval.csv`` (``gpt4_label``) hold the string-match and GPT-4-judge labels of the paper.
GPT-4 sometimes wrote prose instead of a label; such rows are kept with label ``None`` (counted as
disagreement, and counted in the report).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from saferlhf.refusal.patterns import COMPLIANCE, FULL_REFUSAL, LABELS, PARTIAL_REFUSAL

TECHNICAL = "technical"
ETHICAL = "ethical"

# tone -> "label" or "label:kind" or "drop"
DEFAULT_TONE_MAP = {
    "complied": COMPLIANCE,
    "rejected": f"{FULL_REFUSAL}:{ETHICAL}",
    "redirected": f"{PARTIAL_REFUSAL}:{ETHICAL}",
    "disclaimed": f"{PARTIAL_REFUSAL}:{ETHICAL}",
    "contradicted": f"{PARTIAL_REFUSAL}:{ETHICAL}",
    "counseling": f"{PARTIAL_REFUSAL}:{ETHICAL}",
    "dontknow": f"{FULL_REFUSAL}:{TECHNICAL}",
    "incoherent": f"{FULL_REFUSAL}:{TECHNICAL}",
}

XSTEST_LABELS = {"1_full_compliance": COMPLIANCE, "2_full_refusal": FULL_REFUSAL, "3_partial_refusal": PARTIAL_REFUSAL}
XSTEST_MODELS = ("gpt4", "llama2new", "llama2orig", "mistralguard", "mistralinstruct")


class RefusalDataError(ValueError):
    """A data file is missing, malformed, or holds an unknown label."""


@dataclass
class RefusalExample:
    prompt: str
    response: str
    label: str  # one of LABELS
    kind: str | None = None  # "ethical" | "technical" for refusals when the source says so
    source: str = ""  # "file:index" for error messages


@dataclass
class XSTestCompletion:
    model: str
    id: str
    type: str  # XSTest prompt type, e.g. "homonyms", "contrast_privacy"
    prompt: str
    response: str
    label: str  # human final_label, mapped to LABELS
    shipped: dict[str, str | None] = field(default_factory=dict)  # "string_match"/"gpt4" -> label or None

    @property
    def is_safe_prompt(self) -> bool:
        return not self.type.startswith("contrast_")


def parse_tone_map(tone_map: dict[str, str]) -> dict[str, tuple[str, str | None] | None]:
    """``{"rejected": "full_refusal:ethical", "x": "drop"}`` -> ``{"rejected": ("full_refusal", "ethical"), "x": None}``."""
    parsed = {}
    for tone, target in tone_map.items():
        if target == "drop":
            parsed[tone] = None
            continue
        label, _, kind = target.partition(":")
        if label not in LABELS or kind not in ("", ETHICAL, TECHNICAL) or (label == COMPLIANCE and kind):
            raise RefusalDataError(
                f"tone_map['{tone}'] = {target!r}: expected 'drop' or a label in {LABELS} optionally followed by "
                f"':ethical' or ':technical' (refusals only)"
            )
        parsed[tone] = (label, kind or None)
    return parsed


def load_chatgpt_refusals(path: str | Path, tone_map: dict[str, str] | None = None) -> tuple[list[RefusalExample], dict[str, int]]:
    """Read a chatgpt-refusals JSON file; returns (examples, counts of dropped tones)."""
    path = Path(path)
    mapping = parse_tone_map(tone_map or DEFAULT_TONE_MAP)
    try:
        rows = json.loads(path.read_text())
    except FileNotFoundError:
        raise RefusalDataError(f"{path}: file not found") from None
    except json.JSONDecodeError as error:
        raise RefusalDataError(f"{path}: invalid JSON: {error}") from None
    if not isinstance(rows, list):
        raise RefusalDataError(f"{path}: expected a JSON list of records, got {type(rows).__name__}")
    examples, dropped = [], {}
    for index, row in enumerate(rows):
        where = f"{path}:{index}"
        if not isinstance(row, dict):
            raise RefusalDataError(f"{where}: expected an object, got {type(row).__name__}")
        for key in ("prompt", "response", "tone"):
            if not isinstance(row.get(key), str):
                raise RefusalDataError(f"{where}: key '{key}' missing or not a string")
        if row["tone"] not in mapping:
            raise RefusalDataError(f"{where}: tone {row['tone']!r} is not in tone_map ({', '.join(sorted(mapping))})")
        target = mapping[row["tone"]]
        if target is None:
            dropped[row["tone"]] = dropped.get(row["tone"], 0) + 1
            continue
        examples.append(RefusalExample(row["prompt"], row["response"], target[0], target[1], where))
    return examples, dropped


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise RefusalDataError(f"{path}: missing column(s) {', '.join(missing)} (has {reader.fieldnames})")
        return list(reader)


def load_xstest_completions(folder: str | Path, models: tuple[str, ...] | list[str] | None = None) -> list[XSTestCompletion]:
    """All human-labelled XSTest completions under ``folder`` (the XSTest repository root).

    Shipped automated labels are attached when their files exist; a shipped row whose id or
    completion does not match the human-labelled row is an error (the files must be aligned).
    """
    folder = Path(folder)
    completions_dir = folder / "model_completions"
    files = sorted(completions_dir.glob("xstest_v2_completions_*.csv"))
    if not files:
        raise RefusalDataError(f"{completions_dir}: no xstest_v2_completions_*.csv files")
    out = []
    for file in files:
        model = file.stem.removeprefix("xstest_v2_completions_")
        if models and model not in models:
            continue
        rows = _read_csv(file, ("id", "type", "prompt", "completion", "final_label"))
        for index, row in enumerate(rows):
            if row["final_label"] not in XSTEST_LABELS:
                raise RefusalDataError(f"{file}:{index + 2}: final_label {row['final_label']!r} not in {sorted(XSTEST_LABELS)}")
        shipped = {name: _shipped_labels(folder, file.stem, suffix, column, rows)
                   for name, suffix, column in (("string_match", "streval", "strmatch_label"),
                                                ("gpt4", "gpteval", "gpt4_label"))}
        for index, row in enumerate(rows):
            out.append(XSTestCompletion(
                model=model, id=row["id"], type=row["type"], prompt=row["prompt"], response=row["completion"],
                label=XSTEST_LABELS[row["final_label"]],
                shipped={name: labels[index] for name, labels in shipped.items() if labels is not None},
            ))
    if models and not out:
        raise RefusalDataError(f"{completions_dir}: none of the models {list(models)} found")
    return out


def _shipped_labels(folder: Path, stem: str, suffix: str, column: str, rows: list[dict]) -> list[str | None] | None:
    path = folder / "evaluation" / "automated_evaluation_labels" / f"{stem}_{suffix}.csv"
    if not path.exists():
        return None
    shipped = _read_csv(path, ("id", "completion", column))
    if len(shipped) != len(rows):
        raise RefusalDataError(f"{path}: {len(shipped)} rows, but the human-labelled file has {len(rows)}")
    labels = []
    for index, (auto, human) in enumerate(zip(shipped, rows)):
        if auto["id"] != human["id"] or auto["completion"] != human["completion"]:
            raise RefusalDataError(f"{path}:{index + 2}: row id {auto['id']!r} does not match the completions file")
        labels.append(XSTEST_LABELS.get(auto[column].strip()))  # None: the judge wrote no valid label
    return labels
