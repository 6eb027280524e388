"""``saferlhf multi-seed``: one stage (or the demo) repeated over N seeds, each metric reported as a mean with
a 95% confidence interval. Single runs here differ by 20 points of harmful compliance (docs/results.md),
so a comparison needs several seeds.

    saferlhf multi-seed command=train-cost 'seeds=[1,2,3]' config=configs/cost-hh-rlhf.yaml output_dir=runs/ms \
        train.max_steps=100

Every ``key=value`` that is not one of this command's own keys goes to the stage. Run ``s`` gets
``<seed key>=s`` and ``output_dir=DIR/seed-s`` (the seed key: ``seed`` where the stage has one, else
``train.seed``, else ``generation.seed``; ``seed_key`` overrides). ``DIR/metrics.json`` holds, for every
numeric metric the runs return (nested keys joined with ``/``), over the n runs that have it:

    mean x̄ = Σ x_i / n,   s = √( Σ (x_i - x̄)² / (n - 1) ),
    95% interval  x̄ ± t_{0.975, n-1} · s / √n      (Student's t with n - 1 degrees of freedom)

(:func:`mean_interval`; the t quantile from :mod:`saferlhf.evaluation.bounds`, no SciPy). The interval
assumes the seeds' results are independent draws of a roughly normal quantity.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saferlhf.config import ConfigError, _check, doc, load_config
from saferlhf.evaluation.bounds import student_t_quantile
from saferlhf.runio import atomic_write_json

NOT_REPEATABLE = ("multi-seed", "launch", "annotate", "env", "memory")


@dataclass
class MultiSeedConfig:
    command: str = doc("", "The stage to repeat: a saferlhf command (train-cost, train-policy, demo, ...).")
    seeds: list[int] = doc([1, 2, 3], "One run per seed.")
    config: str = doc("", "The stage's YAML config file ('' = its defaults).")
    overrides: list[str] = doc([], "The stage's key=value overrides (on the command line: any key not listed here).")
    seed_key: str = doc("auto", "The stage's seed key: auto = seed, else train.seed, else generation.seed.")
    confidence: float = doc(0.95, "Two-sided confidence level of the intervals.")
    output_dir: str = doc("runs/multi-seed", "DIR: the runs go to DIR/seed-<s>, the summary to DIR/metrics.json.")

    def validate(self, prefix: str) -> None:
        from saferlhf.cli import COMMANDS

        _check(self.command in COMMANDS and self.command not in NOT_REPEATABLE, prefix + "command",
               f"{self.command!r} is not a stage to repeat (one of "
               f"{', '.join(c for c in COMMANDS if c not in NOT_REPEATABLE)})")
        _check(len(self.seeds) >= 2, prefix + "seeds", "needs at least two seeds for an interval")
        _check(len(set(self.seeds)) == len(self.seeds), prefix + "seeds", "must not repeat a seed")
        _check(0.0 < self.confidence < 1.0, prefix + "confidence", "must be in (0, 1)")
        _check(bool(self.output_dir), prefix + "output_dir", "must not be empty")


def own_keys() -> set[str]:
    """The keys of this command (the CLI hands every other key=value to the stage)."""
    return {f.name for f in dataclasses.fields(MultiSeedConfig)}


def mean_interval(values: list[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean, sample standard deviation and the two-sided Student-t interval of the mean (module docstring)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"mean": mean, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": n}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = student_t_quantile(1.0 - (1.0 - confidence) / 2.0, n - 1) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def numeric_leaves(tree: dict, prefix: str = "") -> dict[str, float]:
    """Nested metrics -> ``{"a/b": number}`` for every finite int or float (booleans and text left out)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(numeric_leaves(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            flat[prefix + str(key)] = float(value)
    return flat


def seed_key_of(config_cls: type) -> str:
    names = {f.name: f for f in dataclasses.fields(config_cls)}
    if "seed" in names:
        return "seed"
    for section in ("train", "generation"):
        if section in names:
            default = names[section].default_factory() if names[section].default_factory is not dataclasses.MISSING \
                else names[section].default
            if dataclasses.is_dataclass(default) and hasattr(default, "seed"):
                return f"{section}.seed"
    raise ConfigError(f"config key 'seed_key': the stage has no seed, train.seed or generation.seed; set seed_key")


def run(config: MultiSeedConfig) -> dict:
    from saferlhf.cli import COMMANDS, _load

    config_target, run_target, _ = COMMANDS[config.command]
    stage_cls, stage_run = _load(config_target), _load(run_target)
    seed_key = seed_key_of(stage_cls) if config.seed_key == "auto" else config.seed_key
    output_dir = Path(config.output_dir)
    runs: dict[str, dict[str, float]] = {}
    for seed in config.seeds:
        folder = output_dir / f"seed-{seed}"
        stage_config = load_config(stage_cls, config.config or None,
                                   [*config.overrides, f"{seed_key}={seed}", f"output_dir={folder}"])
        print(f"[saferlhf multi-seed] {config.command} {seed_key}={seed} -> {folder}", flush=True)
        runs[str(seed)] = numeric_leaves(stage_run(stage_config) or {})
    keys = sorted({key for metrics in runs.values() for key in metrics})
    summary = {key: {**mean_interval([m[key] for m in runs.values() if key in m], config.confidence),
                     "values": [m.get(key) for m in runs.values()]}
               for key in keys}
    atomic_write_json(output_dir / "metrics.json", {
        "command": config.command, "config": config.config, "overrides": config.overrides, "seed_key": seed_key,
        "seeds": config.seeds, "confidence": config.confidence, "metrics": summary,
        "runs": {seed: str(output_dir / f"seed-{seed}") for seed in runs}})
    return {"runs": len(runs), **{f"{key}/mean": value["mean"] for key, value in summary.items()}}


def split_overrides(overrides: list[Any]) -> tuple[list[str], list[str]]:
    """(this command's key=value items, the stage's)."""
    own, stage = [], []
    for item in overrides:
        key = str(item).split("=", 1)[0].strip()
        (own if key in own_keys() else stage).append(item)
    return own, stage
