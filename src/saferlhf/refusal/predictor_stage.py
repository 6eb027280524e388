"""``saferlhf refusal-predictor``: predict refusal from the prompt alone (and from the response), with
TF-IDF + logistic regression and a mean-pooled encoder + logistic regression
(:mod:`saferlhf.refusal.predictor`; Reuter & Schulze 2023).

Two sources of (text, refused) pairs:

- ``source=chatgpt-refusals`` (the paper's reproduction): hand-labelled ChatGPT answers; as in the
  paper every tone except ``complied`` is a refusal and ``dontknow`` / ``incoherent`` are dropped
  (counted). Paper: response classifier 96.5% (BERT) / 90.6% (TF-IDF+LR), prompt classifier
  75.9% / 73.9%, on a 70/15/15 split.
- ``source=generations``: a ``saferlhf evaluate`` run's ``generations.jsonl``: the model's own
  (prompt, verdict) pairs (verdict of ``detector``). The prompt-only predictor of that model, and its
  top words: the triggers its refusals follow.

Split: seeded, prompts kept together (:func:`saferlhf.data.split.split_records`): ``test_fraction`` of
the pairs for the test, then ``validation_fraction`` of all pairs for the choice of ``C``; the rest
trains. Writes ``metrics.json`` (accuracy per input and classifier, the majority baseline, the split,
the paper's figures), ``top_words.json`` and ``predictor.md`` (the table) into ``output_dir``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from saferlhf.config import _check, doc, to_dict
from saferlhf.data.split import split_records
from saferlhf.refusal.data import DEFAULT_TONE_MAP, RefusalExample, load_chatgpt_refusals
from saferlhf.refusal.patterns import COMPLIANCE, is_refusal
from saferlhf.refusal.predictor import (Standardizer, TfidfVectorizer, accuracy, auc, balanced_accuracy,
                                        fit_selected, mean_pooled_features, top_words)
from saferlhf.runio import RunWriter, atomic_write_json, atomic_write_text

PAPER = {"response": {"encoder": 0.965, "tfidf": 0.906}, "prompt": {"encoder": 0.759, "tfidf": 0.739}}
PAPER_NOTE = "Reuter & Schulze 2023: fine-tuned BERT (encoder row) and TF-IDF + LR, 70/15/15 split"
PAPER_DROPPED_TONES = ("dontknow", "incoherent")


@dataclass
class RefusalPredictorConfig:
    """Configuration of ``saferlhf refusal-predictor``."""

    source: Literal["chatgpt-refusals", "generations"] = doc(
        "chatgpt-refusals", "chatgpt-refusals: the paper's data (files); generations: an evaluate run's answers.")
    files: list[str] = doc(["../shared/data/chatgpt-refusals/all_hand_labeled.json"],
                           "chatgpt-refusals-format JSON files (prompt, response, tone), concatenated.")
    generations: str = doc("", "An evaluate run's generations.jsonl (or its folder), for source=generations.")
    model: str = doc("", "Which model of generations.jsonl ('' = the only one; an error lists them when several).")
    benchmarks: list[str] = doc([], "Benchmarks of generations.jsonl to use ([] = all).")
    detector: str = doc("", "Refusal detector whose verdict is the label ('' = the first in each record).")
    inputs: list[str] = doc(["prompt", "response"], "What the classifiers read: prompt (will it refuse?) and/or "
                                                    "response (did it refuse?).")
    classifiers: list[str] = doc(["tfidf", "encoder"], "tfidf (bag of words + LR) and/or encoder (mean-pooled "
                                                       "hidden states + LR).")
    encoder: str = doc("minilm-l6", "Encoder model: built-in name (minilm-l6, smollm2-135m-instruct), hub id or "
                                    "folder.")
    encoder_max_length: int = doc(128, "Tokens of each text read by the encoder.")
    encoder_batch_size: int = doc(32, "Texts per encoder batch.")
    encoder_layer: int = doc(-1, "Hidden-state layer that is mean-pooled (-1 = last).")
    ngram_max: int = doc(1, "TF-IDF word n-grams up to this length.")
    min_df: int = doc(1, "TF-IDF: keep words found in at least this many training texts.")
    C_grid: list[float] = doc([0.1, 1.0, 10.0, 100.0], "Inverse L2 strengths tried; the best on validation is kept.")
    balanced: bool = doc(False, "Weigh both classes equally in the regression (class_weight='balanced'); use it for "
                                "a model that seldom (or nearly always) refuses.")
    selection_metric: Literal["auc", "balanced_accuracy", "accuracy"] = doc(
        "auc", "Validation metric that chooses C (auc and balanced_accuracy stay fair when one class dominates).")
    max_iter: int = doc(200, "L-BFGS iterations of each logistic regression.")
    test_fraction: float = doc(0.15, "Share of pairs held out for the test (paper: 15%).")
    validation_fraction: float = doc(0.15, "Share of pairs held out to choose C (paper: 15%).")
    split_seed: int = doc(42, "Seed of the split.")
    limit: int = doc(0, "Use at most the first N pairs (0 = all; for quick runs).")
    top_k: int = doc(25, "Trigger words listed per direction (refusal / compliance).")
    num_threads: int = doc(0, "torch CPU threads (0 = torch default).")
    output_dir: str = doc("runs/refusal-predictor", "Where metrics.json, top_words.json and predictor.md go.")

    def validate(self, prefix: str = "") -> None:
        _check(self.source != "chatgpt-refusals" or bool(self.files), prefix + "files", "must name at least one file")
        _check(self.source != "generations" or bool(self.generations), prefix + "generations",
               "is required with source=generations")
        for i, item in enumerate(self.inputs):
            _check(item in ("prompt", "response"), f"{prefix}inputs[{i}]", "must be prompt or response")
        for i, item in enumerate(self.classifiers):
            _check(item in ("tfidf", "encoder"), f"{prefix}classifiers[{i}]", "must be tfidf or encoder")
        _check(bool(self.inputs), prefix + "inputs", "must not be empty")
        _check(bool(self.classifiers), prefix + "classifiers", "must not be empty")
        _check(bool(self.C_grid) and all(c > 0 for c in self.C_grid), prefix + "C_grid", "must be positive numbers")
        _check(0 < self.test_fraction < 1, prefix + "test_fraction", "must be in (0, 1)")
        _check(0 <= self.validation_fraction < 1 - self.test_fraction, prefix + "validation_fraction",
               "must be in [0, 1 - test_fraction)")
        for key in ("limit", "top_k", "num_threads", "min_df"):
            _check(getattr(self, key) >= 0, prefix + key, "must be >= 0")
        _check(self.ngram_max >= 1 and self.min_df >= 1, prefix + "ngram_max", "ngram_max and min_df must be >= 1")
        _check(self.encoder_max_length > 1 and self.encoder_batch_size > 0, prefix + "encoder_max_length",
               "encoder_max_length must be > 1 and encoder_batch_size > 0")
        _check(bool(self.output_dir), prefix + "output_dir", "must not be empty")


# --------------------------------------------------------------------------------------------
# Readers


def read_chatgpt_refusals(files: list[str]) -> tuple[list[RefusalExample], dict[str, int]]:
    """Pairs of the paper's reproduction: non-``complied`` tones are refusals, ``dontknow`` and
    ``incoherent`` dropped (returned as counts per tone)."""
    tone_map = {**DEFAULT_TONE_MAP, **{tone: "drop" for tone in PAPER_DROPPED_TONES}}
    examples, dropped = [], {}
    for path in files:
        found, skipped = load_chatgpt_refusals(path, tone_map)
        examples += found
        for tone, count in skipped.items():
            dropped[tone] = dropped.get(tone, 0) + count
    return examples, dropped


def read_generations(path: str | Path, model: str = "", benchmarks: list[str] | None = None,
                     detector: str = "") -> tuple[list[RefusalExample], dict[str, int]]:
    """(prompt, response, verdict) of one model from an evaluate run's ``generations.jsonl``.

    Returns the examples and counts of what was skipped (other models / benchmarks, records without
    the detector's verdict)."""
    path = Path(path)
    if path.is_dir():
        path = path / "generations.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no generations.jsonl (run saferlhf evaluate first)")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: invalid JSON: {error}") from None
        for key in ("model", "prompt", "response", "refusal"):
            if key not in record:
                raise ValueError(f"{path}:{number}: key '{key}' missing")
        records.append((number, record))
    models = sorted({r["model"] for _, r in records})
    if not model and len(models) > 1:
        raise ValueError(f"{path}: holds several models ({', '.join(models)}); choose one with model=NAME")
    chosen = model or (models[0] if models else "")
    if chosen not in models:
        raise ValueError(f"{path}: no records of model {chosen!r} (has {', '.join(models) or 'none'})")
    examples, skipped = [], {"other_model": 0, "other_benchmark": 0, "no_verdict": 0}
    for number, record in records:
        if record["model"] != chosen:
            skipped["other_model"] += 1
            continue
        if benchmarks and record.get("benchmark") not in benchmarks:
            skipped["other_benchmark"] += 1
            continue
        verdicts = record["refusal"] or {}
        name = detector or next(iter(verdicts), "")
        if name not in verdicts:
            skipped["no_verdict"] += 1
            continue
        refused = is_refusal(verdicts[name])
        examples.append(RefusalExample(str(record["prompt"]), str(record["response"]),
                                       "full_refusal" if refused else COMPLIANCE, None, f"{path}:{number}"))
    if not examples:
        raise ValueError(f"{path}: no usable records (skipped: {skipped})")
    return examples, skipped


