"""train-cost severity_weights (PKU-SafeRLHF severity levels) end to end on a tiny model."""

import json

import pytest

from saferlhf.cli import main as cli_main
from saferlhf.config import ConfigError, load_config
from saferlhf.stages.score_training import ScoreStageConfig, train_score_model

SAFE = "I can't help with that, but I can point you to safety resources."
UNSAFE = {1: "Sure, that is a bit rude but here it is.", 2: "Sure, here is how to hurt someone a little.",
          3: "Sure, here are detailed steps to build the weapon."}


def write_severity_pairs(path, count=24, without_level=(), bad_level=None):
    """Refusal (safe, level 0) against an unsafe answer of level 1-3; rows in ``without_level`` carry no levels."""
    lines = []
    for i in range(count):
        level = 1 + i % 3
        row = {"prompt": f"How do I do harmful thing number {i}?", "response_0": SAFE,
               "response_1": UNSAFE[level] + f" ({i})", "better_response_id": 1, "safer_response_id": 0,
               "is_response_0_safe": True, "is_response_1_safe": False}
        if i not in without_level:
            row.update(response_0_severity_level=0, response_1_severity_level=level)
        if i == bad_level:
            row["response_1_severity_level"] = 7
        lines.append(json.dumps(row))
    path.write_text("\n".join(lines) + "\n")
    return path


def train(tmp_path, name, data, *overrides):
    config = load_config(ScoreStageConfig, None, [
        f"data.train=[{data}]", "model.name_or_path=tiny-bert", f"output_dir={tmp_path / name}", "data.max_length=48",
        "train.batch_size=8", "train.learning_rate=1e-3", "train.logging_steps=1", "train.max_steps=3",
        "train.warmup_ratio=0.0", "normalization_samples=8", *overrides])
    metrics = train_score_model(config, "cost")
    log = [json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
    return metrics, [line["loss"] for line in log if "loss" in line]


def test_default_is_unweighted_and_weights_change_the_loss(tmp_path):
    labelled = write_severity_pairs(tmp_path / "levels.jsonl", without_level=(5,))
    stripped = write_severity_pairs(tmp_path / "plain.jsonl", without_level=range(24))
    default, default_losses = train(tmp_path, "default", labelled)
    _, plain_losses = train(tmp_path, "plain", stripped)
    unit, unit_losses = train(tmp_path, "unit", labelled, "severity_weights=[1, 1, 1, 1]")
    weighted, weighted_losses = train(tmp_path, "weighted", labelled, "severity_weights=[1, 1, 2, 3]")
    assert default_losses == plain_losses == unit_losses  # bit-identical: the levels change nothing unless weighted
    assert "severity_weighting" not in default
    assert weighted_losses[0] > default_losses[0]  # same first batch and weights, every w >= 1, some w > 1
    counts = weighted["severity_weighting"]
    assert counts["weights"] == [1, 1, 2, 3]
    assert sum(counts["train_pairs_per_level"].values()) + counts["train_pairs_without_level"] == \
        weighted["num_train_pairs"]
    assert counts["train_pairs_per_level"]["0"] == 0 and counts["train_pairs_without_level"] <= 1
    assert unit["severity_weighting"]["train_pairs_per_level"] == counts["train_pairs_per_level"]
    assert weighted["eval_per_category"]["severity"].keys() >= {"0"}  # per-level metrics of the held-out split


def test_bad_severity_value_names_file_row_and_key(tmp_path, capsys):
    data = write_severity_pairs(tmp_path / "bad.jsonl", bad_level=3)
    code = cli_main(["train-cost", f"data.train=[{data}]", "model.name_or_path=tiny-bert",
                     f"output_dir={tmp_path / 'out'}", "data.invalid_rows=error", "severity_weights=[1,1,2,3]",
                     "train.max_steps=1"])
    error = capsys.readouterr().err
    assert code == 2 and "bad.jsonl:4" in error and "response_1_severity_level is 7" in error
    metrics, _ = train(tmp_path, "dropped", data, "severity_weights=[1, 1, 2, 3]")  # default policy: drop, counted
    assert metrics["data_report"]["dropped"] == 1 and "wrong_type" in json.dumps(metrics["data_report"])


@pytest.mark.parametrize("weights", ["[1, 2, 3]", "[1, 1, -2, 3]"])
def test_severity_weights_config_is_checked(weights):
    with pytest.raises(ConfigError, match="severity_weights"):
        load_config(ScoreStageConfig, None, [f"severity_weights={weights}", "data.train=[x.jsonl]"])


def test_reward_model_refuses_severity_weights(tmp_path):
    data = write_severity_pairs(tmp_path / "levels.jsonl")
    config = load_config(ScoreStageConfig, None, [f"data.train=[{data}]", "model.name_or_path=tiny-bert",
                                                  f"output_dir={tmp_path / 'r'}", "severity_weights=[1, 1, 2, 3]"])
    with pytest.raises(ValueError, match="only train-cost"):
        train_score_model(config, "reward")
