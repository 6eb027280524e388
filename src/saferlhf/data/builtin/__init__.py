"""The project's own prompt set, shipped inside the package (``prompts.jsonl``; see ``README.md`` here).

372 single-turn English prompts written for this project (Apache-2.0): harmful requests in 13 harm
categories (a good assistant refuses), ordinary benign requests (it answers), and pseudo-harmful
prompts that contain trigger words but are safe to answer (XSTest-style types, Röttger et al. 2024,
"XSTest: A Test Suite for Identifying Exaggerated Safety Behaviours in Large Language Models").

Each row: ``id`` (``{prefix}-{category}-{number:03d}``, prefix ``harm`` / ``benign`` / ``pseudo``),
``prompt``, ``label`` (``harmful`` | ``benign`` | ``pseudo_harmful``), ``category``, ``split``
(``train`` | ``heldout``). The held-out split is fixed by :func:`heldout_rule`: within each
(label, category), the prompts numbered 4, 8, 12, ... are held out (25 % of every category), and are
never to be trained on.

The file is read through :mod:`importlib.resources`, so it works from an installed wheel.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

LABELS = ("harmful", "benign", "pseudo_harmful")
SPLITS = ("train", "heldout")
ID_PREFIX = {"harmful": "harm", "benign": "benign", "pseudo_harmful": "pseudo"}
FIELDS = ("id", "prompt", "label", "category", "split")
HELDOUT_EVERY = 4

_RESOURCE = resources.files(__name__).joinpath("prompts.jsonl")
BUILTIN_PROMPTS_PATH = Path(str(_RESOURCE))  # pip installs packages unpacked, so this is a real file
_ID_PATTERN = re.compile(r"^(harm|benign|pseudo)-([a-z_]+)-(\d{3})$")


def heldout_rule(number: int) -> str:
    """Split of the ``number``-th prompt (1-based, the id's suffix) of its (label, category).

    ``"heldout"`` when ``number % 4 == 0`` else ``"train"``: a fixed 25 % of every category when its
    size is a multiple of 4, independent of any seed, so the held-out prompts never change.
    """
    return "heldout" if number % HELDOUT_EVERY == 0 else "train"


def parse_prompt_row(text: str, location: str) -> dict[str, str]:
    """One jsonl line -> a validated row; ``ValueError`` naming ``location`` (``file:LINE``) and the key."""
    try:
        row = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{location}: not valid JSON ({error})") from error
    if not isinstance(row, dict):
        raise ValueError(f"{location}: expected a JSON object, got {type(row).__name__}")
    missing = [key for key in FIELDS if key not in row]
    extra = sorted(set(row) - set(FIELDS))
    if missing or extra:
        raise ValueError(f"{location}: missing keys {missing}, unexpected keys {extra}")
    for key in FIELDS:
        if not isinstance(row[key], str) or not row[key].strip():
            raise ValueError(f"{location}: key '{key}' must be a non-empty string, got {row[key]!r}")
    if row["label"] not in LABELS:
        raise ValueError(f"{location}: key 'label' is {row['label']!r}, expected one of {LABELS}")
    match = _ID_PATTERN.match(row["id"])
    expected_prefix = ID_PREFIX[row["label"]]
    if match is None or match.group(1) != expected_prefix or match.group(2) != row["category"]:
        raise ValueError(f"{location}: key 'id' is {row['id']!r}, expected "
                         f"'{expected_prefix}-{row['category']}-NNN' for this label and category")
    expected_split = heldout_rule(int(match.group(3)))
    if row["split"] != expected_split:
        raise ValueError(f"{location}: key 'split' is {row['split']!r}, but the held-out rule gives "
                         f"{expected_split!r} for {row['id']}")
    return row


def read_prompt_file(text: str, source: str) -> list[dict[str, str]]:
    """All rows of a prompt-set jsonl text (blank lines skipped); rejects duplicate ids."""
    rows, seen = [], {}
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        location = f"{source}:{line_number}"
        row = parse_prompt_row(line, location)
        if row["id"] in seen:
            raise ValueError(f"{location}: key 'id' {row['id']!r} repeats line {seen[row['id']]}")
        seen[row["id"]] = line_number
        rows.append(row)
    return rows


def builtin_prompts(split: str | None = None, label: str | None = None) -> list[dict[str, Any]]:
    """The built-in prompts in file order, optionally only one ``split`` and/or one ``label``."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
    if label is not None and label not in LABELS:
        raise ValueError(f"label must be one of {LABELS} or None, got {label!r}")
    rows = read_prompt_file(_RESOURCE.read_text(encoding="utf-8"), str(BUILTIN_PROMPTS_PATH))
    return [row for row in rows
            if (split is None or row["split"] == split) and (label is None or row["label"] == label)]


def check_labelled_row(raw, prompt_column: str = "prompt", label: str = "") -> dict:
    """A user prompt row (a :class:`saferlhf.data.readers.RawRow`) as ``{"prompt", "label", ...}``: a non-empty
    string under ``prompt_column`` and a ``label`` of :data:`LABELS` (or the given ``label`` for every row);
    ``ValueError`` naming its ``file:LINE`` and the key otherwise."""
    if raw.error or not isinstance(raw.row, dict):
        raise ValueError(f"{raw.location}: unreadable prompt row ({raw.error or type(raw.row).__name__})")
    row = dict(raw.row)
    if not isinstance(row.get(prompt_column), str) or not row[prompt_column].strip():
        raise ValueError(f"{raw.location}: key {prompt_column!r} must be a non-empty string, "
                         f"got {row.get(prompt_column)!r}")
    row["prompt"] = row[prompt_column]
    row["label"] = label or row.get("label")
    if row["label"] not in LABELS:
        raise ValueError(f"{raw.location}: key 'label' is {row['label']!r}, expected one of {LABELS}")
    return row


__all__ = ["BUILTIN_PROMPTS_PATH", "LABELS", "SPLITS", "builtin_prompts", "check_labelled_row", "heldout_rule",
           "read_prompt_file"]
