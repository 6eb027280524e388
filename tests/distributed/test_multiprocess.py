"""Two processes under ``accelerate launch`` (CPU, gloo) against one process on the same global batch.

Both launches use ``configs/accelerate/cpu_2proc.yaml``; the single-process runs go in-process.

- ``train-reward``: 2 processes x 4 pairs per micro-batch against 1 process x 8 pairs, with
  ``group_by_length=false`` so that the seeded shuffle puts the same 8 pairs into each optimiser
  step. Logged losses and accuracies and the final evaluation metrics agree within rtol 1e-4 /
  atol 1e-5 (measured: 1.3e-7 relative), every saved weight within atol 5e-5 (measured: 2.6e-6).
  Not exact because DDP averages two per-process gradients where one process sums the 8 pairs at
  once: float32 additions in another order, ~1e-7 per step, grown over 6 AdamW steps (whose division
  by sqrt(v) enlarges it in weights with small gradients). A sharding error (a process seeing the
  wrong or the same pairs) moves the loss by ~1e-2, far outside the tolerance.
- ``train-policy --algo ppo-lag``: 2 processes x 16 prompts against 1 process x 32, one micro-batch
  per policy step, and temperature 1e-5 so that both runs sample the same answers (each process
  has its own random stream by design, so sampled runs differ answer by answer). The scores depend
  on the prompt (``scores.py``), so the two processes see different costs. Every logged number
  (reward, cost, KL, entropy, λ, Ĵ_c, actor and critic losses) agrees within the same rtol 1e-4 /
  atol 1e-5 (measured: at most 6e-7 relative), for the same round-off reason. All answers have 8
  tokens, so DDP's mean of the two per-process token means equals the single process's token mean
  (with unequal lengths it would differ, by design of data parallelism).
- λ: each process writes its own ``process_logs/rank<R>.jsonl``. λ is bit-identical on both ranks at
  every step, both as each process computed it and after rank 0's broadcast; Ĵ_c is the mean of the
  two processes' own window means (1e-6: float32 all-reduce) and λ follows the gradient rule from it.
- The checkpoint written by 2 processes resumes in 1 process, and its next step equals step 5 of the
  uninterrupted single-process run (same weights, optimiser state, data position and cost window).

About 1.5 minutes on 2 busy cores (two launches of ~30 s each, plus the in-process runs).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import socket
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from saferlhf.config import load_config
from saferlhf.policy.stage import PolicyStageConfig
from saferlhf.policy.stage import run as run_policy
from saferlhf.runio import read_log
from saferlhf.stages.score_training import ScoreStageConfig, train_score_model

from policy.toy_task import build_toy_model, toy_overrides, write_prompts

REPO = Path(__file__).resolve().parents[2]
CPU_CONFIG = REPO / "configs" / "accelerate" / "cpu_2proc.yaml"
SCORES = Path(__file__).resolve().parent / "scores.py"
RTOL, ATOL = 1e-4, 1e-5
WEIGHT_ATOL = 5e-5
LAUNCH_TIMEOUT_S = 300
LAMBDA_LR, COST_THRESHOLD = 0.5, 0.3  # toy_overrides' lagrange.lambda_lr and cost_threshold


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accelerate_launch(arguments: list[str]) -> subprocess.CompletedProcess:
    """``accelerate launch --config_file cpu_2proc.yaml -m saferlhf.cli ARGUMENTS``; one retry when a
    process died of a signal (a gloo rank once ended with SIGABRT here, see MODELS.md)."""
    executable = Path(sys.executable).with_name("accelerate")
    launcher = [str(executable)] if executable.exists() else [sys.executable, "-m", "accelerate.commands.launch"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("ACCELERATE_USE_CPU", None)  # the shipped config and saferlhf must set up the CPU group themselves
    for attempt in (1, 2):
        command = [*launcher, "launch", "--config_file", str(CPU_CONFIG), "--main_process_port", str(free_port()),
                   "-m", "saferlhf.cli", *arguments]
        try:
            result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
        except subprocess.TimeoutExpired as error:
            tail = (error.stderr or b"")[-3000:]
            pytest.fail(f"accelerate launch timed out after {LAUNCH_TIMEOUT_S} s: {' '.join(command)}\n"
                        f"stderr tail:\n{tail.decode(errors='replace') if isinstance(tail, bytes) else tail}")
        if result.returncode == 0:
            return result
        died_of_signal = re.search(r"exitcode\s*:\s*-\d+|Signal \d+ \(SIG", result.stderr)
        if attempt == 1 and died_of_signal:
            continue
        pytest.fail(f"accelerate launch failed (exit {result.returncode}, attempt {attempt}): {' '.join(command)}\n"
                    f"stderr tail:\n{result.stderr[-4000:]}")
    raise AssertionError("unreachable")


def assert_close(two: dict, one: dict, where: str) -> None:
    timings = ("time/", "train_seconds", "train_pairs_per_s")
    keys = sorted(k for k in one if isinstance(one[k], (int, float)) and not k.startswith(timings))
    assert keys and set(keys) <= set(two), f"{where}: keys {set(keys) - set(two)} missing in the 2-process run"
    for key in keys:
        assert math.isclose(two[key], one[key], rel_tol=RTOL, abs_tol=ATOL), \
            f"{where} {key}: 2 processes {two[key]!r} vs 1 process {one[key]!r}"


# ----------------------------------------------------------------------------------------------
# Reward model


def write_pairs(path: Path, count: int = 80) -> Path:
    """Pairs with a learnable rule: the detailed answer is the more helpful one."""
    rng = random.Random(0)
    rows = []
    for i in range(count):
        detailed, short = f"Here are the detailed steps for task {i}: first prepare, then assemble.", "No."
        first_is_detailed = rng.random() < 0.5
        rows.append({"prompt": f"How do I do task {i}?",
                     "response_0": detailed if first_is_detailed else short,
                     "response_1": short if first_is_detailed else detailed,
                     "better_response_id": 0 if first_is_detailed else 1})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def reward_overrides(data: Path, output_dir: Path, batch_size: int) -> list[str]:
    return [f"data.train=[{data}]", "model.name_or_path=tiny-bert", f"output_dir={output_dir}", "data.max_length=64",
            f"train.batch_size={batch_size}", "train.learning_rate=1e-3", "train.logging_steps=1",
            "train.warmup_ratio=0.0", "train.max_steps=6", "group_by_length=false", "normalization_samples=16",
            "train.num_threads=1"]


def test_reward_training_on_two_processes_matches_one_process(tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl")
    accelerate_launch(["train-reward", *reward_overrides(data, tmp_path / "two", batch_size=4)])
    train_score_model(load_config(ScoreStageConfig, overrides=reward_overrides(data, tmp_path / "one", 8)), "reward")

    two, one = read_log(tmp_path / "two" / "log.jsonl"), read_log(tmp_path / "one" / "log.jsonl")
    assert [line["step"] for line in two] == [line["step"] for line in one] == [1, 2, 3, 4, 5, 6, 6]
    for line_two, line_one in zip(two, one):
        assert_close(line_two, line_one, f"train-reward log step {line_one['step']}")
    metrics_two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    metrics_one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert metrics_two["num_eval_pairs"] == metrics_one["num_eval_pairs"] == 16  # no pair counted twice
    assert_close({k: v for k, v in metrics_two.items() if k.startswith(("eval_", "train_score"))},
                 {k: v for k, v in metrics_one.items() if k.startswith(("eval_", "train_score"))}, "metrics.json")
    weights_two = load_file(str(tmp_path / "two" / "model.safetensors"))
    weights_one = load_file(str(tmp_path / "one" / "model.safetensors"))
    assert weights_two.keys() == weights_one.keys()
    for name, tensor in weights_one.items():
        assert torch.allclose(weights_two[name], tensor, rtol=0, atol=WEIGHT_ATOL), name
    assert not (tmp_path / "two" / "checkpoint").exists()  # written by one process, removed at the end


# ----------------------------------------------------------------------------------------------
# PPO-Lagrangian


def policy_overrides(model: Path, prompts: Path, output_dir: Path, processes: int, steps: int) -> list[str]:
    """The toy task's settings (tests/policy/toy_task.py) with the same global batch for 1 or 2 processes."""
    dropped = ("rollout.prompts_per_step=", "train.batch_size=", "lagrange.episode_cost_window=", "train.save_steps=",
               "reward.path=", "cost.path=")
    overrides = [o for o in toy_overrides(model, prompts, output_dir, "ppo-lag", steps) if not o.startswith(dropped)]
    per_process = 32 // processes
    return overrides + [f"rollout.prompts_per_step={per_process}", f"train.batch_size={per_process}",
                        f"lagrange.episode_cost_window={2 * per_process}", "rollout.temperature=1e-5",
                        f"reward.path={SCORES}:reward", f"cost.path={SCORES}:cost", "tracking.per_process_log=true",
                        f"train.save_steps={2 if processes == 2 else 0}"]


