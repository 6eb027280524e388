"""The steps of ``saferlhf evaluate`` that build and annotate generation records.

A record (one line of ``generations.jsonl``)::

    {"model", "model_path", "benchmark", "index", "id", "category", "label", "prompt", "response",
     "response_tokens", "settings": {generation settings},
     "refusal": {detector: label}, "patterns": {pattern: bool}, "refusal_kind",
     "reward", "cost", "judge_helpfulness", "judge_helpfulness_reply", ...}

Answers are cached by ``(model_path, benchmark, index, prompt, settings)`` (greedy answers without
their seed and top_p): a second run with the same settings re-scores without regenerating, and a killed run resumes where it stopped
(records are saved every few batches). With sampling (temperature > 0) each chunk restarts the
generator from ``seed``.
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

from tqdm.auto import tqdm

from saferlhf.data.records import prompt_text
from saferlhf.evaluation.generation import LARGEST_AUTO_BATCH, generate_responses
from saferlhf.models.precision import resolve_precision, torch_dtype

GENERATION_KEYS = ("max_new_tokens", "temperature", "top_p", "seed")
CHUNK_BATCHES = 4  # generation batches between two saves of generations.jsonl


def _cache_key(record: dict) -> tuple:
    """An answer depends on the weights (path), the prompt and the settings, not on the model's display name.
    A greedy answer (temperature 0) does not depend on the seed or top_p either, so those leave its key."""
    settings = dict(record.get("settings", {}))
    if settings.get("temperature") == 0:
        settings.pop("seed", None)
        settings.pop("top_p", None)
    settings = json.dumps(settings, sort_keys=True)
    prompt = json.dumps(record["prompt"], ensure_ascii=False)  # a string or a list of chat messages
    return (record.get("model_path"), record["benchmark"], record["index"], prompt, settings)


def load_generation_cache(paths: list[Path]) -> dict[tuple, dict]:
    """Earlier records from ``generations.jsonl`` files that exist (missing files are fine)."""
    cache = {}
    for path in paths:
        if not path.is_file():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                cache[_cache_key(record)] = record
            except (json.JSONDecodeError, KeyError) as error:
                raise ValueError(f"{path}:{number}: not a generation record ({error})") from None
    return cache


def generate_all(config, benchmarks, cache: dict[tuple, dict], save) -> list[dict]:
    """Records for every (model, benchmark, prompt); generates only the answers not in ``cache``."""
    from saferlhf.models.loading import inference_device, load_causal_lm, load_tokenizer

    precision = resolve_precision(config.precision)
    settings = {k: getattr(config.generation, k) for k in GENERATION_KEYS}
    if precision != "fp32":  # float32 answers keep the keys of the runs made before precision existed
        settings["precision"] = precision
    records: list[dict] = []
    for model_config in config.models:
        name, path = model_config.display_name, model_config.name_or_path
        model = tokenizer = None
        for bench in benchmarks:
            rows = [{"model": name, "model_path": path, "benchmark": bench.name, "index": i, "id": p.id,
                     "category": p.category, "label": p.label, "prompt": p.prompt, "settings": settings}
                    for i, p in enumerate(bench.prompts)]
            todo = [r for r in rows if _cache_key(r) not in cache]
            for row in rows:
                if _cache_key(row) in cache:
                    cached = cache[_cache_key(row)]
                    row.update(response=cached["response"], response_tokens=cached.get("response_tokens"))
            print(f"[saferlhf evaluate] {name} / {bench.name}: {len(rows) - len(todo)} answers reused, "
                  f"{len(todo)} to generate", flush=True)
            if todo:
                if model is None:
                    tokenizer = load_tokenizer(path, model_config.trust_remote_code, padding_side="left")
                    model = load_causal_lm(path, model_config.trust_remote_code,
                                           dtype=torch_dtype(precision)).to(inference_device())
                g = config.generation
                todo.sort(key=lambda r: -len(r["prompt"]) if isinstance(r["prompt"], str) else 0)
                chunk = (g.batch_size or LARGEST_AUTO_BATCH) * CHUNK_BATCHES  # save after every chunk
                for start in range(0, len(todo), chunk):
                    part = todo[start:start + chunk]
                    answers = generate_responses(
                        model, tokenizer, [r["prompt"] for r in part], g.max_new_tokens, g.batch_size,
                        g.temperature, g.top_p, g.seed, progress=config.progress,
                        description=f"{name} / {bench.name} [{start + len(part)}/{len(todo)}]")
                    for row, answer in zip(part, answers):
                        row["response"] = answer
                        row["response_tokens"] = len(tokenizer(answer, add_special_tokens=False)["input_ids"])
                    save(records + [r for r in rows if "response" in r])
            records += rows
            save(records)
        del model
        gc.collect()
    return records


def detect_refusals(records: list[dict], detectors: list[str], classifier_path: str = "",
                    progress: bool = True) -> None:
    """Rule detector on every answer (label, patterns, kind); the learned classifier when asked for."""
    from saferlhf.refusal.patterns import detect_refusal

    for record in tqdm(records, desc="refusal rules", disable=not progress, unit="answer"):
        verdict = detect_refusal(record["response"], prompt_text(record["prompt"]))
        record["refusal"] = {"rules": verdict.label}
        record["patterns"] = verdict.patterns
        record["refusal_kind"] = verdict.refusal_kind
    if "classifier" in detectors:
        from saferlhf.refusal.classifier import RefusalClassifier

        classifier = RefusalClassifier.from_pretrained(classifier_path)
        labels = classifier.predict([prompt_text(r["prompt"]) for r in records], [r["response"] for r in records],
                                    progress=progress)
        if len(labels) != len(records):
            raise RuntimeError(f"refusal classifier returned {len(labels)} labels for {len(records)} answers")
        for record, label in zip(records, labels):
            record["refusal"]["classifier"] = label


def add_scores(records: list[dict], scoring, precision: str = "auto") -> dict:
    """Reward and cost of every answer when the folders are configured; returns what was done."""
    from saferlhf.evaluation.scoring import load_checked, score_pairs

    info = {}
    for key, folder in (("reward", scoring.reward_model), ("cost", scoring.cost_model)):
        if not folder:
            continue
        model, tokenizer, canary = load_checked(folder, torch_dtype(precision), kind=key)
        scores, overlong = score_pairs(model, tokenizer, [r["prompt"] for r in records],
                                       [r["response"] for r in records], scoring.max_length, scoring.batch_size,
                                       description=f"{key} model")
        for record, score in zip(records, scores):
            record[key] = score
        info[key] = {"model": folder, "scored": len(scores), "overlong_truncated": overlong, "canary": canary}
        if overlong:
            print(f"[saferlhf evaluate] {key} model: {overlong} answers longer than max_length were truncated",
                  flush=True)
    return info


def add_judge_scores(records: list[dict], judge_config, progress: bool = True) -> dict:
    """Judge scores (1-10) per aspect; unreadable replies give None and are counted."""
    if not judge_config.base_url:
        return {}
    from saferlhf.evaluation.judge import Judge

    judge = Judge(judge_config.base_url, judge_config.model, os.environ.get(judge_config.api_key_env),
                  judge_config.timeout, judge_config.max_retries, max_tokens=judge_config.max_tokens)
    unparsed = {aspect: 0 for aspect in judge_config.aspects}
    for record in tqdm(records, desc="judge", disable=not progress, unit="answer"):
        for aspect in judge_config.aspects:
            result = judge.score(prompt_text(record["prompt"]), record["response"], aspect)
            record[f"judge_{aspect}"] = result.score
            record[f"judge_{aspect}_reply"] = result.text
            unparsed[aspect] += result.score is None
    return {"endpoint": judge.url, "model": judge_config.model, "calls": len(records) * len(judge_config.aspects),
            "unparsed": unparsed}