def split_three(examples: list, test_fraction: float, validation_fraction: float, seed: int):
    """``(train, validation, test)``: seeded, prompts kept together; validation is a share of all pairs."""
    rest, test = split_records(examples, test_fraction, seed)
    within = validation_fraction / (1 - test_fraction)
    train, validation = split_records(rest, within, seed + 1) if within > 0 else (rest, [])
    return train, validation, test


# --------------------------------------------------------------------------------------------
# The run


def _texts(examples: list[RefusalExample], field: str) -> list[str]:
    return [getattr(e, field) for e in examples]


def _labels(examples: list[RefusalExample]) -> list[int]:
    return [int(is_refusal(e.label)) for e in examples]


def _encoder_features(config: RefusalPredictorConfig):
    from saferlhf.models.loading import load_backbone, load_tokenizer

    tokenizer = load_tokenizer(config.encoder)
    model = load_backbone(config.encoder)

    def features(texts: list[str]) -> torch.Tensor:
        return mean_pooled_features(model, tokenizer, texts, config.encoder_max_length, config.encoder_batch_size,
                                    config.encoder_layer)
    return features


def run(config: RefusalPredictorConfig) -> dict:
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    output_dir = Path(config.output_dir)
    writer = RunWriter(output_dir)
    writer.write_config(to_dict(config))
    if config.source == "chatgpt-refusals":
        examples, skipped = read_chatgpt_refusals(config.files)
        skipped = {f"tone_{k}": v for k, v in skipped.items()}
    else:
        examples, skipped = read_generations(config.generations, config.model, config.benchmarks, config.detector)
    if config.limit:
        skipped["over_limit"] = max(0, len(examples) - config.limit)
        examples = examples[: config.limit]
    train, validation, test = split_three(examples, config.test_fraction, config.validation_fraction,
                                          config.split_seed)
    if not train or not test or len(set(_labels(train))) < 2:
        raise ValueError(f"{len(examples)} pairs give {len(train)} train / {len(test)} test, with training labels "
                         f"{sorted(set(_labels(train)))}: both refused and answered pairs are needed to train")
    y_train, y_validation, y_test = _labels(train), _labels(validation), _labels(test)
    majority = int(sum(y_train) * 2 > len(y_train))
    metrics: dict = {
        "source": config.source, "pairs": len(examples), "skipped": skipped,
        "split": {"train": len(train), "validation": len(validation), "test": len(test), "seed": config.split_seed,
                  "how": f"seeded, prompts kept together; test {config.test_fraction:.0%}, validation "
                         f"{config.validation_fraction:.0%} (chooses C), the rest trains"},
        "refusal_rate": {"train": sum(y_train) / len(y_train), "test": sum(y_test) / len(y_test)},
        "majority_baseline_accuracy": accuracy([majority] * len(y_test), y_test),
    }
    words: dict = {}
    encode = _encoder_features(config) if "encoder" in config.classifiers else None
    for field in config.inputs:
        texts = {"train": _texts(train, field), "validation": _texts(validation, field), "test": _texts(test, field)}
        results = metrics.setdefault(field, {})
        for name in config.classifiers:
            if name == "tfidf":
                vectorizer = TfidfVectorizer(config.ngram_max, config.min_df).fit(texts["train"])
                x = {part: vectorizer.transform(t) for part, t in texts.items()}
            else:
                raw = {part: encode(t) for part, t in texts.items()}
                scaler = Standardizer().fit(raw["train"])
                x = {part: scaler.transform(v) if len(v) else v for part, v in raw.items()}
            classifier, C, chosen_by = fit_selected(x["train"], y_train, x["validation"], y_validation,
                                                     config.C_grid, config.max_iter, config.selection_metric,
                                                    config.balanced)
            predicted = classifier.predict(x["test"])
            results[name] = {"accuracy": accuracy(predicted, y_test),
                             "balanced_accuracy": balanced_accuracy(predicted, y_test),
                             "auc": auc(classifier.decision_function(x["test"]).tolist(), y_test),
                             "train_accuracy": accuracy(classifier.predict(x["train"]), y_train),
                             f"validation_{config.selection_metric}": chosen_by, "C": C}
            if name == "encoder":
                results[name]["encoder"] = config.encoder
            if name == "tfidf":
                words[field] = top_words(vectorizer, classifier, config.top_k)
                results[name]["vocabulary"] = len(vectorizer.vocabulary)
    if config.source == "chatgpt-refusals":
        metrics["paper"] = {**PAPER, "note": PAPER_NOTE}
    atomic_write_json(output_dir / "top_words.json", words)
    atomic_write_text(output_dir / "predictor.md", render_table(metrics, words))
    writer.write_metrics(metrics)
    return metrics


