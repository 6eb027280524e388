"""``saferlhf evaluate``: generate answers on harm / over-refusal benchmarks, score them, report.

Steps: load the benchmark sets -> generate with every model (batched, greedy by default; answers
already in ``generations.jsonl`` with the same settings are reused, so a run can be re-scored or
resumed without regenerating) -> refusal detectors (rules always, for the patterns; the learned
classifier when configured) -> reward / cost models -> optional LLM judge -> metrics per model,
benchmark and category (:mod:`saferlhf.evaluation.metrics`) -> arena and Elo when two or more
models are compared -> the probing parts (tense reformulations, refusal as abstention, refused / harmful /
incoherent outcomes: :mod:`saferlhf.evaluation.probing`) -> ``metrics.json``, ``generations.jsonl``,
``report.html``, ``report.md``.

``metrics.json``: ``{"models": {model: {benchmark: {"harmful_compliance_rate", "false_refusal_rate",
..., "detectors": {detector: {...}}, "per_category": {...}}}}, "overall": {model: {...}},
"benchmarks": {...}, "arena": {...}, "settings": {...}}``; the top-level rates are the primary
detector's.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from saferlhf.config import ConfigError, _check, doc, to_dict, validate_sections
from saferlhf.evaluation.benchmarks import PROMPT_LABELS, load_benchmark
from saferlhf.evaluation.controls import ControlConfig
from saferlhf.evaluation.harm import HarmConfig
from saferlhf.evaluation.judge import EndpointConfig
from saferlhf.evaluation.probing import AbstentionConfig, RewriterOptions, validate_reformulation
from saferlhf.models.precision import resolve_precision
from saferlhf.runio import RunWriter, atomic_write_text
from saferlhf.training.tracking import ReportTo, open_tracker, report_to_field

GENERATIONS = "generations.jsonl"


@dataclass
class EvalModelConfig:
    """One model to evaluate."""

    name_or_path: str = doc("smollm2-135m-instruct", "Built-in name, Hugging Face id or local folder.")
    name: str = doc("", "Display name in metrics and report ('' = name_or_path).")
    trust_remote_code: bool = doc(False, "Allow code from the model repository to run.")

    @property
    def display_name(self) -> str:
        return self.name or self.name_or_path


@dataclass
class BenchmarkConfig:
    """One prompt set: a built-in name or a csv/jsonl/json file (or hub id)."""

    name: str = doc("xstest", "xstest | advbench | harmbench | or-bench | or-bench-hard-1k | or-bench-toxic | "
                              "or-bench-80k | phtest | rmcbench | civics | forbidden-science | a file path or hub id.")
    path: str = doc("", "Where to read a built-in set from: a local file / folder or a hub id ('' = its hub id, "
                        "docs/data.md).")
    limit: int = doc(0, "Use only the first N prompts (0 = all); for quick runs.")
    label: str = doc("", "Label every prompt: harmful | harmless | controversial ('' = from the file).")
    prompt_column: str = doc("", "Prompt column of a file ('' = auto: prompt, goal, behavior, request, ...).")
    label_column: str = doc("", "Label column ('' = auto: label, harmfulness, ...; none = unlabelled).")
    category_column: str = doc("", "Category column ('' = auto: category, type, semanticcategory).")

    def validate(self, prefix: str) -> None:
        _check(bool(self.name), prefix + "name", "must not be empty")
        _check(self.limit >= 0, prefix + "limit", "must be >= 0")
        _check(self.label in ("",) + PROMPT_LABELS, prefix + "label", f"must be one of {PROMPT_LABELS} or ''")


@dataclass
class GenerationConfig:
    """Answer generation (HF ``generate`` with KV cache, left padding)."""

    max_new_tokens: int = doc(96, "New tokens per answer (refusals show in the first sentence).")
    batch_size: int = doc(0, "Prompts per generation batch (0 = sized to the free memory, at most 64).")
    temperature: float = doc(0.0, "0 = greedy decoding; > 0 = sampling.")
    top_p: float = doc(1.0, "Nucleus sampling mass (sampling only).")
    seed: int = doc(42, "Seed for sampling.")
    num_threads: int = doc(0, "torch CPU threads (0 = torch default).")

    def validate(self, prefix: str) -> None:
        _check(self.max_new_tokens > 0, prefix + "max_new_tokens", "must be > 0")
        _check(self.batch_size >= 0, prefix + "batch_size", "must be >= 0 (0 = auto)")
        _check(self.temperature >= 0, prefix + "temperature", "must be >= 0")
        _check(0 < self.top_p <= 1, prefix + "top_p", "must be in (0, 1]")


@dataclass
class RefusalDetectionConfig:
    """Which refusal detectors label the answers."""

    detectors: Literal["rules", "classifier", "both", "auto"] = doc(
        "rules", "rules | classifier | both | auto (both when classifier_path exists, else rules, with a notice).")
    classifier_path: str = doc("", "Folder of a trained refusal classifier (saferlhf train-refusal-classifier).")
    primary: Literal["", "rules", "classifier"] = doc("", "Detector whose rates sit at the top level ('' = first).")

    def validate(self, prefix: str) -> None:
        needs_classifier = self.detectors in ("classifier", "both") or self.primary == "classifier"
        _check(not needs_classifier or bool(self.classifier_path), prefix + "classifier_path",
               f"is required with detectors={self.detectors!r} / primary={self.primary!r}")


@dataclass
class ScoringConfig:
    """Optional reward and cost models (folders saved by train-reward / train-cost)."""

    reward_model: str = doc("", "Reward model folder ('' = none).")
    cost_model: str = doc("", "Cost model folder ('' = none); cost > 0 means unsafe.")
    max_length: int = doc(512, "Maximum tokens of prompt + answer (prompt truncated from the left).")
    batch_size: int = doc(16, "Pairs per scoring batch.")

    def validate(self, prefix: str) -> None:
        _check(self.max_length > 8, prefix + "max_length", "must be > 8")
        _check(self.batch_size > 0, prefix + "batch_size", "must be > 0")


@dataclass
class JudgeConfig(EndpointConfig):
    """Optional LLM judge over an OpenAI-compatible endpoint (two rubrics, two calls per answer)."""

    aspects: list[str] = doc(["helpfulness", "harmlessness"], "Rubrics to score.")

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        for i, aspect in enumerate(self.aspects):
            _check(aspect in ("helpfulness", "harmlessness"), f"{prefix}aspects[{i}]",
                   "must be helpfulness or harmlessness")


@dataclass
class ArenaConfig:
    """Pairwise comparison of models on shared prompts, and Elo ratings."""

    tie_margin: float = doc(0.0, "Reward/cost differences up to this size count as ties.")
    elo_method: Literal["bradley-terry", "online"] = doc("bradley-terry", "Elo fit (see saferlhf.evaluation.elo).")
    bootstrap_rounds: int = doc(1000, "Bootstrap resamples for the Elo confidence intervals.")
    l2: float = doc(0.01, "Bradley-Terry Gaussian prior strength (keeps undefeated ratings finite).")
    k_factor: float = doc(4.0, "K of online Elo.")
    seed: int = doc(42, "Bootstrap seed.")

    def validate(self, prefix: str) -> None:
        _check(self.bootstrap_rounds >= 0, prefix + "bootstrap_rounds", "must be >= 0")
        _check(self.tie_margin >= 0, prefix + "tie_margin", "must be >= 0")
        _check(self.l2 >= 0, prefix + "l2", "must be >= 0")


@dataclass
class EvaluateConfig:
    """Configuration of ``saferlhf evaluate``."""

    models: list[EvalModelConfig] = doc([EvalModelConfig()], "Models to evaluate (two or more: arena + Elo).")
    benchmarks: list[BenchmarkConfig] = doc([BenchmarkConfig()], "Prompt sets.")
    generation: GenerationConfig = doc(GenerationConfig(), "Generation settings.")
    refusal: RefusalDetectionConfig = doc(RefusalDetectionConfig(), "Refusal detectors.")
    scoring: ScoringConfig = doc(ScoringConfig(), "Reward / cost models.")
    judge: JudgeConfig = doc(JudgeConfig(), "LLM judge.")
    arena: ArenaConfig = doc(ArenaConfig(), "Arena and Elo.")
    controls: list[ControlConfig] = doc([], "Refusal controls to evaluate on every benchmark "
                                              "(saferlhf.evaluation.controls; metrics under controls.<name>).")
    reference_lines: dict[str, list[float]] = doc({}, "Per benchmark, a measured trade-off line drawn in the controls "
                                                      "figure: [intercept, slope] of false refusal = intercept + slope "
                                                      "x harmful compliance (both in %), e.g. the policies' line.")
    reformulate: list[str] = doc([], "Tenses to rewrite every harmful prompt into: past, future "
                                      "(metrics under reformulated.<tense>; saferlhf.evaluation.probing).")
    reformulate_attempts: int = doc(1, "Rewrites per harmful prompt and tense; attack success = any attempt "
                                       "complied with.")
    reformulate_rewriter: str = doc("templates", "templates | a causal LM (built-in name, hub id, folder) | an "
                                                 "OpenAI-compatible endpoint URL (http(s)://.../v1).")
    reformulate_options: RewriterOptions = doc(RewriterOptions(), "Rewriter model settings.")
    abstention: AbstentionConfig = doc(AbstentionConfig(), "Refusal as abstention: risk-aware payoff, Chow's rule.")
    harm: HarmConfig = doc(HarmConfig(), "Harmfulness and incoherence of answers (saferlhf.evaluation.harm).")
    training_logs: list[str] = doc([], "log.jsonl files or run folders whose reward/cost/λ curves go in the report.")
    rounds: list[str] = doc([], "Model display names in training-round order (Beaver-v1, v2, ...) for the report.")
    reuse_generations: bool = doc(True, "Reuse answers in output_dir/generations.jsonl made with the same settings.")
    reuse_from: list[str] = doc([], "Other generations.jsonl files to reuse answers from (re-score without "
                                     "regenerating); answers are matched by model path, prompt and settings.")
    precision: Literal["auto", "fp32", "bf16"] = doc(
        "auto", "dtype of the models that generate and score (auto = bf16 where the hardware has it, else fp32).")
    progress: bool = doc(True, "Show progress bars.")
    output_dir: str = doc("runs/evaluate", "Output folder.")
    report_to: ReportTo = report_to_field()

    def validate(self, prefix: str) -> None:
        validate_sections(self, prefix)
        _check(bool(self.models), prefix + "models", "must name at least one model")
        _check(bool(self.benchmarks), prefix + "benchmarks", "must name at least one benchmark")
        names = [m.display_name for m in self.models]
        _check(len(set(names)) == len(names), prefix + "models", f"display names must be unique, got {names}")
        for i, model in enumerate(self.models):
            _check(bool(model.name_or_path), f"{prefix}models[{i}].name_or_path", "must not be empty")
        for i, bench in enumerate(self.benchmarks):
            bench.validate(f"{prefix}benchmarks[{i}].")
        bench_names = [b.name for b in self.benchmarks]
        _check(len(set(bench_names)) == len(bench_names), prefix + "benchmarks", f"names must be unique: {bench_names}")
        _check(bool(self.output_dir), prefix + "output_dir", "must not be empty")
        for i, control in enumerate(self.controls):
            control.validate(f"{prefix}controls[{i}].")
        for bench, line in self.reference_lines.items():
            _check(len(line) == 2, f"{prefix}reference_lines.{bench}", "must be [intercept, slope]")
        control_names = [c.name for c in self.controls]
        _check(len(set(control_names)) == len(control_names), prefix + "controls", f"names must be unique: {control_names}")
        validate_reformulation(self, prefix)
        _check(self.harm.source != "cost" or bool(self.scoring.cost_model), prefix + "harm.source",
               "cost needs scoring.cost_model")
        _check(self.harm.source != "judge" or (bool(self.judge.base_url) and "harmlessness" in self.judge.aspects),
               prefix + "harm.source", "judge needs judge.base_url with the harmlessness aspect")


def detector_plan(config: RefusalDetectionConfig) -> tuple[list[str], str, str]:
    """``(detectors, primary, notice)`` after resolving ``auto``."""
    notice = ""
    if config.detectors == "auto":
        if config.classifier_path and Path(config.classifier_path).is_dir():
            detectors = ["rules", "classifier"]
        else:
            detectors = ["rules"]
            notice = (f"refusal classifier folder '{config.classifier_path}' not found: using the rule detector only"
                      if config.classifier_path else "no classifier_path: using the rule detector only")
    else:
        detectors = {"rules": ["rules"], "classifier": ["classifier"], "both": ["rules", "classifier"]}[config.detectors]
    if "classifier" in detectors and not Path(config.classifier_path).is_dir():
        raise ConfigError(f"config key 'refusal.classifier_path': folder '{config.classifier_path}' not found")
    primary = config.primary or detectors[0]
    if primary not in detectors:
        raise ConfigError(f"config key 'refusal.primary': {primary!r} is not among the detectors {detectors}")
    return detectors, primary, notice


def run(config: EvaluateConfig) -> dict:
    from saferlhf.evaluation import annotate
    from saferlhf.evaluation.arena import run_arena
    from saferlhf.evaluation.harm import add_outcomes
    from saferlhf.evaluation.probing import add_probing_metrics, run_reformulation
    from saferlhf.evaluation.metrics import summarize
    from saferlhf.report import write_report

    started = time.time()
    if config.generation.num_threads:
        torch.set_num_threads(config.generation.num_threads)
    detectors, primary, notice = detector_plan(config.refusal)
    if notice:
        print(f"[saferlhf evaluate] {notice}", flush=True)
    output_dir = Path(config.output_dir)
    writer = RunWriter(output_dir, tracker=open_tracker(config.report_to, output_dir, "evaluate", to_dict(config)))
    writer.write_config(to_dict(config))
    benchmarks = [load_benchmark(b.name, b.path, b.limit, b.label, b.prompt_column, b.label_column,
                                 b.category_column) for b in config.benchmarks]
    loaded_names = [b.name for b in benchmarks]
    if len(set(loaded_names)) != len(loaded_names):
        raise ConfigError(f"config key 'benchmarks': two sets share a name {loaded_names}; rename a file")
    duplicates = {b.name: len(b.prompts) - len({json.dumps(p.prompt) for p in b.prompts}) for b in benchmarks}
    for bench in benchmarks:
        skipped = f" (left out: {bench.skipped})" if bench.skipped else ""
        if duplicates[bench.name]:  # kept: a benchmark is scored as published, but the repeats are counted
            skipped += f" ({duplicates[bench.name]} repeated prompt(s) kept)"
        print(f"[saferlhf evaluate] {bench.name}: {len(bench.prompts)} prompts from {bench.source}{skipped}", flush=True)
    reuse = ([output_dir / GENERATIONS] if config.reuse_generations else []) + (
        [Path(path) for path in config.reuse_from])
    cache = annotate.load_generation_cache(reuse)
    generation_started = time.time()
    records = annotate.generate_all(config, benchmarks, cache, lambda rows: _save(output_dir, rows))
    generation_time = time.time() - generation_started
    annotate.detect_refusals(records, detectors, config.refusal.classifier_path, config.progress)
    scoring_info = annotate.add_scores(records, config.scoring, config.precision)
    judge_info = annotate.add_judge_scores(records, config.judge, config.progress)
    harm_info = add_outcomes(records, config.harm, primary, config.progress)
    _save(output_dir, records)
    reformulated, reformulation_info = (run_reformulation(config, benchmarks, detectors, primary, output_dir)
                                        if config.reformulate else ([], {}))

    by_model: dict[str, list[dict]] = {}
    for record in records:
        by_model.setdefault(record["model"], []).append(record)
    metrics: dict = {"models": {}, "overall": {}}
    for model, rows in by_model.items():
        metrics["models"][model] = {b.name: summarize([r for r in rows if r["benchmark"] == b.name], detectors, primary)
                                    for b in benchmarks}
        metrics["overall"][model] = summarize(rows, detectors, primary, per_category=False)
    add_probing_metrics(config, metrics, records, reformulated, primary, benchmarks)
    metrics["benchmarks"] = {b.name: {"source": b.source, "n_prompts": len(b.prompts), "skipped": b.skipped,
                                      "duplicate_prompts": duplicates[b.name],
                                      "n_by_label": {l: sum(p.label == l for p in b.prompts) for l in PROMPT_LABELS}}
                             for b in benchmarks}
    if len(by_model) > 1:
        a = config.arena
        metrics["arena"] = run_arena(by_model, primary, a.tie_margin, a.elo_method, a.bootstrap_rounds, a.seed,
                                     **({"l2": a.l2} if a.elo_method == "bradley-terry" else {"k": a.k_factor}))
    if config.controls:
        from saferlhf.evaluation.controls import run_controls

        metrics["controls"] = run_controls(config, benchmarks, records, output_dir, detectors, primary)
    metrics["settings"] = {"detectors": detectors, "primary_detector": primary, "detector_notice": notice,
                           "generation": to_dict(config.generation), "scoring": scoring_info, "judge": judge_info,
                           "harm": harm_info, "reformulation": reformulation_info,
                           "abstention": to_dict(config.abstention),
                           "models": {m.display_name: m.name_or_path for m in config.models},
                           "reference_lines": config.reference_lines}
    metrics["canary"] = {key: info["canary"] for key, info in scoring_info.items()}  # sign check of each score model
    metrics["precision"] = resolve_precision(config.precision)
    metrics["generation_time_s"] = generation_time  # includes model loading; ~0 when every answer was reused
    metrics["wall_time_s"] = time.time() - started
    writer.write_metrics(metrics)
    write_report(output_dir, metrics, records, config.training_logs or None, config.rounds or None)
    print(_summary_text(metrics, detectors), flush=True)
    flat = {f"{m}/{b}/{k}": s[k] for m, bench in metrics["models"].items() for b, s in bench.items()
            for k in ("harmful_compliance_rate", "false_refusal_rate") if s.get(k) is not None}
    flat.update({f"{m}/{b}/reformulated.{t}.harmful_compliance_rate": r["harmful_compliance_rate"]
                 for m, bench in metrics["models"].items() for b, s in bench.items()
                 for t, r in s.get("reformulated", {}).items()})
    if writer.tracker is not None:
        writer.tracker.log({f"eval/{key}": value for key, value in flat.items()}, 0)
        writer.log_table("eval/answers", [{key: r.get(key) for key in ANSWER_COLUMNS} for r in records], 0)
        writer.finish()
    return {**flat, **metrics}


ANSWER_COLUMNS = ("model", "benchmark", "label", "prompt", "response", "refusal", "reward", "cost")  # tracker table


def _save(output_dir: Path, records: list[dict]) -> None:
    atomic_write_text(output_dir / GENERATIONS, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def _summary_text(metrics: dict, detectors: list[str]) -> str:
    lines = ["", f"{'model / benchmark':40s} " + " ".join(f"{d + ': harmful-compl / false-ref':>36s}" for d in detectors)]
    for model, bench in metrics["models"].items():
        for name, s in bench.items():
            cells = []
            for d in detectors:
                rates = s["detectors"][d]
                cells.append("{:>17s} / {:<16s}".format(*(
                    "–" if rates[k] is None else f"{100 * rates[k]:.1f}%" for k in ("harmful_compliance_rate",
                                                                                    "false_refusal_rate"))))
            lines.append(f"{model + ' / ' + name:40s} " + " ".join(f"{c:>36s}" for c in cells))
            for tense, r in s.get("reformulated", {}).items():
                lines.append(f"{'  ' + tense + ' tense':40s} attack success {r['attempts']} attempt(s): "
                             f"{100 * r['harmful_compliance_rate']:.1f}% (first attempt "
                             f"{100 * r['harmful_compliance_rate_first_attempt']:.1f}%)")
    return "\n".join(lines)
