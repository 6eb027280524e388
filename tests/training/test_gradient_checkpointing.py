"""train.gradient_checkpointing: same gradients, activations recomputed (causal LM, LoRA, score model)."""

from __future__ import annotations

import pytest
import torch

from saferlhf.config import LoraConfig, TrainConfig
from saferlhf.models.loading import apply_lora, load_causal_lm
from saferlhf.models.score_model import ScoreModel
from saferlhf.training.setup import enable_gradient_checkpointing

IDS = torch.tensor([[1, 5, 9, 13, 17, 21], [2, 6, 10, 14, 18, 22]])


def _gradients(make, checkpointing: bool) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = enable_gradient_checkpointing(make(), TrainConfig(gradient_checkpointing=checkpointing)).train()
    target = getattr(model, "backbone", model)
    assert getattr(target, "is_gradient_checkpointing", False) == checkpointing
    if isinstance(model, ScoreModel):
        loss = model(IDS, torch.ones_like(IDS)).end_scores.sum()
    else:
        loss = model(input_ids=IDS, labels=IDS).loss
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("make", [
    lambda: load_causal_lm("tiny-llama"),
    lambda: apply_lora(load_causal_lm("tiny-llama"), LoraConfig(enabled=True, r=4, alpha=8, dropout=0.0), "CAUSAL_LM"),
    lambda: ScoreModel.from_backbone("tiny-llama", kind="cost"),
], ids=["full", "lora", "score-model"])
def test_checkpointing_keeps_the_gradients(make):
    plain, checkpointed = _gradients(make, False), _gradients(make, True)
    assert plain.keys() == checkpointed.keys() and plain
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=1e-6, msg=name)
