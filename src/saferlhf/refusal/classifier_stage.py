"""``saferlhf train-refusal-classifier``: fine-tune the learned refusal classifier and measure it.

1. Read hand-labelled (prompt, response, tone) data (chatgpt-refusals by default) and map tones to
   compliance / full refusal / partial refusal (+ technical refusal) with ``tone_map``
   (:mod:`saferlhf.refusal.data` documents the default mapping and why).
2. Seeded split (:func:`saferlhf.data.split.split_records`, prompts kept together) into train and
   validation; the validation split selects the best epoch/step.
3. Fine-tune :class:`~saferlhf.refusal.classifier.RefusalClassifier` (cross-entropy) with the
   transformers ``Trainer``.
4. Measure on XSTest's 2,250 human-labelled completions, which are never trained on: the
   classifier, the rule-based detector and the string-match / GPT-4 labels shipped with XSTest.

Writes into ``output_dir``: the model (``model.safetensors``, tokenizer, ``refusal_classifier.json``),
``metrics.json``, ``log.jsonl``, ``config.yaml``, ``confusion.json`` (per detector, XSTest and
validation, plus ethical-vs-technical), ``agreement.md`` (the table) and ``xstest_predictions.jsonl``.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

from saferlhf.config import HubConfig, ModelConfig, TrainConfig, _check, doc, to_dict, validate_sections
from saferlhf.data.split import split_records
from saferlhf.models.loading import apply_lora
from saferlhf.models.model_card import publish
from saferlhf.models.precision import resolve_precision
from saferlhf.refusal.agreement import agreement_metrics, confusion
from saferlhf.refusal.classifier import (TECHNICAL_REFUSAL, RefusalClassifier, class_names, correct_priors,
                                         fold_probabilities)
from saferlhf.refusal.data import DEFAULT_TONE_MAP, RefusalExample, load_chatgpt_refusals
from saferlhf.refusal.patterns import FULL_REFUSAL, LABELS, PARTIAL_REFUSAL, detect_refusal
from saferlhf.refusal.xstest_agreement import xstest_agreement
from saferlhf.runio import RunWriter, atomic_write_json, atomic_write_text
from saferlhf.training.distributed import is_main_process, use_cpu_process_group_if_no_gpu
from saferlhf.training.tracking import ReportTo, log_callback, open_tracker, report_to_field


@dataclass
class RefusalClassifierConfig:
    """Configuration of ``saferlhf train-refusal-classifier``."""

    model: ModelConfig = doc(ModelConfig(name_or_path="minilm-l6"), "Encoder backbone (any HF encoder; built-in minilm-l6).")
    train: TrainConfig = doc(
        TrainConfig(epochs=2.0, learning_rate=5e-5, batch_size=16, eval_batch_size=64, weight_decay=0.01,
                    lr_scheduler="linear", warmup_ratio=0.1, logging_steps=10),
        "Optimisation settings (defaults: the measured run in docs/refusal.md).",
    )
    train_files: list[str] = doc(["../shared/data/chatgpt-refusals/all_hand_labeled.json"],
                                 "chatgpt-refusals-format JSON files (prompt, response, tone), concatenated.")
    tone_map: dict[str, str] = doc(DEFAULT_TONE_MAP, "tone -> 'label', 'label:ethical|technical' or 'drop'.")
    technical_class: bool = doc(True, "Add a technical_refusal class (needs tones mapped to ':technical').")
    validation_fraction: float = doc(0.15, "Share of the training data held out for model selection.")
    split_seed: int = doc(42, "Seed of the train/validation split.")
    selection_metric: Literal["binary_agreement", "3way_agreement", "loss"] = doc(
        "binary_agreement", "Validation metric that picks the checkpoint kept at the end.")
    use_prompt: bool = doc(False, "Read the prompt with the response (text pair); off: response only, because in "
                                  "chatgpt-refusals the prompt's topic predicts the label and misleads on other data.")
    prior_correction: bool = doc(True, "Decide under a uniform label prior: divide the probabilities by the training "
                                       "label frequencies (saved with the model; docs/refusal.md).")
    prompt_only: bool = doc(False, "Train the prompt-only predictor of whether the model will refuse (response unseen).")
    max_length: int = doc(96, "Tokens of prompt + response (the prompt is cut to fit).")
    response_tokens: int = doc(64, "Read only the first N response tokens (0 = as many as fit, longest-first).")
    length_augmentation: float = doc(0.5, "Share of compliance / full-refusal training answers cut to a random "
                                          "shorter prefix (breaks the 'short answer = refusal' shortcut).")
    persona_dropout: float = doc(0.5, "Share of training answers with ChatGPT's 'As an AI language model,' "
                                      "boilerplate removed (so refusals are learned from their other words).")
    limit: int = doc(0, "Use at most this many training examples (0 = all; for quick runs).")
    xstest_dir: str = doc("../shared/data/xstest", "XSTest repository folder (held-out test); '' = skip.")
    xstest_limit: int = doc(0, "Evaluate on the first N completions per XSTest model (0 = all 450).")
    output_dir: str = doc("runs/refusal-classifier", "Where the model, metrics and logs are written.")
    hub: HubConfig = doc(HubConfig(), "Push the saved model (and its model card) to the Hugging Face Hub.")
    report_to: ReportTo = report_to_field()

    def validate(self, prefix: str = "") -> None:
        validate_sections(self, prefix)
        _check(bool(self.train_files), prefix + "train_files", "must name at least one file")
        _check(not (self.model.attn_implementation or self.model.load_in_4bit or self.model.load_in_8bit),
               prefix + "model", "attn_implementation / load_in_4bit / load_in_8bit are not used by the classifier")
        _check(0.0 < self.validation_fraction < 1.0, prefix + "validation_fraction", "must be in (0, 1)")
        _check(self.max_length > 8, prefix + "max_length", "must be > 8")
        _check(self.response_tokens == 0 or self.max_length >= self.response_tokens + 16, prefix + "max_length",
               "must be >= response_tokens + 16")
        _check(0.0 <= self.length_augmentation <= 1.0, prefix + "length_augmentation", "must be in [0, 1]")
        _check(0.0 <= self.persona_dropout <= 1.0, prefix + "persona_dropout", "must be in [0, 1]")
        _check(self.limit >= 0, prefix + "limit", "must be >= 0")
        _check(self.xstest_limit >= 0, prefix + "xstest_limit", "must be >= 0")
        _check(bool(self.output_dir), prefix + "output_dir", "must not be empty")
        technical = any(v.endswith(":technical") for v in self.tone_map.values())
        _check(technical or not self.technical_class, prefix + "technical_class",
               "is true but no tone in tone_map is mapped to ':technical'")


def _target(example: RefusalExample, technical_class: bool) -> str:
    """Training class of an example: its label, or technical_refusal for technical full refusals."""
    if technical_class and example.label == FULL_REFUSAL and example.kind == "technical":
        return TECHNICAL_REFUSAL
    return example.label


_PERSONA = re.compile(r"\b(?:as an ai(?: language model)?(?: developed by openai)?|i am an ai language model and)"
                      r"(?:,\s*|\s+(?=i\b))", re.IGNORECASE)


def drop_persona(examples: list[RefusalExample], share: float, seed: int) -> list[RefusalExample]:
    """Copies of ``examples`` where a seeded ``share`` of answers lose the "As an AI language model,"
    boilerplate ("I'm sorry, but as an AI language model, I cannot" -> "I'm sorry, but I cannot").

    Why: gpt-3.5-turbo opens most answers of the set this way, refusals and compliance alike, and
    other models do not ("Sorry, but I can't assist with that."); the refusal must be recognised
    from the words that remain. Labels are unchanged: removing the phrase changes no verdict.
    """
    rng = random.Random(seed + 1)
    out = []
    for example in examples:
        if _PERSONA.search(example.response) and rng.random() < share:
            text = _PERSONA.sub("", example.response, count=1)
            example = replace(example, response=text[:1].upper() + text[1:])
        out.append(example)
    return out


def cut_lengths(examples: list[RefusalExample], share: float, seed: int,
                min_words: int = 15, max_words: int = 50) -> list[RefusalExample]:
    """Copies of ``examples`` where a seeded ``share`` of compliance and full-refusal answers is cut
    to their first ``k ~ Uniform{min_words..max_words}`` words.

    Why: in chatgpt-refusals refusals are short and compliant answers long, so a classifier learns
    "short = refusal" and then calls the long, lecturing refusals of other models (Llama-2) compliant
    (measured without this: 0.63 binary agreement on XSTest). The start of a compliant answer is
    still compliant and the start of a refusal is still a refusal; partial refusals are left whole
    (their compliant part may come late).
    """
    rng = random.Random(seed)
    out = []
    for example in examples:
        if example.label != PARTIAL_REFUSAL and rng.random() < share:
            words = example.response.split(" ")
            example = replace(example, response=" ".join(words[: rng.randint(min_words, max_words)]))
        out.append(example)
    return out


def label_frequencies(examples: list[RefusalExample]) -> tuple[float, ...]:
    """Share of each label of :data:`LABELS` among ``examples`` (the prior the classifier learns),
    add-one smoothed, ``(n_c + 1) / (n + 3)``, so that a label absent from a small set stays usable."""
    labels = [e.label for e in examples]
    return tuple((labels.count(label) + 1) / (len(labels) + len(LABELS)) for label in LABELS)


def _validation_metrics(classes: tuple[str, ...], label_priors: tuple[float, ...] | None):
    def compute(eval_prediction) -> dict[str, float]:
        probs = torch.softmax(torch.as_tensor(eval_prediction.predictions).float(), dim=-1)  # size = (N, C)
        decided = correct_priors(fold_probabilities(probs, classes), label_priors)  # the rule predict() uses
        predicted = [LABELS[i] for i in decided.argmax(-1).tolist()]
        human = [FULL_REFUSAL if classes[i] == TECHNICAL_REFUSAL else classes[i] for i in eval_prediction.label_ids]
        return {k: v for k, v in agreement_metrics(human, predicted).items() if k != "invalid"}
    return compute


def _kind_confusion(examples: list[RefusalExample], predicted_kinds: list[str | None]) -> dict:
    """Ethical-vs-technical confusion over examples that are refusals with a known kind."""
    table = {h: {"ethical": 0, "technical": 0, "not_refusal": 0} for h in ("ethical", "technical")}
    for example, kind in zip(examples, predicted_kinds):
        if example.kind in table:
            table[example.kind][kind or "not_refusal"] += 1
    return table


def _training_args(config: RefusalClassifierConfig, checkpoints: Path, has_eval: bool) -> TrainingArguments:
    train = config.train
    precision = resolve_precision(train.precision)
    strategy = ("steps" if train.eval_steps > 0 else "epoch") if has_eval else "no"
    return TrainingArguments(
        output_dir=str(checkpoints), num_train_epochs=train.epochs, max_steps=train.max_steps or -1,
        learning_rate=train.learning_rate, weight_decay=train.weight_decay, lr_scheduler_type=train.lr_scheduler,
        warmup_steps=train.warmup_ratio, max_grad_norm=train.max_grad_norm,
        per_device_train_batch_size=train.batch_size, per_device_eval_batch_size=train.eval_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps, seed=train.seed,
        bf16=precision == "bf16", fp16=precision == "fp16",
        use_cpu=precision == "bf16" and not torch.cuda.is_available(),  # bf16 on a CPU with AVX512-BF16 / AMX
        logging_steps=train.logging_steps, gradient_checkpointing=train.gradient_checkpointing,
        eval_strategy=strategy, eval_steps=train.eval_steps or None, save_strategy=strategy,
        save_steps=train.eval_steps or None, save_total_limit=1, load_best_model_at_end=has_eval,
        metric_for_best_model=f"eval_{config.selection_metric}" if has_eval else None,
        greater_is_better=config.selection_metric != "loss", report_to="none", dataloader_num_workers=0,
        remove_unused_columns=False, save_only_model=True, dataloader_pin_memory=torch.cuda.is_available(),
    )


def run(config: RefusalClassifierConfig) -> dict:
    """Train, select on validation, measure on XSTest; returns (and writes) ``metrics.json``."""
    started = time.time()
    if config.train.num_threads > 0:
        torch.set_num_threads(config.train.num_threads)
    torch.manual_seed(config.train.seed)
    output_dir = Path(config.output_dir)
    use_cpu_process_group_if_no_gpu()  # under accelerate launch without GPUs: one gloo group, not N lone runs
    tracker = open_tracker(config.report_to, output_dir, "refusal-classifier", to_dict(config),
                           enabled=is_main_process())
    writer = RunWriter(output_dir, enabled=is_main_process(), tracker=tracker)
    writer.write_config(to_dict(config))

    examples, dropped = [], {}
    for path in config.train_files:
        loaded, skipped = load_chatgpt_refusals(path, config.tone_map)
        examples += loaded
        for tone, count in skipped.items():
            dropped[tone] = dropped.get(tone, 0) + count
    if config.limit:
        examples = examples[: config.limit]
    train_examples, validation_examples = split_records(examples, config.validation_fraction, config.split_seed)
    print(f"[refusal] {len(train_examples)} training / {len(validation_examples)} validation examples; "
          f"dropped by tone_map: {dropped or 'none'}", flush=True)

    classifier = RefusalClassifier.from_backbone(config.model.name_or_path, config.technical_class, config.max_length,
                                                 config.model.trust_remote_code, config.prompt_only,
                                                 config.response_tokens, config.use_prompt or config.prompt_only)
    label_priors = label_frequencies(train_examples) if config.prior_correction else None
    train_examples = drop_persona(train_examples, config.persona_dropout, config.train.seed)
    train_examples = cut_lengths(train_examples, config.length_augmentation, config.train.seed)
    classifier.model = apply_lora(classifier.model, config.model.lora, task_type="SEQ_CLS")
    classes = class_names(config.technical_class)

    def dataset(items: list[RefusalExample]) -> list[dict]:
        return [{**classifier.encode(e.prompt, e.response), "labels": classes.index(_target(e, config.technical_class))}
                for e in items]

    checkpoints = output_dir / "checkpoints"
    trainer = Trainer(
        model=classifier.model, args=_training_args(config, checkpoints, bool(validation_examples)),
        train_dataset=dataset(train_examples), eval_dataset=dataset(validation_examples) or None,
        data_collator=DataCollatorWithPadding(classifier.tokenizer),
        compute_metrics=_validation_metrics(classes, label_priors),
        callbacks=[log_callback(writer)],
    )
    train_output = trainer.train()
    classifier.model = trainer.model
    classifier.label_priors = label_priors
    train_seconds = time.time() - started
    if not trainer.is_world_process_zero():  # the Trainer kept the best model on every process; one measures
        return {}
    classifier.save_pretrained(output_dir)
    shutil.rmtree(checkpoints, ignore_errors=True)  # the selected model is saved in output_dir itself

    metrics: dict = {"train_examples": len(train_examples), "validation_examples": len(validation_examples),
                     "dropped_by_tone_map": dropped, "train_steps": train_output.global_step,
                     "label_priors": dict(zip(LABELS, label_priors)) if label_priors else None,
                     "train_seconds": round(train_seconds, 1)}
    confusions: dict = {}
    batch = config.train.eval_batch_size
    if validation_examples:
        predicted = classifier.predict_with_kind([e.prompt for e in validation_examples],
                                                 [e.response for e in validation_examples], batch_size=batch)
        human = [e.label for e in validation_examples]
        metrics.update(agreement_metrics(human, [p[0] for p in predicted], prefix="validation_"))
        rule = [detect_refusal(e.response, e.prompt) for e in validation_examples]
        metrics.update(agreement_metrics(human, [v.label for v in rule], prefix="rule_validation_"))
        del metrics["validation_invalid"], metrics["rule_validation_invalid"]
        confusions["validation"] = {"classifier": confusion(human, [p[0] for p in predicted]),
                                    "rule": confusion(human, [v.label for v in rule])}
        confusions["validation_refusal_kind"] = {"classifier": _kind_confusion(validation_examples, [p[1] for p in predicted]),
                                                 "rule": _kind_confusion(validation_examples, [v.refusal_kind for v in rule])}
    all_rule_kinds = [detect_refusal(e.response, e.prompt).refusal_kind for e in examples]
    confusions["all_data_refusal_kind_rule"] = _kind_confusion(examples, all_rule_kinds)

    if config.xstest_dir:
        result = xstest_agreement(config.xstest_dir, classifier, batch_size=batch, limit=config.xstest_limit)
        metrics.update(result["metrics"])
        for row in result["table"]:
            if row["group"] != "all":
                metrics[f"{row['detector']}_xstest_{row['group']}_binary_agreement"] = row["binary_agreement"]
                metrics[f"{row['detector']}_xstest_{row['group']}_3way_agreement"] = row["3way_agreement"]
        confusions["xstest"] = result["confusion"]
        atomic_write_text(output_dir / "agreement.md", "# Agreement with XSTest human labels (final_label)\n\n"
                          + result["table_markdown"] + "\n")
        lines = [json.dumps({"model": r.model, "id": r.id, "type": r.type, "human": r.label,
                             **{name: labels[i] for name, labels in result["predictions"].items()}})
                 for i, r in enumerate(result["rows"])]
        atomic_write_text(output_dir / "xstest_predictions.jsonl", "\n".join(lines) + "\n")
    metrics["total_seconds"] = round(time.time() - started, 1)
    atomic_write_json(output_dir / "confusion.json", confusions)
    metrics.update(publish(output_dir, "refusal-classifier", config.hub, base_model=config.model.name_or_path,
                           data=list(config.train_files), metrics=metrics, config=to_dict(config)))
    if tracker is not None:  # the final measurements as the last point of the curves (log.jsonl: metrics.json has them)
        tracker.log({f"eval/{k}": v for k, v in metrics.items() if "validation_" in k or "xstest" in k},
                    train_output.global_step)
    writer.write_metrics(metrics)
    writer.finish()
    return metrics
