"""Evaluation metrics of reward and cost models, and the safe-vs-unsafe score histogram.

- pairwise accuracy: share of pairs where the preferred response scores higher
  (reward: R(better) > R(worse); cost: C(less safe) > C(safer));
- sign accuracy (cost model): share of labelled responses with ``(C > 0) == unsafe``;
- mean and standard deviation of all scores;
- per harm category and per severity level (cost model, where the data has them: PKU-SafeRLHF's
  ``response_*_harm_category`` / ``response_*_severity_level``, BeaverTails' ``category``): the labelled
  responses of each, their unsafe share, mean cost and sign accuracy (:func:`per_category_metrics`).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch


def pairwise_accuracy(preferred: torch.Tensor, other: torch.Tensor) -> float:
    """Share of pairs with ``preferred > other`` (ties count as wrong)."""
    return float((preferred > other).float().mean()) if preferred.numel() else math.nan


def sign_accuracy(costs: torch.Tensor, is_safe: torch.Tensor) -> float:
    """Share of labelled responses (``is_safe`` not NaN) whose cost sign matches: C > 0 iff unsafe."""
    labelled = ~torch.isnan(is_safe)
    if not labelled.any():
        return math.nan
    predicted_unsafe = costs[labelled] > 0
    return float((predicted_unsafe == (is_safe[labelled] == 0)).float().mean())


def score_metrics(kind: str, first: torch.Tensor, second: torch.Tensor, first_is_safe: torch.Tensor,
                  second_is_safe: torch.Tensor, ranked: torch.Tensor | None = None) -> dict[str, float]:
    """All metrics of one evaluation, keys prefixed ``eval_``. ``first`` is the preferred/safer response;
    ``ranked`` (0.0 for unpaired records, which have one response and no ranking) limits the pairwise accuracy."""
    scores = torch.cat([first, second])
    keep = torch.ones_like(first, dtype=torch.bool) if ranked is None else ranked > 0
    metrics = {
        # reward: the better response should score higher; cost: the less safe one should cost more
        "eval_accuracy": pairwise_accuracy(first[keep], second[keep]) if kind == "reward"
        else pairwise_accuracy(second[keep], first[keep]),
        "eval_score_mean": float(scores.mean()),
        "eval_score_std": float(scores.std()) if scores.numel() > 1 else 0.0,
        "num_eval_pairs": int(first.numel()),
    }
    if kind == "cost":
        sign = sign_accuracy(scores, torch.cat([first_is_safe, second_is_safe]))
        if not math.isnan(sign):
            metrics["eval_sign_accuracy"] = sign
    return metrics


def per_category_metrics(records: list, first: torch.Tensor, second: torch.Tensor) -> dict[str, dict]:
    """``{"category": {name: {...}}, "severity": {level: {...}}}`` over the safety-labelled responses of
    ``records`` (the evaluation records in the order they were scored; ``first`` = the safer response, or an
    unpaired record's only one). A response counts in every category flagged true, in ``none`` when its
    categories are given and none is flagged; each group has ``n``, ``unsafe_share``, ``mean_cost`` and
    ``sign_accuracy`` (C > 0 iff unsafe)."""
    groups: dict[str, dict[str, list[tuple[float, bool]]]] = {"category": {}, "severity": {}}
    for record, first_score, second_score in zip(records, first.tolist(), second.tolist()):
        first_index = 0 if record.unpaired else record.safer_response_id
        responses = [(first_index, first_score)] + ([] if record.unpaired else [(1 - first_index, second_score)])
        for index, score in responses:
            is_safe = record.is_safe(index)
            if is_safe is None:
                continue
            categories = getattr(record, f"response_{index}_harm_category")
            if isinstance(categories, dict):
                for name in [name for name, flagged in categories.items() if flagged] or ["none"]:
                    groups["category"].setdefault(name, []).append((score, is_safe))
            level = getattr(record, f"response_{index}_severity_level")
            if level is not None:
                groups["severity"].setdefault(str(level), []).append((score, is_safe))
    return {kind: {name: _group_metrics(items) for name, items in sorted(by_name.items())}
            for kind, by_name in groups.items() if by_name}


def _group_metrics(items: list[tuple[float, bool]]) -> dict[str, float]:
    n = len(items)
    return {"n": n, "unsafe_share": sum(not safe for _, safe in items) / n,
            "mean_cost": sum(score for score, _ in items) / n,
            "sign_accuracy": sum((score > 0) == (not safe) for score, safe in items) / n}


def save_histogram(path: str | Path, kind: str, first: torch.Tensor, second: torch.Tensor,
                   first_is_safe: torch.Tensor, second_is_safe: torch.Tensor) -> None:
    """Score histogram: safe vs unsafe responses when labelled, else preferred vs other."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = torch.cat([first, second])
    is_safe = torch.cat([first_is_safe, second_is_safe])
    if (~torch.isnan(is_safe)).any():
        groups = {"safe": scores[is_safe == 1], "unsafe": scores[is_safe == 0]}
    elif kind == "reward":
        groups = {"more helpful": first, "less helpful": second}
    else:
        groups = {"safer": first, "less safe": second}
    figure, axis = plt.subplots(figsize=(6, 4))
    low, high = float(scores.min()), float(scores.max())
    bins = torch.linspace(low, high if high > low else low + 1, 41).tolist()
    for label, values in groups.items():
        if values.numel():
            axis.hist(values.tolist(), bins=bins, alpha=0.55, label=f"{label} (n={values.numel()})")
    if kind == "cost":
        axis.axvline(0.0, color="black", linestyle="--", linewidth=1, label="C = 0 (safe | unsafe)")
    axis.set_xlabel("cost score" if kind == "cost" else "reward score")
    axis.set_ylabel("responses")
    axis.set_title(f"{kind} model scores on the evaluation set")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
