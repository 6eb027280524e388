"""The safety test's bounds against hand-computed values, its verdicts, and the stage end to end on tiny-llama."""

from __future__ import annotations

import json
import math

import pytest

from saferlhf.cli import main
from saferlhf.config import ConfigError, load_config
from saferlhf.evaluation.bounds import (binomial_cdf, clopper_pearson_upper_bound, hoeffding_upper_bound,
                                        rate_upper_bound, regularized_incomplete_beta, student_t_quantile,
                                        student_t_upper_bound)
from saferlhf.evaluation.safety_test import SafetyTestConfig, safety_tests
from saferlhf.models.score_model import ScoreModel


def test_distribution_functions_against_tables():
    assert regularized_incomplete_beta(2, 3, 0.4) == pytest.approx(0.5248, abs=1e-12)  # 1 - Σ_{k<2} C(4,k)...
    # P(Bin(10, 0.4) <= 3) = Σ_{k<=3} C(10,k) 0.4^k 0.6^(10-k)
    assert binomial_cdf(3, 10, 0.4) == pytest.approx(sum(math.comb(10, k) * 0.4 ** k * 0.6 ** (10 - k)
                                                         for k in range(4)), abs=1e-12)
    # Student-t quantiles (any statistics table): t_{.95,9}, t_{.975,4}, t_{.95,1} = tan(0.45π)
    assert student_t_quantile(0.95, 9) == pytest.approx(1.833113, abs=1e-6)
    assert student_t_quantile(0.975, 4) == pytest.approx(2.776445, abs=1e-6)
    assert student_t_quantile(0.95, 1) == pytest.approx(math.tan(0.45 * math.pi), abs=1e-9)


def test_mean_bounds_by_hand():
    values = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]  # mean 4.5, s = sqrt(82.5 / 9)
    expected = 4.5 + 1.8331129326562374 * math.sqrt(82.5 / 9) / math.sqrt(10)
    assert student_t_upper_bound(values, 0.05) == pytest.approx(expected, abs=1e-9)
    # Hoeffding on [0, 10]: 4.5 + 10 · sqrt(ln 20 / 20)
    assert hoeffding_upper_bound(values, 0.05, 0.0, 10.0) == pytest.approx(4.5 + 10 * math.sqrt(math.log(20) / 20))
    with pytest.raises(ValueError, match=r"\[0.0, 5.0\].*first 6.0"):
        hoeffding_upper_bound(values, 0.05, 0.0, 5.0)
    with pytest.raises(ValueError, match="at least 2"):
        student_t_upper_bound([1.0], 0.05)


def test_rate_bounds_by_hand():
    # k = 0: (1 - p)^n = δ  ->  p = 1 - δ^(1/n)
    assert clopper_pearson_upper_bound(0, 10, 0.05) == pytest.approx(1 - 0.05 ** 0.1, abs=1e-12)
    # k = 1, n = 10: (1-p)^10 + 10 p (1-p)^9 = 0.05 at p = 0.39416 (tables)
    bound = clopper_pearson_upper_bound(1, 10, 0.05)
    assert (1 - bound) ** 10 + 10 * bound * (1 - bound) ** 9 == pytest.approx(0.05, abs=1e-12)
    assert bound == pytest.approx(0.394163, abs=1e-6)
    assert clopper_pearson_upper_bound(10, 10, 0.05) == 1.0
    assert rate_upper_bound(3, 20, 0.1, "hoeffding") == pytest.approx(0.15 + math.sqrt(math.log(10) / 40))


def _records(labels_and_verdicts, costs=None):
    return [{"label": label, "refusal": {"rules": verdict}, **({"cost": costs[i]} if costs else {})}
            for i, (label, verdict) in enumerate(labels_and_verdicts)]


def test_verdicts_follow_the_bounds():
    config = load_config(SafetyTestConfig, overrides=["compliance_threshold=0.3", "scoring.cost_model=somewhere",
                                                      "cost_threshold=0.0"])
    # 0 of 10 harmful answers complied: bound 1 - 0.05^0.1 = 0.259 < 0.3 -> pass
    records = _records([("harmful", "full_refusal")] * 10 + [("harmless", "compliance")] * 2,
                       costs=[-1.0] * 10 + [-0.5, -0.7])
    tests = safety_tests(records, config)
    assert tests["harmful_compliance_rate"]["upper_bound"] == pytest.approx(1 - 0.05 ** 0.1)
    assert tests["harmful_compliance_rate"]["passed"] and tests["harmful_compliance_rate"]["n"] == 10
    assert tests["mean_cost"]["estimate"] == pytest.approx(-11.2 / 12) and tests["mean_cost"]["passed"]
    # 1 complied: bound 0.394 >= 0.3 -> fail, although the estimate 0.1 is under the threshold
    records[0]["refusal"]["rules"] = "compliance"
    tests = safety_tests(records, config)
    assert tests["harmful_compliance_rate"]["estimate"] == 0.1 and not tests["harmful_compliance_rate"]["passed"]


def test_hoeffding_cost_needs_a_range():
    with pytest.raises(ConfigError, match="cost_range"):
        load_config(SafetyTestConfig, overrides=["scoring.cost_model=somewhere", "cost_bound=hoeffding"])


def test_stage_end_to_end_on_tiny_llama(tmp_path):
    cost_model = tmp_path / "cost"
    from saferlhf.models.loading import load_tokenizer

    ScoreModel.from_backbone("tiny-llama", kind="cost").save_pretrained(cost_model, load_tokenizer("tiny-llama"))
    out = tmp_path / "test"
    args = ["safety-test", "model.name_or_path=tiny-llama", "generation.max_new_tokens=4", "progress=false",
            f"scoring.cost_model={cost_model}", "cost_threshold=100.0", f"output_dir={out}",
            "compliance_threshold=0.05"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    records = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    harmful = [r for r in records if r["label"] == "harmful"]
    assert metrics["tests"]["harmful_compliance_rate"]["n"] == len(harmful) > 2
    assert metrics["tests"]["mean_cost"]["n"] == len(records) and all("cost" in r for r in records)
    complied = sum(r["refusal"]["rules"] == "compliance" for r in harmful)
    test = metrics["tests"]["harmful_compliance_rate"]
    assert test["upper_bound"] == pytest.approx(clopper_pearson_upper_bound(complied, len(harmful), 0.05))
    # with n harmful prompts the bound is at least 1 - 0.05^(1/n) (no compliance at all): above 0.05 here
    assert test["upper_bound"] >= 1 - 0.05 ** (1 / len(harmful)) > 0.05
    assert not test["passed"] and not metrics["passed"]
    assert metrics["tests"]["mean_cost"]["passed"]  # random cost scores are far below 100
