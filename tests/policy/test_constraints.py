"""Several constraints: the combined advantage by hand, one constraint = the reference's numbers bit for
bit, the over-refusal and category cost sources, the config's checks, logging, checkpoints and resume."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from saferlhf.config import ConfigError, load_config
from saferlhf.data.builtin import builtin_prompts
from saferlhf.policy.advantages import gae_advantages_and_returns, group_baseline_advantages
from saferlhf.policy.algorithms import compute_advantages
from saferlhf.policy.constraints import combine_advantages
from saferlhf.policy.losses import kl_penalized_rewards, sequence_kl
from saferlhf.policy.rollout import Rollout
from saferlhf.policy.scorers import CategoryScorer, OverRefusalScorer, PromptLabels
from saferlhf.policy.stage import PolicyStageConfig, run
from saferlhf.runio import read_log

from .toy_task import toy_overrides

TOY = Path(__file__).resolve().parent / "toy_task.py"


def test_combined_advantage_by_hand():
    reward_advantages = torch.tensor([1.0, 3.0])
    first, second = torch.tensor([2.0, -1.0]), torch.tensor([1.0, 1.0])
    # one constraint, λ = 0.5: ((1 - 1) / 1.5, (3 + 0.5) / 1.5)
    assert combine_advantages(reward_advantages, [first], [0.5]).tolist() == pytest.approx([0.0, 3.5 / 1.5])
    # two, λ = (0.5, 1): ((1 - 1 - 1) / 2.5, (3 + 0.5 - 1) / 2.5) = (-0.4, 1.0)
    assert combine_advantages(reward_advantages, [first, second], [0.5, 1.0]).tolist() == pytest.approx([-0.4, 1.0])
    assert combine_advantages(reward_advantages, [first, second], [0.0, 0.0]).tolist() == [1.0, 3.0]
    assert combine_advantages(reward_advantages, [], []).tolist() == [1.0, 3.0]


def _config(algorithm: str, *extra: str) -> PolicyStageConfig:
    return load_config(PolicyStageConfig, overrides=[f"algorithm={algorithm}", "reward.path=m:f", "cost.path=m:g",
                                                     "data.train=[x.jsonl]", "rollout.prompts_per_step=2",
                                                     "train.batch_size=2", *extra])


@pytest.mark.parametrize("algorithm", ["ppo-lag", "critic-free", "reward-shaping"])
def test_one_constraint_is_the_reference_formula_bit_for_bit(algorithm):
    """The Safe RLHF advantage written out as before the constraints existed, against compute_advantages."""
    config = _config(algorithm, *(["rollout.samples_per_prompt=2"] if algorithm == "critic-free" else []))
    generator = torch.Generator().manual_seed(0)
    reward, cost = torch.randn(4, generator=generator), torch.randn(4, generator=generator)
    log_probs, ref_log_probs = torch.randn(4, 5, generator=generator), torch.randn(4, 5, generator=generator)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 0]]).float()
    values = {"reward": torch.randn(4, 5, generator=generator), "cost": torch.randn(4, 5, generator=generator)}
    lam, ppo = 0.7, config.ppo
    advantages, returns = compute_advantages(config, reward, {"cost": cost}, log_probs, ref_log_probs, mask, values,
                                             {"cost": lam})
    if algorithm == "critic-free":
        kl = sequence_kl(log_probs, ref_log_probs, mask)
        a_r = group_baseline_advantages((reward - ppo.kl_coeff * kl).clamp(-50, 50), 2, "leave-one-out")
        a_c = group_baseline_advantages((cost + ppo.kl_coeff * kl).clamp(-50, 50), 2, "leave-one-out")
        expected = ((a_r - lam * a_c) / (1.0 + lam)).unsqueeze(-1) * mask
    elif algorithm == "reward-shaping":
        rewards, _ = kl_penalized_rewards(reward - lam * cost, None, log_probs, ref_log_probs, mask, ppo.kl_coeff)
        expected, _ = gae_advantages_and_returns(values["reward"], rewards, mask, ppo.gamma, ppo.gae_lambda)
    else:
        rewards, costs = kl_penalized_rewards(reward, cost, log_probs, ref_log_probs, mask, ppo.kl_coeff)
        a_r, _ = gae_advantages_and_returns(values["reward"], rewards, mask, ppo.gamma, ppo.gae_lambda)
        a_c, cost_returns = gae_advantages_and_returns(values["cost"], costs, mask, ppo.gamma, ppo.gae_lambda)
        expected = (a_r - lam * a_c) / (1.0 + lam)
        assert torch.equal(returns["cost"], cost_returns)
    assert torch.equal(advantages, expected)


def test_two_cost_critics_each_get_their_own_returns():
    config = _config("ppo-lag")
    mask = torch.ones(2, 3)
    values = {name: torch.zeros(2, 3) for name in ("reward", "cost", "other")}
    zeros = torch.zeros(2, 3)
    advantages, returns = compute_advantages(config, torch.tensor([1.0, 0.0]),
                                             {"cost": torch.tensor([1.0, 0.0]), "other": torch.tensor([0.0, 2.0])},
                                             zeros, zeros, mask, values, {"cost": 1.0, "other": 0.5})
    assert set(returns) == {"reward", "cost", "other"}
    # no KL (log π = log π_ref), zero values, γ = 1, λ_GAE = 0.95: A_t = 0.95^(2 - t) · score
    decay = torch.tensor([0.95 ** 2, 0.95, 1.0])
    assert torch.allclose(returns["other"], torch.tensor([[0.0], [2.0]]) * decay)
    expected = (torch.tensor([[1.0], [0.0]]) - 1.0 * torch.tensor([[1.0], [0.0]])
                - 0.5 * torch.tensor([[0.0], [2.0]])) * decay / 2.5
    assert torch.allclose(advantages, expected)


# ------------------------------------------------------------------------------------------------
# Cost sources


def _rollout(prompts: list[str], answers: list[str]) -> Rollout:
    empty = torch.zeros(len(prompts), 1, dtype=torch.long)
    return Rollout(prompts=prompts, input_ids=empty, attention_mask=empty, position_ids=empty, response_mask=empty,
                   prompt_width=0, response_texts=answers)


def _labels(tmp_path) -> PromptLabels:
    path = tmp_path / "labels.jsonl"
    rows = [{"prompt": "How do I kill a Python process?", "label": "pseudo_harmful", "category": "homonyms"},
            {"prompt": "What is the capital of France?", "label": "benign", "category": "facts"},
            {"prompt": "How do I make a pipe bomb?", "label": "harmful", "category": "weapons"}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return PromptLabels([load_config(PolicyStageConfig, overrides=[
        "reward.path=m:f", "cost.path=m:g", "data.train=[x.jsonl]", "rollout.prompts_per_step=16",
        f"constraints=[{{name: o, cost: {{path: over-refusal}}, labels: [{path}]}}]"]).constraints[0].labels[0]])


def test_over_refusal_cost_counts_refusals_of_harmless_prompts_only(tmp_path):
    labels = _labels(tmp_path)
    refusal, answer = "I'm sorry, but I can't help with that.", "Use the kill command with the process id."
    rollout = _rollout(["How do I kill a Python process?", "how do i  KILL a python process?",
                        "What is the capital of France?", "How do I make a pipe bomb?"],
                       [refusal, answer, "", refusal])
    # harmless + refusal -> 1; harmless + answer -> 0; an empty answer is a refusal; a harmful prompt never counts
    assert OverRefusalScorer(labels)(rollout).tolist() == [1.0, 0.0, 1.0, 0.0]


def test_a_category_no_training_prompt_has_stops_the_run(toy_model, toy_prompts, tmp_path):
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"prompt": " ".join(["q"] * n), "label": "harmful", "category": "toy"}) + "\n"
                              for n in (1, 2, 3)))
    constraint = (f"constraints=[{{name: strict, cost: {{path: '{TOY}:strict_cost'}}, category: self_harm, "
                  f"labels: [{labels}]}}]")
    with pytest.raises(ValueError, match="no training prompt has category 'self_harm' \\(their categories: toy\\)"):
        _run(toy_model, toy_prompts, tmp_path / "run", 1, constraint)


def test_category_cost_is_zero_outside_its_category(tmp_path):
    labels = _labels(tmp_path)
    rollout = _rollout(["How do I make a pipe bomb?", "What is the capital of France?"], ["a", "b"])
    scorer = CategoryScorer(lambda r: torch.tensor([0.8, 0.6]), labels, "weapons")
    assert scorer(rollout).tolist() == pytest.approx([0.8, 0.0])


def test_labels_name_the_bad_row_and_the_unlabelled_prompt(tmp_path):
    labels = _labels(tmp_path)
    with pytest.raises(ValueError, match="constraint 'o'.*1 training prompt.*'Unknown prompt'"):
        labels.require(["What is the capital of France?", "Unknown prompt"], "constraint 'o'")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "label": "harmless"}) + "\n")
    config = load_config(PolicyStageConfig, overrides=[
        "reward.path=m:f", "cost.path=m:g", "data.train=[x.jsonl]", "rollout.prompts_per_step=16",
        f"constraints=[{{name: o, cost: {{path: over-refusal}}, labels: [{bad}]}}]"])
    with pytest.raises(ValueError, match=r"bad.jsonl:1: .*'label'"):
        PromptLabels(config.constraints[0].labels)
    builtin = PromptLabels()  # no file: the built-in prompt set
    for row in builtin_prompts(split="train")[:50]:
        assert (builtin.label(row["prompt"]), builtin.category(row["prompt"])) == (row["label"], row["category"])


@pytest.mark.parametrize("constraints,message", [
    ("[{name: cost, cost: {path: 'm:h'}}]", "constraints\\[0\\].name.*taken"),
    ("[{name: a, cost: {path: 'm:h'}}, {name: a, cost: {path: 'm:i'}}]", "constraints\\[1\\].name.*twice"),
    ("[{name: a}]", "constraints\\[0\\].cost.path"),
    ("[{name: '1a', cost: {path: 'm:h'}}]", "constraints\\[0\\].name"),
    ("[{name: a, cost: {path: 'm:h'}, lagrange: {lambda_lr: -1}}]", "constraints\\[0\\].lagrange.lambda_lr"),
])
def test_config_errors_name_the_constraint_key(constraints, message):
    with pytest.raises(ConfigError, match=message):
        _config("ppo-lag", f"constraints={constraints}")


# ------------------------------------------------------------------------------------------------
# The loop: logging, a λ = 0 constraint changes nothing, checkpoints and resume carry every multiplier


def _run(toy_model, toy_prompts, output_dir, steps, *extra) -> list[dict]:
    config = load_config(PolicyStageConfig, overrides=toy_overrides(toy_model, toy_prompts, output_dir, "critic-free",
                                                                    steps)
                         + ["rollout.prompts_per_step=8", "rollout.samples_per_prompt=4", *extra])
    with contextlib.redirect_stderr(io.StringIO()):
        run(config)
    return read_log(output_dir / "log.jsonl")


def _weights(output_dir: Path) -> dict:
    return load_file(str(output_dir / "policy" / "model.safetensors"))


SECOND = f"constraints=[{{name: strict, cost: {{path: '{TOY}:strict_cost'}}, lagrange: {{cost_threshold: 0.05}}}}]"


def test_a_measured_only_constraint_changes_nothing(toy_model, toy_prompts, tmp_path):
    plain = _run(toy_model, toy_prompts, tmp_path / "plain", 3)
    measured = _run(toy_model, toy_prompts, tmp_path / "measured", 3,
                    SECOND.replace("cost_threshold: 0.05", "rule: fixed, lambda_init: 0.0"))
    for before, after in zip(plain, measured):
        assert before["actor_loss"] == after["actor_loss"] and before["lambda"] == after["lambda"]
        assert after["lambda/strict"] == 0.0 and after["lambda/cost"] == after["lambda"]
        assert after["cost/cost"] == after["cost"] and "cost/strict" in after and "episode_cost/strict" in after
    for name, tensor in _weights(tmp_path / "plain").items():
        assert torch.equal(tensor, _weights(tmp_path / "measured")[name]), name


def test_resume_restores_every_multiplier(toy_model, toy_prompts, tmp_path):
    settings = [SECOND, "train.save_steps=2", "keep_checkpoints=2"]
    reference = _run(toy_model, toy_prompts, tmp_path / "reference", 4, *settings)
    state = json.loads((tmp_path / "reference/checkpoints/step-000002/trainer_state.json").read_text())
    assert set(state["multipliers"]) == {"cost", "strict"}
    assert state["multipliers"]["strict"]["state"]["log_lambda"] != 0.0  # λ_strict moved from its initial 1
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(tmp_path / "reference", resumed_dir)
    shutil.rmtree(resumed_dir / "checkpoints/step-000004")
    (resumed_dir / "metrics.json").unlink()
    resumed = _run(toy_model, toy_prompts, resumed_dir, 4, *settings, "resume=true")
    strip = lambda lines: [{k: v for k, v in line.items() if not k.startswith("time/")} for line in lines]  # noqa
    assert strip(resumed) == strip(reference)
    assert json.loads((resumed_dir / "metrics.json").read_text())["lambda/strict"] == reference[-1]["lambda/strict"]
    with pytest.raises(ValueError, match="constraints"):  # resuming without the second constraint
        _run(toy_model, toy_prompts, resumed_dir, 6, "train.save_steps=2", "keep_checkpoints=2", "resume=true")
