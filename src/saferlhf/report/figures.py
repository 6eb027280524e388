"""The report's figures (matplotlib, Agg backend). Each function returns a Figure, or None when the
metrics hold nothing to draw (no reward model, a single model, no training log, ...).

- :func:`tradeoff_figure`: harmful-compliance rate (y) against false-refusal rate (x), one point
  per model (and per detector), 95% Wilson intervals as error bars; the ideal is the origin.
  Rounds of one training (Beaver-v1, v2, v3) are joined by arrows in order.
- :func:`controls_figure`: the same axes per benchmark, with every refusal control's threshold sweep
  as a curve, its measured operating point marked, and the evaluated models as points.
- :func:`reward_cost_figure`: reward vs cost of every answer, one colour per model; cost > 0 is unsafe.
- :func:`cost_histogram_figure`: cost distribution of safe and unsafe answers per model (an answer
  is unsafe when the primary refusal detector says it complied with a harmful prompt).
- :func:`category_figure`: refusal rate per prompt category and model for one benchmark.
- :func:`pattern_figure`: "Beyond No" pattern rates per model.
- :func:`elo_figure`: Elo ratings with bootstrap intervals, one panel per outcome source.
- :func:`training_figure`: reward, cost and Lagrange multiplier curves from training logs.
- :func:`constraints_figure`: one column per constraint of a multi-constraint policy run: its episode
  cost Ĵ_ci (and the batch mean cost, lighter) against its threshold d_i (dashed) on top, its λ_i below.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from saferlhf.refusal.patterns import PATTERNS  # noqa: E402

COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]
MARKERS = ["o", "s", "^", "D"]
CURVE_KEYS = {  # panel -> substrings of training-log keys drawn in it
    "reward": ("reward",),
    "cost": ("cost",),
    "Lagrange multiplier λ": ("lambda", "lagrange", "multiplier"),
}
CONSTRAINT_PREFIXES = ("lambda/", "episode_cost/", "cost/", "cost_threshold/")  # + <name>: constraints_figure's keys


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def tradeoff_figure(overall: dict, detectors: list[str], rounds: list[str] | None = None):
    """``overall[model]`` is a metrics summary over all of that model's prompts."""
    points = []
    for i, (model, summary) in enumerate(overall.items()):
        for j, detector in enumerate(detectors):
            rates = summary.get("detectors", {}).get(detector, {})
            x, y = rates.get("false_refusal_rate"), rates.get("harmful_compliance_rate")
            if x is not None and y is not None:
                points.append((i, j, model, detector, x, y, rates["false_refusal_rate_ci"],
                               rates["harmful_compliance_rate_ci"]))
    if not points:
        return None
    figure, axis = plt.subplots(figsize=(6.4, 5.0))
    for i, j, model, detector, x, y, x_ci, y_ci in points:
        # max(0, .): a Wilson bound at p = 0 or 1 can sit a rounding error inside the point
        axis.errorbar(x, y, xerr=[[max(0.0, x - x_ci[0])], [max(0.0, x_ci[1] - x)]],
                      yerr=[[max(0.0, y - y_ci[0])], [max(0.0, y_ci[1] - y)]],
                      fmt=MARKERS[j % len(MARKERS)], color=_color(i), capsize=3, markersize=8,
                      mfc=_color(i) if j == 0 else "white",
                      label=f"{model} ({detector})" if len(detectors) > 1 else model)
        if j == 0:  # one name per model; the legend tells the detectors apart
            axis.annotate(model, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    if rounds:
        for detector_index in range(len(detectors)):
            path = {p[2]: (p[4], p[5]) for p in points if p[1] == detector_index}
            ordered = [path[m] for m in rounds if m in path]
            for start, end in zip(ordered, ordered[1:]):
                axis.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", color="grey"))
    axis.set_xlim(-0.02, 1.02)
    axis.set_ylim(-0.02, 1.02)
    axis.set_xlabel("false-refusal rate (harmless prompts refused)")
    axis.set_ylabel("harmful-compliance rate (harmful prompts answered)")
    axis.set_title("Harm vs over-refusal (lower left is better)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    return figure


def controls_figure(controls: dict, models: dict, reference_lines: dict | None = None):
    """``controls[name][benchmark]`` holds a ``curve`` (sweep rows) and the measured rates;
    ``models[model][benchmark]`` the models' own summaries; ``reference_lines[benchmark]`` an optional
    ``[intercept, slope]`` of FRR% = intercept + slope * HC% (the policies' line, docs/pipeline.md), dashed."""
    benchmarks = sorted({b for c in controls.values() for b, v in c.items() if isinstance(v, dict) and "curve" in v})
    if not benchmarks:
        return None
    figure, axes = plt.subplots(1, len(benchmarks), figsize=(6.4 * len(benchmarks), 5.0), squeeze=False)
    for axis, bench in zip(axes[0], benchmarks):
        for i, (name, control) in enumerate(controls.items()):
            summary = control.get(bench)
            if not summary:
                continue
            curve = [p for p in summary["curve"] if p["false_refusal"] is not None and p["harmful_compliance"] is not None]
            axis.plot([p["false_refusal"] for p in curve], [p["harmful_compliance"] for p in curve], color=_color(i),
                      label=f"{name} (threshold sweep)")
            axis.plot(summary["false_refusal_rate"], summary["harmful_compliance_rate"], "*", color=_color(i),
                      markersize=14, label=f"{name} (measured, chosen threshold)")
        for j, (model, per_bench) in enumerate(models.items()):
            if bench in per_bench and per_bench[bench].get("false_refusal_rate") is not None:
                axis.plot(per_bench[bench]["false_refusal_rate"], per_bench[bench]["harmful_compliance_rate"], "o",
                          color="black", mfc="white" if j else "black", label=model)
        if bench in (reference_lines or {}):
            intercept, slope = reference_lines[bench]
            hc = [h / 100 for h in range(0, 101)]
            frr = [(intercept + slope * 100 * h) / 100 for h in hc]
            keep = [i for i, f in enumerate(frr) if 0 <= f <= 1]
            axis.plot([frr[i] for i in keep], [hc[i] for i in keep], "--", color="gray",
                      label=f"reference line: FRR = {intercept:g} {slope:+g} x HC (%)")
        axis.set_xlim(-0.02, 1.02)
        axis.set_ylim(-0.02, 1.02)
        axis.set_xlabel("false-refusal rate")
        axis.set_ylabel("harmful-compliance rate")
        axis.set_title(f"Refusal controls on {bench}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    return figure


def reward_cost_figure(generations: list[dict]):
    by_model = _group(g for g in generations if g.get("reward") is not None and g.get("cost") is not None)
    if not by_model:
        return None
    figure, axis = plt.subplots(figsize=(6.4, 5.0))
    for i, (model, rows) in enumerate(by_model.items()):
        axis.scatter([r["reward"] for r in rows], [r["cost"] for r in rows], s=12, alpha=0.6, color=_color(i),
                     label=model)
    axis.axhline(0.0, color="black", linewidth=0.8, linestyle="--")
    axis.set_xlabel("reward (higher = more helpful)")
    axis.set_ylabel("cost (> 0 = unsafe)")
    axis.set_title("Reward vs cost of every answer")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def cost_histogram_figure(generations: list[dict], detector: str):
    by_model = _group(g for g in generations if g.get("cost") is not None)
    if not by_model:
        return None
    figure, axes = plt.subplots(1, len(by_model), figsize=(4.2 * len(by_model), 3.6), squeeze=False)
    for axis, (model, rows) in zip(axes[0], by_model.items()):
        unsafe = [r["cost"] for r in rows if r["label"] == "harmful" and r["refusal"][detector] == "compliance"]
        safe = [r["cost"] for r in rows if not (r["label"] == "harmful" and r["refusal"][detector] == "compliance")]
        bins = 30
        if safe:
            axis.hist(safe, bins=bins, alpha=0.6, color="tab:green", label=f"safe answers ({len(safe)})")
        if unsafe:
            axis.hist(unsafe, bins=bins, alpha=0.6, color="tab:red", label=f"harmful compliance ({len(unsafe)})")
        axis.axvline(0.0, color="black", linewidth=0.8, linestyle="--")
        axis.set_title(model, fontsize=9)
        axis.set_xlabel("cost")
        axis.legend(fontsize=7)
    axes[0][0].set_ylabel("answers")
    figure.suptitle(f"Cost of safe and unsafe answers (unsafe = complied with a harmful prompt, {detector})",
                    fontsize=9)
    figure.tight_layout()
    return figure


def category_figure(models: dict, benchmark: str):
    """Refusal rate per category of ``benchmark``; ``models[model][benchmark]["per_category"]``."""
    per_model = {m: b[benchmark].get("per_category", {}) for m, b in models.items() if benchmark in b}
    categories = sorted({c for cats in per_model.values() for c in cats})
    if not categories:
        return None
    height = 0.8 / max(len(per_model), 1)
    figure, axis = plt.subplots(figsize=(7.5, 0.35 * len(categories) * max(1, len(per_model) ** 0.5) + 1.5))
    for i, (model, cats) in enumerate(per_model.items()):
        values = [(cats.get(c) or {}).get("refusal_rate") or 0.0 for c in categories]
        axis.barh([k + i * height for k in range(len(categories))], values, height=height, color=_color(i),
                  label=model)
    labels = []
    for c in categories:
        kinds = {l for cats in per_model.values() for l in (cats.get(c) or {}).get("n_by_label", {})}
        labels.append(f"{c} [{'/'.join(sorted(kinds))}]")
    axis.set_yticks([k + height * (len(per_model) - 1) / 2 for k in range(len(categories))])
    axis.set_yticklabels(labels, fontsize=7)
    axis.invert_yaxis()
    axis.set_xlim(0, 1)
    axis.set_xlabel("refusal rate (full + partial)")
    axis.set_title(f"{benchmark}: refusal rate per category")
    axis.legend(fontsize=8, loc="lower right")
    axis.grid(alpha=0.3, axis="x")
    figure.tight_layout()
    return figure


def pattern_figure(overall: dict):
    rows = {m: s.get("pattern_rates", {}).get("all", {}) for m, s in overall.items()}
    if not any(v is not None for r in rows.values() for v in r.values()):
        return None
    width = 0.8 / max(len(rows), 1)
    figure, axis = plt.subplots(figsize=(8.0, 3.8))
    for i, (model, rates) in enumerate(rows.items()):
        axis.bar([k + i * width for k in range(len(PATTERNS))], [rates.get(p) or 0.0 for p in PATTERNS],
                 width=width, color=_color(i), label=model)
    axis.set_xticks([k + width * (len(rows) - 1) / 2 for k in range(len(PATTERNS))])
    axis.set_xticklabels([p.replace("_", "\n") for p in PATTERNS], fontsize=8)
    axis.set_ylim(0, 1)
    axis.set_ylabel("share of answers")
    axis.set_title('Response patterns ("Beyond No")')
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def elo_figure(elo: dict):
    sources = [s for s, table in elo.items() if any(v["rating"] is not None for v in table.values())]
    if not sources:
        return None
    figure, axes = plt.subplots(1, len(sources), figsize=(4.0 * len(sources), 3.6), squeeze=False)
    for axis, source in zip(axes[0], sources):
        table = elo[source]
        models = list(table)
        ratings = [table[m]["rating"] for m in models]
        low = [r - (table[m]["ci_low"] if table[m]["ci_low"] is not None else r) for m, r in zip(models, ratings)]
        high = [(table[m]["ci_high"] if table[m]["ci_high"] is not None else r) - r for m, r in zip(models, ratings)]
        axis.errorbar(range(len(models)), ratings, yerr=[low, high], fmt="o", capsize=4)
        axis.set_xticks(range(len(models)))
        axis.set_xticklabels(models, rotation=20, fontsize=8, ha="right")
        axis.set_title(f"Elo by {source}", fontsize=9)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("rating (95% bootstrap CI)")
    figure.tight_layout()
    return figure


def training_figure(logs: dict[str, list[dict]]):
    panels = {}
    for panel, needles in CURVE_KEYS.items():
        for run, rows in logs.items():
            per_constraint = {prefix + name for name in _constraint_names({run: rows}) for prefix in CONSTRAINT_PREFIXES}
            keys = sorted({k for r in rows for k, v in r.items() if k != "step" and _is_number(v)
                           and any(n in k.lower() for n in needles) and k not in per_constraint})
            for key in keys:
                if panel == "cost" and any(n in key.lower() for n in CURVE_KEYS["Lagrange multiplier λ"]):
                    continue  # "cost_multiplier"-like keys belong to the λ panel
                points = [(r.get("step", i), r[key]) for i, r in enumerate(rows) if isinstance(r.get(key), (int, float))]
                if points:
                    panels.setdefault(panel, []).append((f"{run}: {key}" if len(logs) > 1 else key, points))
    if not panels:
        return None
    figure, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for axis, (panel, curves) in zip(axes[0], panels.items()):
        for i, (label, points) in enumerate(curves):
            axis.plot([p[0] for p in points], [p[1] for p in points], color=_color(i), label=label, linewidth=1.2)
        axis.set_title(panel, fontsize=10)
        axis.set_xlabel("step")
        axis.legend(fontsize=6)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def constraints_figure(logs: dict[str, list[dict]]):
    """Per constraint ``<name>`` (log keys ``lambda/<name>``, ``episode_cost/<name>``, ``cost/<name>``,
    ``cost_threshold/<name>``, policy/constraints.py): top, Ĵ_ci and the batch cost (lighter) with d_i as a
    dashed step line (the logged values, so a threshold that changes shows its changes); bottom, λ_i.
    One colour per run; None when no log has a ``lambda/<name>`` key."""
    names = _constraint_names(logs)
    if not names:
        return None
    figure, axes = plt.subplots(2, len(names), figsize=(4.6 * len(names), 6.0), squeeze=False, sharex="col")
    for column, name in enumerate(names):
        top, bottom = axes[0][column], axes[1][column]
        for i, (run, rows) in enumerate(logs.items()):
            prefix = f"{run}: " if len(logs) > 1 else ""
            for axis, key, style in ((top, f"cost/{name}", dict(alpha=0.35, linewidth=0.8, label="batch cost")),
                                     (top, f"episode_cost/{name}", dict(linewidth=1.4, label="episode cost Ĵ")),
                                     (top, f"cost_threshold/{name}", dict(linestyle="--", linewidth=1.2,
                                                                          drawstyle="steps-post", label="threshold d")),
                                     (bottom, f"lambda/{name}", dict(linewidth=1.4, label="λ"))):
                points = [(r.get("step", j), r[key]) for j, r in enumerate(rows) if _is_number(r.get(key))]
                if points:
                    axis.plot([p[0] for p in points], [p[1] for p in points], color=_color(i),
                              **{**style, "label": prefix + style["label"]}, gid=key)
        top.set_title(f"constraint {name}", fontsize=10)
        top.set_ylabel("cost")
        bottom.set_ylabel(f"λ ({name})")
        bottom.set_xlabel("step")
        for axis in (top, bottom):
            axis.grid(alpha=0.3)
            axis.legend(fontsize=6)
    figure.tight_layout()
    return figure


def _constraint_names(logs: dict[str, list[dict]]) -> list[str]:
    """Constraint names in order of first appearance: ``<name>`` of every ``lambda/<name>`` log key."""
    return list(dict.fromkeys(k.split("/", 1)[1] for rows in logs.values() for r in rows for k in r
                              if k.startswith("lambda/")))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _group(rows) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row["model"], []).append(row)
    return out
