"""Elo on hand-made outcomes, against hand-computed ratings."""

from __future__ import annotations

import math

import pytest

from saferlhf.evaluation.elo import bradley_terry, elo_with_intervals, online_elo


def test_bradley_terry_two_players_three_to_one():
    # P(A beats B) = 3/4 at the optimum: gap = 400·log10(3) = 190.849, centred on 1000
    games = [("A", "B", 1), ("A", "B", 1), ("B", "A", 0), ("A", "B", 0)]
    ratings = bradley_terry(games, l2=0.0)
    assert ratings["A"] == pytest.approx(1000 + 200 * math.log10(3), abs=1e-6)
    assert ratings["B"] == pytest.approx(1000 - 200 * math.log10(3), abs=1e-6)
    assert ratings["A"] - ratings["B"] == pytest.approx(190.849, abs=1e-3)


def test_bradley_terry_chain_and_ties():
    # A beats B 2 of 3, B beats C 2 of 3, A and C never meet: each gap is 400·log10(2) = 120.412
    games = [("A", "B", 1), ("A", "B", 1), ("A", "B", 0), ("B", "C", 1), ("C", "B", 0), ("B", "C", 0)]
    ratings = bradley_terry(games, l2=0.0)
    assert ratings["B"] == pytest.approx(1000.0, abs=1e-6)
    assert ratings["A"] == pytest.approx(1000 + 400 * math.log10(2), abs=1e-6)
    assert ratings["C"] == pytest.approx(1000 - 400 * math.log10(2), abs=1e-6)
    # a win, a loss and two ties: equal; a cycle A > B > C > A: equal
    assert bradley_terry([("A", "B", 1), ("A", "B", 0.5), ("B", "A", 0.5), ("B", "A", 1)], l2=0.0) == \
        pytest.approx({"A": 1000.0, "B": 1000.0})
    assert bradley_terry([("A", "B", 1), ("B", "C", 1), ("C", "A", 1)], l2=0.0) == \
        pytest.approx({"A": 1000.0, "B": 1000.0, "C": 1000.0})
    # one win and one tie = 1.5 of 2 games: same odds (3:1) as the 3-to-1 record
    half = bradley_terry([("A", "B", 1), ("A", "B", 0.5)], l2=0.0)
    assert half["A"] - half["B"] == pytest.approx(400 * math.log10(3), abs=1e-6)


def test_bradley_terry_prior_keeps_undefeated_finite():
    games = [("A", "B", 1)] * 20
    ratings = bradley_terry(games)  # l2 = 0.01
    assert math.isfinite(ratings["A"]) and 400 < ratings["A"] - ratings["B"] < 3000
    # the prior barely moves a balanced record: 3:1 over 40 games stays within 2 points of 190.85
    balanced = bradley_terry([("A", "B", 1)] * 30 + [("A", "B", 0)] * 10)
    assert balanced["A"] - balanced["B"] == pytest.approx(190.849, abs=2.0)


def test_online_elo_hand_computed():
    # game 1: E_A = 0.5, A wins: 1000 + 4·0.5 = 1002, B = 998
    # game 2: E_A = 1 / (1 + 10^(-4/400)) = 0.505756, B wins: A = 1002 − 4·0.505756 = 999.976977
    ratings = online_elo([("A", "B", 1), ("B", "A", 1)], k=4.0)
    assert ratings["A"] == pytest.approx(999.976977, abs=1e-5)
    assert ratings["B"] == pytest.approx(1000.023023, abs=1e-5)
    assert online_elo([("A", "B", 1)], k=32.0) == pytest.approx({"A": 1016.0, "B": 984.0})


def test_bootstrap_intervals_are_seeded_and_shrink_with_more_games():
    few = [("A", "B", 1)] * 6 + [("A", "B", 0)] * 2
    many = few * 10
    first = elo_with_intervals(few, rounds=200, seed=3, l2=0.01)
    again = elo_with_intervals(few, rounds=200, seed=3, l2=0.01)
    assert first == again
    wide = first["A"]["ci_high"] - first["A"]["ci_low"]
    narrow_result = elo_with_intervals(many, rounds=200, seed=3, l2=0.01)
    narrow = narrow_result["A"]["ci_high"] - narrow_result["A"]["ci_low"]
    assert narrow < wide / 2
    for table in (first, narrow_result):
        assert table["A"]["ci_low"] <= table["A"]["rating"] <= table["A"]["ci_high"]
    assert first["A"]["games"] == 8
    online = elo_with_intervals(many, method="online", rounds=50, seed=0)
    assert online["A"]["rating"] > 1000 > online["B"]["rating"]


def test_invalid_games_are_rejected():
    with pytest.raises(ValueError, match="score 2"):
        bradley_terry([("A", "B", 2)])
    with pytest.raises(ValueError, match="not in players"):
        bradley_terry([("A", "C", 1)], players=["A", "B"])
    with pytest.raises(ValueError, match="unknown Elo method"):
        elo_with_intervals([("A", "B", 1)], method="glicko")
    empty = elo_with_intervals([], players=["A", "B"])
    assert empty["A"] == {"rating": None, "ci_low": None, "ci_high": None, "games": 0}
