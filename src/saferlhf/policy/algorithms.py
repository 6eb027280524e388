"""What distinguishes the four algorithms; everything else is the one loop in :mod:`.trainer`.

| algorithm        | critics        | advantage                         | λ                                   |
|------------------|----------------|-----------------------------------|-------------------------------------|
| ``ppo-lag``      | reward, cost(s) | GAE on r_t and c_t, (A_r-λA_c)/(1+λ) | learned (gradient or PID rule)  |
| ``ppo``          | reward         | GAE on r_t                        | 0 (cost only measured)              |
| ``reward-shaping`` | reward (on R-λC) | GAE on r_t with R replaced by R - λ·C | fixed (``lagrange.lambda_init``) |
| ``critic-free``  | none           | group baseline of R - β·KL and C + β·KL, then (A_r-λA_c)/(1+λ) | learned |

"learned" follows ``lagrange.rule``: ``gradient``, ``pid``, or ``fixed`` (λ = ``lagrange.lambda_init``
throughout, which turns ``critic-free`` into its own unconstrained / reward-shaping baselines).
With several constraints (:mod:`.constraints`) there is one cost critic and one λ_i per constraint and
the advantage is (A_r - Σ λ_i A_ci)/(1 + Σ λ_i); reward shaping uses R - Σ λ_i C_i.

The critic-free variant samples k answers per prompt and uses the other answers to the same prompt
as the baseline (RLOO by default), so no value model is loaded, run or trained: two fewer models
than PPO-Lag, each as large as the policy when the critics start from the score models. It carries the same KL
split as PPO-Lag, at the sequence level: G_r = R - β·Σ_t KL_t and G_c = C + β·Σ_t KL_t, so the
combined advantage again holds exactly -β·KL whatever λ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from saferlhf.policy.advantages import gae_advantages_and_returns, group_baseline_advantages
from saferlhf.policy.config import PolicyStageConfig
from saferlhf.policy.constraints import combine_advantages
from saferlhf.policy.losses import kl_penalized_rewards, sequence_kl


@dataclass(frozen=True)
class AlgorithmSpec:
    critics: tuple[str, ...]  # value models that exist: "reward", "cost" (one per constraint)
    advantage: Literal["gae", "group"]
    multiplier: Literal["learned", "zero", "fixed"]
    shaped_reward: bool = False  # the reward stream is R - λ·C


ALGORITHM_SPECS: dict[str, AlgorithmSpec] = {
    "ppo-lag": AlgorithmSpec(critics=("reward", "cost"), advantage="gae", multiplier="learned"),
    "ppo": AlgorithmSpec(critics=("reward",), advantage="gae", multiplier="zero"),
    "reward-shaping": AlgorithmSpec(critics=("reward",), advantage="gae", multiplier="fixed", shaped_reward=True),
    "critic-free": AlgorithmSpec(critics=(), advantage="group", multiplier="learned"),
}


def compute_advantages(
    config: PolicyStageConfig,
    reward: torch.Tensor,  # (N,)
    costs: dict[str, torch.Tensor],  # constraint name -> (N,) costs (empty without a cost)
    log_probs: torch.Tensor,  # (N, T) at sampling time
    ref_log_probs: torch.Tensor,  # (N, T)
    mask: torch.Tensor,  # (N, T)
    values: dict[str, torch.Tensor],  # critic name -> (N, T) values at sampling time
    lagrange_multipliers: dict[str, float],  # constraint name -> λ_i
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(actor advantages (N, T), critic returns by name (N, T))`` for ``config.algorithm``; the cost
    critics are named after their constraints (:mod:`.constraints`)."""
    spec = ALGORITHM_SPECS[config.algorithm]
    ppo = config.ppo
    mask = mask.to(log_probs.dtype)
    multipliers = [lagrange_multipliers[name] for name in costs]
    if spec.advantage == "group":
        kl = sequence_kl(log_probs, ref_log_probs, mask)  # (N,)
        clip = ppo.clip_range_score
        group = config.samples_per_prompt
        baseline = config.critic_free.baseline
        advantages = group_baseline_advantages((reward - ppo.kl_coeff * kl).clamp(-clip, clip), group, baseline)
        if costs:
            cost_advantages = [group_baseline_advantages((cost + ppo.kl_coeff * kl).clamp(-clip, clip), group, baseline)
                               for cost in costs.values()]
            advantages = combine_advantages(advantages, cost_advantages, multipliers)
        return advantages.unsqueeze(-1) * mask, {}  # the same advantage on every token of an answer

    reward_stream = reward
    if spec.shaped_reward:  # R - Σ_i λ_i·C_i
        reward_stream = reward - sum(multiplier * cost for multiplier, cost in zip(multipliers, costs.values()))
    rewards, _ = kl_penalized_rewards(reward_stream, None, log_probs, ref_log_probs, mask, ppo.kl_coeff,
                                      ppo.clip_range_score)
    advantages, reward_returns = gae_advantages_and_returns(values["reward"], rewards, mask, ppo.gamma, ppo.gae_lambda)
    returns = {"reward": reward_returns}
    if "cost" in spec.critics and costs:
        cost_advantages = []
        for name, cost in costs.items():
            _, per_token_costs = kl_penalized_rewards(reward_stream, cost, log_probs, ref_log_probs, mask,
                                                      ppo.kl_coeff, ppo.clip_range_score)
            cost_advantage, returns[name] = gae_advantages_and_returns(values[name], per_token_costs, mask,
                                                                       ppo.gamma, ppo.gae_lambda)
            cost_advantages.append(cost_advantage)
        advantages = combine_advantages(advantages, cost_advantages, multipliers)
    return advantages, returns
