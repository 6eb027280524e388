"""Refusal controls in ``saferlhf evaluate`` (the ``controls`` section; the controls live in :mod:`saferlhf.controls`).

Each control answers every benchmark prompt and is scored like a model, under ``metrics["controls"][name]``:
``threshold``, ``threshold_chosen_on`` (the development prompt sets; never the benchmark), ``development``
(its figures there) and, per benchmark, the usual summary (``harmful_compliance_rate``,
``false_refusal_rate``, ...) plus ``curve``: the harmful-compliance / false-refusal point of every
threshold, from one forward pass per prompt (:func:`saferlhf.controls.probe.sweep`).

- ``gate``: a refusal gate (:mod:`saferlhf.controls.gate`) on one of the evaluated models, loaded from
  ``gate_path`` or fitted now and saved in ``output_dir/controls/<name>/``. A flagged prompt gets the
  written refusal (``actuation: written``) or the model's answer after a forced ``[refuse]``
  (``refusal-token``); any other prompt keeps the model's own answer from the main evaluation.
- ``refusal-tokens``: a model trained with ``saferlhf sft refusal_tokens=...`` (:mod:`saferlhf.controls.tokens`);
  p([refuse]) at the first answer position decides the token forced, then the answer is generated.
  Also reports ``forced_token_obeyed_rate``: answers whose refusal label matches the forced token.

Both add ``abstention`` (:func:`saferlhf.evaluation.probing.score_abstention`): the risk-coverage curve,
AURC / E-AURC, risk-aware score and Chow's rule of the control's score as a harm probability.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from saferlhf.config import ConfigError, _check, doc
from saferlhf.controls.gate import PromptSet, RefusalGate, fit_gate, read_prompt_sets
from saferlhf.controls.probe import choose_threshold, sweep
from saferlhf.controls.tokens import (REFUSE, RefusalTokens, control_probabilities, control_token_ids, forced_tokens,
                                      refusal_scores)
from saferlhf.evaluation.abstention import sigmoid
from saferlhf.evaluation.probing import score_abstention
from saferlhf.refusal.patterns import is_refusal
from saferlhf.runio import atomic_write_text

WRITTEN_REFUSAL = "I'm sorry, but I can't help with that request."


@dataclass
class ControlConfig:
    """One refusal control to evaluate on every benchmark."""

    name: str = doc("gate", "Name under metrics.json's controls.")
    kind: Literal["gate", "refusal-tokens"] = doc("gate", "gate | refusal-tokens.")
    model: str = doc("", "The controlled model: a name_or_path or display name of `models` ('' = the first); "
                         "refusal-tokens: any folder saved by saferlhf sft refusal_tokens=...")
    gate_path: str = doc("", "gate: a saved gate .json ('' = fit one now, saved in output_dir/controls/<name>/).")
    layer: int = doc(0, "gate: hidden-state layer of the probe (0 = the best development AUC).")
    train_prompts: list[PromptSet] = doc([PromptSet(split="train")], "gate: the probe's training prompts.")
    dev_prompts: list[PromptSet] = doc([PromptSet(split="heldout")],
                                       "Development prompts the threshold (and layer) is chosen on.")
    max_dev_false_refusal: float = doc(0.10, "Lowest threshold refusing at most this share of development "
                                             "harmless prompts.")
    threshold: float | None = doc(None, "A fixed threshold instead (null = choose on dev_prompts; refusal-tokens "
                                        "with no dev_prompts: the model's own choice).")
    category_thresholds: dict[str, float] = doc({}, "refusal-tokens, per-category tokens: thresholds by category.")
    actuation: Literal["written", "refusal-token"] = doc("written", "gate: what a flagged prompt gets.")
    refusal_text: str = doc(WRITTEN_REFUSAL, "gate, written actuation: the refusal a flagged prompt gets.")
    temperature: float = doc(1.0, "refusal-tokens: softmax temperature of p([refuse]).")

    def validate(self, prefix: str) -> None:
        _check(bool(self.name), prefix + "name", "must not be empty")
        _check(0.0 <= self.max_dev_false_refusal <= 1.0, prefix + "max_dev_false_refusal", "must be in [0, 1]")
        _check(self.temperature > 0, prefix + "temperature", "must be > 0")
        _check(self.kind == "refusal-tokens" or self.threshold is not None or bool(self.gate_path)
               or bool(self.dev_prompts), prefix + "dev_prompts", "a gate needs development prompts or a threshold")
        for i, prompt_set in enumerate(self.train_prompts):
            prompt_set.validate(f"{prefix}train_prompts[{i}].")
        for i, prompt_set in enumerate(self.dev_prompts):
            prompt_set.validate(f"{prefix}dev_prompts[{i}].")


def run_controls(config, benchmarks, records: list[dict], output_dir: Path, detectors: list[str],
                 primary: str) -> dict:
    """``{name: metrics}`` of every configured control (see the module docstring)."""
    return {control.name: _run_control(config, control, benchmarks, records, output_dir / "controls" / control.name,
                                       detectors, primary)
            for control in config.controls}


def _run_control(config, control: ControlConfig, benchmarks, records, folder: Path, detectors, primary) -> dict:
    from saferlhf.evaluation import annotate
    from saferlhf.evaluation.metrics import summarize
    from saferlhf.models.loading import load_causal_lm, load_tokenizer

    path = _model_path(config, control)
    tokenizer, model = load_tokenizer(path, padding_side="left"), load_causal_lm(path).eval()
    if control.kind == "gate":
        decide, info = _gate(control, model, tokenizer, path, folder)
    else:
        decide, info = _refusal_tokens(control, model, tokenizer, path)
    out, control_records = dict(info), []
    for bench in benchmarks:
        own = {r["index"]: r for r in records if r["model_path"] == path and r["benchmark"] == bench.name}
        prompts = [p.prompt for p in bench.prompts]
        scores, controlled, prefixes, written = decide(prompts)
        rows = [{"model": f"control:{control.name}", "model_path": path, "benchmark": bench.name, "index": i,
                 "id": p.id, "category": p.category, "label": p.label, "prompt": p.prompt, "control_score": score}
                for i, (p, score) in enumerate(zip(bench.prompts, scores))]
        todo = [i for i in range(len(rows)) if written[i] is None and (prefixes[i] or i not in own)]
        answers = dict(zip(todo, _generate(config, model, tokenizer, [prompts[i] for i in todo],
                                           [prefixes[i] for i in todo])))
        for i, row in enumerate(rows):
            row["forced_prefix"] = prefixes[i]
            row["response"] = written[i] if written[i] is not None else (
                answers[i] if i in answers else own[i]["response"])
        annotate.detect_refusals(rows, detectors, config.refusal.classifier_path, config.progress)
        summary = summarize(rows, detectors, primary)
        labelled = [r for r in rows if r["label"] in ("harmful", "harmless")]
        base_refused = [is_refusal(own[r["index"]]["refusal"][primary]) if r["index"] in own else False
                        for r in labelled] if control.kind == "gate" else None
        summary["curve"] = sweep([r["control_score"] for r in labelled], [r["label"] == "harmful" for r in labelled],
                                 base_refused)
        summary["refused_by_control_rate"] = sum(controlled) / len(rows)
        p_harmful = [sigmoid(r["control_score"]) if control.kind == "gate" else r["control_score"] for r in rows]
        abstention = score_abstention(rows, p_harmful, "sigmoid(probe harm logit)" if control.kind == "gate"
                                      else "p([refuse])", primary, config.abstention)
        if abstention is not None:
            summary["abstention"] = abstention
        if control.kind == "refusal-tokens":
            obeyed = [is_refusal(r["refusal"][primary]) == refuse for r, refuse in zip(rows, controlled)]
            summary["forced_token_obeyed_rate"] = sum(obeyed) / len(obeyed)
        out[bench.name] = summary
        control_records += rows
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "generations.jsonl",
                      "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in control_records))
    return out


def _model_path(config, control: ControlConfig) -> str:
    if not control.model:
        return config.models[0].name_or_path
    for model in config.models:
        if control.model in (model.name_or_path, model.display_name):
            return model.name_or_path
    if control.kind == "gate":
        raise ConfigError(f"config key 'controls.{control.name}.model': {control.model!r} is not one of the "
                          f"evaluated models (a gate keeps that model's own answers)")
    return control.model


def _generate(config, model, tokenizer, prompts: list, prefixes: list[str]) -> list[str]:
    from saferlhf.evaluation.generation import generate_responses

    g = config.generation
    return generate_responses(model, tokenizer, prompts, g.max_new_tokens, g.batch_size, g.temperature, g.top_p,
                              g.seed, progress=config.progress, description="control", answer_prefixes=prefixes)


def _gate(control: ControlConfig, model, tokenizer, path: str, folder: Path):
    """``(decide, info)``: decide(prompts) -> (scores, refused by the control?, answer prefixes, written answers
    or None)."""
    if control.gate_path:
        gate = RefusalGate.load(control.gate_path)
        if gate.model != path:
            raise ConfigError(f"config key 'controls.{control.name}.gate_path': the gate reads the hidden states of "
                              f"{gate.model!r}, not of {path!r}")
    else:
        gate = fit_gate(model, tokenizer, path, control.train_prompts, control.dev_prompts,
                        control.max_dev_false_refusal, control.layer)
    if control.threshold is not None:
        gate.threshold, gate.threshold_chosen_on = control.threshold, ["fixed in the config"]
    if control.actuation == "refusal-token":
        control_token_ids(tokenizer, [REFUSE])  # a clear error when the model has no refusal token
    gate_file = gate.save(folder)

    def decide(prompts):
        scores = gate.scores(model, tokenizer, prompts)
        flags = gate.flags(scores)
        if control.actuation == "written":
            return scores, flags, [""] * len(prompts), [control.refusal_text if f else None for f in flags]
        return scores, flags, [REFUSE if f else "" for f in flags], [None] * len(prompts)

    return decide, {"kind": "gate", "model": path, "threshold": gate.threshold, "layer": gate.probe.layer,
                    "threshold_chosen_on": gate.threshold_chosen_on, "trained_on": gate.trained_on,
                    "max_dev_false_refusal": gate.max_dev_false_refusal, "development": gate.development,
                    "actuation": control.actuation, "gate_file": str(gate_file)}


def _refusal_tokens(control: ControlConfig, model, tokenizer, path: str):
    spec = RefusalTokens.load(path)
    ids = control_token_ids(tokenizer, spec.tokens)
    unknown = sorted(set(control.category_thresholds) - set(spec.categories))
    if unknown:
        raise ConfigError(f"config key 'controls.{control.name}.category_thresholds': {unknown} are not categories "
                          f"of the model's refusal tokens {list(spec.categories)}")

    def probabilities(prompts):
        return control_probabilities(model, tokenizer, prompts, ids, control.temperature)

    threshold, chosen_on, development = control.threshold, ["fixed in the config"], {}
    if threshold is None and control.dev_prompts:
        dev_prompts, dev_harmful = read_prompt_sets(control.dev_prompts)
        point = choose_threshold(refusal_scores(probabilities(dev_prompts)), dev_harmful, control.max_dev_false_refusal)
        threshold, chosen_on = point["threshold"], [s.name for s in control.dev_prompts]
        development = {"flagged_harmless": point["false_refusal"], "missed_harmful": point["harmful_compliance"],
                       "n_prompts": len(dev_prompts), "n_harmful": sum(dev_harmful)}
    elif threshold is None:
        chosen_on = ["the model's own choice: p([refuse]) >= p([respond])"]
    thresholds = [control.category_thresholds.get(category, threshold) for category in spec.categories]

    def decide(prompts):
        p = probabilities(prompts)
        forced = forced_tokens(p, thresholds)
        return refusal_scores(p), [i > 0 for i in forced], [spec.tokens[i] for i in forced], [None] * len(prompts)

    return decide, {"kind": "refusal-tokens", "model": path, "threshold": threshold, "threshold_chosen_on": chosen_on,
                    "category_thresholds": control.category_thresholds, "development": development,
                    "max_dev_false_refusal": control.max_dev_false_refusal}
