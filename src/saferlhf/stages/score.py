"""``saferlhf score``: score (prompt, response) pairs from a file with a trained reward or cost model.

Input: any file or dataset id :mod:`saferlhf.data.readers` reads, with ``prompt`` and ``response``
columns (or TRL's ``completion``: a string or one assistant message). Output: a jsonl file with the input columns plus ``score`` (and ``is_unsafe`` = score > 0
for cost models), and summary statistics returned as metrics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from saferlhf.config import _check, doc
from saferlhf.data.readers import RawRow, read_rows
from saferlhf.data.validation import prompt_problems
from saferlhf.evaluation.scoring import load_checked, score_pairs
from saferlhf.runio import atomic_write_json, atomic_write_text


@dataclass
class ScoreCommandConfig:
    model: str = doc("", "A score model: train-reward / train-cost output_dir, or a TRL, OpenRLHF or PKU Beaver folder or "
                         "hub id (docs/models.md).")
    input: str = doc("", "File or dataset id with 'prompt' and 'response' (or TRL's 'completion') columns.")
    output: str = doc("", "Output jsonl (default: <input stem>.scores.jsonl beside the input).")
    batch_size: int = doc(16, "Pairs per forward pass.")
    max_length: int = doc(512, "Maximum tokens (prompt truncated from the left).")
    normalize: Literal["none", "scale", "affine"] = doc("none", "Score normalisation with the saved statistics.")
    kind: Literal["", "reward", "cost"] = doc("", "'' = the folder's own (TRL and OpenRLHF folders do not say: reward).")

    def validate(self, prefix: str) -> None:
        _check(bool(self.model), prefix + "model", "must name a trained score model folder")
        _check(bool(self.input), prefix + "input", "must name a file with prompt/response columns")
        _check(self.batch_size > 0, prefix + "batch_size", "must be > 0")


def _checked_row(raw: RawRow) -> tuple[dict, str]:
    """The row and its answer (``response``, or TRL's ``completion``: a string or one assistant message), or a
    ValueError naming its location and every problem (this command scores all rows or none)."""
    if raw.error:
        raise ValueError(f"{raw.location}: {raw.error}")
    if not isinstance(raw.row, dict):
        raise ValueError(f"{raw.location}: row is a {type(raw.row).__name__}, not an object with 'prompt' and "
                         "'response' (or 'completion') columns")
    problems = [detail for _, detail in prompt_problems(raw.row.get("prompt"))]
    column = "response" if "response" in raw.row else "completion"
    response = raw.row.get(column)
    if (isinstance(response, list) and len(response) == 1 and isinstance(response[0], dict)
            and response[0].get("role") == "assistant"):
        response = response[0].get("content")  # a conversational completion
    if not isinstance(response, str):
        problems.append("response is missing (a 'response' or 'completion' column)" if response is None
                        else f"{column} is a {type(response).__name__}, expected a string or one assistant message")
    if problems:
        raise ValueError(f"{raw.location}: " + "; ".join(problems))
    return raw.row, response


def run(config: ScoreCommandConfig) -> dict:
    checked = [_checked_row(raw) for raw in read_rows(config.input)]
    if not checked:
        raise ValueError(f"{config.input}: no rows to score")
    rows, answers = [row for row, _ in checked], [answer for _, answer in checked]
    model, tokenizer, canary = load_checked(config.model, kind=config.kind or None)
    raw_scores, overlong = score_pairs(model, tokenizer, [r["prompt"] for r in rows], answers,
                                       config.max_length, config.batch_size)
    scores = model.normalize(torch.tensor(raw_scores), config.normalize).tolist()
    pairs = [json.dumps([r["prompt"], a], ensure_ascii=False) for r, a in zip(rows, answers)]
    duplicates = len(pairs) - len(set(pairs))  # scored like any row (same score), and counted
    if duplicates:
        print(f"[saferlhf score] {config.input}: {duplicates} row(s) repeat an earlier (prompt, response) pair; "
              "they are scored and counted as duplicate_rows", flush=True)
    is_cost = model.score_config.kind == "cost"
    lines = []
    for row, score in zip(rows, scores):
        out = {**row, "score": score}
        if is_cost:
            out["is_unsafe"] = score > 0
        lines.append(json.dumps(out))
    output = Path(config.output or Path(config.input).with_suffix("").as_posix() + ".scores.jsonl")
    atomic_write_text(output, "\n".join(lines) + "\n")
    values = torch.tensor(scores)
    metrics = {"kind": model.score_config.kind, "num_scored": len(scores), "score_mean": float(values.mean()),
               "score_std": float(values.std()) if len(scores) > 1 else 0.0, "overlong": overlong,
               "duplicate_rows": duplicates, "output": str(output), "canary": canary}
    if is_cost:
        metrics["unsafe_share"] = float((values > 0).float().mean())
    atomic_write_json(output.with_suffix(".metrics.json"), metrics)
    return metrics
