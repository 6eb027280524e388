"""The ``saferlhf`` command: one sub-command per stage, each ``--config FILE.yaml`` + ``key=value``.

Every stage module exposes a configuration dataclass (built on :mod:`saferlhf.config`) and a
``run(config) -> dict`` function returning its final metrics. Modules are imported lazily so that
``saferlhf --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

import yaml

from saferlhf.config import ConfigError, describe, load_config

# What a user can cause (bad config, data, paths, a diverged run, a refused resume): one line on stderr and
# exit status 2, the traceback only with --debug. Anything else is a bug and keeps its traceback.
EXPECTED_ERRORS = (ValueError, OSError, yaml.YAMLError, FloatingPointError)

# command -> ("module:ConfigClass", "module:run_function", one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("saferlhf.pipeline.config:PipelineConfig", "saferlhf.pipeline.run:run",
             "the main job: the whole pipeline with the built-in defaults (output_dir=runs/demo)"),
    "pipeline": ("saferlhf.pipeline.config:PipelineConfig", "saferlhf.pipeline.run:run",
                 "the whole Safe RLHF pipeline from one config: rounds of sample, label, reward/cost, policy, evaluate"),
    "sft": ("saferlhf.stages.sft:SFTStageConfig", "saferlhf.stages.sft:run", "supervised fine-tuning (TRL SFTTrainer)"),
    "train-reward": ("saferlhf.stages.score_training:ScoreStageConfig", "saferlhf.stages.score_training:run_reward",
                     "train the reward (helpfulness) model"),
    "train-cost": ("saferlhf.stages.score_training:ScoreStageConfig", "saferlhf.stages.score_training:run_cost",
                   "train the cost (harm) model; cost > 0 means unsafe"),
    "score": ("saferlhf.stages.score:ScoreCommandConfig", "saferlhf.stages.score:run",
              "score (prompt, response) pairs with a trained reward or cost model"),
    "dpo": ("saferlhf.stages.dpo:DPOStageConfig", "saferlhf.stages.dpo:run",
            "DPO on the helpfulness or safety labels, or SACPO (both, stepwise), on TRL's DPOTrainer"),
    "ches": ("saferlhf.stages.ches:CHESConfig", "saferlhf.stages.ches:run",
             "CHES and length-normalised CHES of every preference pair (likelihood displacement; Razin et al. 2024)"),
    "memory": ("saferlhf.memory:MemoryConfig", "saferlhf.memory:run",
               "expected memory per GPU of a run (model size, algorithm, precision, LoRA, ZeRO stage)"),
    "train-policy": ("saferlhf.policy.stage:PolicyStageConfig", "saferlhf.policy.stage:run",
                     "policy optimisation: ppo-lag, ppo, reward-shaping, critic-free"),
    "evaluate": ("saferlhf.evaluation.stage:EvaluateConfig", "saferlhf.evaluation.stage:run",
                 "generate and score answers on harm / over-refusal benchmarks; writes a report"),
    "safety-test": ("saferlhf.evaluation.safety_test:SafetyTestConfig", "saferlhf.evaluation.safety_test:run",
                    "pass/fail a model on held-out prompts: upper confidence bounds on its mean cost and "
                    "harmful-compliance rate against thresholds (HC-RLHF)"),
    "train-refusal-classifier": ("saferlhf.refusal.classifier_stage:RefusalClassifierConfig",
                                 "saferlhf.refusal.classifier_stage:run", "train the learned refusal classifier"),
    "generate-pseudo-harmful": ("saferlhf.stages.pseudo_harmful:PseudoHarmfulConfig", "saferlhf.stages.pseudo_harmful:run",
                                "generate prompts that look harmful but are not (OR-Bench / PHTest), filtered by a "
                                "harm scorer, with the target model's refusal on each"),
    "refusal-predictor": ("saferlhf.refusal.predictor_stage:RefusalPredictorConfig",
                          "saferlhf.refusal.predictor_stage:run",
                          "predict refusal from the prompt (or response): TF-IDF / encoder + logistic regression, "
                          "top trigger words (Reuter & Schulze 2023)"),
    "env": ("saferlhf.env:EnvConfig", "saferlhf.env:run",
            "what a bug report needs: versions, devices, threads, bf16 support, what precision auto picks"),
    "annotate": ("saferlhf.annotation.stage:AnnotateConfig", "saferlhf.annotation.stage:run",
                 "serve the local page that labels a pairs file (localhost only; Ctrl-C stops it)"),
    "refusal-direction": ("saferlhf.controls.direction_stage:RefusalDirectionConfig",
                          "saferlhf.controls.direction_stage:run",
                          "find, select, ablate and add the refusal direction (Arditi et al. 2024)"),
    "multi-seed": ("saferlhf.multi_seed:MultiSeedConfig", "saferlhf.multi_seed:run",
                   "repeat a stage over N seeds: mean, std and Student-t confidence interval of every metric "
                   "(command=STAGE seeds=[1,2,3] config=FILE, other keys go to the stage)"),
}


def _load(target: str):
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def _close_progress_bars() -> None:
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "launch":  # saferlhf launch [accelerate options] COMMAND ...: accelerate launch
        from saferlhf.launch import main as launch

        return launch(argv[1:], COMMANDS)
    parser = argparse.ArgumentParser(prog="saferlhf", description="Safe RLHF and refusal measurement.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("launch", help="run a command under accelerate launch: saferlhf launch --num_processes N "
                                  "COMMAND ... (docs/scaling.md)")
    for name, (_, _, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", "-c", help="YAML configuration file")
        p.add_argument("--help-config", action="store_true", help="list every configuration key and exit")
        p.add_argument("overrides", nargs="*", help="key=value overrides (dotted keys for nested sections)")
        p.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
        if name in ("demo", "pipeline"):
            p.add_argument("--quick", action="store_true", help="a small run of every stage (a few minutes)")
            p.add_argument("--rounds", type=int, help="shortcut for rounds=N")
        if name in ("demo", "pipeline", "train-policy"):
            p.add_argument("--algo", help="shortcut for algorithm=... (policy.algorithm=... for the pipeline)")
        if name == "train-policy":
            p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")
    args, extra = parser.parse_known_args(argv)  # overrides may also follow an option: ... --rounds 2 key=value
    unknown = [item for item in extra if item.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = list(args.overrides) + extra
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
    if args.command == "pipeline" and overrides and "=" not in overrides[0] and args.config is None:
        args.config = overrides.pop(0)  # saferlhf pipeline CONFIG.yaml [key=value ...]
    if args.command == "demo":
        overrides.insert(0, "output_dir=runs/demo")  # the default folder; an output_dir=... given later wins
    if getattr(args, "algo", None):
        overrides.append(f"{'policy.' if args.command in ('demo', 'pipeline') else ''}algorithm={args.algo}")
    if getattr(args, "rounds", None):
        overrides.append(f"rounds={args.rounds}")
    if getattr(args, "quick", False):
        overrides.append("quick=true")
    if getattr(args, "resume", False):
        overrides.append("resume=true")
    base = None
    if args.command == "multi-seed":  # its own keys; every other key=value (and --config) is the stage's
        from saferlhf.multi_seed import split_overrides

        overrides, stage_overrides = split_overrides(overrides)
        base = {"overrides": stage_overrides, **({"config": args.config} if args.config else {})}
        args.config = None
    try:
        config = load_config(config_cls, args.config, overrides, base=base)
        metrics = _load(run_target)(config)
    except EXPECTED_ERRORS as error:
        _close_progress_bars()  # so that the message starts on a line of its own
        if args.debug:
            traceback.print_exc()
        kind = "configuration error" if isinstance(error, (ConfigError, yaml.YAMLError)) else "error"
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"saferlhf {args.command}: {kind}: {message}", file=sys.stderr)
        return 2
    if metrics:
        shown = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}
        print(f"saferlhf {args.command}: done. " + ", ".join(f"{k}={v}" for k, v in list(shown.items())[:12]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
