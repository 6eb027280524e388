"""What every stage writes into its output folder, and how.

- ``log.jsonl``: one JSON object per logged step (``{"step": ..., ...}``), appended and flushed.
- ``metrics.json``: final evaluation metrics, written atomically.
- ``config.yaml``: the resolved configuration of the run.

All JSON files are written to a temporary name and renamed (``atomic_write_json``), so a run
killed at any moment leaves either the old or the new file, never half of one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml


def _clean(value: Any) -> Any:
    """JSON-safe values: tensors and numpy scalars to Python, NaN/inf to strings."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide metrics and labels from other users; models are 0644 too
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(_clean(data), indent=2, sort_keys=False) + "\n")


class RunWriter:
    """Writes ``log.jsonl``, ``metrics.json`` and ``config.yaml`` of one stage into ``output_dir``.

    Only the main process should write; pass ``enabled=False`` on the others. With a ``tracker``
    (:func:`saferlhf.training.tracking.open_tracker`, the stage's ``report_to``) every logged line also
    goes to TensorBoard / W&B / trackio, under namespaced names; ``log.jsonl`` keeps its own keys.
    """

    def __init__(self, output_dir: str | Path, enabled: bool = True, resume: bool = False, tracker: Any = None):
        self.output_dir = Path(output_dir)
        self.enabled = enabled
        self.tracker = tracker if enabled else None
        if enabled:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            if not resume and (self.output_dir / "log.jsonl").exists():
                (self.output_dir / "log.jsonl").unlink()

    def log(self, step: int, **metrics: Any) -> None:
        if not self.enabled:
            return
        with open(self.output_dir / "log.jsonl", "a") as handle:
            handle.write(json.dumps(_clean({"step": step, **metrics})) + "\n")
            handle.flush()
        if self.tracker is not None:
            self.tracker.log(metrics, step)

    def log_table(self, name: str, rows: list[dict], step: int) -> None:
        """Sample answers to the tracker as a table (nothing without a tracker)."""
        if self.tracker is not None:
            self.tracker.log_table(name, rows, step)

    def finish(self) -> None:
        """Close the tracker (its last events written); log.jsonl needs nothing."""
        if self.tracker is not None:
            self.tracker.finish()

    def truncate_log(self, last_step: int) -> None:
        """Drop log lines after ``last_step`` (on resume from a checkpoint at that step)."""
        if self.enabled:
            truncate_jsonl(self.output_dir / "log.jsonl", last_step)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        if self.enabled:
            atomic_write_json(self.output_dir / "metrics.json", metrics)

    def write_config(self, config_dict: dict[str, Any]) -> None:
        if self.enabled:
            atomic_write_text(self.output_dir / "config.yaml", yaml.safe_dump(_clean(config_dict), sort_keys=False))


def truncate_jsonl(path: str | Path, last_step: int) -> None:
    """Keep the complete lines of a jsonl log with ``step <= last_step`` (a killed run may leave a cut line)."""
    path = Path(path)
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            if json.loads(line)["step"] <= last_step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """All lines of a ``log.jsonl`` file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
