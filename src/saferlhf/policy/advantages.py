"""Advantage estimators: GAE (with critics) and group baselines (critic-free), and their combination.

- GAE (Schulman et al. 2016, arXiv 1506.02438), as in the reference's
  ``get_advantages_and_returns`` but with γ and λ_GAE configurable (there: 1.0 and 0.95, hard-coded):

      δ_t = r_t + γ · V_{t+1} - V_t          (V_{T+1} = 0 after the last response token)
      A_t = δ_t + γ · λ_GAE · A_{t+1}         returns G_t = A_t + V_t

- Group baselines for the critic-free variant: k answers are sampled per prompt and each answer's
  score is compared with the other answers to the same prompt.
  * leave-one-out (RLOO; Kool et al. 2019, Ahmadian et al. 2024, arXiv 2402.14740):
        A_i = x_i - 1/(k-1) · Σ_{j≠i} x_j  =  k/(k-1) · (x_i - mean(x))
  * group mean (GRPO without the std scaling; Shao et al. 2024, arXiv 2402.03300):
        A_i = x_i - mean(x)
    (Dr GRPO, Liu et al. 2025, also drops GRPO's 1/|y| averaging of each answer's tokens; the loss here
    keeps it, see :func:`saferlhf.policy.losses.masked_mean`, so this is not Dr GRPO.)
  * group normalised (GRPO): A_i = (x_i - mean(x)) / (std(x) + ε). Scaling reward and cost by their
    own group std changes how much one unit of cost weighs against one unit of reward from group to
    group, so λ no longer weighs E[C] against E[R]; prefer the two unscaled baselines with a constraint.

- The Safe RLHF actor advantage (Dai et al. 2024; reference ``ppo_lag/trainer.py``), λ detached,
  A = (A_r - λ · A_c) / (1 + λ), and its form for several constraints are in :mod:`.constraints`.
  Dividing by 1 + λ keeps the scale of A bounded as λ grows, so the PPO clip range keeps its meaning.
"""

from __future__ import annotations

from typing import Literal

import torch

GroupBaseline = Literal["leave-one-out", "group-mean", "group-normalized"]


@torch.no_grad()
def gae_advantages_and_returns(
    values: torch.Tensor,  # (B, T): V(s_t) at each response position
    rewards: torch.Tensor,  # (B, T): per-token rewards r_t
    mask: torch.Tensor,  # (B, T): 1 on response tokens, 0 on padding after the end
    gamma: float = 1.0,
    gae_lambda: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(advantages, returns)``, both (B, T), zero after each response's end."""
    mask = mask.to(values.dtype)
    values = values * mask
    rewards = rewards * mask
    length = rewards.size(-1)
    last_advantage = torch.zeros_like(values[:, 0])  # (B,)
    advantages_reversed = []
    for t in reversed(range(length)):
        next_values = values[:, t + 1] if t < length - 1 else torch.zeros_like(values[:, t])
        delta = rewards[:, t] + gamma * next_values - values[:, t]
        last_advantage = delta + gamma * gae_lambda * last_advantage
        advantages_reversed.append(last_advantage)
    advantages = torch.stack(advantages_reversed[::-1], dim=1) * mask  # (B, T)
    returns = (advantages + values) * mask  # (B, T)
    return advantages, returns


@torch.no_grad()
def group_baseline_advantages(
    scores: torch.Tensor,  # (N,) with N = num_prompts * group_size, answers of one prompt adjacent
    group_size: int,
    baseline: GroupBaseline = "leave-one-out",
    eps: float = 1e-6,
) -> torch.Tensor:  # (N,)
    """Per-answer advantage relative to the other answers to the same prompt (module docstring)."""
    if group_size < 2:
        raise ValueError(f"group baselines need at least 2 answers per prompt, got {group_size}")
    if scores.numel() % group_size:
        raise ValueError(f"{scores.numel()} scores do not split into groups of {group_size}")
    grouped = scores.view(-1, group_size)  # (P, k)
    centred = grouped - grouped.mean(dim=1, keepdim=True)  # (P, k)
    if baseline == "leave-one-out":
        advantages = centred * group_size / (group_size - 1)
    elif baseline == "group-mean":
        advantages = centred
    elif baseline == "group-normalized":
        advantages = centred / (grouped.std(dim=1, keepdim=True) + eps)
    else:
        raise ValueError(f"unknown group baseline {baseline!r}")
    return advantages.reshape(-1)

