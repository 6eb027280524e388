"""Helpers for the data tests: write small files of preference rows in every supported format."""

from __future__ import annotations

import csv
import json
from pathlib import Path


MISSING = object()  # good_row(response_1=MISSING) leaves the column out


def good_row(index: int = 0, **changes) -> dict:
    """A valid decoupled (PKU-SafeRLHF) row; ``changes`` overrides columns or (MISSING) removes them."""
    row = {"prompt": f"question {index}?", "response_0": f"answer A{index}", "response_1": f"answer B{index}",
           "better_response_id": 0, "safer_response_id": 1, "is_response_0_safe": False, "is_response_1_safe": True}
    row.update(changes)
    return {key: value for key, value in row.items() if value is not MISSING}


def write_jsonl(path: Path, rows: list) -> Path:
    """Rows are dicts (dumped as JSON) or raw strings (written verbatim, e.g. broken JSON)."""
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path

