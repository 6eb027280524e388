"""The report's per-constraint figure: each episode cost against its threshold, each λ_i below it."""

from __future__ import annotations

import math

from saferlhf.report import write_report
from saferlhf.report.figures import constraints_figure, training_figure

from .test_report import _generations, _metrics


def two_constraint_log(steps: int = 6) -> list[dict]:
    """Lines as policy/constraints.py logs them: harm (fixed d = 0) and over_refusal (d tightened at step 3)."""
    rows = []
    for step in range(1, steps + 1):
        harm, over_refusal = 1.0 - 0.3 * step, 0.4 - 0.05 * step
        rows.append({"step": step, "reward": 0.1 * step, "lambda": 0.1 * step, "cost": harm,
                     "episode_cost": harm if step > 1 else math.nan,
                     "lambda/harm": 0.1 * step, "cost/harm": harm + 0.05, "episode_cost/harm": harm,
                     "cost_threshold/harm": 0.0,
                     "lambda/over_refusal": 0.02 * step, "cost/over_refusal": over_refusal,
                     "episode_cost/over_refusal": over_refusal,
                     "cost_threshold/over_refusal": 0.2 if step < 3 else 0.1})
    return rows


def lines_by_key(axis) -> dict:
    return {line.get_gid(): line for line in axis.get_lines()}


def test_two_constraints_two_columns_with_thresholds_and_lambdas():
    log = two_constraint_log()
    figure = constraints_figure({"run": log})
    assert len(figure.axes) == 4  # 2 rows x 2 columns
    top_harm, top_refusal, lambda_harm, lambda_refusal = figure.axes  # row-major
    assert top_harm.get_title() == "constraint harm" and top_refusal.get_title() == "constraint over_refusal"
    for axis, name in ((top_harm, "harm"), (top_refusal, "over_refusal")):
        lines = lines_by_key(axis)
        assert set(lines) == {f"cost/{name}", f"episode_cost/{name}", f"cost_threshold/{name}"}
        threshold = lines[f"cost_threshold/{name}"]
        assert list(threshold.get_ydata()) == [row[f"cost_threshold/{name}"] for row in log]
        assert list(threshold.get_xdata()) == [row["step"] for row in log]
        assert threshold.get_linestyle() == "--" and threshold.get_drawstyle() == "steps-post"
        assert lines[f"cost/{name}"].get_alpha() < 1  # the batch cost is the lighter curve
    assert list(lines_by_key(top_refusal)["cost_threshold/over_refusal"].get_ydata()) == [0.2, 0.2, 0.1, 0.1, 0.1, 0.1]
    for axis, name in ((lambda_harm, "harm"), (lambda_refusal, "over_refusal")):
        (line,) = axis.get_lines()
        assert line.get_gid() == f"lambda/{name}"
        assert list(line.get_ydata()) == [row[f"lambda/{name}"] for row in log]


def test_no_constraint_keys_no_figure():
    assert constraints_figure({"run": [{"step": 1, "reward": 0.5, "lambda": 0.3, "cost/mean": 0.1}]}) is None


def test_training_figure_leaves_the_per_constraint_keys_to_the_constraints_figure():
    figure = training_figure({"run": two_constraint_log()})
    labels = {line.get_label() for axis in figure.axes for line in axis.get_lines()}
    assert labels == {"reward", "lambda", "cost", "episode_cost"}  # the first constraint's, as before
    figure = training_figure({"run": [{"step": 1, "cost/mean": 0.1}]})  # "cost/<x>" without lambda/<x> stays
    assert {line.get_label() for axis in figure.axes for line in axis.get_lines()} == {"cost/mean"}


def test_report_includes_the_constraints_figure(tmp_path):
    generations = _generations()
    paths = write_report(tmp_path, _metrics(generations), generations, training_logs={"policy": two_constraint_log()})
    assert {"training.png", "constraints.png"} <= {p.name for p in paths["figures"]}
    assert "figures/constraints.png" in paths["markdown"].read_text()
    paths = write_report(tmp_path / "plain", _metrics(generations), generations,
                         training_logs={"policy": [{"step": 1, "reward": 0.5, "lambda": 0.2}]})
    assert "constraints.png" not in {p.name for p in paths["figures"]}
