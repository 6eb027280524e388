"""``saferlhf demo``: the built-in default on a fresh machine (no network beyond PyPI).

What it runs today (the stages that exist; the policy stage joins when ``train-policy`` lands):

1. answers from the built-in SmolLM2-135M-Instruct to the built-in prompt set
   (:mod:`saferlhf.data.builtin`; harmful, benign and pseudo-harmful prompts with a fixed held-out split);
2. decoupled labels for (sampled answer, project-written refusal) pairs from the built-in annotator
   (:mod:`saferlhf.pipeline.annotator`, rules documented there; not human labels);
3. a reward model and a cost model trained on the training prompts' pairs
   (``train-reward`` / ``train-cost``) and evaluated on the held-out prompts' pairs;
4. the base model's held-out answers measured: refusal-detector harmful-compliance and
   false-refusal rates, and the share of answers the cost model calls unsafe (cost > 0), per label.

Every step writes into ``output_dir`` and is skipped when its output exists, so a killed run
continues where it stopped.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass
from pathlib import Path

from saferlhf.config import DataConfig, DataSource, ModelConfig, TrainConfig, _check, doc, to_dict
from saferlhf.data.builtin import builtin_prompts
from saferlhf.pipeline.annotator import HARMFUL, annotate_pair
from saferlhf.pipeline.refusal_templates import refusal_for
from saferlhf.runio import RunWriter, atomic_write_text


@dataclass
class DemoConfig:
    base_model: str = doc("smollm2-135m-instruct", "Policy model whose answers are labelled and measured.")
    score_backbone: str = doc("minilm-l6", "Backbone of the reward and cost models.")
    prompts_per_label: int = doc(0, "Training prompts per label (0 = all of the built-in training split).")
    quick: bool = doc(False, "Small run: 16 training prompts per label, 12 held-out per label, 2 epochs.")
    max_new_tokens: int = doc(64, "Tokens generated per answer.")
    batch_size: int = doc(8, "Prompts per generation batch.")
    temperature: float = doc(0.7, "Sampling temperature of the answers (0 = greedy).")
    seed: int = doc(42, "Seed of sampling and training.")
    max_length: int = doc(256, "Maximum tokens of prompt + answer for the score models.")
    score_train: TrainConfig = doc(
        TrainConfig(epochs=3, learning_rate=5e-5, batch_size=16, warmup_ratio=0.1, logging_steps=5,
                    weight_decay=0.01), "Optimisation of the reward and cost models.")
    output_dir: str = doc("runs/demo", "Folder of the run.")

    def validate(self, prefix: str) -> None:
        _check(self.prompts_per_label >= 0, prefix + "prompts_per_label", "must be >= 0")
        _check(self.max_new_tokens > 0, prefix + "max_new_tokens", "must be > 0")
        _check(self.batch_size > 0, prefix + "batch_size", "must be > 0")
        self.score_train.validate(prefix + "score_train.")


def _per_label(rows: list[dict], limit: int) -> list[dict]:
    if not limit:
        return rows
    counts: dict[str, int] = {}
    kept = []
    for row in rows:
        if counts.get(row["label"], 0) < limit:
            counts[row["label"]] = counts.get(row["label"], 0) + 1
            kept.append(row)
    return kept


def sample_answers(config: DemoConfig, rows: list[dict], path: Path) -> list[str]:
    """The base model's answer to each prompt (cached in ``path``)."""
    if path.exists():
        cached = {r["id"]: r["answer"] for r in map(json.loads, path.read_text().splitlines())}
        if all(row["id"] in cached for row in rows):
            return [cached[row["id"]] for row in rows]
    from saferlhf.evaluation.generation import generate_responses
    from saferlhf.models.loading import load_causal_lm, load_tokenizer

    model = load_causal_lm(config.base_model)
    tokenizer = load_tokenizer(config.base_model, padding_side="left")
    answers = generate_responses(model, tokenizer, [row["prompt"] for row in rows], config.max_new_tokens,
                                 config.batch_size, config.temperature, seed=config.seed, description="sample answers")
    atomic_write_text(path, "".join(json.dumps({"id": r["id"], "answer": a}) + "\n" for r, a in zip(rows, answers)))
    return answers


