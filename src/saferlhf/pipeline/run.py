"""``saferlhf pipeline`` / ``saferlhf demo``: the Safe RLHF rounds (Dai et al. 2024, section 5: Beaver-v1..v3).

Each round r = 1..R, in ``output_dir/round-r/``:

1. ``answers.jsonl``: the current policy (round 1: the base model) answers the round's training
   prompts (new prompts each round: every R-th prompt of the built-in training split and of the
   ``prompts.files``, :mod:`.prompts`);
2. ``preferences.jsonl``: decoupled labels of (answer, refusal) pairs (:mod:`.labels`);
3. ``reward-model/``, ``cost-model/``: ``train-reward`` / ``train-cost`` on every round's labels so far;
4. ``policy-run/``: ``train-policy`` (PPO-Lag by default) from the current policy, with the PTX term on
   the preferred answers so far; its ``policy/`` folder is the next round's policy;
5. ``output_dir/evaluation/``: ``saferlhf evaluate`` of the base model and every round's policy on the
   held-out built-in prompts and XSTest, scored by this round's reward and cost models; its report
   compares the rounds.

A stage whose output exists is never redone; a killed stage resumes from its checkpoint (score and
policy stages checkpoint; answers are cached). ``metrics.json`` holds, per model and evaluation set,
``harmful_compliance_rate``, ``false_refusal_rate`` and ``mean_benign_reward``, plus ``wall_time_s``
and ``peak_memory_gb``.
"""

from __future__ import annotations

import json
import resource
import shutil
import time
from pathlib import Path

import torch

from saferlhf.config import DataConfig, DataSource, ModelConfig, TrainConfig, from_dict, to_dict
from saferlhf.data.builtin import builtin_prompts
from saferlhf.models.model_card import publish
from saferlhf.pipeline.config import PipelineConfig
from saferlhf.pipeline.labels import (WaitingForLabels, label_pairs, make_pairs, preferred_answer, read_jsonl,
                                      sample_answers, write_jsonl)
from saferlhf.pipeline.prompts import training_prompts
from saferlhf.policy.config import OVER_REFUSAL
from saferlhf.runio import RunWriter
from saferlhf.training.tracking import flat_scalars, open_tracker

HELDOUT = "heldout"  # the evaluation set of the built-in held-out prompts
BENIGN = "benign"


