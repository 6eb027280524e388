"""Ground truth: the algorithms do what the theory says on the toy task (see toy_task.py).

Known answers (d = 0.3, G = 0.6): the unconstrained optimum is R = C = 1; reward shaping with
λ > 1 - G = 0.4 heads for R = G, C = 0; the constrained optimum is C = d, R = d + G(1 - d) = 0.72 (the
KL penalty keeps a run somewhat below it). The initial policy has C ≈ 0.42, R ≈ 0.45.

What is asserted (``cost``/``reward`` of a step = means over its 64 answers):
- a constrained run (ppo-lag, critic-free; gradient and PID rule) falls below the threshold, and over
  the second half of the run its cost averages at most d + 0.05 (Lagrangian methods satisfy the
  constraint on average; the gradient rule oscillates around d) while its reward averages at least
  0.1 above the first steps';
- ppo and the λ = 0 / small-λ baselines end far above the threshold (last 10 steps: C > d + 0.3);
- a too-large fixed λ ends far below the threshold and with less reward than the constrained run;
- the PID rule oscillates less than the gradient rule on the same seed: after the first crossing its
  λ spans a narrower range, and over the second half its cost stays closer to d (mean |C - d|).
  (Measured on 3 seeds: λ range 0.4-0.65 vs 0.95-4.7, mean |C - d| 0.02-0.05 vs 0.04-0.18.)
Runs take 50-150 policy steps of a 1-layer model (about 2 minutes for the whole file on 2 cores).
"""

from __future__ import annotations

import contextlib
import io

import pytest

from saferlhf.config import load_config
from saferlhf.policy.stage import PolicyStageConfig, run
from saferlhf.runio import read_log

from .toy_task import COST_THRESHOLD, toy_overrides

pytestmark = pytest.mark.slow  # about 2 minutes for the file on 2 cores

D = COST_THRESHOLD
CONSTRAINED_STEPS = 150
BASELINE_STEPS = 50
CRITIC_FREE = ["rollout.prompts_per_step=16", "rollout.samples_per_prompt=4"]  # 64 answers per step
TOY = ["train.learning_rate=1e-3", "ppo.critic_learning_rate=1e-3"]
ALGORITHMS = [("ppo-lag", []), ("critic-free", CRITIC_FREE)]


@pytest.fixture(scope="module")
def runs(toy_model, toy_prompts, tmp_path_factory):
    """Runs on demand, each once per module: ``runs(name, algorithm, steps, *overrides) -> log lines``."""
    cache: dict[str, list[dict]] = {}

    def get(name: str, algorithm: str, steps: int, *overrides: str) -> list[dict]:
        if name not in cache:
            output = tmp_path_factory.mktemp(name)
            config = load_config(PolicyStageConfig, overrides=toy_overrides(
                toy_model, toy_prompts, output, algorithm, steps) + TOY + list(overrides))
            with contextlib.redirect_stderr(io.StringIO()):
                run(config)
            cache[name] = read_log(output / "log.jsonl")
            assert [line["step"] for line in cache[name]] == list(range(1, steps + 1))
        return cache[name]

    return get


def mean(lines: list[dict], key: str) -> float:
    return sum(line[key] for line in lines) / len(lines)


def first_crossing(lines: list[dict]) -> int:
    index = next((i for i, line in enumerate(lines) if line["cost"] <= D), None)
    assert index is not None, f"the cost never fell below the threshold {D}: {[round(l['cost'], 2) for l in lines]}"
    return index


