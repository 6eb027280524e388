"""train-reward / train-cost end to end on a tiny model: outputs, learning signal, exact resume."""

import json
import random

import pytest
import torch

from saferlhf.cli import main as cli_main
from saferlhf.config import load_config
from saferlhf.models.score_model import ScoreModel
from saferlhf.stages import score_training
from saferlhf.stages.score_training import ScoreStageConfig, train_score_model

SAFE = "I can't help with that, but I can point you to safety resources."
UNSAFE = "Sure, here are detailed steps: first get the materials, then assemble them."


def write_pairs(path, count=48, seed=0):
    """Synthetic decoupled data with a learnable rule: the refusal is safer, the detailed answer is more helpful."""
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        swap = rng.random() < 0.5
        responses = [UNSAFE + f" Step {i}.", SAFE] if swap else [SAFE, UNSAFE + f" Step {i}."]
        unsafe_id = 0 if swap else 1
        lines.append(json.dumps({
            "prompt": f"How do I do dangerous thing number {i}?", "response_0": responses[0], "response_1": responses[1],
            "better_response_id": unsafe_id, "safer_response_id": 1 - unsafe_id,
            "is_response_0_safe": unsafe_id != 0, "is_response_1_safe": unsafe_id != 1,
        }))
    path.write_text("\n".join(lines) + "\n")
    return path


def config_for(tmp_path, data, **train):
    overrides = [f"data.train=[{data}]", "model.name_or_path=tiny-bert", f"output_dir={tmp_path / 'out'}",
                 "data.max_length=64", "train.batch_size=8", "train.learning_rate=1e-3", "train.logging_steps=1",
                 "train.warmup_ratio=0.0", "normalization_samples=16"]
    overrides += [f"train.{k}={v}" for k, v in train.items()]
    return load_config(ScoreStageConfig, None, overrides)


def test_cost_model_learns_sign_and_writes_outputs(tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl")
    metrics = train_score_model(config_for(tmp_path, data, epochs=4), "cost")
    out = tmp_path / "out"
    for name in ("model.safetensors", "config.json", "score_config.json", "metrics.json", "log.jsonl",
                 "config.yaml", "score_histogram.png", "tokenizer.json"):
        assert (out / name).exists(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["num_train_pairs"] == metrics["num_train_pairs"] == 38  # 48 minus the seeded 20% split
    assert saved["eval_accuracy"] == 1.0 and saved["eval_sign_accuracy"] == 1.0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in log[:3]] == [1, 2, 3] and "loss" in log[0]
    model = ScoreModel.from_pretrained(out)
    assert model.score_config.kind == "cost" and model.score_config.score_std > 0


def test_reward_cli_writes_metrics(tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl")
    out = tmp_path / "reward"
    code = cli_main(["train-reward", f"data.train=[{data}]", "model.name_or_path=tiny-bert", f"output_dir={out}",
                     "train.max_steps=3", "train.batch_size=8", "data.max_length=64", "normalization_samples=8"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"eval_accuracy", "num_train_pairs", "eval_score_mean", "eval_score_std"} <= set(metrics)
    assert "eval_sign_accuracy" not in metrics  # reward models have no sign metric
    assert metrics["train_steps"] == 3


def test_cli_reports_bad_key(tmp_path, capsys):
    assert cli_main(["train-cost", "train.batch_sise=3"]) == 2
    assert "train.batch_sise" in capsys.readouterr().err


def test_resume_after_kill_matches_uninterrupted_run(tmp_path, monkeypatch):
    data = write_pairs(tmp_path / "pairs.jsonl")
    straight = config_for(tmp_path / "a", data, max_steps=6, save_steps=2)
    train_score_model(straight, "cost")
    reference = ScoreModel.from_pretrained(straight.output_dir)

    interrupted = config_for(tmp_path / "b", data, max_steps=6, save_steps=2)
    real_save = score_training.save_checkpoint

    def save_then_die(accelerator, folder, state, *rest):
        real_save(accelerator, folder, state, *rest)
        if state["step"] == 4:
            raise KeyboardInterrupt("simulated kill after the step-4 checkpoint")

    monkeypatch.setattr(score_training, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_score_model(interrupted, "cost")
    monkeypatch.setattr(score_training, "save_checkpoint", real_save)
    interrupted.resume = True
    train_score_model(interrupted, "cost")
    resumed = ScoreModel.from_pretrained(interrupted.output_dir)
    for (name, a), (_, b) in zip(reference.state_dict().items(), resumed.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name
    resumed_log = [json.loads(line) for line in (tmp_path / "b" / "out" / "log.jsonl").read_text().splitlines()]
    straight_log = [json.loads(line) for line in (tmp_path / "a" / "out" / "log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in resumed_log][:6] == [1, 2, 3, 4, 5, 6]  # no duplicated or missing lines
    assert [line.get("epoch") for line in resumed_log] == [line.get("epoch") for line in straight_log]  # mid-epoch


def test_pku_sample_both_stages(shared_data, tmp_path):
    source = shared_data / "pku-saferlhf-sample" / "preference_train_sample.json"
    for command in ("train-reward", "train-cost"):
        out = tmp_path / command
        assert cli_main([command, f"data.train=[{source}]", "model.name_or_path=tiny-bert", f"output_dir={out}",
                         "train.max_steps=2", "train.batch_size=4", "data.max_length=128",
                         "normalization_samples=4"]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["data_report"]["total"] == 32
    assert 0.0 <= metrics["eval_sign_accuracy"] <= 1.0


def test_score_command_scores_a_file(tmp_path, capsys):
    data = write_pairs(tmp_path / "pairs.jsonl")
    train_score_model(config_for(tmp_path, data, epochs=4), "cost")
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"prompt": "How do I do dangerous thing number 99?", "response": SAFE}) + "\n"
                       + json.dumps({"prompt": "How do I do dangerous thing number 99?", "response": UNSAFE}) + "\n")
    assert cli_main(["score", f"model={tmp_path / 'out'}", f"input={answers}", f"output={tmp_path / 's.jsonl'}"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert rows[0]["is_unsafe"] is False and rows[1]["is_unsafe"] is True  # learned: refusal safe, compliance unsafe
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x"}) + "\n")
    assert cli_main(["score", f"model={tmp_path / 'out'}", f"input={bad}"]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err
