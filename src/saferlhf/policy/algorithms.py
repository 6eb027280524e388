"""What distinguishes the four algorithms; everything else is the one loop in :mod:`.trainer`.

| algorithm        | critics        | advantage                         | λ                                   |
|------------------|----------------|-----------------------------------|-------------------------------------|
| ``ppo-lag``      | reward, cost   | GAE on r_t and c_t, (A_r-λA_c)/(1+λ) | learned (gradient or PID rule)   |
| ``ppo``          | reward         | GAE on r_t                        | 0 (cost only measured)              |
| ``reward-shaping`` | reward (on R-λC) | GAE on r_t with R replaced by R - λ·C | fixed (``lagrange.lambda_init``) |
| ``critic-free``  | none           | group baseline of R - β·KL and C + β·KL, then (A_r-λA_c)/(1+λ) | learned |

"learned" follows ``lagrange.rule``: ``gradient``, ``pid``, or ``fixed`` (λ = ``lagrange.lambda_init``
throughout, which turns ``critic-free`` into its own unconstrained / reward-shaping baselines).

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

from saferlhf.policy.advantages import gae_advantages_and_returns, group_baseline_advantages, lagrangian_advantages
from saferlhf.policy.config import LagrangeConfig, PolicyStageConfig
from saferlhf.policy.lagrange import FixedMultiplier, LagrangeMultiplier, ReduceMean
from saferlhf.policy.losses import kl_penalized_rewards, sequence_kl
from saferlhf.policy.pid_lagrange import PIDLagrangeMultiplier


@dataclass(frozen=True)
class AlgorithmSpec:
    critics: tuple[str, ...]  # value models that exist: "reward", "cost"
    advantage: Literal["gae", "group"]
    multiplier: Literal["learned", "zero", "fixed"]
    shaped_reward: bool = False  # the reward stream is R - λ·C


ALGORITHM_SPECS: dict[str, AlgorithmSpec] = {
    "ppo-lag": AlgorithmSpec(critics=("reward", "cost"), advantage="gae", multiplier="learned"),
    "ppo": AlgorithmSpec(critics=("reward",), advantage="gae", multiplier="zero"),
    "reward-shaping": AlgorithmSpec(critics=("reward",), advantage="gae", multiplier="fixed", shaped_reward=True),
    "critic-free": AlgorithmSpec(critics=(), advantage="group", multiplier="learned"),
}


def make_multiplier(algorithm: str, lagrange: LagrangeConfig, reduce_mean: ReduceMean | None = None):
    """The multiplier object of an algorithm (all share ``value``, ``update``, ``state_dict``)."""
    kind = ALGORITHM_SPECS[algorithm].multiplier
    common = dict(cost_threshold=lagrange.cost_threshold, episode_cost_window=lagrange.episode_cost_window,
                  reduce_mean=reduce_mean)
    if kind == "zero":
        return FixedMultiplier(0.0, **common)
    if kind == "fixed" or lagrange.rule == "fixed":
        return FixedMultiplier(lagrange.lambda_init, **common)
    if lagrange.rule == "pid":
        return PIDLagrangeMultiplier(
            lambda_init=lagrange.lambda_init, lambda_max=lagrange.lambda_max, kp=lagrange.pid_kp, ki=lagrange.pid_ki,
            kd=lagrange.pid_kd, derivative_delay=lagrange.pid_derivative_delay,
            proportional_ema=lagrange.pid_proportional_ema, derivative_ema=lagrange.pid_derivative_ema,
            update_delay_steps=lagrange.update_delay_steps, **common)
    return LagrangeMultiplier(lambda_init=lagrange.lambda_init, lambda_lr=lagrange.lambda_lr,
                              lambda_max=lagrange.lambda_max, update_delay_steps=lagrange.update_delay_steps, **common)


def compute_advantages(
    config: PolicyStageConfig,
    reward: torch.Tensor,  # (N,)
    cost: torch.Tensor | None,  # (N,)
    log_probs: torch.Tensor,  # (N, T) at sampling time
    ref_log_probs: torch.Tensor,  # (N, T)
    mask: torch.Tensor,  # (N, T)
    values: dict[str, torch.Tensor],  # critic name -> (N, T) values at sampling time
    lagrange_multiplier: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(actor advantages (N, T), critic returns by name (N, T))`` for ``config.algorithm``."""
    spec = ALGORITHM_SPECS[config.algorithm]
    ppo = config.ppo
    mask = mask.to(log_probs.dtype)
    if spec.advantage == "group":
        kl = sequence_kl(log_probs, ref_log_probs, mask)  # (N,)
        clip = ppo.clip_range_score
        group = config.samples_per_prompt
        baseline = config.critic_free.baseline
        reward_advantages = group_baseline_advantages((reward - ppo.kl_coeff * kl).clamp(-clip, clip), group, baseline)
        if cost is None:
            advantages = reward_advantages
        else:
            cost_advantages = group_baseline_advantages((cost + ppo.kl_coeff * kl).clamp(-clip, clip), group, baseline)
            advantages = lagrangian_advantages(reward_advantages, cost_advantages, lagrange_multiplier)
        return advantages.unsqueeze(-1) * mask, {}  # the same advantage on every token of an answer

    reward_stream = reward - lagrange_multiplier * cost if spec.shaped_reward else reward
    cost_stream = cost if "cost" in spec.critics else None
    rewards, costs = kl_penalized_rewards(reward_stream, cost_stream, log_probs, ref_log_probs, mask,
                                          ppo.kl_coeff, ppo.clip_range_score)
    advantages, reward_returns = gae_advantages_and_returns(values["reward"], rewards, mask, ppo.gamma, ppo.gae_lambda)
    returns = {"reward": reward_returns}
    if costs is not None:
        cost_advantages, returns["cost"] = gae_advantages_and_returns(values["cost"], costs, mask, ppo.gamma,
                                                                       ppo.gae_lambda)
        advantages = lagrangian_advantages(advantages, cost_advantages, lagrange_multiplier)
    return advantages, returns
