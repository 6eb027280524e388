"""One ``report_to`` switch for every stage: where per-step metrics go besides ``log.jsonl``.

``report_to`` is ``none`` (the default, as in transformers 5), ``tensorboard`` (event files in
``output_dir/tensorboard/<stage>``), ``wandb`` or ``trackio``. Every stage opens one :class:`Tracker`
with :func:`open_tracker` and hands it to its :class:`~saferlhf.runio.RunWriter`: each ``writer.log``
line then goes to ``log.jsonl`` under its own keys *and* to the tracker under TRL-style namespaced
names (:func:`namespaced`). The trackers are Accelerate's (``accelerate.tracking``), so the same three
back ends behave as in any Accelerate or TRL script; stages on Hugging Face's ``Trainer`` (sft, dpo,
refusal classifier) log through :func:`log_callback`, which writes the Trainer's log lines live.

Sample answers go to the tracker as tables (:meth:`Tracker.log_table`: a W&B / trackio table, a
markdown table in TensorBoard's text tab).
"""

from __future__ import annotations

import atexit
import json
import math
from pathlib import Path
from typing import Any, Literal

from saferlhf.config import doc

ReportTo = Literal["none", "tensorboard", "wandb", "trackio"]
PROJECT = "saferlhf"  # the W&B / trackio project every stage logs to (a run per stage and output folder)


def report_to_field() -> Any:
    """The ``report_to`` key of every stage configuration (one docstring for all)."""
    return doc("none", "Where per-step metrics go besides log.jsonl: none | tensorboard (output_dir/tensorboard) | "
                       "wandb | trackio (docs/tracking.md).")


# Policy keys of log.jsonl -> TRL-style names (PPOTrainer's objective/kl, loss/policy_avg ...); the prefixes
# below map the per-constraint keys (lambda/<name> -> objective/lambda/<name>).
_POLICY_NAMES = {
    "reward": "objective/reward", "kl": "objective/kl", "entropy": "objective/entropy",
    "lambda": "objective/lambda", "response_length": "objective/response_length",
    "cost": "cost/mean", "unsafe_share": "cost/unsafe_share", "episode_cost": "cost/episode",
    "cost_threshold": "cost/threshold", "actor_loss": "loss/policy", "ptx_loss": "loss/ptx",
    "clip_fraction": "policy/clipfrac", "learning_rate": "train/learning_rate",
}
_PREFIXES = {"lambda/": "objective/lambda/", "episode_cost/": "cost/episode/", "cost_threshold/": "cost/threshold/",
             "cost/": "cost/mean/"}


