"""The identity of a training run, so that a resume can never pick up another run's checkpoint.

A run's *identity* is its resolved configuration, flattened to dotted keys, minus the keys that do
not change the numbers it computes (:data:`NOT_IDENTITY`: where it writes, how often it logs, saves
or evaluates, how many threads). Every checkpoint stores it (``trainer_state.json``) and so does the
``metrics.json`` of a finished run. Then:

- a fresh start (``resume=false``) removes the previous run's checkpoints and ``metrics.json``
  (:func:`clear_previous_run`), as it already replaces ``log.jsonl``;
- a resume refuses a checkpoint whose identity differs, naming the keys (:func:`check_identity`);
- a resume of a finished run says so instead of training again (:func:`finished_run`).

:func:`begin_run` does all three for a stage, before it loads anything.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from saferlhf.config import to_dict

NOT_IDENTITY = ("output_dir", "resume", "tracking", "report_to", "keep_checkpoints", "evaluation", "data.eval",
                "train.logging_steps", "train.save_steps", "train.eval_steps", "train.eval_batch_size",
                "train.num_threads")


STATE_FILE = "trainer_state.json"  # the loop state of a checkpoint folder (both checkpoint modules)


class ResumeError(ValueError):
    """A resume that would continue another run (or an unreadable checkpoint)."""


def run_identity(config: Any, **extra: Any) -> dict[str, Any]:
    """Flat ``{dotted.key: value}`` of the config keys that determine the numbers (plus ``extra``)."""
    flat: dict[str, Any] = {}

    def walk(tree: dict, prefix: str) -> None:
        for key, value in tree.items():
            name = prefix + key
            if name in NOT_IDENTITY:
                continue
            if isinstance(value, dict):
                walk(value, name + ".")
            else:
                flat[name] = value
    walk(to_dict(config), "")
    flat.update(extra)
    return json.loads(json.dumps(flat))  # as stored: tuples become lists, so saved and current compare equal


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key: saved -> now`` for every key whose value differs (or exists on one side only)."""
    missing = object()
    return [f"{key}: {saved.get(key, '(absent)')!r} in the checkpoint, {current.get(key, '(absent)')!r} now"
            for key in sorted(set(saved) | set(current)) if saved.get(key, missing) != current.get(key, missing)]


def check_identity(saved: dict[str, Any] | None, current: dict[str, Any], where: str | Path) -> None:
    """Refuse to resume from ``where`` unless it was written by a run with the identity ``current``."""
    if saved is None:
        raise ResumeError(f"resume: {where} carries no run identity (written by an older saferlhf?), so it cannot "
                          "be told apart from another run's; start afresh without resume, or remove the folder")
    diff = differences(saved, current)
    if diff:
        raise ResumeError(f"resume: {where} belongs to another run; these settings differ: " + "; ".join(diff)
                          + ". Resume with the same settings, or start afresh without resume (this deletes it).")


def finished_run(output_dir: str | Path, current: dict[str, Any]) -> dict[str, Any] | None:
    """The ``metrics.json`` of a finished run with identity ``current`` in ``output_dir`` (None if there is
    none); a finished run of another identity is refused (:class:`ResumeError`)."""
    path = Path(output_dir) / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict) or metrics.get("status") != "finished":
        return None
    check_identity(metrics.get("run_identity"), current, path)
    return metrics


def clear_previous_run(output_dir: str | Path, *names: str) -> None:
    """A fresh start: delete ``metrics.json`` and the given checkpoint folders of whatever run was here."""
    output_dir = Path(output_dir)
    (output_dir / "metrics.json").unlink(missing_ok=True)
    for name in names:
        for path in output_dir.glob(name):
            shutil.rmtree(path, ignore_errors=True)


def begin_run(accelerator, output_dir: str | Path, identity: dict[str, Any], resume: bool,
              checkpoint: Path | None, previous: tuple[str, ...]) -> dict[str, Any] | None:
    """Before any work. Resume: the ``metrics.json`` of a finished run with this identity (nothing to do),
    else None once ``checkpoint`` (the one the resume would load) is checked to be this run's. Fresh start:
    delete ``metrics.json`` and the ``previous`` checkpoint folders (globs) of whatever run was here."""
    if resume:
        finished = finished_run(output_dir, identity)
        if finished is not None:
            accelerator.print(f"[saferlhf] resume: the run in {output_dir} is already finished (metrics.json); "
                              "nothing to do")
            return finished
        if checkpoint is not None:
            state = json.loads((checkpoint / STATE_FILE).read_text())
            check_identity(state.get("run_identity"), identity, checkpoint)
    elif accelerator.is_main_process:
        clear_previous_run(output_dir, *previous)
    accelerator.wait_for_everyone()
    return None
