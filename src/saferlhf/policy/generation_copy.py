"""A low-precision copy of the actor that samples the rollouts.

Decoding is memory-bound and runs one token at a time, so on hardware with native bf16 it is much
faster from bf16 weights than from the float32 master weights (or under autocast, which re-casts
every frozen LoRA base weight at every decoding step). The copy is made once and refreshed from
the trained model before every rollout: only the parameters that train are copied (the LoRA
adapters, or everything under full fine-tuning), cast to the copy's dtype.

The losses never use the copy: the old and reference log-probabilities come from the trained model
in the training precision, as with vLLM rollouts (Hu et al. 2024, OpenRLHF). The answers are
therefore sampled from π_bf16, a slightly different policy than the π_θ the importance ratios
assume; the trainer logs that gap per step as

    rollout/logprob_gap = mean over answer tokens of |log π_bf16(y_t | x, y_<t) − log π_θ(y_t | x, y_<t)|

Sharded actors (DeepSpeed ZeRO-3, FSDP) hold no full copy on a process and sample from the trained
model under autocast instead (``supported``).
"""

from __future__ import annotations

import copy

import torch
from accelerate.utils import DistributedType

from saferlhf.policy.losses import gather_log_probs
from saferlhf.policy.rollout import answer_logits


def supported(accelerator) -> bool:
    """A full copy per process exists only without parameter sharding (one process, DDP)."""
    return accelerator.distributed_type in (DistributedType.NO, DistributedType.MULTI_CPU,
                                            DistributedType.MULTI_GPU)


class GenerationCopy:
    """``model``: a frozen ``dtype`` copy of ``actor`` (an unwrapped module), kept in step by ``refresh``."""

    def __init__(self, actor: torch.nn.Module, dtype: torch.dtype, device: torch.device | str = "cpu"):
        self.model = copy.deepcopy(actor).to(device=device, dtype=dtype).eval().requires_grad_(False)
        self._pairs = [(target, source) for (name, source), target
                       in zip(actor.named_parameters(), self.model.parameters()) if source.requires_grad]

    @torch.no_grad()
    def refresh(self) -> None:
        """Copy the trained parameters into the copy (cast to its dtype)."""
        for target, source in self._pairs:
            target.copy_(source)

    @torch.no_grad()
    def rollout_gap(self, rollout, train_log_probs: torch.Tensor, batch_size: int) -> float:
        """``rollout/logprob_gap`` of a rollout the copy sampled, against π_θ's ``train_log_probs`` (N, T)."""
        parts = (rollout.select(range(start, min(start + batch_size, len(rollout))))
                 for start in range(0, len(rollout), batch_size))
        copy_log_probs = torch.cat([gather_log_probs(answer_logits(self.model, part), part.response_ids)
                                    for part in parts])
        return log_prob_gap(copy_log_probs, train_log_probs, rollout.response_mask)


def log_prob_gap(copy_log_probs: torch.Tensor, train_log_probs: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean |log π_copy − log π_train| over the answer tokens (``mask`` = 1), all (N, T)."""
    mask = mask.float()
    difference = (copy_log_probs.float() - train_log_probs.float()).abs()
    return float((difference * mask).sum() / mask.sum().clamp(min=1.0))