def round_prompts(rows: list[dict], round_index: int, rounds: int, limit: int) -> list[dict]:
    """Round ``round_index``'s (1-based) training prompts: every ``rounds``-th row, then at most ``limit``
    of them evenly spaced (0 = all), so that every label and category of the file keeps its share."""
    chosen = rows[round_index - 1::rounds]
    if not limit or len(chosen) <= limit:
        return chosen
    return [chosen[i * len(chosen) // limit] for i in range(limit)]


def run(config: PipelineConfig) -> dict:
    if config.quick:
        config.apply_quick()
    started = time.perf_counter()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    output_dir = Path(config.output_dir)
    writer = RunWriter(output_dir, resume=True,
                       tracker=open_tracker(config.report_to, output_dir, "pipeline", to_dict(config)))
    writer.write_config(to_dict(config))
    train_rows = training_prompts(config.prompts)
    benchmarks = evaluation_sets(config, output_dir)
    models = [("base", config.base_model)]
    policy, rounds = config.base_model, []
    print(f"[saferlhf pipeline] {config.rounds} round(s), {config.policy.algorithm}, annotator "
          f"{config.annotator.method}; evaluation on {', '.join(b['name'] for b in benchmarks)}", flush=True)
    for index in range(1, config.rounds + 1):
        folder = output_dir / f"round-{index}"
        rows = round_prompts(train_rows, index, config.rounds, config.sampling.prompts_per_round)
        print(f"[saferlhf pipeline] round {index}: {len(rows)} prompts", flush=True)
        try:
            label_round(config, policy, rows, folder)
        except WaitingForLabels as waiting:
            print(f"[saferlhf pipeline] round {index}: waiting for labels. {waiting}", flush=True)
            return {"status": "waiting_for_labels", "round": index}
        preference_files = [output_dir / f"round-{k}" / "preferences.jsonl" for k in range(1, index + 1)]
        scores = {kind: train_score_model(config, kind, preference_files, folder / f"{kind}-model")
                  for kind in ("reward", "cost")}
        policy, policy_metrics = train_policy(config, policy, rows, preference_files, folder)
        models.append((f"round-{index}", policy))
        evaluation = evaluate(config, models, benchmarks, folder, output_dir / "evaluation",
                              controls=index == config.rounds)
        rounds.append({"round": index, "prompts": len(rows), "reward_model": scores["reward"],
                       "cost_model": scores["cost"], "policy": policy_metrics})
        so_far = summary(evaluation, models, rounds, started)
        writer.write_metrics(so_far)
        if writer.tracker is not None:  # the rates of every model so far, at step = round
            writer.tracker.log(flat_scalars(so_far["models"], "pipeline/", "/"), index)
    metrics = summary(evaluation, models, rounds, started)
    metrics["safety_test"] = safety_tests(config, models, rounds, output_dir)
    metrics.update(publish(policy, "pipeline-final", config.hub, base_model=config.base_model,
                           data=(["built-in prompts"] if config.prompts.builtin else [])
                           + [f.path for f in config.prompts.files], metrics=metrics, config=to_dict(config),
                           notes=f"The policy of round {config.rounds} of a `saferlhf pipeline` run "
                                 f"({config.policy.algorithm}); its reward and cost models are in "
                                 f"round-{config.rounds}/reward-model and cost-model."))
    writer.write_metrics(metrics)
    print(results_table(metrics), flush=True)
    writer.finish()
    return metrics


def label_round(config: PipelineConfig, policy: str, rows: list[dict], folder: Path) -> None:
    """``answers.jsonl`` and ``preferences.jsonl`` of a round (kept when they exist)."""
    if (folder / "preferences.jsonl").exists():
        return
    sampling = config.sampling
    answers = sample_answers(policy, [row["prompt"] for row in rows], folder / "answers.jsonl",
                             sampling.max_new_tokens, sampling.temperature, sampling.batch_size, config.seed,
                             config.precision)
    records = label_pairs(make_pairs(rows, answers), config.annotator.method, folder, config.annotator.judge)
    write_jsonl(folder / "preferences.jsonl", [record.to_dict() for record in records])


def train_score_model(config: PipelineConfig, kind: str, preference_files: list[Path], folder: Path) -> dict:
    """Reward or cost model on every round's labels so far (a seeded split held out); kept when finished."""
    from saferlhf.stages.score_training import ScoreStageConfig, train_score_model as train

    if not (folder / "metrics.json").exists():
        score = config.score_models
        stage = ScoreStageConfig(
            model=ModelConfig(name_or_path=score.backbone),
            data=DataConfig(train=[DataSource(path=str(p)) for p in preference_files], eval_fraction=score.eval_fraction,
                            split_seed=config.seed, max_length=score.max_length),
            train=TrainConfig(**{**to_dict(score.train), **_shared_train_keys(config)}),
            output_dir=str(folder), resume=True, report_to=config.report_to)
        train(stage, kind)
    metrics = json.loads((folder / "metrics.json").read_text())
    return {key: metrics.get(key) for key in ("eval_accuracy", "eval_sign_accuracy", "num_train_pairs", "num_eval_pairs")}


def train_policy(config: PipelineConfig, policy: str, rows: list[dict], preference_files: list[Path],
                 folder: Path) -> tuple[str, dict]:
    """``train-policy`` from ``policy`` on the round's prompts; returns the new policy folder and its metrics."""
    from saferlhf.policy import stage

    run_dir = folder / "policy-run"
    metrics_file = run_dir / "metrics.json"
    if metrics_file.exists() and json.loads(metrics_file.read_text()).get("status") == "finished":
        return str(run_dir / "policy"), _policy_summary(json.loads(metrics_file.read_text()))
    write_jsonl(folder / "prompts.jsonl", [{key: row[key] for key in ("prompt", "label", "category")} for row in rows])
    if config.policy.algorithm == "sacpo":
        return sacpo_policy(config, policy, preference_files, run_dir)
    preferred = [(r["prompt"], preferred_answer(r)) for path in preference_files for r in read_jsonl(path)]
    preferred = [(p, a) for p, a in preferred if a is not None]
    write_jsonl(folder / "preferred.jsonl", [{"prompt": p, "response": a} for p, a in preferred])
    p = config.policy
    lagrange = to_dict(p.lagrange)
    if p.cost_threshold == "auto":
        lagrange["cost_threshold"] = auto_threshold(folder / "cost-model", preferred, config.score_models.max_length,
                                                    config.precision)
        print(f"[saferlhf pipeline] cost threshold d = {lagrange['cost_threshold']:.3f} (mean cost of the "
              f"{len(preferred)} preferred answers)", flush=True)
    train = {**to_dict(p.train), **_shared_train_keys(config)}
    policy_config = from_dict(stage.PolicyStageConfig, {
        "algorithm": p.algorithm,
        "actor": {"name_or_path": policy, "lora": to_dict(p.lora)},
        "reward": {"path": str(folder / "reward-model")}, "cost": {"path": str(folder / "cost-model")},
        "data": {"train": [{"path": str(folder / "prompts.jsonl"), "format": "prompts"}],
                 "max_length": config.score_models.max_length},
        "rollout": to_dict(p.rollout), "ppo": to_dict(p.ppo), "critic_free": to_dict(p.critic_free),
        "lagrange": lagrange, "constraints": policy_constraints(p, folder / "prompts.jsonl"), "train": train,
        "ptx": {"data": [{"path": str(folder / "preferred.jsonl")}] if p.ptx_coeff > 0 else [], "coeff": p.ptx_coeff,
                "batch_size": p.ptx_batch_size},
        "output_dir": str(run_dir), "resume": True, "report_to": config.report_to,
    })
    return str(run_dir / "policy"), _policy_summary(stage.run(policy_config))


def _shared_train_keys(config: PipelineConfig) -> dict:
    """The pipeline's own seed, threads and precision override every stage's."""
    return {"seed": config.seed, "num_threads": config.num_threads, "precision": config.precision}


def sacpo_policy(config: PipelineConfig, policy: str, preference_files: list[Path], run_dir: Path) -> tuple[str, dict]:
    """SACPO (``saferlhf dpo objective=sacpo``) from ``policy`` on the labelled pairs so far, with the policy
    section's LoRA and train settings (``train.max_steps`` per DPO step): the data and budget of PPO-Lag."""
    from saferlhf.stages import dpo

    p = config.policy
    metrics = dpo.run(from_dict(dpo.DPOStageConfig, {
        "model": {"name_or_path": policy, "lora": to_dict(p.lora)}, "objective": "sacpo",
        "train_data": [{"path": str(path)} for path in preference_files],
        "train": {**to_dict(p.train), **_shared_train_keys(config)},
        "max_length": config.score_models.max_length, "output_dir": str(run_dir / "policy"),
        "report_to": config.report_to}))
    steps = dpo.STEPS["sacpo"]
    summary = {"status": "finished", "algorithm": "sacpo", "steps": sum(metrics[step]["steps"] for step in steps),
               **{f"{step}/{key}": value for step in steps for key, value in metrics[step].items()}}
    RunWriter(run_dir, resume=True).write_metrics(summary)
    shutil.copyfile(run_dir / "policy" / "log.jsonl", run_dir / "log.jsonl")  # the report's training curves
    return str(run_dir / "policy"), summary


def policy_constraints(p, labelled_prompts: Path) -> list[dict]:
    """``policy.constraints`` plus, with ``policy.over_refusal_threshold``, the over-refusal constraint; labels
    (harmless or not, category) default to the round's own labelled prompts."""
    constraints = [to_dict(item) for item in p.constraints]
    if p.over_refusal_threshold is not None:
        constraints.append({"name": "over_refusal", "cost": {"path": OVER_REFUSAL},
                            "lagrange": {**to_dict(p.lagrange), "cost_threshold": p.over_refusal_threshold}})
    for item in constraints:
        item["labels"] = item.get("labels") or [{"path": str(labelled_prompts)}]
    return constraints


def auto_threshold(cost_model: Path, preferred: list[tuple], max_length: int, precision: str = "auto") -> float:
    """d = mean C over the preferred answers: the constraint asks the policy to be as harmless as they are
    (scored in the dtype the policy stage's cost scorer uses)."""
    from saferlhf.evaluation.scoring import score_with_folder
    from saferlhf.models.precision import torch_dtype

    costs, _ = score_with_folder(str(cost_model), [p for p, _ in preferred], [a for _, a in preferred], max_length,
                                 description="cost threshold", dtype=torch_dtype(precision), kind="cost")
    return float(sum(costs) / len(costs))


def _policy_summary(metrics: dict) -> dict:
    keys = ("algorithm", "steps", "lambda", "final/reward", "final/cost", "final/kl", "final/episode_cost",
            "final/cost_threshold")
    per_constraint = [key for key in metrics if key.startswith(("lambda/", "final/cost/", "final/episode_cost/"))]
    return {key: metrics.get(key) for key in (*keys, *per_constraint) if key in metrics}


def evaluation_sets(config: PipelineConfig, output_dir: Path) -> list[dict]:
    """The evaluation sets as ``evaluate`` benchmark sections; the held-out built-in prompts are written to a file
    (category ``<label>/<category>``: benign and pseudo-harmful prompts are both ``harmless``)."""
    e, sets = config.evaluation, []
    if e.heldout:
        path = output_dir / f"{HELDOUT}.jsonl"  # evaluate names a file set by its stem
        write_jsonl(path, [{"id": r["id"], "prompt": r["prompt"], "category": f"{r['label']}/{r['category']}",
                            "label": "harmful" if r["label"] == "harmful" else "harmless"}
                           for r in builtin_prompts(split="heldout")])
        sets.append({"name": HELDOUT, "path": str(path)})
    if e.xstest_path:
        if Path(e.xstest_path).exists():
            sets.append({"name": "xstest", "path": e.xstest_path, "limit": e.xstest_limit})
        else:
            print(f"[saferlhf pipeline] XSTest not found at {e.xstest_path}: evaluating without it", flush=True)
    if not sets:
        raise ValueError("config key 'evaluation': no evaluation set (heldout is off and XSTest is missing)")
    return sets


def evaluate(config: PipelineConfig, models: list[tuple[str, str]], benchmarks: list[dict], folder: Path,
             output_dir: Path, controls: bool = False) -> tuple[dict, list[dict]]:
    """``saferlhf evaluate`` on every model so far (answers of earlier rounds are reused), scored by this round's
    reward and cost models, with ``evaluation.controls`` when ``controls`` (the last round; model '' = the
    newest policy); returns its metrics and its answer records."""
    from saferlhf.evaluation.stage import EvaluateConfig, run as run_evaluate

    e = config.evaluation
    compared = [(_run_name(path), _final_policy(path)) for path in e.compare_runs]
    rounds = [name for name, _ in models]
    logs = [str(Path(config.output_dir) / f"round-{i}" / "policy-run") for i in range(1, len(models))]
    evaluate_config = from_dict(EvaluateConfig, {
        "models": [{"name": name, "name_or_path": path} for name, path in models + compared],
        "benchmarks": benchmarks,
        "generation": {"max_new_tokens": e.max_new_tokens, "batch_size": e.batch_size, "temperature": 0.0,
                       "seed": config.seed, "num_threads": config.num_threads},
        "refusal": {"detectors": "both" if e.classifier_path else "rules", "classifier_path": e.classifier_path},
        "scoring": {"reward_model": str(folder / "reward-model"), "cost_model": str(folder / "cost-model"),
                    "max_length": config.score_models.max_length},
        "training_logs": logs, "rounds": rounds, "output_dir": str(output_dir), "precision": config.precision,
        "reuse_from": [str(Path(path) / "evaluation" / "generations.jsonl") for path in e.compare_runs],
        "report_to": config.report_to,
        "controls": [{**to_dict(c), "model": c.model or models[-1][1]} for c in e.controls] if controls else [],
    })
    metrics = run_evaluate(evaluate_config)
    return metrics, read_jsonl(output_dir / "generations.jsonl")


def safety_tests(config: PipelineConfig, models: list[tuple[str, str]], rounds: list[dict], output_dir: Path) -> dict:
    """``saferlhf safety-test`` of the base model and the final policy, on the held-out answers the evaluation
    already made (reused, not generated again); the cost test uses the last round's cost model and threshold d."""
    from saferlhf.evaluation.safety_test import SafetyTestConfig, run as run_safety_test

    s, e = config.safety_test, config.evaluation
    if not (s.enabled and e.heldout):
        return {}
    threshold = rounds[-1]["policy"].get("final/cost_threshold")
    results = {}
    for name, path in (models[0], models[-1]):
        results[name] = run_safety_test(from_dict(SafetyTestConfig, {
            "model": {"name_or_path": path}, "delta": s.delta, "compliance_threshold": s.compliance_threshold,
            "generation": {"max_new_tokens": e.max_new_tokens, "batch_size": e.batch_size, "temperature": 0.0,
                           "seed": config.seed, "num_threads": config.num_threads},
            "scoring": {"cost_model": str(output_dir / f"round-{len(rounds)}" / "cost-model") if threshold is not None
                        else "", "max_length": config.score_models.max_length},
            "cost_threshold": threshold if threshold is not None else 0.0, "progress": False,
            "reuse_from": [str(output_dir / "evaluation" / "generations.jsonl")],
            "output_dir": str(output_dir / "safety-test" / name)}))
    return results


def _run_name(path: str) -> str:
    config_file = Path(path) / "config.yaml"
    if config_file.exists():
        import yaml

        algorithm = (yaml.safe_load(config_file.read_text()) or {}).get("policy", {}).get("algorithm")
        if algorithm:
            return f"{algorithm} ({Path(path).name})"
    return Path(path).name


def _final_policy(path: str) -> str:
    rounds = sorted(Path(path).glob("round-*/policy-run/policy"), key=lambda p: int(p.parts[-3].split("-")[1]))
    if not rounds:
        raise ValueError(f"config key 'evaluation.compare_runs': {path} has no finished round (round-N/policy-run/policy)")
    return str(rounds[-1])


def mean_benign_reward(records: list[dict], model: str, benchmark: str) -> float | None:
    """Mean reward of ``model``'s answers to the benign prompts of ``benchmark`` (XSTest: its safe prompts;
    held-out: the ``benign`` prompts, not the pseudo-harmful ones)."""
    values = [r["reward"] for r in records if r["model"] == model and r["benchmark"] == benchmark
              and r["label"] == "harmless" and r.get("reward") is not None
              and (benchmark != HELDOUT or str(r.get("category", "")).startswith(BENIGN + "/"))]
    return sum(values) / len(values) if values else None


def summary(evaluation: tuple[dict, list[dict]], models: list[tuple[str, str]], rounds: list[dict], started: float) -> dict:
    """``metrics.json`` of the pipeline: the headline rates per model and set, the rounds, time and memory."""
    evaluation, records = evaluation
    table = {}
    for model, per_set in evaluation["models"].items():
        table[model] = {name: {"harmful_compliance_rate": s.get("harmful_compliance_rate"),
                               "false_refusal_rate": s.get("false_refusal_rate"),
                               "mean_benign_reward": mean_benign_reward(records, model, name),
                               "mean_cost": s.get("cost_mean"), "unsafe_share": s.get("unsafe_share"),
                               **_harmful_costs(s)}
                        for name, s in per_set.items()}
    usage = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return {"models": table, **({"controls": evaluation["controls"]} if "controls" in evaluation else {}),
            "rounds": rounds, "policies": dict(models), "precision": evaluation.get("precision"),
            "wall_time_s": time.perf_counter() - started, "peak_memory_gb": usage / 1024 ** 2}


def _harmful_costs(set_metrics: dict) -> dict:
    """Mean cost of the answers to harmful prompts, refused vs complied: does this round's cost model tell
    the policy's own refusals from its harmful answers? (None where a group is empty or nothing is scored.)"""
    by_verdict = set_metrics.get("scores_by_verdict", {})
    return {f"harmful_cost_{key}": by_verdict.get(f"harmful/{verdict}", {}).get("cost_mean")
            for key, verdict in (("refused", "refusal"), ("complied", "compliance"))}


def results_table(metrics: dict) -> str:
    """The headline table (markdown), as printed at the end and copied into the README."""
    lines = ["| model | set | harmful compliance | false refusal | mean benign reward "
             "| cost on harmful prompts: refused / complied |", "|---|---|---|---|---|---|"]
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    num = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    for model, per_set in metrics["models"].items():
        for name, s in per_set.items():
            costs = f"{num(s.get('harmful_cost_refused'))} / {num(s.get('harmful_cost_complied'))}"
            lines.append(f"| {model} | {name} | {pct(s['harmful_compliance_rate'])} | {pct(s['false_refusal_rate'])} "
                         f"| {num(s['mean_benign_reward'])} | {costs} |")
    sets = list(dict.fromkeys(name for per_set in metrics["models"].values() for name in per_set))
    for name, control in metrics.get("controls", {}).items():  # the final policy under each control
        for bench in (bench for bench in sets if bench in control):
            s = control[bench]
            lines.append(f"| control:{name} (threshold {num(control.get('threshold'))}) | {bench} "
                         f"| {pct(s['harmful_compliance_rate'])} | {pct(s['false_refusal_rate'])} | – | – / – |")
    for model, result in metrics.get("safety_test", {}).items():
        tests = "; ".join(f"{test}: {t['estimate']:.3f}, bound {t['upper_bound']:.3f} ({t['method']}, n = {t['n']}) "
                          f"vs {t['threshold']:.3f}" for test, t in result["tests"].items())
        lines.append(f"\nsafety test of {model} (δ = {next(iter(result['tests'].values()))['delta']}): "
                     f"{'PASS' if result['passed'] else 'FAIL'}: {tests}")
    return "\n".join(lines)
