"""The ``saferlhf`` command: one sub-command per stage, each ``--config FILE.yaml`` + ``key=value``.

Every stage module exposes a configuration dataclass (built on :mod:`saferlhf.config`) and a
``run(config) -> dict`` function returning its final metrics. Modules are imported lazily so that
``saferlhf --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from saferlhf.config import ConfigError, describe, load_config

# command -> ("module:ConfigClass", "module:run_function", one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("saferlhf.pipeline.demo:DemoConfig", "saferlhf.pipeline.demo:run",
             "the built-in default run on a fresh machine (see README)"),
    "sft": ("saferlhf.stages.sft:SFTStageConfig", "saferlhf.stages.sft:run", "supervised fine-tuning (TRL SFTTrainer)"),
    "train-reward": ("saferlhf.stages.score_training:ScoreStageConfig", "saferlhf.stages.score_training:run_reward",
                     "train the reward (helpfulness) model"),
    "train-cost": ("saferlhf.stages.score_training:ScoreStageConfig", "saferlhf.stages.score_training:run_cost",
                   "train the cost (harm) model; cost > 0 means unsafe"),
    "score": ("saferlhf.stages.score:ScoreCommandConfig", "saferlhf.stages.score:run",
              "score (prompt, response) pairs with a trained reward or cost model"),
    "train-policy": ("saferlhf.policy.stage:PolicyStageConfig", "saferlhf.policy.stage:run",
                     "policy optimisation: ppo-lag, ppo, reward-shaping, critic-free"),
    "evaluate": ("saferlhf.evaluation.stage:EvaluateConfig", "saferlhf.evaluation.stage:run",
                 "generate and score answers on harm / over-refusal benchmarks; writes a report"),
    "train-refusal-classifier": ("saferlhf.refusal.classifier_stage:RefusalClassifierConfig",
                                 "saferlhf.refusal.classifier_stage:run", "train the learned refusal classifier"),
}


def _load(target: str):
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="saferlhf", description="Safe RLHF and refusal measurement.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, _, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", "-c", help="YAML configuration file")
        p.add_argument("--help-config", action="store_true", help="list every configuration key and exit")
        p.add_argument("overrides", nargs="*", help="key=value overrides (dotted keys for nested sections)")
        if name == "demo":
            p.add_argument("--quick", action="store_true", help="a small run (a few minutes)")
        if name == "train-policy":
            p.add_argument("--algo", help="shortcut for algorithm=...")
            p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")
    args = parser.parse_args(argv)
    config_target, run_target, _ = COMMANDS[args.command]
    try:
        config_cls = _load(config_target)
    except ModuleNotFoundError as error:
        print(f"saferlhf {args.command}: not available ({error})", file=sys.stderr)
        return 2
    if args.help_config:
        print("\n".join(describe(config_cls)))
        return 0
    overrides = list(args.overrides)
    if getattr(args, "algo", None):
        overrides.append(f"algorithm={args.algo}")
    if getattr(args, "quick", False):
        overrides.append("quick=true")
    if getattr(args, "resume", False):
        overrides.append("resume=true")
    try:
        config = load_config(config_cls, args.config, overrides)
    except ConfigError as error:
        print(f"saferlhf {args.command}: configuration error: {error}", file=sys.stderr)
        return 2
    metrics = _load(run_target)(config)
    if metrics:
        shown = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}
        print(f"saferlhf {args.command}: done. " + ", ".join(f"{k}={v}" for k, v in list(shown.items())[:12]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
