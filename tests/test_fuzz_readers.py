"""Fuzz the readers of user files: random bytes, random JSON shapes, truncated files (fixed seed, a few seconds).

Every outcome must be a result (bad rows reported with their ``file:line``, as the readers promise) or an
error the command line turns into one message (``saferlhf.cli.EXPECTED_ERRORS``) naming the file; never
another exception (TypeError, KeyError, AttributeError, RecursionError, ...), which would reach the user as a
traceback.
"""

from __future__ import annotations

import gzip
import json
import random
import string

import pytest

from saferlhf.annotation.files import read_labels, read_pairs
from saferlhf.cli import EXPECTED_ERRORS
from saferlhf.config import DataConfig, DataSource
from saferlhf.data.loading import load_preference_data, load_prompts
from saferlhf.data.readers import read_rows
from saferlhf.evaluation.benchmarks import load_benchmark
from saferlhf.pipeline.config import PromptsConfig
from saferlhf.pipeline.prompts import training_prompts
from saferlhf.stages.score import _checked_row

CASES = 25  # per reader and file type
KEYS = ["prompt", "response", "response_0", "response_1", "better_response_id", "safer_response_id",
        "is_response_0_safe", "is_response_1_safe", "chosen", "rejected", "label", "category", "id", "messages",
        "role", "content", "goal", "text", "x"]
GOOD_ROW = {"id": "p1", "prompt": "How do I bake bread?", "response": "Knead it.", "response_0": "Knead it.",
            "response_1": "No.", "better_response_id": 0, "safer_response_id": 1, "is_response_0_safe": True,
            "is_response_1_safe": True, "label": "benign", "category": "food"}


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(10 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, 1, -1, 2, 10 ** 30, 0.5, float("nan"), float("inf")])
    if kind in (3, 4, 5):
        return "".join(rng.choice(string.printable + "é漢\u2028\x00") for _ in range(rng.randrange(12)))
    if kind in (6, 7):
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if rng.random() < 0.3:
        return [{"role": rng.choice(["user", "assistant", "system", "x"]), "content": random_value(rng, depth + 1)}]
    return {rng.choice(KEYS): random_value(rng, depth + 1) for _ in range(rng.randrange(5))}


def random_row(rng: random.Random):
    if rng.random() < 0.2:
        return random_value(rng)
    row = dict(GOOD_ROW) if rng.random() < 0.5 else {}
    for _ in range(rng.randrange(4)):
        row[rng.choice(KEYS)] = random_value(rng)
    return row


def random_content(rng: random.Random, suffix: str) -> bytes:
    """Random bytes, a random JSON shape, a deeply nested value, or a valid-looking file cut anywhere."""
    kind = rng.randrange(5)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(200)))
    if kind == 1:
        return ("[" * 5000 + "]" * 5000 + "\n").encode()
    rows = [random_row(rng) for _ in range(rng.randrange(6))]
    if suffix == ".csv":
        columns = sorted({k for r in rows if isinstance(r, dict) for k in r}) or ["prompt"]
        lines = [",".join(columns)] + [",".join(json.dumps(r.get(c)) if isinstance(r, dict) else json.dumps(r)
                                                for c in columns) for r in rows]
        text = "\n".join(lines) + "\n"
    elif suffix == ".json":
        text = json.dumps(rows if rng.random() < 0.8 else random_value(rng))
    else:
        text = "".join(json.dumps(r) + "\n" for r in rows)
    data = text.encode("utf-8")
    if kind == 4 and data:  # truncated, or one byte made invalid UTF-8
        data = data[:rng.randrange(len(data))] if rng.random() < 0.5 else \
            data[:len(data) // 2] + b"\xff" + data[len(data) // 2 + 1:]
    return data


READERS = {
    "read_rows": lambda path: read_rows(str(path)),
    "load_preference_data": lambda path: load_preference_data(
        DataConfig(train=[DataSource(path=str(path))], eval_fraction=0.0), need="any"),
    "load_prompts": lambda path: load_prompts(DataSource(path=str(path))),
    "load_benchmark": lambda path: load_benchmark(str(path), label="harmful"),
    "training_prompts": lambda path: training_prompts(PromptsConfig(builtin=False, files=[DataSource(path=str(path))])),
    "score rows": lambda path: [_checked_row(raw) for raw in read_rows(str(path))],
    "annotation pairs": lambda path: read_pairs(path),
    "annotation labels": lambda path: read_labels(path, [{"id": "p1", "prompt": "p", "response_0": "a",
                                                          "response_1": "b"}]),
}
SUFFIXES = {"annotation pairs": [".jsonl"], "annotation labels": [".jsonl"]}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_outcome_is_a_result_or_a_clean_error(reader, tmp_path, capsys):
    rng = random.Random(f"saferlhf-fuzz-{reader}")
    outcomes = {"ok": 0, "error": 0}
    for suffix in SUFFIXES.get(reader, [".jsonl", ".json", ".csv", ".jsonl.gz"]):
        for case in range(CASES):
            data = random_content(rng, suffix.removesuffix(".gz"))
            path = tmp_path / f"case{case}{suffix}"
            path.write_bytes(gzip.compress(data)[:rng.choice([None, None, 15])] if suffix.endswith(".gz") else data)
            try:
                result = READERS[reader](path)
                outcomes["ok"] += 1
            except EXPECTED_ERRORS as error:
                assert path.name in str(error), f"{reader}: {type(error).__name__} does not name the file: {error}"
                outcomes["error"] += 1
            except Exception as error:  # noqa: BLE001 (the point of the test)
                pytest.fail(f"{reader} on {path.name} ({data[:120]!r}...): uncaught {type(error).__name__}: {error}")
            else:
                if reader == "read_rows":  # every row, bad ones included, carries its file and line (or index)
                    assert all(raw.location.startswith(f"{path}:") for raw in result)
    capsys.readouterr()
    assert outcomes["ok"] and outcomes["error"], outcomes  # the fuzzing reached both kinds of outcome