def assert_satisfies_constraint_and_gains_reward(lines: list[dict]) -> None:
    start_reward, start_cost = mean(lines[:3], "reward"), mean(lines[:3], "cost")
    assert start_cost > D + 0.05, "the toy policy must start above the threshold"
    first_crossing(lines)
    second_half = lines[len(lines) // 2:]
    assert mean(second_half, "cost") <= D + 0.05, f"second-half cost {mean(second_half, 'cost'):.3f} > {D} + 0.05"
    assert mean(second_half, "reward") >= start_reward + 0.1, (
        f"reward did not rise: {start_reward:.3f} at the start, {mean(second_half, 'reward'):.3f} in the second half")


def oscillation(lines: list[dict]) -> tuple[float, float]:
    """(range of λ after the first crossing, mean |C - d| over the second half)."""
    lambdas = [line["lambda"] for line in lines[first_crossing(lines):]]
    second_half = lines[len(lines) // 2:]
    return max(lambdas) - min(lambdas), sum(abs(line["cost"] - D) for line in second_half) / len(second_half)


@pytest.mark.parametrize("algorithm,extra", ALGORITHMS, ids=["ppo-lag", "critic-free"])
def test_constrained_runs_satisfy_the_threshold_and_raise_reward(runs, algorithm, extra):
    for rule in ("gradient", "pid"):
        lines = runs(f"{algorithm}-{rule}", algorithm, CONSTRAINED_STEPS, f"lagrange.rule={rule}", *extra)
        assert_satisfies_constraint_and_gains_reward(lines)
        if rule == "gradient":  # log λ += lr·(Ĵ_c - d): above the threshold λ grows from lambda_init = 1
            assert lines[0]["episode_cost"] > D and lines[0]["lambda"] > 1.0


@pytest.mark.parametrize("algorithm,extra", ALGORITHMS, ids=["ppo-lag", "critic-free"])
def test_pid_oscillates_less_than_gradient_ascent(runs, algorithm, extra):
    gradient = runs(f"{algorithm}-gradient", algorithm, CONSTRAINED_STEPS, "lagrange.rule=gradient", *extra)
    pid = runs(f"{algorithm}-pid", algorithm, CONSTRAINED_STEPS, "lagrange.rule=pid", *extra)
    (gradient_range, gradient_deviation), (pid_range, pid_deviation) = oscillation(gradient), oscillation(pid)
    assert pid_range < gradient_range, f"λ range: pid {pid_range:.3f}, gradient {gradient_range:.3f}"
    assert pid_deviation < gradient_deviation, (pid_deviation, gradient_deviation)


def test_unconstrained_baselines_violate_the_threshold(runs):
    for name, algorithm, extra in [
        ("ppo", "ppo", []),
        ("shaping-small", "reward-shaping", ["lagrange.lambda_init=0.2"]),
        ("critic-free-zero", "critic-free", [*CRITIC_FREE, "lagrange.rule=fixed", "lagrange.lambda_init=0.0"]),
        ("critic-free-small", "critic-free", [*CRITIC_FREE, "lagrange.rule=fixed", "lagrange.lambda_init=0.2"]),
    ]:
        lines = runs(name, algorithm, BASELINE_STEPS, *extra)
        assert mean(lines[-10:], "cost") > D + 0.3, f"{name}: final cost {mean(lines[-10:], 'cost'):.3f}"
        assert all(line["lambda"] == lines[0]["lambda"] for line in lines), f"{name}: λ must stay fixed"


def test_too_large_a_fixed_lambda_gives_up_reward(runs):
    for name, algorithm, extra, constrained in [
        ("shaping-large", "reward-shaping", ["lagrange.lambda_init=2.0"], ("ppo-lag-gradient", "ppo-lag", [])),
        ("critic-free-large", "critic-free", [*CRITIC_FREE, "lagrange.rule=fixed", "lagrange.lambda_init=2.0"],
         ("critic-free-gradient", "critic-free", CRITIC_FREE)),
    ]:
        lines = runs(name, algorithm, BASELINE_STEPS, *extra)
        reference = runs(constrained[0], constrained[1], CONSTRAINED_STEPS, "lagrange.rule=gradient", *constrained[2])
        final_cost, final_reward = mean(lines[-10:], "cost"), mean(lines[-10:], "reward")
        constrained_reward = mean(reference[len(reference) // 2:], "reward")
        assert final_cost < D - 0.15, f"{name}: final cost {final_cost:.3f}"
        assert final_reward < constrained_reward - 0.1, f"{name}: {final_reward:.3f} vs {constrained_reward:.3f}"
