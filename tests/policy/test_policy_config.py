"""train-policy configuration: reference defaults, CLI mapping, validation errors that name the key."""

from pathlib import Path

import pytest

from saferlhf.config import ConfigError, load_config
from saferlhf.policy.stage import PolicyStageConfig

HERE = Path(__file__).resolve().parent
SCORES = [f"reward.path={HERE / 'toy_task.py'}:reward", f"cost.path={HERE / 'toy_task.py'}:cost",
          "data.train=[prompts.jsonl]"]


def test_reference_defaults():
    config = load_config(PolicyStageConfig, overrides=SCORES)
    assert config.algorithm == "ppo-lag" and not config.resume
    assert (config.ppo.kl_coeff, config.ppo.clip_range_ratio, config.ppo.clip_range_value,
            config.ppo.clip_range_score) == (0.01, 0.2, 5.0, 50.0)
    assert (config.ppo.gamma, config.ppo.gae_lambda, config.ppo.critic_learning_rate) == (1.0, 0.95, 5e-6)
    assert (config.lagrange.lambda_init, config.lagrange.lambda_lr, config.lagrange.lambda_max,
            config.lagrange.update_delay_steps, config.lagrange.episode_cost_window,
            config.lagrange.cost_threshold) == (1.0, 0.1, 5.0, 0, 128, 0.0)
    assert (config.train.learning_rate, config.train.lr_scheduler, config.train.warmup_ratio,
            config.train.epochs) == (1e-5, "cosine", 0.03, 1.0)
    assert (config.rollout.temperature, config.rollout.top_p, config.samples_per_prompt) == (1.0, 1.0, 1)
    assert config.ptx.coeff == 16.0 and config.data.max_length == 512
    assert load_config(PolicyStageConfig, overrides=SCORES + ["algorithm=critic-free"]).samples_per_prompt == 4


def test_partial_sections_keep_the_policy_defaults(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("train:\n  max_steps: 3\nlagrange:\n  rule: pid\n")
    config = load_config(PolicyStageConfig, path, SCORES)
    assert config.train.max_steps == 3 and config.train.learning_rate == 1e-5 and config.train.save_steps == 20
    assert config.lagrange.rule == "pid" and config.lagrange.lambda_lr == 0.1


@pytest.mark.parametrize("overrides,key", [
    (["algorithm=dpo"], "algorithm"),
    (["algorithm=critic-free", "rollout.samples_per_prompt=1"], "rollout.samples_per_prompt"),
    (["train.batch_size=5"], "train.batch_size"),
    (["train.batch_size=8", "train.gradient_accumulation_steps=3"], "train.gradient_accumulation_steps"),
    (["cost.path="], "cost.path"),
    (["reward.path=no/such/folder"], "reward.path"),
    (["lagrange.rule=integral"], "lagrange.rule"),
    (["lagrange.episode_cost_window=0"], "lagrange.episode_cost_window"),
    (["ppo.gae_lambda=1.5"], "ppo.gae_lambda"),
    (["rollout.temperature=0"], "rollout.temperature"),
    (["data.train=[]"], "data.train"),
])
def test_bad_values_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(PolicyStageConfig, overrides=SCORES + overrides)


def test_cost_is_optional_for_ppo_only():
    config = load_config(PolicyStageConfig, overrides=SCORES + ["cost.path=", "algorithm=ppo"])
    assert config.cost.path == ""


def test_cli_maps_algo_and_resume(monkeypatch):
    import saferlhf.cli as cli

    seen = {}

    def fake_run(config):
        seen["config"] = config
        return {"status": "finished"}

    monkeypatch.setattr(cli, "_load", lambda target: PolicyStageConfig if target.endswith("Config") else fake_run)
    assert cli.main(["train-policy", "--algo", "reward-shaping", "--resume", *SCORES]) == 0
    assert seen["config"].algorithm == "reward-shaping" and seen["config"].resume is True


@pytest.mark.parametrize("name", ["policy-ppo-lag.yaml", "policy-ppo-lag-cpu.yaml", "policy-critic-free.yaml"])
def test_shipped_configs_load(name, tmp_path):
    path = Path(__file__).resolve().parents[2] / "configs" / name
    models = [f"reward.path={tmp_path}", f"cost.path={tmp_path}"]  # stand-ins for trained score-model folders
    config = load_config(PolicyStageConfig, path, models)
    assert config.data.train and config.data.eval
    assert config.lagrange.cost_threshold <= 0.0
