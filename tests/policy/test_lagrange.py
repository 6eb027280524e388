"""Lagrange multiplier rules against hand-computed values."""

import math

import pytest

from saferlhf.policy.lagrange import FixedMultiplier, LagrangeMultiplier
from saferlhf.policy.pid_lagrange import PIDLagrangeMultiplier


def test_gradient_rule_matches_hand_computation():
    multiplier = LagrangeMultiplier(cost_threshold=0.0, lambda_init=1.0, lambda_lr=0.1, lambda_max=5.0)
    assert multiplier.value == pytest.approx(1.0)
    # window [2, 0] -> Ĵ_c = 1; log λ = 0 + 0.1 * (1 - 0) * e^0 = 0.1
    assert multiplier.update([2.0, 0.0]) == pytest.approx(1.0)
    assert multiplier.log_lambda == pytest.approx(0.1)
    assert multiplier.value == pytest.approx(math.exp(0.1))
    # window [2, 0, -3] -> Ĵ_c = -1/3; log λ = 0.1 + 0.1 * (-1/3) * e^0.1
    assert multiplier.update([-3.0]) == pytest.approx(-1 / 3)
    assert multiplier.log_lambda == pytest.approx(0.1 - 0.1 / 3 * math.exp(0.1))


def test_gradient_rule_threshold_max_delay_and_window():
    multiplier = LagrangeMultiplier(cost_threshold=1.0, lambda_init=1.0, lambda_lr=1.0, lambda_max=1.5,
                                    update_delay_steps=2, episode_cost_window=2)
    multiplier.update([5.0])
    multiplier.update([5.0])
    assert multiplier.value == pytest.approx(1.0)  # delayed
    assert multiplier.update([5.0, 3.0, 7.0]) == pytest.approx(5.0)  # window keeps the last two: [3, 7]
    assert multiplier.value == pytest.approx(1.5)  # log λ = 4 clamped at log 1.5
    multiplier.update([0.0, 0.0])  # Ĵ_c - d = -1: log λ = log 1.5 - 1.5
    assert multiplier.log_lambda == pytest.approx(math.log(1.5) - 1.5)


def test_gradient_rule_averages_over_processes_and_round_trips_state():
    fake_other_process = lambda local: (local + 3.0) / 2  # noqa: E731  mean with a process whose Ĵ_c is 3
    multiplier = LagrangeMultiplier(lambda_init=2.0, lambda_lr=0.5, lambda_max=0.0, reduce_mean=fake_other_process)
    assert multiplier.update([1.0]) == pytest.approx(2.0)
    assert multiplier.log_lambda == pytest.approx(math.log(2.0) + 0.5 * 2.0 * 2.0)
    copy = LagrangeMultiplier(lambda_init=1.0, lambda_lr=0.5, lambda_max=0.0, reduce_mean=fake_other_process)
    copy.load_state_dict(multiplier.state_dict())
    assert copy.update([-4.0]) == multiplier.update([-4.0])
    assert copy.value == multiplier.value


def test_fixed_multiplier_reports_window_mean():
    multiplier = FixedMultiplier(0.7, episode_cost_window=3)
    assert multiplier.update([1.0, 2.0, 3.0, 4.0]) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        FixedMultiplier(-1.0)


@pytest.mark.parametrize("algorithm, rule, moves", [("reward-shaping", "gradient", False), ("ppo", "gradient", False),
                                                    ("critic-free", "fixed", False), ("ppo-lag", "fixed", False),
                                                    ("ppo-lag", "gradient", True), ("critic-free", "pid", True)])
def test_which_algorithms_and_rules_learn_lambda(algorithm, rule, moves):
    """The config decides whether λ is learned: the same costs above the threshold move it only then."""
    from saferlhf.policy.algorithms import ALGORITHM_SPECS
    from saferlhf.policy.config import LagrangeConfig
    from saferlhf.policy.constraints import make_multiplier

    multiplier = make_multiplier(ALGORITHM_SPECS[algorithm].multiplier,
                                 LagrangeConfig(rule=rule, lambda_init=0.7, cost_threshold=0.0))
    start = multiplier.value
    for _ in range(3):
        multiplier.update([1.0, 2.0])
    assert start == (0.0 if algorithm == "ppo" else 0.7)
    assert (multiplier.value != start) is moves


