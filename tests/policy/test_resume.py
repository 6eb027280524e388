"""Kill-and-resume: ``saferlhf train-policy`` killed with SIGKILL mid-run, then ``--resume``, ends with
exactly the numbers of an uninterrupted run with the same seed (CPU, one thread: bit-identical).

Compared: every ``log.jsonl`` line except the wall-clock ``time/*`` keys, the final λ, and every
weight of the saved policy. Checkpoints are written every step, so the kill lands at a random point
of a step (generation, update or checkpoint write); the resumed run continues from the newest
complete checkpoint and drops the log lines written after it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from saferlhf.policy.checkpoint import latest_checkpoint
from saferlhf.runio import read_log

from .toy_task import toy_overrides

pytestmark = pytest.mark.slow  # 6 CLI runs, about 50 s on 2 cores

STEPS = 24


def cli(overrides: list[str], *flags: str) -> list[str]:
    return [sys.executable, "-m", "saferlhf.cli", "train-policy", *flags, *overrides]


def settings(toy_model, toy_prompts, output_dir, algorithm: str) -> list[str]:
    overrides = toy_overrides(toy_model, toy_prompts, output_dir, algorithm, STEPS)
    overrides = [o for o in overrides if not o.startswith(("algorithm=", "train.save_steps="))]
    return overrides + ["rollout.prompts_per_step=16", "train.batch_size=8", "train.save_steps=1",
                        "train.lr_scheduler=cosine", "train.warmup_ratio=0.1"]


def comparable(lines: list[dict]) -> list[dict]:
    return [{k: v for k, v in line.items() if not k.startswith("time/")} for line in lines]


@pytest.mark.parametrize("algorithm", ["ppo-lag", "critic-free"])
def test_killed_run_resumes_to_the_same_numbers(toy_model, toy_prompts, tmp_path, algorithm):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error"}
    reference_dir, killed_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    subprocess.run(cli(settings(toy_model, toy_prompts, reference_dir, algorithm), "--algo", algorithm),
                   check=True, env=env, capture_output=True)

    process = subprocess.Popen(cli(settings(toy_model, toy_prompts, killed_dir, algorithm), "--algo", algorithm),
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        found = latest_checkpoint(killed_dir)
        if found is not None and int(found.name.split("-")[1]) >= 5:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = latest_checkpoint(killed_dir)
    assert killed_at is not None and int(killed_at.name.split("-")[1]) < STEPS, "the run was not killed mid-run"
    assert not (killed_dir / "metrics.json").exists()

    resumed = subprocess.run(cli(settings(toy_model, toy_prompts, killed_dir, algorithm), "--algo", algorithm,
                                 "--resume"), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resume: from" in resumed.stdout

    reference_log, resumed_log = read_log(reference_dir / "log.jsonl"), read_log(killed_dir / "log.jsonl")
    assert [line["step"] for line in resumed_log] == list(range(1, STEPS + 1))
    assert comparable(resumed_log) == comparable(reference_log)
    reference_metrics = json.loads((reference_dir / "metrics.json").read_text())
    resumed_metrics = json.loads((killed_dir / "metrics.json").read_text())
    assert resumed_metrics["lambda"] == reference_metrics["lambda"]
    reference_weights = load_file(str(reference_dir / "policy" / "model.safetensors"))
    resumed_weights = load_file(str(killed_dir / "policy" / "model.safetensors"))
    assert reference_weights.keys() == resumed_weights.keys()
    for name, tensor in reference_weights.items():
        assert torch.equal(tensor, resumed_weights[name]), name
