"""What ``saferlhf refusal-direction`` draws: the per-layer figure, and the AUC it reports.

:func:`layer_figure`: at the selected post-instruction position, per layer, the mean refusal score of
the harmful validation prompts with the direction ablated and of the harmless ones with it added
(baselines dashed), the KL of ablation on harmless prompts, and, when a labelled set was given
(XSTest), the AUC of each layer's activation projected on the direction.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from saferlhf.report.figures import COLORS  # noqa: E402


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def layer_figure(metrics: dict):
    """The per-layer figure from ``metrics.json``'s ``per_layer``, ``selection`` and ``auc_per_layer``."""
    position = metrics["position"]
    index = position + len(metrics["per_layer"]["ablation_score"])  # row of the selected position
    rows = {key: values[index] for key, values in metrics["per_layer"].items()}
    layers = list(range(metrics["n_layers"]))
    auc = metrics.get("auc_per_layer")
    figure, axes = plt.subplots(1, 3 if auc else 2, figsize=(15 if auc else 10, 4.2))
    score_axis, kl_axis = axes[0], axes[1]
    selection = metrics["selection"]
    for i, (key, baseline, label) in enumerate((
            ("ablation_score", "baseline_harmful_score", "harmful, direction ablated"),
            ("addition_score", "baseline_harmless_score", "harmless, direction added"))):
        score_axis.plot(layers, rows[key], marker="o", markersize=3, color=_color(i), label=label)
        score_axis.axhline(selection[baseline], color=_color(i), linestyle="--", linewidth=1,
                           label=label.split(",")[0] + ", no intervention")
    score_axis.set_ylabel("mean refusal score (log-odds)")
    kl_axis.plot(layers, rows["ablation_kl"], marker="o", markersize=3, color=_color(2))
    kl_axis.axhline(selection["max_kl"], color="grey", linestyle="--", linewidth=1, label="selection's KL limit")
    kl_axis.set_yscale("log")
    kl_axis.set_ylabel("KL(model ‖ ablated), harmless prompts")
    panels = [score_axis, kl_axis]
    if auc:
        auc_axis = axes[2]
        for i, (key, label) in enumerate((("selected_direction", "on the selected direction"),
                                          ("own_layer_direction", "on the layer's own direction"))):
            values = [math.nan if value is None else value for value in auc[key]]  # None: a zero candidate
            auc_axis.plot(layers, values, marker="o", markersize=3, color=_color(3 + i), label=label)
        auc_axis.set_ylabel(f"AUC harmful vs harmless ({auc['source']}, {auc['prompts']} prompts)")
        auc_axis.set_ylim(0.4, 1.0)
        panels.append(auc_axis)
    for axis in panels:
        axis.axvline(metrics["layer"], color="grey", linewidth=1)
        axis.axvspan(math.ceil(selection["max_layer_fraction"] * len(layers)) - 0.5, len(layers) - 0.5,
                     color="grey", alpha=0.1)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("layer")
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    figure.suptitle(f"Refusal direction per layer, position {position} ({metrics['position_token']}); "
                    f"selected layer {metrics['layer']} (grey line), shaded: layers the selection skips")
    figure.tight_layout()
    return figure
