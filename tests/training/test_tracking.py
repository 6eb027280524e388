"""``report_to``: TRL-style tracker names, a clear error for a missing package, and TensorBoard event files
from every stage (sft, dpo, refusal classifier; train-reward, train-cost, train-policy, evaluate and the
pipeline itself in one tiny pipeline round)."""

from __future__ import annotations

import json

import pytest

from saferlhf.cli import main
from saferlhf.runio import RunWriter, read_log
from saferlhf.training import tracking
from saferlhf.training.tracking import namespaced, open_tracker

pytest.importorskip("tensorboard", reason="the tensorboard package (a dev dependency) is needed to write events")


def _events(folder):
    return sorted((folder / "tensorboard").rglob("events.out.tfevents.*"))


def _scalar_tags(folder) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for path in _events(folder):
        accumulator = EventAccumulator(str(path))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    return tags


def test_policy_keys_get_trl_names_and_plain_keys_a_namespace():
    names = namespaced({"step": 3, "reward": 1.5, "kl": 0.25, "lambda": 0.5, "lambda/over_refusal": 0.1,
                        "episode_cost": -0.2, "episode_cost/over_refusal": 0.3, "cost": 0.4, "cost/harm": 0.6,
                        "cost_threshold": 0.0, "actor_loss": 1.0, "reward_critic_loss": 2.0, "clip_fraction": 0.05,
                        "eval/prompts/reward": 0.7, "time/step": 1.0, "loss": 0.9, "eval_loss": 0.8,
                        "dpo_step": "safety", "finished": True})
    assert names == {"objective/reward": 1.5, "objective/kl": 0.25, "objective/lambda": 0.5,
                     "objective/lambda/over_refusal": 0.1, "cost/episode": -0.2, "cost/episode/over_refusal": 0.3,
                     "cost/mean": 0.4, "cost/mean/harm": 0.6, "cost/threshold": 0.0, "loss/policy": 1.0,
                     "loss/value/reward": 2.0, "policy/clipfrac": 0.05, "eval/prompts/reward": 0.7,
                     "time/step": 1.0, "train/loss": 0.9, "eval/loss": 0.8}


def test_missing_tracker_package_is_a_clear_error(monkeypatch, tmp_path):
    import accelerate.utils

    monkeypatch.setattr(accelerate.utils, "is_wandb_available", lambda: False)
    with pytest.raises(ValueError, match=r"report_to.*wandb.*pip install wandb"):
        open_tracker("wandb", tmp_path, "sft")
    with pytest.raises(ValueError, match="not one of"):
        open_tracker("mlflow", tmp_path, "sft")
    assert open_tracker("none", tmp_path, "sft") is None


def test_writer_keeps_log_keys_and_sends_namespaced_names_and_tables(tmp_path):
    writer = RunWriter(tmp_path, tracker=open_tracker("tensorboard", tmp_path, "train-policy", {"a": {"b": 1}}))
    writer.log(1, reward=1.0, **{"lambda": 0.5, "lambda/harm": 0.5, "episode_cost": 0.1})
    writer.log_table("eval/answers", [{"prompt": "p|q", "answer": "a\nb", "reward": 0.5}], 1)
    writer.finish()
    assert read_log(tmp_path / "log.jsonl") == [{"step": 1, "reward": 1.0, "lambda": 0.5, "lambda/harm": 0.5,
                                                 "episode_cost": 0.1}]
    assert _scalar_tags(tmp_path) == {"objective/reward", "objective/lambda", "objective/lambda/harm", "cost/episode"}
    assert (tmp_path / "tensorboard" / "train-policy").is_dir()


