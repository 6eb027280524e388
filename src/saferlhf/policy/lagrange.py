"""The Lagrange multiplier λ of the cost constraint, learned by gradient ascent (Safe RLHF).

Safe RLHF (Dai et al. 2024, arXiv 2310.12773, section 3) solves

    min_{λ ≥ 0} max_θ  E[R(y)] - λ · (E[C(y)] - d)

by alternating a policy step with a step on λ. The reference implementation
(PKU-Alignment/safe-rlhf, ``ppo_lag/trainer.py``) parameterises λ = exp(log λ) so that it stays
positive, and after every policy step:

    Ĵ_c      = mean of the last ``episode_cost_window`` episode costs (averaged over processes)
    loss_λ   = -(Ĵ_c - d) · exp(log λ)
    log λ   ← log λ - lr · ∂loss_λ/∂log λ  =  log λ + lr · (Ĵ_c - d) · λ
    log λ   ← min(log λ, log λ_max)

λ grows while the recent episodes violate the constraint (Ĵ_c > d) and shrinks when they satisfy
it. Updates start after ``update_delay_steps`` steps. Every process computes the same Ĵ_c (one
all-reduce of the per-process window means), so every process computes the same λ; the trainer then
also broadcasts rank 0's multiplier state (:func:`shared_state`), so λ is identical on every process
by construction, and a process whose own value differed is reported.

Pessimistic constraint (HC-RLHF, Chittepu et al. 2025, arXiv 2506.08266): with
``pessimistic_delta`` = δ > 0, Ĵ_c is replaced by the Student-t (1 - δ) upper confidence bound on the
mean cost, Ĵ_c + t_{1-δ, n-1}·s/√n (n = this process's window size, s² = the pooled window variance;
:mod:`saferlhf.evaluation.bounds`), so λ keeps rising until the constraint holds with confidence,
not just on average.

``FixedMultiplier`` keeps λ constant: the ``ppo`` baseline (λ = 0) and ``reward-shaping``
(R - λ·C with a fixed λ). It still keeps the window of episode costs, for logging.
The PID rule (Stooke et al. 2020) is in :mod:`saferlhf.policy.pid_lagrange`.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Callable, Sequence

from saferlhf.evaluation.bounds import student_t_quantile

# mean over processes of a per-process float; identity on one process
ReduceMean = Callable[[float], float]


def _identity(value: float) -> float:
    return value


class EpisodeCostWindow:
    """The last ``size`` episode costs of this process; ``mean`` averages over processes (and with
    ``pessimistic_delta`` > 0 returns the upper confidence bound instead, see the module docstring)."""

    def __init__(self, size: int, reduce_mean: ReduceMean | None = None, pessimistic_delta: float = 0.0):
        if size <= 0:
            raise ValueError(f"episode cost window size must be > 0, got {size}")
        if not 0.0 <= pessimistic_delta < 1.0:
            raise ValueError(f"pessimistic_delta must be in [0, 1), got {pessimistic_delta}")
        self.costs: deque[float] = deque(maxlen=size)
        self.reduce_mean = reduce_mean or _identity
        self.pessimistic_delta = pessimistic_delta

    def extend(self, episode_costs: Sequence[float]) -> None:
        self.costs.extend(float(c) for c in episode_costs)

    def mean(self) -> float:
        local = sum(self.costs) / len(self.costs) if self.costs else 0.0
        mean = float(self.reduce_mean(local))
        count = len(self.costs)
        if not self.pessimistic_delta or count < 2:
            return mean
        squares = float(self.reduce_mean(sum(c * c for c in self.costs) / count))
        variance = max(0.0, squares - mean * mean) * count / (count - 1)
        return mean + student_t_quantile(1.0 - self.pessimistic_delta, count - 1) * math.sqrt(variance / count)


class FixedMultiplier:
    """λ held constant at ``value`` (``ppo``: 0; ``reward-shaping``: the chosen λ)."""

    def __init__(self, value: float, cost_threshold: float = 0.0, episode_cost_window: int = 128,
                 reduce_mean: ReduceMean | None = None, pessimistic_delta: float = 0.0):
        if value < 0:
            raise ValueError(f"a fixed Lagrange multiplier must be >= 0, got {value}")
        self._value = float(value)
        self.cost_threshold = cost_threshold
        self.window = EpisodeCostWindow(episode_cost_window, reduce_mean, pessimistic_delta)

    @property
    def value(self) -> float:
        return self._value

    def update(self, episode_costs: Sequence[float]) -> float:
        """Record the costs of new episodes; returns Ĵ_c (λ does not change)."""
        self.window.extend(episode_costs)
        return self.window.mean()

    def state_dict(self) -> dict[str, Any]:
        return {"value": self._value, "window": list(self.window.costs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._value = float(state["value"])
        self.window.costs.clear()
        self.window.extend(state["window"])


class LagrangeMultiplier:
    """λ = exp(log λ), one SGD step on log λ per policy step (see the module docstring).

    ``lambda_max <= 0`` means no upper bound.
    """

    def __init__(self, cost_threshold: float = 0.0, lambda_init: float = 1.0, lambda_lr: float = 0.1,
                 lambda_max: float = 5.0, update_delay_steps: int = 0, episode_cost_window: int = 128,
                 reduce_mean: ReduceMean | None = None, pessimistic_delta: float = 0.0):
        if lambda_init <= 0:
            raise ValueError(f"lambda_init must be > 0 (λ = exp(log λ)), got {lambda_init}")
        self.cost_threshold = float(cost_threshold)
        self.log_lambda = math.log(lambda_init)
        self.lambda_lr = float(lambda_lr)
        self.log_lambda_max = math.log(lambda_max) if lambda_max > 0 else None
        self.update_delay_steps = int(update_delay_steps)
        self.window = EpisodeCostWindow(episode_cost_window, reduce_mean, pessimistic_delta)
        self.num_updates_seen = 0  # calls of update(), including the delayed ones

    @property
    def value(self) -> float:
        return math.exp(self.log_lambda)

    def update(self, episode_costs: Sequence[float]) -> float:
        """Add the new episodes' costs to the window and take one step on log λ; returns Ĵ_c."""
        self.window.extend(episode_costs)
        mean_cost = self.window.mean()
        if self.num_updates_seen >= self.update_delay_steps:
            # d loss_λ / d log λ = -(Ĵ_c - d) · exp(log λ); plain SGD (no momentum), as the reference
            gradient = -(mean_cost - self.cost_threshold) * math.exp(self.log_lambda)
            self.log_lambda -= self.lambda_lr * gradient
            if self.log_lambda_max is not None:
                self.log_lambda = min(self.log_lambda, self.log_lambda_max)
        self.num_updates_seen += 1
        return mean_cost

    def state_dict(self) -> dict[str, Any]:
        return {"log_lambda": self.log_lambda, "num_updates_seen": self.num_updates_seen,
                "window": list(self.window.costs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.log_lambda = float(state["log_lambda"])
        self.num_updates_seen = int(state["num_updates_seen"])
        self.window.costs.clear()
        self.window.extend(state["window"])


# ----------------------------------------------------------------------------------------------
# Several processes: what is shared, what each process keeps


def shared_state(multiplier) -> dict[str, Any]:
    """The multiplier's state without this process's own cost window: what every process must agree on."""
    return {key: value for key, value in multiplier.state_dict().items() if key != "window"}


def adopt_shared_state(multiplier, state: dict[str, Any]) -> None:
    """Take ``state`` (from :func:`shared_state` of rank 0) and keep this process's own cost window."""
    multiplier.load_state_dict({**state, "window": list(multiplier.window.costs)})


def redistribute_windows(windows: list[list[float]], num_processes: int, process_index: int) -> list[float]:
    """This process's cost window after a resume: its own if the number of processes is unchanged,
    else every saved window interleaved (oldest first) and dealt round-robin, which keeps the pooled
    mean Ĵ_c when the windows divide evenly."""
    if len(windows) == num_processes:
        return list(windows[process_index])
    depth = max((len(window) for window in windows), default=0)
    pooled = [window[len(window) - depth + i] for i in range(depth) for window in windows
              if len(window) - depth + i >= 0]
    return pooled[process_index::num_processes]
