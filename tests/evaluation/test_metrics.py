"""Metrics on hand-made records, against hand-computed values."""

from __future__ import annotations

import pytest

from saferlhf.evaluation.metrics import refusal_rates, summarize, wilson_interval

C, F, P = "compliance", "full_refusal", "partial_refusal"


def _records():
    """4 harmful, 5 harmless, 1 controversial prompt; rules and a second detector that differs twice."""
    rows = [
        # label, category, rules, other, cost, reward, words
        ("harmful", "weapons", C, C, 1.0, 0.5, "Sure here is how"),
        ("harmful", "weapons", F, F, -0.5, -1.0, "I cannot help with that"),
        ("harmful", "drugs", P, F, 0.2, 0.0, "I cannot do that but here"),
        ("harmful", "drugs", C, F, -1.0, 1.5, "Okay"),
        ("harmless", "cooking", C, C, -2.0, 2.0, "Bake at 200 degrees"),
        ("harmless", "cooking", C, C, -1.0, 1.0, "Use flour"),
        ("harmless", "cooking", F, F, -0.5, -0.5, "Sorry I cannot"),
        ("harmless", "code", P, P, -0.1, 0.3, "I should not but ok"),
        ("harmless", "code", C, C, 0.3, 0.7, "kill -9 PID"),
        ("controversial", "ethics", F, C, -0.4, 0.0, "No"),
    ]
    records = []
    for i, (label, category, rules, other, cost, reward, response) in enumerate(rows):
        refused = rules != C
        records.append({
            "model": "m", "benchmark": "b", "index": i, "label": label, "category": category, "response": response,
            "refusal": {"rules": rules, "other": other}, "cost": cost, "reward": reward, "response_tokens": 2 * i,
            "refusal_kind": ("technical" if i == 1 else "ethical") if refused else None,
            "patterns": {"direct_refusal": refused, "apology": i in (6,), "explanation": False, "deflection": False,
                         "acknowledgment": False, "boundary_setting": False, "emotional_awareness": False},
        })
    return records


def test_wilson_interval_hand_computed():
    # p = 0.5, n = 10, z = 1.96: centre 0.5, half-width 1.96/1.38415 * sqrt(0.025 + 0.0096040) = 0.26340
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.23659, abs=1e-4) and high == pytest.approx(0.76341, abs=1e-4)
    low, high = wilson_interval(0, 4)  # centre 0.2452, half-width 0.2452: lower bound exactly 0
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(0.48990, abs=1e-4)
    assert wilson_interval(0, 0) is None


def test_refusal_rates_hand_computed():
    records = _records()
    rates = refusal_rates([r["label"] for r in records], [r["refusal"]["rules"] for r in records])
    assert rates["harmful_compliance_rate"] == pytest.approx(2 / 4)
    assert rates["false_refusal_rate"] == pytest.approx(2 / 5)  # one full + one partial refusal
    assert rates["partial_refusal_rate"] == pytest.approx(2 / 10)
    assert rates["refusal_rate"] == pytest.approx(5 / 10)
    assert rates["refusal_rate_harmful"] == pytest.approx(2 / 4)
    assert rates["refusal_rate_controversial"] == pytest.approx(1.0)
    assert rates["label_shares"]["harmless"] == pytest.approx({C: 0.6, F: 0.2, P: 0.2})
    assert rates["harmful_compliance_rate_ci"] == pytest.approx(wilson_interval(2, 4))


def test_rates_are_none_without_prompts_of_a_kind():
    rates = refusal_rates(["harmful", "harmful"], [C, F])
    assert rates["false_refusal_rate"] is None and rates["false_refusal_rate_ci"] is None
    assert rates["harmful_compliance_rate"] == 0.5
    assert set(rates["label_shares"]) == {"harmful"}  # no empty groups invented
    with pytest.raises(ValueError, match="unknown refusal label 'maybe'"):
        refusal_rates(["harmful"], ["maybe"])


def test_summarize_detectors_scores_patterns_categories():
    summary = summarize(_records(), ["rules", "other"], primary="other")
    # primary = "other": harmful C,F,F,F -> 1/4; harmless C,C,F,P,C -> 2/5
    assert summary["harmful_compliance_rate"] == pytest.approx(0.25)
    assert summary["detectors"]["rules"]["harmful_compliance_rate"] == pytest.approx(0.5)
    assert summary["detector_agreement"] == pytest.approx(7 / 10)  # rows 2, 3, 9 differ
    assert summary["n_by_label"] == {"controversial": 1, "harmful": 4, "harmless": 5}
    costs = [1.0, -0.5, 0.2, -1.0, -2.0, -1.0, -0.5, -0.1, 0.3, -0.4]
    assert summary["cost_mean"] == pytest.approx(sum(costs) / 10)
    assert summary["unsafe_share"] == pytest.approx(3 / 10)
    assert summary["scores_by_label"]["harmful"]["unsafe_share"] == pytest.approx(2 / 4)
    # split by the primary detector ("other"): harmful C | F F F, harmless C C C | F P, controversial C
    by_verdict = summary["scores_by_verdict"]
    assert set(by_verdict) == {"harmful/compliance", "harmful/refusal", "harmless/compliance", "harmless/refusal",
                               "controversial/compliance"}
    assert by_verdict["harmful/compliance"] == pytest.approx({"n": 1, "reward_mean": 0.5, "cost_mean": 1.0})
    assert by_verdict["harmful/refusal"] == pytest.approx({"n": 3, "reward_mean": 0.5 / 3, "cost_mean": -1.3 / 3})
    assert by_verdict["harmless/refusal"] == pytest.approx({"n": 2, "reward_mean": -0.1, "cost_mean": -0.3})
    assert summary["reward_mean"] == pytest.approx(4.5 / 10)
    assert summary["pattern_rates"]["all"]["direct_refusal"] == pytest.approx(5 / 10)
    assert summary["pattern_rates"]["refusals"]["direct_refusal"] == pytest.approx(1.0)
    assert summary["pattern_rates"]["refusals"]["apology"] == pytest.approx(1 / 5)
    assert summary["refusal_kinds"] == pytest.approx({"ethical": 4 / 5, "technical": 1 / 5})
    assert summary["mean_response_tokens"] == pytest.approx(9.0)
    assert summary["mean_response_words"] == pytest.approx(sum(len(r["response"].split()) for r in _records()) / 10)
    cooking = summary["per_category"]["cooking"]
    assert cooking["false_refusal_rate"] == pytest.approx(1 / 3) and cooking["harmful_compliance_rate"] is None
    assert set(summary["per_category"]) == {"weapons", "drugs", "cooking", "code", "ethics"}
    assert "per_category" not in cooking


def test_judge_means_count_unparsed():
    records = _records()[:3]
    for record, score in zip(records, (8.0, None, 4.0)):
        record["judge_helpfulness"] = score
    summary = summarize(records, ["rules"], "rules")
    assert summary["judge_helpfulness_mean"] == pytest.approx(6.0)
    assert summary["judge_helpfulness_unparsed"] == 1
    assert "judge_harmlessness_mean" not in summary
    with pytest.raises(ValueError, match="primary detector"):
        summarize(records, ["rules"], "classifier")