def test_sft_dpo_and_classifier_write_event_files(tmp_path, monkeypatch):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"prompt": f"Question {i}?", "response": f"Answer {i}."}) + "\n"
                            for i in range(4)))
    small = ["train.batch_size=2", "train.max_steps=2", "train.logging_steps=1", "train.save_steps=0",
             "report_to=tensorboard"]
    assert main(["sft", "model.name_or_path=tiny-llama", f"train_data=[{rows}]", "max_length=64", *small,
                 f"output_dir={tmp_path / 'sft'}"]) == 0
    assert "train/loss" in _scalar_tags(tmp_path / "sft")
    assert "loss" in read_log(tmp_path / "sft" / "log.jsonl")[0]  # log.jsonl keeps the Trainer's own keys

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Q{i}?", "response_0": f"A{i}.", "response_1": "No.",
                                         "better_response_id": 0, "safer_response_id": 1}) + "\n" for i in range(4)))
    assert main(["dpo", "model.name_or_path=tiny-llama", f"train_data=[{pairs}]", "max_length=64", *small,
                 f"output_dir={tmp_path / 'dpo'}"]) == 0
    assert {"train/loss", "rewards/chosen"} <= _scalar_tags(tmp_path / "dpo")

    refusals = tmp_path / "refusals.json"
    refusals.write_text(json.dumps([{"prompt": f"p{i}", "response": "Sure, here it is." if i % 2 else "I can't.",
                                     "tone": "complied" if i % 2 else "rejected"} for i in range(8)]))
    assert main(["train-refusal-classifier", "model.name_or_path=tiny-bert", f"train_files=[{refusals}]",
                 "xstest_dir=", "max_length=32", "response_tokens=8", "validation_fraction=0.25", *small,
                 f"output_dir={tmp_path / 'classifier'}"]) == 0
    assert "train/loss" in _scalar_tags(tmp_path / "classifier")


def test_pipeline_round_writes_event_files_for_every_stage(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    mine = [("How do I hotwire my neighbour's car?", "harmful"), ("Write a limerick about tea.", "benign"),
            ("How do I shoot a good photo at night?", "pseudo_harmful")]
    prompts.write_text("".join(json.dumps({"prompt": p, "label": label}) + "\n" for p, label in mine))
    out = tmp_path / "run"
    assert main(["pipeline", "base_model=tiny-llama", "score_models.backbone=tiny-bert", "sampling.max_new_tokens=4",
                 "score_models.train.max_steps=2", "policy.train.max_steps=1", "policy.rollout.prompts_per_step=3",
                 "policy.train.batch_size=3", "policy.rollout.max_new_tokens=4", "evaluation.max_new_tokens=4",
                 "num_threads=1", "rounds=1", "prompts.builtin=false", f"prompts.files=[{prompts}]",
                 "evaluation.xstest_path=", "safety_test.enabled=false",
                 "report_to=tensorboard", f"output_dir={out}"]) == 0
    for stage, tag in (("round-1/reward-model", "train/loss"), ("round-1/cost-model", "train/loss"),
                       ("round-1/policy-run", "objective/lambda"), ("evaluation", None), (".", None)):
        assert _events(out / stage), f"no TensorBoard event file for {stage}"
        if tag:
            assert tag in _scalar_tags(out / stage), stage
    assert any(tag.startswith("pipeline/round-1/") for tag in _scalar_tags(out))
    assert tracking.PROJECT == "saferlhf"


def test_wandb_gets_a_run_of_its_own_with_namespaced_metrics_and_tables(monkeypatch, tmp_path):
    """wandb is not installed here: a stand-in module records what Accelerate's WandBTracker asks of it."""
    import sys
    import types

    import accelerate.utils

    calls = {"init": [], "log": [], "config": [], "finished": 0}

    class Run:
        def log(self, values, step=None):
            calls["log"].append((values, step))

        def finish(self):
            calls["finished"] += 1

    fake = types.ModuleType("wandb")
    fake.init = lambda **kwargs: calls["init"].append(kwargs) or Run()
    fake.config = types.SimpleNamespace(update=lambda values, allow_val_change: calls["config"].append(values))
    fake.Table = lambda columns, data, dataframe=None: ("table", columns, data)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setattr(accelerate.utils, "is_wandb_available", lambda: True)
    writer = RunWriter(tmp_path / "run", tracker=open_tracker("wandb", tmp_path / "run", "train-cost", {"x": 1}))
    writer.log(2, loss=0.5, **{"lambda": 1.0})
    writer.log_table("eval/answers", [{"prompt": "p", "reward": 1.0}], 2)
    writer.finish()
    assert calls["init"] == [{"project": "saferlhf", "name": "train-cost:run", "dir": str(tmp_path / "run"),
                              "reinit": "create_new"}]
    assert calls["config"] == [{"x": 1}]
    assert calls["log"] == [({"train/loss": 0.5, "objective/lambda": 1.0}, 2),
                            ({"eval/answers": ("table", ["prompt", "reward"], [["p", 1.0]])}, 2)]
    assert calls["finished"] == 1
