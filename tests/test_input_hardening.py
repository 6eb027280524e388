"""Input that used to be accepted though meaningless, or that failed badly: each now a clear error or handled."""

from __future__ import annotations

import json
import os
import stat

import pytest

from saferlhf.config import ConfigError, load_config
from saferlhf.policy.config import PolicyStageConfig
from saferlhf.runio import RunWriter, atomic_write_json, read_log
from saferlhf.stages.score_training import ScoreStageConfig


@pytest.mark.parametrize("override, key", [
    ("train.weight_decay=-0.1", "train.weight_decay"),
    ("train.max_grad_norm=-1", "train.max_grad_norm"),
    ("train.save_steps=-5", "train.save_steps"),
    ("train.max_steps=-1", "train.max_steps"),
    ("train.num_threads=-2", "train.num_threads"),
    ("train.learning_rate=.inf", "train.learning_rate"),
    ("train.learning_rate=.nan", "train.learning_rate"),
    ("forward_bucket_size=-1", "forward_bucket_size"),
    ("normalization_samples=-1", "normalization_samples"),
])
def test_meaningless_training_settings_name_their_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(ScoreStageConfig, None, ["data.train=[a.jsonl]", override])


def test_lambda_init_zero_is_refused_where_log_lambda_is_learned():
    base = ["data.train=[p.jsonl]", "reward.path=m:f", "cost.path=m:g"]
    with pytest.raises(ConfigError, match="lagrange.lambda_init"):
        load_config(PolicyStageConfig, None, [*base, "lagrange.lambda_init=0"])
    assert load_config(PolicyStageConfig, None, [*base, "lagrange.lambda_init=0", "lagrange.rule=fixed"])


def test_a_missing_local_model_folder_is_named():
    from saferlhf.models.loading import load_tokenizer

    for path in ("/no/such/model", "./no-such-model", "runs/x/no/such/policy"):
        with pytest.raises(FileNotFoundError, match="no such local folder") as error:
            load_tokenizer(path)
        assert path in str(error.value) and "Repo id" not in str(error.value)


def test_resume_truncation_survives_a_cut_last_line(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n{"step": 3, "lo')
    RunWriter(tmp_path, resume=True).truncate_log(2)
    assert [line["step"] for line in read_log(log)] == [1, 2]


def test_outputs_are_readable_like_the_models(tmp_path):
    previous = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "metrics.json", {"a": 1})
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == 0o644
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"a": 1}
