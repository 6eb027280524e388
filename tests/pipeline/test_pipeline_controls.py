"""``evaluation.controls`` of ``saferlhf pipeline``: a refusal-token base model, its final policy under a control, and
the config errors."""

import json
import re

import pytest

from saferlhf.cli import main
from saferlhf.config import ConfigError, load_config
from saferlhf.controls.tokens import REFUSE, RefusalTokens
from saferlhf.pipeline.config import PipelineConfig
from saferlhf.pipeline.run import results_table

from test_pipeline import TINY

FORCE_REFUSE = "evaluation.controls=[{name: rt, kind: refusal-tokens, threshold: 0.0}]"


def test_refusal_tokens_on_the_final_policy(refusal_token_model, tmp_path):
    folder, _ = refusal_token_model
    out = tmp_path / "run"
    assert main(["pipeline", *TINY, f"base_model={folder}", "policy.ppo.critic_backbone=", FORCE_REFUSE,
                 f"output_dir={out}"]) == 0
    policy = out / "round-1" / "policy-run" / "policy"
    assert RefusalTokens.load(policy) == RefusalTokens.load(folder)  # the policy stage carried the tokens on
    metrics = json.loads((out / "metrics.json").read_text())
    control, sets = metrics["controls"]["rt"], list(metrics["models"]["round-1"])
    assert control["threshold"] == 0.0 and control["model"] == str(policy)
    records = [json.loads(line) for line in (out / "evaluation" / "controls" / "rt" / "generations.jsonl").open()]
    assert {r["benchmark"] for r in records} == set(sets) and len(records) == sum(
        metrics_set["n_prompts"] for metrics_set in json.loads((out / "evaluation" / "metrics.json").read_text())
        ["benchmarks"].values())
    assert all(r["forced_prefix"] == REFUSE and r["model_path"] == str(policy) for r in records)
    assert not any("[refuse]" in r["response"] for r in records)
    for name in sets:  # threshold 0: every prompt is forced to [refuse]
        assert control[name]["refused_by_control_rate"] == 1.0
        assert 0.0 <= control[name]["forced_token_obeyed_rate"] <= 1.0
    table = [line for line in results_table(metrics).splitlines() if line.startswith("| control:rt (threshold 0.00)")]
    assert [line.split(" | ")[1] for line in table] == sets


@pytest.fixture
def refusal_token_folder(tmp_path):
    """A folder that passes for a refusal-token model at config time (only its spec file is read)."""
    RefusalTokens().save(tmp_path)
    return tmp_path


@pytest.mark.parametrize("overrides,key", [
    (["evaluation.controls=[{name: rt, kind: refusal-tokens, threshold: 0.0, tresh: 1}]"],
     "evaluation.controls[0].tresh"),
    (["evaluation.controls=[{name: rt, kind: refusal-tokens, threshold: 0.0, temperature: 0}]"],
     "evaluation.controls[0].temperature"),
    (["evaluation.controls=[{name: rt, kind: refusal-tokens}]"], "evaluation.controls[0].dev_prompts[0]"),
    (["evaluation.controls=[{name: g, kind: gate, threshold: 1.0, train_prompts: [{split: heldout}]}]"],
     "evaluation.controls[0].train_prompts[0]"),
    ([FORCE_REFUSE.replace("}]", "}, {name: rt, kind: gate, threshold: 1.0, layer: 2}]")], "evaluation.controls"),
    (["policy.ppo.critic_backbone=tiny-llama", FORCE_REFUSE], "policy.ppo.critic_backbone"),
])
def test_config_errors_name_the_key(refusal_token_folder, overrides, key):
    base = [f"base_model={refusal_token_folder}", "policy.ppo.critic_backbone="]
    with pytest.raises(ConfigError, match=re.escape(f"'{key}'")):
        load_config(PipelineConfig, overrides=base + overrides)
    assert load_config(PipelineConfig, overrides=[*base, FORCE_REFUSE]).evaluation.controls[0].threshold == 0.0


def test_per_category_tokens_need_the_pipeline_without_ptx(tmp_path):
    RefusalTokens.for_categories(["drugs", "weapons"]).save(tmp_path)
    base = [f"base_model={tmp_path}", "policy.ppo.critic_backbone="]
    with pytest.raises(ConfigError, match=re.escape("'policy.ptx_coeff'")):
        load_config(PipelineConfig, overrides=base)
    assert load_config(PipelineConfig, overrides=[*base, "policy.ptx_coeff=0"]).policy.ptx_coeff == 0


def test_a_refusal_token_control_needs_a_refusal_token_base_model():
    with pytest.raises(ConfigError, match=r"'evaluation.controls\[0\].model'.*has no refusal_tokens.json"):
        load_config(PipelineConfig, overrides=["base_model=tiny-llama", FORCE_REFUSE])