def build_pairs(rows: list[dict], answers: list[str]) -> list[dict]:
    """(sampled answer, refusal) pairs in a prompt-dependent order, labelled by the built-in annotator."""
    records = []
    for index, (row, answer) in enumerate(zip(rows, answers)):
        refusal = refusal_for(row["prompt"])
        first, second = (answer, refusal) if index % 2 == 0 else (refusal, answer)
        record = annotate_pair(row["prompt"], row["label"], first, second, source=f"builtin:{row['id']}")
        records.append(record.to_dict())
    return records


def measure_answers(rows: list[dict], answers: list[str], cost_model_dir: Path | None) -> dict:
    """Refusal rates of the base model's answers per prompt label, and the cost model's unsafe share."""
    from saferlhf.refusal.patterns import detect_refusal, is_refusal

    metrics: dict[str, dict] = {}
    costs = None
    if cost_model_dir is not None:
        from saferlhf.evaluation.scoring import score_with_folder

        costs, _ = score_with_folder(str(cost_model_dir), [r["prompt"] for r in rows], answers)
    for label in sorted({row["label"] for row in rows}):
        index = [i for i, row in enumerate(rows) if row["label"] == label]
        refused = [is_refusal(detect_refusal(answers[i], rows[i]["prompt"]).label) for i in index]
        entry = {"prompts": len(index), "refusal_rate": sum(refused) / len(index)}
        entry["harmful_compliance_rate" if label == HARMFUL else "false_refusal_rate"] = (
            1 - entry["refusal_rate"] if label == HARMFUL else entry["refusal_rate"])
        if costs is not None:
            entry["cost_unsafe_share"] = sum(costs[i] > 0 for i in index) / len(index)
            entry["mean_cost"] = sum(costs[i] for i in index) / len(index)
        metrics[label] = entry
    return metrics


def run(config: DemoConfig) -> dict:
    from saferlhf.stages.score_training import ScoreStageConfig, train_score_model

    started = time.perf_counter()
    output_dir = Path(config.output_dir)
    writer = RunWriter(output_dir, resume=True)
    writer.write_config(to_dict(config))
    per_label = 16 if config.quick else config.prompts_per_label
    train_rows = _per_label(builtin_prompts(split="train"), per_label)
    heldout_rows = _per_label(builtin_prompts(split="heldout"), 12 if config.quick else 0)
    print(f"[saferlhf demo] {len(train_rows)} training and {len(heldout_rows)} held-out built-in prompts")

    answers = sample_answers(config, train_rows + heldout_rows, output_dir / "answers.jsonl")
    train_answers, heldout_answers = answers[: len(train_rows)], answers[len(train_rows):]
    for name, rows, part in (("train", train_rows, train_answers), ("heldout", heldout_rows, heldout_answers)):
        atomic_write_text(output_dir / "data" / f"{name}.jsonl",
                          "".join(json.dumps(r) + "\n" for r in build_pairs(rows, part)))

    train = TrainConfig(**{**to_dict(config.score_train), "seed": config.seed})
    if config.quick:
        train.epochs = 2.0
    stages = {}
    for kind in ("reward", "cost"):
        stage_dir = output_dir / f"{kind}-model"
        if not (stage_dir / "metrics.json").exists():
            stage = ScoreStageConfig(
                model=ModelConfig(name_or_path=config.score_backbone),
                data=DataConfig(train=[DataSource(path=str(output_dir / "data" / "train.jsonl"))],
                                eval=[DataSource(path=str(output_dir / "data" / "heldout.jsonl"))],
                                max_length=config.max_length),
                train=train, output_dir=str(stage_dir), resume=True)
            train_score_model(stage, kind)
        stages[kind] = json.loads((stage_dir / "metrics.json").read_text())

    metrics = {
        "base_model": config.base_model,
        "num_train_prompts": len(train_rows), "num_heldout_prompts": len(heldout_rows),
        "reward_model": {k: stages["reward"][k] for k in ("eval_accuracy", "num_train_pairs", "num_eval_pairs")},
        "cost_model": {k: stages["cost"].get(k) for k in ("eval_accuracy", "eval_sign_accuracy", "num_train_pairs",
                                                          "num_eval_pairs")},
        "base_model_heldout": measure_answers(heldout_rows, heldout_answers, output_dir / "cost-model"),
        "wall_time_s": time.perf_counter() - started,
        "peak_memory_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2,
    }
    writer.write_metrics(metrics)
    return metrics
