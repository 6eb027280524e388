"""Arena outcomes, the reference's safety table and Elo wiring on hand-made records."""

from __future__ import annotations

import pytest

from saferlhf.evaluation.arena import compare, refusal_correct, run_arena, safety_table, win_tie_loss


def _record(model, index, label, refusal, reward, cost, benchmark="set"):
    return {"model": model, "benchmark": benchmark, "index": index, "label": label, "prompt": f"p{index}",
            "response": "r", "refusal": {"rules": refusal}, "reward": reward, "cost": cost}


def _two_models():
    a = [_record("A", 0, "harmful", "full_refusal", 1.0, -1.0),   # A safe, B unsafe, A wins reward
         _record("A", 1, "harmful", "compliance", 0.0, 2.0),      # both unsafe, tie on reward
         _record("A", 2, "harmless", "compliance", 2.0, -0.5),    # both safe, A wins
         _record("A", 3, "harmless", "partial_refusal", -1.0, -0.2)]  # both safe, B wins
    b = [_record("B", 0, "harmful", "compliance", 0.5, 1.5),
         _record("B", 1, "harmful", "compliance", 0.0, 1.0),
         _record("B", 2, "harmless", "compliance", 1.0, -0.1),
         _record("B", 3, "harmless", "compliance", 0.5, -0.3)]
    return a, b


def test_compare_and_counts():
    assert compare(2.0, 1.0) == 1.0 and compare(1.0, 2.0) == 0.0 and compare(1.0, 1.0) == 0.5
    assert compare(1.0, 2.0, higher_is_better=False) == 1.0
    assert compare(1.0, 1.05, tie_margin=0.1) == 0.5
    assert compare(None, 1.0) is None
    counts = win_tie_loss([1.0, 1.0, 0.5, 0.0])
    assert counts == {"n": 4, "win": 2, "tie": 1, "loss": 1, "win_rate": 0.5, "tie_rate": 0.25, "loss_rate": 0.25,
                      "score": 0.625}


def test_refusal_correctness():
    assert refusal_correct(_record("A", 0, "harmful", "partial_refusal", 0, 0), "rules") == 1.0
    assert refusal_correct(_record("A", 0, "harmless", "full_refusal", 0, 0), "rules") == 0.0
    assert refusal_correct(_record("A", 0, "controversial", "full_refusal", 0, 0), "rules") is None


def test_safety_table_hand_computed():
    a, b = _two_models()
    table = safety_table(list(zip(a, b)))
    assert table["a_safe__b_unsafe"] == {"count": 1, "share": 0.25, "a_win_rate_by_reward": 1.0}
    assert table["a_unsafe__b_unsafe"] == {"count": 1, "share": 0.25, "a_win_rate_by_reward": 0.0}  # a tie
    assert table["a_safe__b_safe"] == {"count": 2, "share": 0.5, "a_win_rate_by_reward": 0.5}
    assert table["a_unsafe__b_safe"] == {"count": 0, "share": 0.0, "a_win_rate_by_reward": None}
    assert safety_table([({"cost": None}, {"cost": 1.0})]) is None


def test_run_arena_outcomes_and_elo():
    a, b = _two_models()
    arena = run_arena({"A": a, "B": b}, "rules", bootstrap_rounds=50, seed=1)
    pair = arena["pairs"]["A vs B"]
    assert pair["n_shared_prompts"] == 4
    assert (pair["reward"]["win"], pair["reward"]["tie"], pair["reward"]["loss"]) == (2, 1, 1)
    # cost: lower wins. A: -1 vs 1.5 win, 2 vs 1 loss, -0.5 vs -0.1 win, -0.2 vs -0.3 loss
    assert (pair["cost"]["win"], pair["cost"]["tie"], pair["cost"]["loss"]) == (2, 0, 2)
    # refusal: A right on 0 (refused harmful), both wrong on 1, both right on 2, A wrong on 3
    assert (pair["refusal"]["win"], pair["refusal"]["tie"], pair["refusal"]["loss"]) == (1, 2, 1)
    assert "judge_helpfulness" not in pair
    assert pair["safety_table"]["a_safe__b_unsafe"]["count"] == 1
    assert set(arena["elo"]) == {"reward", "cost", "refusal"}
    reward_elo = arena["elo"]["reward"]
    assert reward_elo["A"]["rating"] > reward_elo["B"]["rating"]  # 2.5 of 4 points
    assert arena["elo"]["cost"]["A"]["rating"] == pytest.approx(1000.0, abs=1e-6)


def test_run_arena_three_models_and_missing_prompts():
    a, b = _two_models()
    c = [dict(r, model="C", reward=r["reward"] + 10) for r in b[:2]]  # C only answered two prompts
    arena = run_arena({"A": a, "B": b, "C": c}, "rules", bootstrap_rounds=20)
    assert set(arena["pairs"]) == {"A vs B", "A vs C", "B vs C"}
    assert arena["pairs"]["A vs C"]["n_shared_prompts"] == 2
    assert arena["pairs"]["B vs C"]["reward"]["loss"] == 2
    ratings = arena["elo"]["reward"]
    assert ratings["C"]["rating"] == max(r["rating"] for r in ratings.values())
    with pytest.raises(ValueError, match="at least two models"):
        run_arena({"A": a}, "rules")
