"""train-policy cannot resume another run, never unpickles code on load, and stops cleanly when it diverges."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file

from saferlhf.policy import stage
from saferlhf.policy.checkpoint import latest_checkpoint
from saferlhf.policy.trainer import NonFiniteLossError, PolicyTrainer
from saferlhf.runio import read_log
from saferlhf.training.run_identity import ResumeError

from .test_trainer import make_config


class Killed(Exception):
    """Stands in for SIGKILL."""


def kill_at_step(monkeypatch, step: int) -> None:
    """The next run dies when policy step ``step`` starts (after the checkpoints of the steps before)."""
    real_step = PolicyTrainer.step

    def step_or_die(self):
        if self.global_step + 1 == step:
            raise Killed(f"killed at step {step}")
        return real_step(self)
    monkeypatch.setattr(PolicyTrainer, "step", step_or_die)


def test_fresh_start_killed_before_its_first_checkpoint_does_not_resume_the_previous_run(
        toy_model, toy_prompts, tmp_path, monkeypatch):
    out = tmp_path / "run"
    stage.run(make_config(toy_model, toy_prompts, out, "ppo-lag", 3, "train.save_steps=1", "keep_checkpoints=5",
                          "train.seed=1"))
    assert latest_checkpoint(out).name == "step-000003"
    other = ("train.save_steps=1", "keep_checkpoints=5", "train.seed=2", "train.learning_rate=1e-3")
    with monkeypatch.context() as patch:
        kill_at_step(patch, 1)
        with pytest.raises(Killed):
            stage.run(make_config(toy_model, toy_prompts, out, "ppo-lag", 3, *other))
    assert latest_checkpoint(out) is None  # the first run's checkpoints went with its log
    assert not (out / "metrics.json").exists()
    resumed = stage.run(make_config(toy_model, toy_prompts, out, "ppo-lag", 3, *other, "resume=true"))
    straight = stage.run(make_config(toy_model, toy_prompts, tmp_path / "straight", "ppo-lag", 3, *other))
    assert resumed["lambda"] == straight["lambda"]
    assert [line["step"] for line in read_log(out / "log.jsonl")] == [1, 2, 3]
    weights, expected = load_file(str(out / "policy" / "model.safetensors")), \
        load_file(str(tmp_path / "straight" / "policy" / "model.safetensors"))
    assert all(torch.equal(weights[name], expected[name]) for name in expected)


def test_resume_refuses_a_checkpoint_of_other_settings_naming_them(toy_model, toy_prompts, tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        kill_at_step(patch, 3)
        with pytest.raises(Killed):
            stage.run(make_config(toy_model, toy_prompts, tmp_path, "ppo-lag", 4, "train.save_steps=1"))
    assert latest_checkpoint(tmp_path).name == "step-000002"
    with pytest.raises(ResumeError, match=r"train\.learning_rate: 0\.003 in the checkpoint, 0\.001 now") as error:
        stage.run(make_config(toy_model, toy_prompts, tmp_path, "ppo-lag", 4, "train.save_steps=1",
                              "train.learning_rate=1e-3", "resume=true"))
    assert "train.seed" not in str(error.value)
    assert [line["step"] for line in read_log(tmp_path / "log.jsonl")] == [1, 2]  # untouched by the refusal
    # the same settings (logging and saving may differ) resume
    metrics = stage.run(make_config(toy_model, toy_prompts, tmp_path, "ppo-lag", 4, "train.save_steps=2",
                                    "resume=true"))
    assert metrics["steps"] == 4


def test_resume_of_a_finished_run_says_so_and_trains_nothing(toy_model, toy_prompts, tmp_path, capsys):
    config = make_config(toy_model, toy_prompts, tmp_path, "ppo-lag", 2, "train.save_steps=1")
    first = stage.run(config)
    log_before = (tmp_path / "log.jsonl").read_text()
    config.resume = True
    again = stage.run(config)
    assert "already finished" in capsys.readouterr().out
    assert (tmp_path / "log.jsonl").read_text() == log_before
    assert again["lambda"] == first["lambda"] and again["status"] == "finished"
    config.train.seed = 5
    with pytest.raises(ResumeError, match="train.seed"):
        stage.run(config)


def test_resume_never_unpickles_code(toy_model, toy_prompts, tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        kill_at_step(patch, 2)
        with pytest.raises(Killed):
            stage.run(make_config(toy_model, toy_prompts, tmp_path, "ppo-lag", 3, "train.save_steps=1"))
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    checkpoint = latest_checkpoint(tmp_path)
    for name in ("optimizers.pt", "schedulers.pt", "rng_state_0.pt"):
        original = (checkpoint / name).read_bytes()
        torch.save({"actor": Payload()}, checkpoint / name, pickle_protocol=pickle.HIGHEST_PROTOCOL)
        with pytest.raises(ResumeError, match=name):
            stage.run(make_config(toy_model, toy_prompts, tmp_path, "ppo-lag", 3, "train.save_steps=1",
                                  "resume=true"))
        assert not marker.exists(), f"{name}: unpickling ran code"
        (checkpoint / name).write_bytes(original)


def test_divergence_stops_before_a_bad_checkpoint_or_sampling(toy_model, toy_prompts, tmp_path):
    config = make_config(toy_model, toy_prompts, tmp_path, "ppo-lag", 4, "train.save_steps=1", "train.batch_size=16",
                         "train.learning_rate=1e10", "ppo.critic_learning_rate=1e10", "train.max_grad_norm=0")
    with pytest.raises(NonFiniteLossError, match="policy step 1: .*actor") as error:
        stage.run(config)
    assert "generate" not in str(error.value)
    assert latest_checkpoint(tmp_path) is None  # the diverged weights of step 1 were never saved
    stopped = json.loads((tmp_path / "metrics.json").read_text())
    assert stopped["status"] == "stopped" and stopped["step"] == 0  # steps completed
