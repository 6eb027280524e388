"""PID Lagrangian: λ from a PID controller on the constraint violation (Stooke et al. 2020).

Stooke, Achiam, Abbeel, "Responsive Safety in Reinforcement Learning by PID Lagrangian Methods",
ICML 2020 (arXiv 2007.03964), Algorithm 2; the same rule as OmniSafe ``common/pid_lagrange.py``.
Plain gradient ascent on λ is an integral-only controller, so λ lags behind the cost and
overshoots, which makes the cost oscillate around the threshold. Adding a proportional term (reacts
to the current violation) and a derivative term (reacts to the cost rising) damps the oscillation.
With e_k = Ĵ_c,k - d (Ĵ_c = mean of the episode-cost window, averaged over processes):

    I_k  = max(0, I_{k-1} + K_i · e_k)                         (I_0 = λ_init)
    P_k  = α_p · P_{k-1} + (1 - α_p) · e_k                      (EMA of the violation)
    J_k  = α_d · J_{k-1} + (1 - α_d) · Ĵ_c,k                    (EMA of the cost)
    D_k  = max(0, J_k - J_{k - delay})                          (only a *rising* cost counts)
    λ_k  = min(λ_max, max(0, K_p · P_k + I_k + K_d · D_k))

``λ_max <= 0`` means no upper bound. Unlike OmniSafe, λ is λ_init (not 0) before the first update
and λ_max always applies. Same interface as
:class:`saferlhf.policy.lagrange.LagrangeMultiplier`.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Sequence

from saferlhf.policy.lagrange import EpisodeCostWindow, ReduceMean


class PIDLagrangeMultiplier:
    """λ_k = clip(K_p·P_k + I_k + K_d·D_k, 0, λ_max) (see the module docstring)."""

    def __init__(self, cost_threshold: float = 0.0, lambda_init: float = 1.0, lambda_max: float = 5.0,
                 kp: float = 0.1, ki: float = 0.01, kd: float = 0.01, derivative_delay: int = 10,
                 proportional_ema: float = 0.95, derivative_ema: float = 0.95, update_delay_steps: int = 0,
                 episode_cost_window: int = 128, reduce_mean: ReduceMean | None = None,
                 pessimistic_delta: float = 0.0):
        if lambda_init < 0:
            raise ValueError(f"lambda_init must be >= 0, got {lambda_init}")
        if derivative_delay < 1:
            raise ValueError(f"derivative_delay must be >= 1, got {derivative_delay}")
        self.cost_threshold = float(cost_threshold)
        self.lambda_max = float(lambda_max)
        self.kp, self.ki, self.kd = float(kp), float(ki), float(kd)
        self.proportional_ema, self.derivative_ema = float(proportional_ema), float(derivative_ema)
        self.update_delay_steps = int(update_delay_steps)
        self.window = EpisodeCostWindow(episode_cost_window, reduce_mean, pessimistic_delta)
        self.integral = float(lambda_init)
        self.proportional = 0.0
        self.cost_ema = 0.0
        # J_{k-delay}, ..., J_{k-1}: the oldest entry is the one the derivative compares against
        self.cost_ema_history: deque[float] = deque([0.0], maxlen=derivative_delay)
        self._value = float(lambda_init)
        self.num_updates_seen = 0

    @property
    def value(self) -> float:
        return self._value

    def update(self, episode_costs: Sequence[float]) -> float:
        """Add the new episodes' costs to the window and run one controller step; returns Ĵ_c."""
        self.window.extend(episode_costs)
        mean_cost = self.window.mean()
        if self.num_updates_seen >= self.update_delay_steps:
            error = mean_cost - self.cost_threshold
            self.integral = max(0.0, self.integral + self.ki * error)
            self.proportional = self.proportional_ema * self.proportional + (1 - self.proportional_ema) * error
            self.cost_ema = self.derivative_ema * self.cost_ema + (1 - self.derivative_ema) * mean_cost
            derivative = max(0.0, self.cost_ema - self.cost_ema_history[0])
            value = max(0.0, self.kp * self.proportional + self.integral + self.kd * derivative)
            self._value = min(value, self.lambda_max) if self.lambda_max > 0 else value
            self.cost_ema_history.append(self.cost_ema)
        self.num_updates_seen += 1
        return mean_cost

    def state_dict(self) -> dict[str, Any]:
        return {"integral": self.integral, "proportional": self.proportional, "cost_ema": self.cost_ema,
                "cost_ema_history": list(self.cost_ema_history), "value": self._value,
                "num_updates_seen": self.num_updates_seen, "window": list(self.window.costs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.integral = float(state["integral"])
        self.proportional = float(state["proportional"])
        self.cost_ema = float(state["cost_ema"])
        self.cost_ema_history.clear()
        self.cost_ema_history.extend(float(v) for v in state["cost_ema_history"])
        self._value = float(state["value"])
        self.num_updates_seen = int(state["num_updates_seen"])
        self.window.costs.clear()
        self.window.extend(state["window"])
