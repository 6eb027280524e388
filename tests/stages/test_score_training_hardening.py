"""train-reward / train-cost cannot resume another run, never unpickle code on load, and stop cleanly on divergence."""

import json
import pickle
import re

import pytest
import torch
from safetensors.torch import load_file

from saferlhf.models.score_model import ScoreModel
from saferlhf.runio import read_log
from saferlhf.stages import score_training
from saferlhf.stages.score_training import train_score_model
from saferlhf.training.run_identity import ResumeError

from test_score_training import config_for, write_pairs


class Killed(Exception):
    """Stands in for SIGKILL."""


def kill_at_save(monkeypatch, step: int, before: bool = False) -> None:
    """The next run dies when it saves the checkpoint of ``step`` (after it, or before it with ``before``)."""
    real_save = score_training.save_checkpoint

    def save_then_die(accelerator, folder, state, *args, **kwargs):
        if not (before and state["step"] == step):
            real_save(accelerator, folder, state, *args, **kwargs)
        if state["step"] == step:
            raise Killed(f"killed at the step-{step} checkpoint")
    monkeypatch.setattr(score_training, "save_checkpoint", save_then_die)


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_fresh_start_killed_before_its_first_checkpoint_does_not_resume_the_previous_run(tmp_path, monkeypatch):
    data = write_pairs(tmp_path / "pairs.jsonl")
    with monkeypatch.context() as patch:
        kill_at_save(patch, 4)
        with pytest.raises(Killed):
            train_score_model(config_for(tmp_path, data, max_steps=6, save_steps=2, seed=1), "reward")
    other = dict(max_steps=6, save_steps=2, seed=2, learning_rate=3e-4)
    with monkeypatch.context() as patch:
        kill_at_save(patch, 2, before=True)
        with pytest.raises(Killed):
            train_score_model(config_for(tmp_path, data, **other), "reward")
    assert not (tmp_path / "out" / "checkpoint").exists()  # the first run's checkpoint went with its log
    resumed = config_for(tmp_path, data, **other)
    resumed.resume = True
    train_score_model(resumed, "reward")
    train_score_model(config_for(tmp_path / "straight", data, **other), "reward")
    expected = weights(tmp_path / "straight" / "out")
    assert all(torch.allclose(weights(tmp_path / "out")[k], v, atol=1e-6) for k, v in expected.items())


def test_resume_refuses_other_settings_and_a_finished_run_says_so(tmp_path, monkeypatch, capsys):
    data = write_pairs(tmp_path / "pairs.jsonl")
    with monkeypatch.context() as patch:
        kill_at_save(patch, 4)
        with pytest.raises(Killed):
            train_score_model(config_for(tmp_path, data, max_steps=6, save_steps=2), "cost")
    changed = config_for(tmp_path, data, max_steps=6, save_steps=2, learning_rate=1e-4)
    changed.resume = True
    with pytest.raises(ResumeError, match=r"train\.learning_rate: 0\.001 in the checkpoint, 0\.0001 now"):
        train_score_model(changed, "cost")
    with pytest.raises(ResumeError, match="kind: 'cost' in the checkpoint, 'reward' now"):
        train_score_model(_resumed(config_for(tmp_path, data, max_steps=6, save_steps=2)), "reward")
    finished = _resumed(config_for(tmp_path, data, max_steps=6, save_steps=3))  # the save interval may change
    metrics = train_score_model(finished, "cost")
    log = (tmp_path / "out" / "log.jsonl").read_text()
    again = train_score_model(finished, "cost")
    assert "already finished" in capsys.readouterr().out
    assert (tmp_path / "out" / "log.jsonl").read_text() == log
    assert again["eval_accuracy"] == metrics["eval_accuracy"] and again["train_steps"] == 6


def _resumed(config):
    config.resume = True
    return config


def test_resume_never_unpickles_code(tmp_path, monkeypatch):
    data = write_pairs(tmp_path / "pairs.jsonl")
    with monkeypatch.context() as patch:
        kill_at_save(patch, 2)
        with pytest.raises(Killed):
            train_score_model(config_for(tmp_path, data, max_steps=4, save_steps=2), "cost")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    checkpoint = tmp_path / "out" / "checkpoint"
    original = (checkpoint / "optimizer.bin").read_bytes()
    torch.save({"state": Payload()}, checkpoint / "optimizer.bin", pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(ResumeError, match="optimizer.bin"):
        train_score_model(_resumed(config_for(tmp_path, data, max_steps=4, save_steps=2)), "cost")
    assert not marker.exists(), "unpickling optimizer.bin ran code"
    (checkpoint / "optimizer.bin").write_bytes(original)
    # Accelerate unpickles custom_checkpoint_<i>.pkl (full pickle, not weights-only) of objects registered for checkpointing
    torch.save(Payload(), checkpoint / "custom_checkpoint_0.pkl", pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(ResumeError, match="custom_checkpoint_0.pkl"):
        train_score_model(_resumed(config_for(tmp_path, data, max_steps=4, save_steps=2)), "cost")
    assert not marker.exists(), "unpickling custom_checkpoint_0.pkl ran code"
    (checkpoint / "custom_checkpoint_0.pkl").unlink()
    assert train_score_model(_resumed(config_for(tmp_path, data, max_steps=4, save_steps=2)), "cost")["train_steps"] == 4


def test_divergence_names_the_failing_step_and_keeps_no_exploded_checkpoint(tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl")
    config = config_for(tmp_path, data, max_steps=8, save_steps=1, learning_rate=1e3, max_grad_norm=0)
    with pytest.raises(FloatingPointError, match=r"at step (\d+)") as error:
        train_score_model(config, "reward")
    failed = int(re.search(r"at step (\d+)", str(error.value)).group(1))
    logged = [line["step"] for line in read_log(tmp_path / "out" / "log.jsonl")]
    assert logged == list(range(1, failed)), (logged, failed)  # the message names the step that failed
    state = tmp_path / "out" / "checkpoint" / "trainer_state.json"
    if state.exists():  # any checkpoint kept is from before the divergence, and one can go on from it
        assert json.loads(state.read_text())["step"] < failed
        assert all(bool(torch.isfinite(v).all()) for v in weights(tmp_path / "out" / "checkpoint").values())
