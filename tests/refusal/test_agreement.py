"""Agreement metrics on a hand-made table."""

import pytest

from saferlhf.refusal.agreement import (
    INVALID, agreement_3way, agreement_binary, agreement_metrics, agreement_table, confusion, format_table,
)

C, F, P = "compliance", "full_refusal", "partial_refusal"
HUMAN = [C, F, P, C, F, P]
PREDICTED = [C, P, P, F, None, C]
# row by row:      3-way  binary
#  C  C            yes    yes
#  F  P            no     yes (both refusals)
#  P  P            yes    yes
#  C  F            no     no
#  F  None         no     no  (missing counts as disagreement)
#  P  C            no     no


def test_hand_computed_agreements():
    assert agreement_3way(HUMAN, PREDICTED) == pytest.approx(2 / 6)
    assert agreement_binary(HUMAN, PREDICTED) == pytest.approx(3 / 6)
    assert agreement_metrics(HUMAN, PREDICTED, prefix="x_") == {
        "x_binary_agreement": pytest.approx(0.5), "x_3way_agreement": pytest.approx(1 / 3), "x_invalid": 1,
    }


def test_confusion_table():
    table = confusion(HUMAN, PREDICTED)
    assert table[C] == {C: 1, F: 1, P: 0, INVALID: 0}
    assert table[F] == {C: 0, F: 0, P: 1, INVALID: 1}
    assert table[P] == {C: 1, F: 0, P: 1, INVALID: 0}
    assert sum(sum(row.values()) for row in table.values()) == len(HUMAN)


def test_agreement_table_per_group():
    groups = ["a", "a", "a", "b", "b", "b"]
    rows = agreement_table(HUMAN, {"judge": PREDICTED, "perfect": HUMAN}, groups)
    by_key = {(r["detector"], r["group"]): r for r in rows}
    assert by_key[("judge", "a")]["3way_agreement"] == pytest.approx(2 / 3)
    assert by_key[("judge", "a")]["binary_agreement"] == pytest.approx(1.0)
    assert by_key[("judge", "b")]["binary_agreement"] == pytest.approx(0.0)
    assert by_key[("judge", "all")]["n"] == 6 and by_key[("judge", "all")]["invalid"] == 1
    assert by_key[("perfect", "all")]["3way_agreement"] == 1.0
    assert "| judge | a | 3 | 1.000 | 0.667 | 0 |" in format_table(rows)


def test_errors():
    with pytest.raises(ValueError, match="2 human labels but 1"):
        agreement_3way([C, F], [C])
    with pytest.raises(ValueError, match="no rows"):
        agreement_binary([], [])
    with pytest.raises(ValueError, match="not one of"):
        confusion([C], ["refused"])
