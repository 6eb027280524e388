"""Per-token rewards with the KL penalty, the PPO losses, and small masked helpers.

Conventions (as the reference PKU-Alignment/safe-rlhf): tensors over response positions are (B, T);
``mask`` is 1 on response tokens (the end-of-turn token included) and 0 on the padding after an
answer that stopped early; ``masked_mean`` averages each sequence over its tokens, then the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """mean_b( Σ_t x_bt·m_bt / Σ_t m_bt ) for (B, T) inputs (reference ``masked_mean``)."""
    mask = mask.to(x.dtype)
    return ((x * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1.0)).mean()


def end_index(mask: torch.Tensor) -> torch.Tensor:
    """Position of the last response token of each row, (B,)."""
    positions = torch.arange(mask.size(-1), device=mask.device)
    return (mask.long() * positions).argmax(dim=-1)


def gather_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log π(labels) from logits (B, L, V) and labels (B, L) -> (B, L)."""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    return log_probs.gather(dim=-1, index=labels.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """H(π(· | s_t)) = -Σ_v p_v log p_v at each position, (B, L, V) -> (B, L)."""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    return -(log_probs.exp() * log_probs).sum(dim=-1)


def kl_penalized_rewards(
    reward: torch.Tensor,  # (B,): R(x, y) of each answer
    cost: torch.Tensor | None,  # (B,): C(x, y), or None without a cost stream
    log_probs: torch.Tensor,  # (B, T): log π_θ(a_t | s_t) at sampling time
    ref_log_probs: torch.Tensor,  # (B, T): log π_ref(a_t | s_t)
    mask: torch.Tensor,  # (B, T)
    kl_coeff: float,
    clip_range_score: float = 50.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Safe RLHF per-token rewards and costs (reference ``add_kl_divergence_regularization``).

    With KL_t = log π_θ(a_t) - log π_ref(a_t) and T the last response token:

        r_t = -β·KL_t + R·1[t = T]        c_t = +β·KL_t + C·1[t = T]

    both clipped to ±``clip_range_score``. The KL penalty enters the reward with a minus and the cost
    with a plus, so the combined advantage (A_r - λ·A_c)/(1 + λ) carries exactly -β·KL whatever λ.
    Returns ``(rewards, costs)``, (B, T) each, zero after the end (``costs`` is None without ``cost``).
    """
    mask = mask.to(log_probs.dtype)
    kl_penalty = -kl_coeff * (log_probs - ref_log_probs) * mask  # (B, T)
    last = end_index(mask).unsqueeze(-1)  # (B, 1)
    rewards = kl_penalty.scatter_add(-1, last, reward.to(kl_penalty.dtype).unsqueeze(-1))
    rewards = rewards.clamp(-clip_range_score, clip_range_score) * mask
    if cost is None:
        return rewards, None
    costs = (-kl_penalty).scatter_add(-1, last, cost.to(kl_penalty.dtype).unsqueeze(-1))
    return rewards, costs.clamp(-clip_range_score, clip_range_score) * mask


def sequence_kl(log_probs: torch.Tensor, ref_log_probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ_t KL_t over each answer, (B,): the sample estimate of KL(π_θ(·|x) || π_ref(·|x))."""
    return ((log_probs - ref_log_probs) * mask.to(log_probs.dtype)).sum(dim=-1)


def clipped_surrogate_loss(
    log_probs: torch.Tensor,  # (B, T): log π_θ now (with gradient)
    old_log_probs: torch.Tensor,  # (B, T): log π_θ_old at sampling time
    advantages: torch.Tensor,  # (B, T)
    mask: torch.Tensor,  # (B, T)
    clip_range_ratio: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO clipped surrogate (Schulman et al. 2017, arXiv 1707.06347), to be minimised:

        ρ_t = exp(log π_θ(a_t) - log π_old(a_t))
        L   = -masked_mean( min(ρ_t·A_t, clip(ρ_t, 1-ε, 1+ε)·A_t) )

    Returns ``(loss, clip_fraction)``; clip_fraction = share of tokens where the clipped term is
    the smaller one (the gradient is cut there).
    """
    ratios = torch.exp(log_probs - old_log_probs)  # (B, T)
    surrogate = advantages * ratios
    surrogate_clipped = advantages * ratios.clamp(1.0 - clip_range_ratio, 1.0 + clip_range_ratio)
    loss = -masked_mean(torch.minimum(surrogate, surrogate_clipped), mask)
    with torch.no_grad():
        clipped = (surrogate_clipped < surrogate).to(log_probs.dtype)
        clip_fraction = (clipped * mask).sum() / mask.sum().clamp(min=1.0)
    return loss, clip_fraction


def clipped_value_loss(
    values: torch.Tensor,  # (B, T): V_φ now (with gradient)
    old_values: torch.Tensor,  # (B, T): V at sampling time
    returns: torch.Tensor,  # (B, T): GAE returns
    mask: torch.Tensor,  # (B, T)
    clip_range_value: float = 5.0,
) -> torch.Tensor:
    """Clipped critic loss (reference ``critic_loss_fn``):

        L_V = 0.5 · masked_mean( max((V - G)², (clip(V, V_old - c, V_old + c) - G)²) )
    """
    values_clipped = torch.maximum(torch.minimum(values, old_values + clip_range_value), old_values - clip_range_value)
    loss_unclipped = (values - returns) ** 2
    loss_clipped = (values_clipped - returns) ** 2
    return 0.5 * masked_mean(torch.maximum(loss_unclipped, loss_clipped), mask)