def namespaced(metrics: dict[str, Any]) -> dict[str, Any]:
    """Tracker names of ``log.jsonl`` keys: the policy's keys as in TRL (``kl`` -> ``objective/kl``, ``lambda`` ->
    ``objective/lambda``, ``episode_cost`` -> ``cost/episode``, ``<name>_critic_loss`` -> ``loss/value/<name>``),
    a Trainer's ``eval_<key>`` -> ``eval/<key>``, other names with a ``/`` kept, any other plain key ->
    ``train/<key>``. Non-numeric values (and booleans) are left out."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or key == "step":
            continue
        out[_name(key)] = float(value) if isinstance(value, float) else value
    return out


def _name(key: str) -> str:
    if key in _POLICY_NAMES:
        return _POLICY_NAMES[key]
    if key.endswith("_critic_loss"):
        return "loss/value/" + key[: -len("_critic_loss")]
    for old, new in _PREFIXES.items():
        if key.startswith(old):
            return new + key[len(old):]
    if "/" in key:  # already namespaced: eval/..., time/..., rewards/... (TRL's DPO), pipeline/...
        return key
    if key.startswith("eval_"):
        return "eval/" + key[len("eval_"):]
    return "train/" + key


def check_report_to(report_to: str) -> None:
    """A clear error before any work when the package of the chosen tracker is missing."""
    from accelerate.utils import is_tensorboard_available, is_trackio_available, is_wandb_available

    available = {"none": True, "tensorboard": is_tensorboard_available(), "wandb": is_wandb_available(),
                 "trackio": is_trackio_available()}
    if report_to not in available:
        raise ValueError(f"config key 'report_to': {report_to!r} is not one of {', '.join(map(repr, available))}")
    if not available[report_to]:
        raise ValueError(f"config key 'report_to': {report_to} needs the '{report_to}' package, which is not "
                         f"installed (pip install {report_to}, or report_to=none)")


class Tracker:
    """One stage's run in an Accelerate tracker; ``log`` takes ``log.jsonl`` keys and names them with
    :func:`namespaced`. Finished at exit if the stage does not call :meth:`finish`."""

    def __init__(self, report_to: str, output_dir: str | Path, stage: str, config: dict | None = None):
        from accelerate.tracking import TensorBoardTracker, TrackioTracker, WandBTracker

        check_report_to(report_to)
        self.report_to, self.stage = report_to, stage
        run_name = f"{stage}:{Path(output_dir).name}"
        if report_to == "tensorboard":
            self.backend = TensorBoardTracker(stage, str(Path(output_dir) / "tensorboard"))
        elif report_to == "wandb":
            # a run of its own even inside another stage's (the pipeline's stages): wandb >= 0.19.10
            self.backend = WandBTracker(PROJECT, name=run_name, dir=str(output_dir), reinit="create_new")
        else:
            self.backend = TrackioTracker(PROJECT, name=run_name)
        self.backend.start()
        self.finished = False
        if config:
            self.backend.store_init_configuration(flat_scalars(config))
        atexit.register(self.finish)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        values = namespaced(metrics)
        if values:
            self.backend.log(values, step=step)

    def log_table(self, name: str, rows: list[dict], step: int, max_rows: int = 32) -> None:
        """Sample answers (``rows`` of equal keys) as a table: W&B / trackio tables, TensorBoard markdown text."""
        rows = rows[:max_rows]
        if not rows:
            return
        columns = list(rows[0])
        data = [[_cell(row.get(column)) for column in columns] for row in rows]
        if self.report_to == "tensorboard":
            lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            lines += ["| " + " | ".join(str(cell).replace("|", "\\|").replace("\n", " ") for cell in row) + " |"
                      for row in data]
            self.backend.log({name: "\n".join(lines)}, step=step)
        elif hasattr(self.backend, "log_table"):
            self.backend.log_table(name, columns=columns, data=data, step=step)
        else:  # trackio
            import trackio

            self.backend.log({name: trackio.Table(columns=columns, data=data)}, step=step)

    def finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.backend.finish()


def open_tracker(report_to: str, output_dir: str | Path, stage: str, config: dict | None = None,
                 enabled: bool = True) -> Tracker | None:
    """The stage's tracker, or None for ``report_to=none`` and on processes other than the main one."""
    check_report_to(report_to)  # on every process: all fail together
    if report_to == "none" or not enabled:
        return None
    return Tracker(report_to, output_dir, stage, config)


def flat_scalars(tree: dict, prefix: str = "", separator: str = ".") -> dict:
    """Nested config -> flat ``{dotted.key: int | float | str | bool}`` (what TensorBoard's hparams accept)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flat_scalars(value, f"{prefix}{key}{separator}", separator))
        else:
            flat[prefix + key] = value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
    return flat


def _cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value if isinstance(value, (int, float, str)) else json.dumps(value, ensure_ascii=False)


def log_callback(writer, **extra):
    """A Hugging Face ``TrainerCallback`` that writes each ``Trainer`` log line to the stage's RunWriter
    (``log.jsonl`` and its tracker) as it is logged; ``extra`` keys (e.g. the DPO step) go on every line."""
    from transformers import TrainerCallback

    class LogCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                writer.log(state.global_step, **extra, **{"epoch": state.epoch, **logs})

    return LogCallback()
