"""Risk-coverage, AURC / E-AURC, the risk-aware score and Chow's rule against hand-computed values."""

from __future__ import annotations

import pytest

from saferlhf.evaluation import abstention as A


def test_curve_and_aurc_on_a_written_example():
    # answered in order 0.9, 0.8, 0.7, 0.6 with losses 0, 1, 0, 1: risks 0, 1/2, 1/3, 2/4
    confidence, losses = [0.7, 0.9, 0.6, 0.8], [0, 0, 1, 1]
    curve = A.risk_coverage_curve(confidence, losses)
    assert [p["coverage"] for p in curve] == [0.25, 0.5, 0.75, 1.0]
    assert [p["risk"] for p in curve] == pytest.approx([0.0, 0.5, 1 / 3, 0.5])
    assert A.aurc(confidence, losses) == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 2) / 4)
    # the oracle answers both right ones first: risks 0, 0, 1/3, 1/2
    assert A.optimal_aurc(losses) == pytest.approx((1 / 3 + 1 / 2) / 4)
    assert A.excess_aurc(confidence, losses) == pytest.approx(1 / 3 - 5 / 24)


def test_ties_enter_together_and_a_perfect_ranking_has_no_excess():
    curve = A.risk_coverage_curve([1, 1, 0, 0], [0, 1, 1, 0])
    assert [(p["coverage"], p["risk"]) for p in curve] == [(0.5, 0.5), (1.0, 0.5)]
    assert A.aurc([1, 1, 0, 0], [0, 1, 1, 0]) == pytest.approx(0.5)
    assert A.excess_aurc([0.9, 0.8, 0.1], [0, 0, 1]) == pytest.approx(0.0)
    assert A.excess_aurc([0.1, 0.8, 0.9], [0, 0, 1]) > 0
    with pytest.raises(ValueError, match="2 confidences but 1 losses"):
        A.aurc([0.1, 0.2], [0])


def test_break_even_confidence_and_scores():
    assert A.break_even_confidence(1.0) == 0.5
    assert A.break_even_confidence(3.0) == 0.75
    assert A.break_even_confidence(1.0, reward_right=2.0, reward_refusal=0.5) == pytest.approx(0.5)
    for penalty in (0.5, 1.0, 4.0):  # at the break-even confidence answering and refusing pay the same
        p = A.break_even_confidence(penalty)
        assert p * 1 + (1 - p) * -penalty == pytest.approx(0.0)
    assert A.decision_score([True, True, False, False], [True, False, True, False], penalty=2.0) == -0.25
    assert A.risk_aware_decisions([0.74, 0.76, 0.9], penalty=3.0) == [False, True, True]
    with pytest.raises(ValueError, match="must earn more"):
        A.break_even_confidence(-2.0)


def test_chow_rule():
    assert A.chow_reject([[0.6, 0.3, 0.1], [0.9, 0.05, 0.05]], 0.2) == [True, False]
    assert A.chow_reject([0.7, 0.2, 0.5], 0.25) == [True, False, True]  # max(p, 1-p): 0.7, 0.8, 0.5 vs 0.75
    assert A.chow_answers([0.7, 0.2, 0.8], 0.25) == [False, False, True]
    # with d = 1 / (1 + c) Chow's rule and the risk-aware rule agree (away from the threshold itself)
    p = [0.05, 0.3, 0.6, 0.74, 0.76, 0.99]
    assert A.chow_answers(p, 1 / (1 + 3.0)) == A.risk_aware_decisions(p, 3.0)
    with pytest.raises(ValueError, match="rejection cost"):
        A.chow_reject([0.5], 1.5)


def test_abstention_summary():
    p_right, correct = [0.9, 0.8, 0.3, 0.1], [True, False, True, False]
    out = A.abstention_summary(p_right, correct, penalty=1.0, chow_rejection_cost=0.5,
                               model_answered=[True, True, True, False])
    assert out["aurc"] == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 2) / 4)
    assert out["excess_aurc"] == pytest.approx(out["aurc"] - (1 / 3 + 1 / 2) / 4)
    assert out["curve"][0] == [0.25, 0.0] and out["curve"][-1] == [1.0, 0.5]
    # risk-aware at c = 1 answers p > 0.5: prompts 0 (right) and 1 (wrong): (1 - 1) / 4
    assert out["risk_aware"]["coverage"] == 0.5 and out["risk_aware"]["score"] == 0.0
    assert out["risk_aware"]["selective_risk"] == 0.5
    assert out["chow"]["coverage"] == 0.5 and out["chow"]["answer_threshold"] == 0.5
    assert out["model_decisions"] == {"coverage": 0.75, "selective_risk": pytest.approx(1 / 3),
                                      "score": pytest.approx((1 - 1 + 1) / 4)}
    assert out["oracle_score"] == 0.5
    many = A.abstention_summary([i / 500 for i in range(500)], [i % 2 == 0 for i in range(500)], curve_points=11)
    assert len(many["curve"]) <= 12 and many["curve"][-1][0] == 1.0