def test_pid_rule_matches_hand_computation():
    pid = PIDLagrangeMultiplier(cost_threshold=0.0, lambda_init=1.0, lambda_max=0.0, kp=0.5, ki=0.1, kd=1.0,
                                derivative_delay=2, proportional_ema=0.5, derivative_ema=0.5)
    # e=1: I=1.1, P=0.5, J=0.5, D=max(0, 0.5 - 0)=0.5 -> λ = 0.25 + 1.1 + 0.5
    pid.update([1.0])
    assert pid.value == pytest.approx(1.85)
    # window [1, -3]: e=-1: I=1.0, P=-0.25, J=-0.25, D=max(0, -0.25 - 0)=0 -> λ = -0.125 + 1.0
    pid.update([-3.0])
    assert pid.value == pytest.approx(0.875)
    # window [1, -3, 5]: e=1: I=1.1, P=0.375, J=0.375, D=max(0, 0.375 - 0.5)=0 -> λ = 0.1875 + 1.1
    pid.update([5.0])
    assert pid.value == pytest.approx(1.2875)
    restored = PIDLagrangeMultiplier(cost_threshold=0.0, lambda_init=1.0, lambda_max=0.0, kp=0.5, ki=0.1, kd=1.0,
                                     derivative_delay=2, proportional_ema=0.5, derivative_ema=0.5)
    restored.load_state_dict(pid.state_dict())
    assert restored.update([2.0]) == pid.update([2.0]) and restored.value == pid.value


def test_pid_rule_is_clipped_to_zero_and_lambda_max():
    pid = PIDLagrangeMultiplier(lambda_init=0.0, lambda_max=2.0, kp=10.0, ki=0.0, kd=0.0, proportional_ema=0.0)
    pid.update([-1.0])
    assert pid.value == 0.0
    pid.update([5.0, 5.0, 5.0])
    assert pid.value == 2.0


def test_shared_state_keeps_each_process_window_and_windows_are_redealt():
    from saferlhf.policy.lagrange import adopt_shared_state, redistribute_windows, shared_state

    rank0 = LagrangeMultiplier(lambda_init=1.0, lambda_lr=0.5)
    rank0.update([1.0, 1.0])
    rank1 = LagrangeMultiplier(lambda_init=1.0, lambda_lr=0.5)
    rank1.update([3.0])  # another window, another λ (no all-reduce here)
    assert "window" not in shared_state(rank0)
    adopt_shared_state(rank1, shared_state(rank0))
    assert rank1.value == rank0.value and list(rank1.window.costs) == [3.0]  # rank 0's λ, its own window
    windows = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]  # two processes' windows, oldest first
    assert redistribute_windows(windows, 2, 1) == [4.0, 5.0, 6.0]  # same number of processes: unchanged
    assert redistribute_windows(windows, 1, 0) == [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]  # one process: pooled
    assert redistribute_windows([[1.0, 2.0, 3.0, 4.0]], 2, 1) == [2.0, 4.0]  # dealt round-robin


def test_pessimistic_constraint_steps_on_the_upper_bound():
    # window 0..9: mean 4.5, s² = 82.5/9, t_{0.95, 9} = 1.833113 -> Ĵ_c = 4.5 + 1.833113·sqrt(82.5/9/10)
    bound = 4.5 + 1.8331129326562374 * math.sqrt(82.5 / 9 / 10)
    multiplier = LagrangeMultiplier(cost_threshold=5.0, lambda_init=1.0, lambda_lr=0.1, pessimistic_delta=0.05)
    assert multiplier.update([float(c) for c in range(10)]) == pytest.approx(bound)
    # the mean 4.5 satisfies d = 5 but the bound does not: λ rises, log λ = 0.1·(bound - 5)
    assert multiplier.log_lambda == pytest.approx(0.1 * (bound - 5.0)) and multiplier.value > 1.0
    # the PID rule reads the same bound
    pid = PIDLagrangeMultiplier(pessimistic_delta=0.05, reduce_mean=lambda value: value)
    assert pid.update([float(c) for c in range(10)]) == pytest.approx(bound)
    assert FixedMultiplier(0.0, pessimistic_delta=0.05).update([1.0]) == 1.0  # one episode: no bound yet
