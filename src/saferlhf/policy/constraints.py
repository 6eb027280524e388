"""Several cost constraints, each with its own Lagrange multiplier, and how their advantages combine.

Safe RLHF (Dai et al. 2024, arXiv 2310.12773, section 3) constrains one cost. With m costs C_1..C_m
and thresholds d_1..d_m the problem and its Lagrangian become

    max_θ  E[R] - β·KL(π_θ || π_ref)   s.t.   E[C_i] <= d_i   for i = 1..m
    min_{λ_1..λ_m >= 0} max_θ  E[R] - Σ_i λ_i (E[C_i] - d_i)

Each λ_i follows its own rule (gradient ascent on log λ_i, :mod:`.lagrange`; PID, :mod:`.pid_lagrange`;
or fixed) on its own window of episode costs Ĵ_ci, so λ_i rises only while its own constraint is
violated (Ĵ_ci > d_i). The actor advantage generalises the reference's (A_r - λ·A_c)/(1 + λ):

    A = (A_r - Σ_i λ_i · A_ci) / (1 + Σ_i λ_i)          (λ_i detached)

Every cost carries +β·KL like the reference's single cost (c_t = β·KL_t + C_i·1[t = T]), so the
numerator holds -β·KL·(1 + Σ λ_i) and A again holds exactly -β·KL whatever the λ_i. With one
constraint every number is the reference's bit for bit. ``ppo-lag`` trains one cost critic per
constraint; ``critic-free`` takes a group baseline per cost.

The first constraint is the ``cost`` + ``lagrange`` sections of the config (named ``cost``: its critic
is ``cost_critic``, its λ is logged as ``lambda`` as before); ``constraints`` lists the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from saferlhf.models.precision import role_dtype
from saferlhf.policy.config import OVER_REFUSAL, ConstraintConfig, LagrangeConfig, PolicyStageConfig
from saferlhf.policy.lagrange import (FixedMultiplier, LagrangeMultiplier, ReduceMean, adopt_shared_state,
                                      redistribute_windows, shared_state)
from saferlhf.policy.pid_lagrange import PIDLagrangeMultiplier
from saferlhf.policy.rollout import Rollout
from saferlhf.policy.scorers import CategoryScorer, PromptLabels, make_scorer

FIRST = "cost"  # name of the first constraint (cost + lagrange sections)


def combine_advantages(reward_advantages: torch.Tensor, cost_advantages: Sequence[torch.Tensor],
                       lagrange_multipliers: Sequence[float]) -> torch.Tensor:
    """A = (A_r - Σ_i λ_i·A_ci) / (1 + Σ_i λ_i), the λ_i plain floats (see the module docstring)."""
    penalty = sum(multiplier * advantages for multiplier, advantages in zip(lagrange_multipliers, cost_advantages))
    return (reward_advantages - penalty) / (1.0 + sum(lagrange_multipliers))


@dataclass
class Constraint:
    """E[C] <= threshold: the cost source and the multiplier λ that enforces it."""

    name: str
    scorer: Callable[[Rollout], torch.Tensor]  # rollout -> (N,) costs
    source: str  # the cost's path (a score-model folder can initialise the critic)
    multiplier: Any  # LagrangeMultiplier | PIDLagrangeMultiplier | FixedMultiplier

    @property
    def threshold(self) -> float:
        return self.multiplier.cost_threshold


class Constraints:
    """The run's constraints in order (the first is ``cost``); empty for ``ppo`` without a cost."""

    def __init__(self, items: list[Constraint]):
        self.items = items

    @property
    def names(self) -> list[str]:
        return [item.name for item in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def values(self) -> dict[str, float]:
        """λ_i by name."""
        return {item.name: item.multiplier.value for item in self.items}

    @torch.no_grad()
    def score(self, rollout: Rollout) -> dict[str, torch.Tensor]:
        """C_i of every answer, (N,) by name."""
        return {item.name: item.scorer(rollout) for item in self.items}

    def update(self, costs: dict[str, torch.Tensor]) -> dict[str, float]:
        """One step of every λ_i on its own new episode costs; returns Ĵ_ci by name."""
        return {item.name: item.multiplier.update(costs[item.name].tolist()) for item in self.items}

    def answer_metrics(self, costs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """This process's ``cost/<name>`` (mean over the step's answers); ``cost`` and ``unsafe_share``
        (share with C > 0) of the first constraint, under their names from before there were several."""
        metrics = {f"cost/{name}": cost.mean() for name, cost in costs.items()}
        if self.items:
            first = costs[self.items[0].name]
            metrics.update(cost=first.mean(), unsafe_share=(first > 0).float().mean())
        return metrics

    def log_values(self, lagrange_multipliers: dict[str, float], episode_costs: dict[str, float]) -> dict[str, float]:
        """``lambda/<name>``, ``episode_cost/<name>`` (Ĵ_ci) and ``cost_threshold/<name>`` of every constraint,
        and ``lambda`` and ``episode_cost`` of the first (0 and NaN without a constraint)."""
        values = {"lambda": next(iter(lagrange_multipliers.values()), 0.0),
                  "episode_cost": next(iter(episode_costs.values()), math.nan)}
        for item in self.items:
            values.update({f"lambda/{item.name}": lagrange_multipliers[item.name],
                           f"episode_cost/{item.name}": episode_costs[item.name],
                           f"cost_threshold/{item.name}": item.threshold})
        return values

    # -- state: checkpoints and several processes ------------------------------------------------

    def state_dict(self, windows: dict[str, list[list[float]]]) -> dict[str, Any]:
        """Every multiplier's state with every process's own cost window (``windows``: name -> per process)."""
        return {item.name: {"state": item.multiplier.state_dict(), "windows": windows[item.name]}
                for item in self.items}

    def load_state_dict(self, state: dict[str, Any], num_processes: int, process_index: int) -> None:
        missing = [name for name in self.names if name not in state]
        if missing or len(state) != len(self.items):
            raise ValueError(f"resume: the checkpoint holds the constraints {sorted(state)}, the config "
                             f"{self.names}: resume with the constraints the run started with")
        for item in self.items:
            saved = state[item.name]
            item.multiplier.load_state_dict(saved["state"])
            item.multiplier.window.costs.clear()
            item.multiplier.window.extend(redistribute_windows(saved["windows"], num_processes, process_index))

    def shared_state(self) -> dict[str, Any]:
        return {item.name: shared_state(item.multiplier) for item in self.items}

    def adopt_shared_state(self, state: dict[str, Any]) -> None:
        for item in self.items:
            adopt_shared_state(item.multiplier, state[item.name])


def make_multiplier(kind: str, lagrange: LagrangeConfig, reduce_mean: ReduceMean | None = None):
    """λ of one constraint; ``kind`` is the algorithm's (``AlgorithmSpec.multiplier``): learned by
    ``lagrange.rule``, ``zero`` (ppo) or ``fixed`` at ``lagrange.lambda_init`` (reward-shaping)."""
    common = dict(cost_threshold=lagrange.cost_threshold, episode_cost_window=lagrange.episode_cost_window,
                  reduce_mean=reduce_mean, pessimistic_delta=lagrange.pessimistic_delta)
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


def constraint_configs(config: PolicyStageConfig) -> list[ConstraintConfig]:
    """The first constraint (``cost`` + ``lagrange``, when a cost is set), then ``constraints``."""
    first = [ConstraintConfig(name=FIRST, cost=config.cost, lagrange=config.lagrange)] if config.cost.path else []
    return first + list(config.constraints)


def make_constraints(config: PolicyStageConfig, multiplier_kind: str, prompts: list, actor_tokenizer, device,
                     reduce_mean: ReduceMean | None = None) -> Constraints:
    """Scorers and multipliers of every constraint; checks that the prompts carry the labels a cost needs."""
    items = []
    for item in constraint_configs(config):
        labels = None
        if item.category or item.cost.path == OVER_REFUSAL:
            labels = PromptLabels(item.labels)
            labels.require(prompts, f"constraint {item.name!r}")
        scorer = make_scorer(item.cost.path, actor_tokenizer, normalize=item.cost.normalize,
                             batch_size=item.cost.batch_size, max_length=config.data.max_length, device=device,
                             labels=labels, dtype=role_dtype(item.cost.dtype, config.train.precision), kind="cost")
        if item.category:
            found = sorted({labels.category(prompt) for prompt in prompts})
            if item.category not in found:
                raise ValueError(f"constraint {item.name!r}: no training prompt has category {item.category!r} "
                                 f"(their categories: {', '.join(found)})")
            scorer = CategoryScorer(scorer, labels, item.category)
        multiplier = make_multiplier(multiplier_kind, item.lagrange, reduce_mean)
        items.append(Constraint(item.name, scorer, item.cost.path, multiplier))
    return Constraints(items)
