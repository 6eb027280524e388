"""One micro-batch, one pass: the update's forward supplies the old log-probabilities (no separate pass)."""

from __future__ import annotations

import pytest
import torch

from saferlhf.config import load_config
from saferlhf.policy.stage import PolicyStageConfig
from saferlhf.policy.trainer import PolicyTrainer
from saferlhf.training.setup import make_accelerator

from .toy_task import toy_overrides


def one_step(toy_model, toy_prompts, tmp_path, algorithm, reuse: bool):
    prompts = 16 if algorithm == "ppo-lag" else 4  # x 1 or x 4 answers: 16 answers, one micro-batch of 16
    config = load_config(PolicyStageConfig, overrides=toy_overrides(toy_model, toy_prompts, tmp_path, algorithm, 1)
                         + [f"rollout.prompts_per_step={prompts}", "train.batch_size=16"])
    trainer = PolicyTrainer(config, make_accelerator(config.train))
    assert trainer.reuse_update_forward  # one micro-batch, one pass, no dropout
    trainer.reuse_update_forward = reuse
    metrics = trainer.step()
    actor = trainer.accelerator.unwrap_model(trainer.models["actor"])
    return metrics, {name: p.detach().clone() for name, p in actor.named_parameters()}


@pytest.mark.parametrize("algorithm", ["ppo-lag", "critic-free"])
def test_reusing_the_update_forward_changes_nothing_but_the_work(toy_model, toy_prompts, tmp_path, algorithm):
    reused, reused_weights = one_step(toy_model, toy_prompts, tmp_path / "a", algorithm, True)
    separate, separate_weights = one_step(toy_model, toy_prompts, tmp_path / "b", algorithm, False)
    for key in ("reward", "cost", "kl", "lambda", "actor_loss", "clip_fraction", "entropy"):
        assert reused[key] == pytest.approx(separate[key], abs=1e-5), key
    assert reused["clip_fraction"] == 0.0  # ratio exactly 1 before the first optimiser step
    for name, weight in reused_weights.items():
        torch.testing.assert_close(weight, separate_weights[name], atol=1e-6, rtol=1e-5, msg=name)


def test_no_reuse_with_several_micro_batches_passes_or_dropout(toy_model, toy_prompts, tmp_path):
    base = toy_overrides(toy_model, toy_prompts, tmp_path, "critic-free", 1) + ["rollout.prompts_per_step=4"]
    for extra in (["train.batch_size=16", "ppo.update_iterations=2"], ["train.batch_size=8"],
                  ["train.batch_size=16", "actor.lora.enabled=true", "actor.lora.dropout=0.1"]):
        config = load_config(PolicyStageConfig, overrides=base + extra)
        assert not PolicyTrainer(config, make_accelerator(config.train)).reuse_update_forward, extra
