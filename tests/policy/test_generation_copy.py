"""The bf16 copy that samples rollouts: refreshed from the trained weights, its gap to π_θ logged."""

from __future__ import annotations

import pytest
import torch

from saferlhf.config import LoraConfig
from saferlhf.models.loading import apply_lora, load_causal_lm
from saferlhf.policy.generation_copy import GenerationCopy, log_prob_gap


def test_log_prob_gap_hand_computed():
    copy_lp = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, -0.5]])
    train_lp = torch.tensor([[-1.5, -2.0, -9.0], [-0.25, -0.5, -0.5]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    # |0.5| + |0| + |0.25| over 3 answer tokens; the masked -9 does not count
    assert log_prob_gap(copy_lp, train_lp, mask) == pytest.approx(0.75 / 3)


@pytest.mark.parametrize("lora", [True, False])
def test_refresh_copies_the_trained_weights(lora):
    actor = apply_lora(load_causal_lm("tiny-llama"), LoraConfig(enabled=lora, r=4, alpha=8, dropout=0.0), "CAUSAL_LM")
    copy = GenerationCopy(actor, torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in copy.model.parameters())
    trained = [p for p in actor.parameters() if p.requires_grad]
    assert len(copy._pairs) == len(trained) and (lora or len(trained) == len(list(actor.parameters())))
    with torch.no_grad():
        for p in trained:
            p.add_(0.5)  # an optimiser step
    before = {n: p.clone() for n, p in copy.model.named_parameters()}
    copy.refresh()
    for (name, source), target in zip(actor.named_parameters(), copy.model.parameters()):
        assert torch.equal(target, source.detach().to(torch.bfloat16)), name
        if not source.requires_grad:
            assert torch.equal(target, before[name])
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():  # the copy computes what the actor computes, to bf16 precision (~3 digits)
        expected = actor(input_ids=ids).logits
        difference = (copy.model(input_ids=ids).logits.float() - expected).abs().max()
    assert difference < 0.02 * expected.abs().max()


def test_policy_step_samples_from_the_copy_and_logs_the_gap(toy_model, toy_prompts, tmp_path):
    from saferlhf.policy.trainer import PolicyTrainer
    from saferlhf.training.setup import make_accelerator

    from .test_trainer import make_config

    config = make_config(toy_model, toy_prompts, tmp_path, "ppo-lag", 2, "rollout.precision=bf16",
                         "train.precision=fp32")
    trainer = PolicyTrainer(config, make_accelerator(config.train))
    assert trainer.generation_copy is not None
    metrics = trainer.step()
    assert 0.0 < metrics["rollout/logprob_gap"] < 0.5  # bf16 rounding, not another policy
    fp32 = make_config(toy_model, toy_prompts, tmp_path / "fp32", "ppo-lag", 2, "rollout.precision=auto",
                       "train.precision=fp32")
    trainer = PolicyTrainer(fp32, make_accelerator(fp32.train))
    assert trainer.generation_copy is None and "rollout/logprob_gap" not in trainer.step()
