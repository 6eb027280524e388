"""The configuration schema: YAML + overrides, errors that name the bad key."""

import pytest

from saferlhf.config import ConfigError, load_config
from saferlhf.stages.score_training import ScoreStageConfig


def write(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_yaml_and_overrides(tmp_path):
    path = write(tmp_path, "model:\n  name_or_path: tiny-bert\ndata:\n  train: [a.jsonl]\ntrain:\n  batch_size: 4\n")
    config = load_config(ScoreStageConfig, path, ["train.learning_rate=1e-4", "output_dir=out", "model.lora.enabled=true"])
    assert config.model.name_or_path == "tiny-bert"
    assert config.train.batch_size == 4 and config.train.learning_rate == 1e-4
    assert config.data.train[0].path == "a.jsonl" and config.output_dir == "out"
    assert config.model.lora.enabled is True
    assert config.train.weight_decay == 0.1  # reference default kept


@pytest.mark.parametrize("override, key", [
    (["train.batch_sise=4"], "train.batch_sise"),
    (["train.batch_size=four"], "train.batch_size"),
    (["train.batch_size=0"], "train.batch_size"),
    (["train.lr_scheduler=exp"], "train.lr_scheduler"),
    (["data.eval_fraction=1.5"], "data.eval_fraction"),
    (["model.lora.enabled=maybe"], "model.lora.enabled"),
    ([], "data.train"),
])
def test_errors_name_the_bad_key(tmp_path, override, key):
    path = write(tmp_path, "data:\n  train: []\n" if not override else "data:\n  train: [a.jsonl]\n")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("[", r"\[")):
        load_config(ScoreStageConfig, path, override)


def test_error_names_the_file(tmp_path):
    path = write(tmp_path, "trian:\n  epochs: 1\n")
    with pytest.raises(ConfigError, match="config.yaml.*trian"):
        load_config(ScoreStageConfig, path, [])
    with pytest.raises(ConfigError, match="not found"):
        load_config(ScoreStageConfig, tmp_path / "missing.yaml", [])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(ScoreStageConfig, None, ["oops"])
