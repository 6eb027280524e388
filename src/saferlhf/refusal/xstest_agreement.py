"""Agreement of refusal detectors with XSTest's human labels, next to the judges shipped with XSTest.

Detectors compared on the 5 x 450 human-labelled completions (Röttger et al. 2024):

- ``rule``: :func:`saferlhf.refusal.patterns.detect_refusal`;
- ``classifier``: a :class:`~saferlhf.refusal.classifier.RefusalClassifier`, when given;
- ``string_match`` and ``gpt4``: the labels in ``evaluation/automated_evaluation_labels``,
  recomputed from those files (not quoted), invalid GPT-4 outputs counted as disagreements.

Output: flat metrics (``{detector}_xstest_binary_agreement`` ...; the classifier's are also
``xstest_binary_agreement`` / ``xstest_3way_agreement``), the agreement table (pooled and per
model) and a confusion table per detector.
"""

from __future__ import annotations

from pathlib import Path

from saferlhf.refusal.agreement import agreement_metrics, agreement_table, confusion, format_table
from saferlhf.refusal.data import XSTestCompletion, load_xstest_completions
from saferlhf.refusal.patterns import detect_refusal


def detector_predictions(rows: list[XSTestCompletion], classifier=None, batch_size: int = 32,
                         progress: bool = True) -> dict[str, list[str | None]]:
    """Labels of every available detector for ``rows`` (keys: rule, classifier, string_match, gpt4)."""
    predictions: dict[str, list[str | None]] = {"rule": [detect_refusal(r.response, r.prompt).label for r in rows]}
    if classifier is not None:
        predictions["classifier"] = classifier.predict(
            [r.prompt for r in rows], [r.response for r in rows], batch_size=batch_size, progress=progress
        )
    for judge in ("string_match", "gpt4"):
        if all(judge in r.shipped for r in rows):
            predictions[judge] = [r.shipped[judge] for r in rows]
    return predictions


def xstest_agreement(folder: str | Path, classifier=None, batch_size: int = 32, limit: int = 0,
                     progress: bool = True) -> dict:
    """Metrics, agreement table and confusion tables on the XSTest completions in ``folder``.

    Returns ``{"metrics": {...}, "table": [...], "table_markdown": str, "confusion": {...},
    "rows": [...], "predictions": {...}}``. ``limit`` > 0 keeps the first ``limit`` rows per model
    (quick runs).
    """
    rows = load_xstest_completions(folder)
    if limit > 0:
        seen: dict[str, int] = {}
        kept = []
        for row in rows:
            seen[row.model] = seen.get(row.model, 0) + 1
            if seen[row.model] <= limit:
                kept.append(row)
        rows = kept
    human = [r.label for r in rows]
    predictions = detector_predictions(rows, classifier, batch_size, progress)
    metrics: dict[str, float | int] = {"xstest_rows": len(rows)}
    for name, predicted in predictions.items():
        metrics.update(agreement_metrics(human, predicted, prefix=f"{name}_xstest_"))
    if "classifier" in predictions:
        metrics["xstest_binary_agreement"] = metrics["classifier_xstest_binary_agreement"]
        metrics["xstest_3way_agreement"] = metrics["classifier_xstest_3way_agreement"]
    table = agreement_table(human, predictions, groups=[r.model for r in rows])
    return {
        "metrics": metrics,
        "table": table,
        "table_markdown": format_table(table),
        "confusion": {name: confusion(human, predicted) for name, predicted in predictions.items()},
        "rows": rows,
        "predictions": predictions,
    }