def gradient_rule(previous_lambda: float, episode_cost: float) -> float:
    """log λ ← log λ + lr·(Ĵ_c - d)·λ (saferlhf.policy.lagrange)."""
    return math.exp(math.log(previous_lambda) + LAMBDA_LR * (episode_cost - COST_THRESHOLD) * previous_lambda)


def test_ppo_lag_on_two_processes_matches_one_process_and_shares_lambda(tmp_path, capsys):
    model = build_toy_model(tmp_path / "toy-model")
    prompts = write_prompts(tmp_path / "prompts.jsonl")
    two_dir, one_dir = tmp_path / "two", tmp_path / "one"
    accelerate_launch(["train-policy", *policy_overrides(model, prompts, two_dir, processes=2, steps=5),
                       "keep_checkpoints=2"])
    run_policy(load_config(PolicyStageConfig, overrides=policy_overrides(model, prompts, one_dir, 1, steps=5)))

    # λ on each process: identical, computed from the all-reduced window mean
    ranks = [read_log(two_dir / "process_logs" / f"rank{r}.jsonl") for r in (0, 1)]
    assert [line["step"] for line in ranks[0]] == [line["step"] for line in ranks[1]] == [1, 2, 3, 4, 5]
    previous_lambda = 1.0  # lagrange.lambda_init
    for zero, one in zip(*ranks):
        assert zero["lambda"] == one["lambda"] == zero["lambda_local"] == one["lambda_local"], (zero, one)
        assert zero["episode_cost"] == one["episode_cost"]
        assert zero["episode_cost"] == pytest.approx((zero["window_mean_local"] + one["window_mean_local"]) / 2,
                                                     abs=1e-6)
        assert zero["lambda"] == pytest.approx(gradient_rule(previous_lambda, zero["episode_cost"]), rel=1e-9)
        previous_lambda = zero["lambda"]
    assert any(zero["window_mean_local"] != one["window_mean_local"] for zero, one in zip(*ranks)), \
        "both processes saw the same costs: the test could not tell an all-reduce from none"

    # the logged (averaged) numbers of 2 processes equal the single process's on the same global batch
    two_log, one_log = read_log(two_dir / "log.jsonl"), read_log(one_dir / "log.jsonl")
    assert [line["step"] for line in two_log] == [1, 2, 3, 4, 5]
    for line_two, line_one, zero, one in zip(two_log, one_log, *ranks):
        assert line_two["cost"] == pytest.approx((zero["cost_local"] + one["cost_local"]) / 2, abs=1e-6)
        assert line_two["response_length"] == 8.0  # equal lengths: DDP's token mean is the global one
        assert_close(line_two, line_one, f"ppo-lag log step {line_one['step']}")

    # one checkpoint, written once, with every process's RNG state and cost window
    checkpoint = two_dir / "checkpoints" / "step-000004"
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["num_processes"] == 2 and len(state["multipliers"]["cost"]["windows"]) == 2
    assert (checkpoint / "rng_state_0.pt").exists() and (checkpoint / "rng_state_1.pt").exists()
    assert (two_dir / "policy" / "model.safetensors").exists()

    # ... and 1 process reads it (the run killed after step 4: its step-4 checkpoint and log, no metrics.json):
    # its step 5 is the uninterrupted single-process run's step 5. The run identity counts the global batch,
    # so 2 x 16 prompts and 1 x 32 are the same run.
    killed = tmp_path / "killed"
    shutil.copytree(checkpoint, killed / "checkpoints" / checkpoint.name)
    (killed / "log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in two_log[:4]))
    capsys.readouterr()
    resumed = policy_overrides(model, prompts, killed, 1, steps=5) + ["resume=true"]
    run_policy(load_config(PolicyStageConfig, overrides=resumed))
    assert "checkpoint written by 2 processes, continuing with 1" in capsys.readouterr().out
    resumed_log = read_log(killed / "log.jsonl")
    assert [line["step"] for line in resumed_log] == [1, 2, 3, 4, 5]
    assert_close(resumed_log[-1], one_log[4], "step 5 resumed in 1 process from the 2-process checkpoint")
