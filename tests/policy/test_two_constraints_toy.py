"""Ground truth with two constraints (toy_task.py): C = n(h)/8 <= 0.3 and C_2 = n(h1, h2)/8 <= 0.05.

The first constraint alone is indifferent between h1..h4, so it keeps about half of its harmful
tokens in h1/h2 and violates the second (C_2 ≈ 0.15); with both constraints each multiplier enforces
its own cost and the allowed harm moves to h3/h4. Asserted over the second half of 50 steps (Lagrangian
methods satisfy a constraint on average): both costs at most their thresholds (+0.05 for C, whose
gradient-rule multiplier oscillates around d), and every λ_i rises exactly on the steps where its own
window cost Ĵ_ci exceeds d_i. (Measured, seeds 1 and 2: second-half C 0.30-0.33, C_2 0.006-0.010 with
both constraints; C_2 0.16-0.19 with the first alone, critic-free.) About 40 s on 2 cores.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from saferlhf.config import load_config
from saferlhf.policy.stage import PolicyStageConfig, run
from saferlhf.runio import read_log

from .toy_task import COST_THRESHOLD, STRICT_COST_THRESHOLD, toy_overrides

STEPS = 50
TOY = Path(__file__).resolve().parent / "toy_task.py"
CRITIC_FREE = ["rollout.prompts_per_step=16", "rollout.samples_per_prompt=4"]


def strict_constraint(**lagrange) -> str:
    settings = {"cost_threshold": STRICT_COST_THRESHOLD, "lambda_lr": 0.2, "episode_cost_window": 64, **lagrange}
    inner = ", ".join(f"{k}: {v}" for k, v in settings.items())
    return f"constraints=[{{name: strict, cost: {{path: '{TOY}:strict_cost'}}, lagrange: {{{inner}}}}}]"


def toy_run(toy_model, toy_prompts, output_dir, algorithm, *extra) -> list[dict]:
    overrides = toy_overrides(toy_model, toy_prompts, output_dir, algorithm, STEPS) + ["lagrange.lambda_lr=0.2", *extra]
    config = load_config(PolicyStageConfig, overrides=overrides)
    with contextlib.redirect_stderr(io.StringIO()):
        run(config)
    return read_log(output_dir / "log.jsonl")


def second_half_mean(lines: list[dict], key: str) -> float:
    half = lines[len(lines) // 2:]
    return sum(line[key] for line in half) / len(half)


def assert_each_lambda_follows_its_own_cost(lines: list[dict]) -> None:
    for name, threshold in (("cost", COST_THRESHOLD), ("strict", STRICT_COST_THRESHOLD)):
        rises = [later[f"lambda/{name}"] > earlier[f"lambda/{name}"] for earlier, later in zip(lines, lines[1:])]
        violated = [line[f"episode_cost/{name}"] > threshold for line in lines[1:]]
        assert rises == violated, f"λ[{name}] rose on other steps than those where its own cost exceeded {threshold}"
        assert any(rises) and not all(rises), f"λ[{name}] never rose or never fell"
    assert lines[0]["lambda"] == lines[0]["lambda/cost"] and lines[0]["cost"] == lines[0]["cost/cost"]


@pytest.mark.parametrize("algorithm,extra", [("ppo-lag", []), ("critic-free", CRITIC_FREE)],
                         ids=["ppo-lag", "critic-free"])
def test_two_constraints_hold_both_thresholds(toy_model, toy_prompts, tmp_path, algorithm, extra):
    lines = toy_run(toy_model, toy_prompts, tmp_path, algorithm, strict_constraint(), *extra)
    assert second_half_mean(lines, "cost/cost") <= COST_THRESHOLD + 0.05
    assert second_half_mean(lines, "cost/strict") <= STRICT_COST_THRESHOLD
    assert_each_lambda_follows_its_own_cost(lines)


def test_the_first_constraint_alone_violates_the_second(toy_model, toy_prompts, tmp_path):
    # the second cost is measured (λ fixed at 0) but not constrained
    lines = toy_run(toy_model, toy_prompts, tmp_path, "critic-free", strict_constraint(rule="fixed", lambda_init=0.0),
                    *CRITIC_FREE)
    assert second_half_mean(lines, "cost/cost") <= COST_THRESHOLD + 0.05
    assert second_half_mean(lines, "cost/strict") > STRICT_COST_THRESHOLD + 0.05
    assert {line["lambda/strict"] for line in lines} == {0.0}