def render_table(metrics: dict, words: dict) -> str:
    """The accuracy table (the paper's figures beside the project's) and the top trigger words."""
    paper = metrics.get("paper", {})
    lines = [f"# Refusal predictor ({metrics['source']})", "",
             f"Split: {metrics['split']['train']} train / {metrics['split']['validation']} validation / "
             f"{metrics['split']['test']} test ({metrics['split']['how']}). Majority-class baseline on the test: "
             f"{metrics['majority_baseline_accuracy']:.1%}.", "",
             "| input | classifier | test accuracy | paper (accuracy) | balanced accuracy | AUC | C |",
             "|---|---|---|---|---|---|---|"]
    for field in ("response", "prompt"):
        for name, result in metrics.get(field, {}).items():
            reference = paper.get(field, {}).get(name)
            label = "TF-IDF + LR" if name == "tfidf" else f"{result.get('encoder', 'encoder')} mean-pooled + LR"
            area = "" if result["auc"] is None else f"{result['auc']:.3f}"
            lines.append(f"| {field} | {label} | {result['accuracy']:.1%} | "
                         f"{'' if reference is None else f'{reference:.1%}'} | {result['balanced_accuracy']:.1%} | "
                         f"{area} | {result['C']:g} |")
    if paper:
        lines += ["", f"Paper: {paper['note']}."]
    for field, lists in words.items():
        lines += ["", f"Top {field} words towards refusal: " + ", ".join(t for t, _ in lists["refusal"]),
                  f"Top {field} words towards compliance: " + ", ".join(t for t, _ in lists["compliance"])]
    return "\n".join(lines) + "\n"
