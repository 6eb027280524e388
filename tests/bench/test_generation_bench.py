"""bench/generation.py runs end to end (a few answers of the real model) and writes the JSON the issue names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_generation_bench_writes_its_json(tmp_path):  # the real model: the tiny random one answers nothing
    output = tmp_path / "generation.json"
    subprocess.run([sys.executable, str(REPO / "bench" / "generation.py"), "--model", "smollm2-135m-instruct",
                    "--prompts", "6", "--rounds", "2", "--max-new-tokens", "8", "--threads", "1", "--matmul-size", "128",
                    "--output", str(output)], check=True, capture_output=True, timeout=300)
    result = json.loads(output.read_text())
    for key in ("project_tokens_per_s", "baseline_tokens_per_s", "ratio_vs_baseline", "fraction_of_peak"):
        assert isinstance(result[key], float) and result[key] > 0, key
    assert result["ratio_vs_baseline"] == result["project_tokens_per_s"] / result["baseline_tokens_per_s"]
    assert result["baseline"]["batch_size"] == 16 and result["baseline"]["dtype"] == "float32"
    assert len(result["project"]["tokens_per_s_rounds"]) == 2 and result["prompts"] == 6
