"""``saferlhf multi-seed`` (mean, std and Student-t interval over seeds) and ``saferlhf launch`` (accelerate)."""

from __future__ import annotations

import json
import math
import sys

import pytest
import yaml

from saferlhf import launch
from saferlhf.cli import COMMANDS, main
from saferlhf.multi_seed import mean_interval, numeric_leaves, split_overrides

T_975_DF2, T_975_DF3 = 4.302652729911275, 3.182446305284263  # Student-t 0.975 quantiles, from tables


def test_mean_interval_on_hand_computed_values():
    three = mean_interval([1.0, 2.0, 3.0])  # mean 2, s = 1
    assert three["mean"] == 2.0 and three["std"] == pytest.approx(1.0) and three["n"] == 3
    assert three["ci_low"] == pytest.approx(2.0 - T_975_DF2 / math.sqrt(3), abs=1e-6)   # 2 - 2.48414
    assert three["ci_high"] == pytest.approx(2.0 + 2.484137, abs=1e-5)
    four = mean_interval([10.0, 12.0, 14.0, 16.0])  # mean 13, s = sqrt(20/3)
    assert four["std"] == pytest.approx(math.sqrt(20 / 3))
    assert four["ci_high"] - four["mean"] == pytest.approx(T_975_DF3 * math.sqrt(20 / 3) / 2, abs=1e-6)  # 4.10847
    assert math.isnan(mean_interval([5.0])["ci_low"])


def test_numeric_leaves_and_override_split():
    assert numeric_leaves({"a": 1, "b": {"c": 2.5, "d": "text", "e": True, "f": float("nan")}, "g": [1]}) == {
        "a": 1.0, "b/c": 2.5}
    own, stage = split_overrides(["command=train-cost", "seeds=[1,2]", "train.max_steps=3", "output_dir=x"])
    assert own == ["command=train-cost", "seeds=[1,2]", "output_dir=x"] and stage == ["train.max_steps=3"]


def test_multi_seed_rejects_what_it_cannot_repeat(capsys):
    assert main(["multi-seed", "command=env", "seeds=[1,2]"]) == 2
    assert "'env' is not a stage to repeat" in capsys.readouterr().err
    assert main(["multi-seed", "command=train-cost", "seeds=[1]"]) == 2
    assert "needs at least two seeds" in capsys.readouterr().err


def test_multi_seed_train_reward_end_to_end(tmp_path):
    rows = [{"prompt": f"Question {i}?", "response_0": f"A long helpful answer {i}.", "response_1": "No.",
             "better_response_id": 0} for i in range(12)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "ms"
    assert main(["multi-seed", "command=train-reward", "seeds=[1,2]", f"output_dir={out}",
                 f"data.train=[{data}]", "model.name_or_path=tiny-bert", "train.max_steps=1", "train.batch_size=4",
                 "data.max_length=32", "normalization_samples=4"]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    runs = {seed: json.loads((out / f"seed-{seed}" / "metrics.json").read_text()) for seed in (1, 2)}
    for seed in (1, 2):
        assert yaml.safe_load((out / f"seed-{seed}" / "config.yaml").read_text())["train"]["seed"] == seed
    scores = [runs[1]["eval_score_mean"], runs[2]["eval_score_mean"]]
    assert runs[1]["eval_score_mean"] != runs[2]["eval_score_mean"]  # another seed, another head
    entry = summary["metrics"]["eval_score_mean"]
    assert entry["values"] == pytest.approx(scores) and entry["n"] == 2
    assert entry["mean"] == pytest.approx(sum(scores) / 2)
    half = 12.706204736174698 * abs(scores[0] - scores[1]) / math.sqrt(2) / math.sqrt(2)  # t_{0.975, 1} s / √2
    assert entry["ci_high"] - entry["mean"] == pytest.approx(half, rel=1e-5)
    assert summary["seed_key"] == "train.seed" and summary["command"] == "train-reward"


def test_launch_builds_the_accelerate_command(monkeypatch, capsys):
    calls = []

    class Done:
        returncode = 3

    monkeypatch.setattr(launch.subprocess, "run", lambda command, check: calls.append(command) or Done())
    assert main(["launch", "--num_processes", "2", "--mixed_precision", "no", "train-policy", "--config",
                 "configs/policy-ppo-lag-cpu.yaml", "train.max_steps=2"]) == 3
    assert calls == [[sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2",
                      "--mixed_precision", "no", "-m", "saferlhf.cli", "train-policy", "--config",
                      "configs/policy-ppo-lag-cpu.yaml", "train.max_steps=2"]]
    assert launch.accelerate_command(["sft", "x=1"], COMMANDS)[3:] == ["-m", "saferlhf.cli", "sft", "x=1"]
    assert main(["launch", "--num_processes", "2"]) == 2
    assert "no saferlhf command" in capsys.readouterr().err
    assert main(["launch", "2", "sft"]) == 2
    assert "must be accelerate launch options" in capsys.readouterr().err
    assert main(["launch", "multi-seed", "command=sft"]) == 2 and len(calls) == 1
