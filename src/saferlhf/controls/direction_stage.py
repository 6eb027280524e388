"""``saferlhf refusal-direction``: find a model's refusal direction, select it, ablate it, add it, measure.

Steps (Arditi et al. 2024; :mod:`saferlhf.controls.direction` has the formulas):

1. Prompt sets: harmful and harmless sets (built-in prompts, a benchmark name or a file, read by
   :func:`saferlhf.evaluation.benchmarks.load_benchmark`), each split (seeded) into a part that
   finds the direction and a validation part that selects it; held-out test sets that neither sees.
2. Refusal tokens: the model answers the harmful direction/validation prompts (greedy); the first
   tokens of the answers the rule detector calls refusals form the token set of the refusal score.
   A model trained with refusal tokens (``refusal_tokens.json``) opens its refusals with ``[refuse]``
   (or ``[refuse:<category>]``): those tokens form the set.
3. Filters of the reference: harmful prompts with refusal score > 0, harmless ones with score < 0.
   A model that refuses few harmful validation prompts stops the run here with a clear message
   (``rare_refusal=stop``): select on a model that refuses (an SFT or policy folder).
4. Difference in means for every layer and post-instruction position (float64); candidate selection
   on the validation prompts (:mod:`saferlhf.controls.direction_select`).
5. The selected direction's weight-orthogonalised model is saved to ``output_dir/ablated`` (a plain
   Hugging Face folder), reloaded, and compared with hooked ablation (max abs logit difference).
6. On the test sets: refusal rates (rule detector, greedy answers) of the model, the ablated model
   and the model with activation addition; KL(model ‖ ablated) on harmless prompts; optionally the
   AUC, per layer, of the projection on the direction separating a labelled set (XSTest).

Writes ``metrics.json``, ``direction.safetensors`` (``direction`` (d,), ``candidates`` (P, L, d)),
``generations.jsonl``, ``layers.png`` and ``ablated/``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Literal

import torch

from saferlhf.config import ConfigError, HubConfig, _check, doc, to_dict, validate_sections
from saferlhf.controls import direction as rd
from saferlhf.controls.direction_select import score_candidates, select_direction
from saferlhf.controls.direction_report import layer_figure
from saferlhf.controls.probe import auc
from saferlhf.controls.tokens import SPEC_FILE, control_token_ids, copy_spec, spec_of
from saferlhf.data.builtin import LABELS as BUILTIN_LABELS
from saferlhf.data.builtin import builtin_prompts
from saferlhf.data.split import split_records
from saferlhf.evaluation.benchmarks import BenchmarkError, load_benchmark
from saferlhf.evaluation.generation import generate_responses
from saferlhf.evaluation.stage import GenerationConfig
from saferlhf.models.loading import load_causal_lm, load_tokenizer
from saferlhf.models.model_card import publish
from saferlhf.refusal import detect_refusal
from saferlhf.runio import RunWriter, atomic_write_text

RATE_KEYS = ("model", "ablated", "actadd")


@dataclass
class PromptSetConfig:
    """One prompt set: the built-in prompts, a benchmark name, or a file."""

    source: str = doc("builtin", "builtin | a benchmark name (xstest, advbench, harmbench, or-bench-*, phtest) | "
                                 "a csv/jsonl/json file or hub id | '' = none.")
    split: Literal["train", "heldout", "all"] = doc("train", "Built-in prompts only: which split.")
    label: str = doc("", "Keep only this label: built-in harmful | benign | pseudo_harmful; benchmarks harmful | "
                         "harmless (a file without a label column is used whole); '' = all.")
    limit: int = doc(0, "Use only the first N prompts (0 = all).")

    def validate(self, prefix: str) -> None:
        allowed = BUILTIN_LABELS if self.source == "builtin" else ("harmful", "harmless", "controversial")
        _check(self.label in ("",) + tuple(allowed), prefix + "label", f"must be one of {allowed} or ''")
        _check(self.limit >= 0, prefix + "limit", "must be >= 0")


@dataclass
class SelectionConfig:
    """Direction selection (the reference's filters and values)."""

    max_layer_fraction: float = doc(0.8, "Drop candidates at layers >= this share of the layers.")
    max_kl: float = doc(0.1, "Drop candidates whose ablation moves harmless next-token distributions more (KL).")
    min_addition_score: float = doc(0.0, "Drop candidates whose addition leaves the harmless refusal score below this.")
    addition_coefficient: float = doc(1.0, "Activation addition x + coefficient * r.")
    filter_prompts: bool = doc(True, "Keep harmful prompts with refusal score > 0 and harmless ones with score < 0.")
    min_validation_prompts: int = doc(8, "Fewest harmful validation prompts the model must refuse (score > 0).")
    score_all_layers: bool = doc(True, "Also score the layers the layer filter drops (for the figure; slower).")
    last_positions: int = doc(0, "Score only the last N post-instruction positions (0 = all, the reference); a "
                                 "compute saving for CPUs: the directions are still computed for every position.")

    def validate(self, prefix: str) -> None:
        _check(0 < self.max_layer_fraction <= 1, prefix + "max_layer_fraction", "must be in (0, 1]")
        _check(self.max_kl > 0, prefix + "max_kl", "must be > 0")
        _check(self.min_validation_prompts >= 1, prefix + "min_validation_prompts", "must be >= 1")
        _check(self.last_positions >= 0, prefix + "last_positions", "must be >= 0")


@dataclass
class RefusalDirectionConfig:
    """Configuration of ``saferlhf refusal-direction``."""

    model: str = doc("smollm2-135m-instruct", "Built-in name, Hugging Face id or local folder (e.g. an SFT run).")
    trust_remote_code: bool = doc(False, "Allow code from the model repository to run.")
    harmful: PromptSetConfig = doc(PromptSetConfig(label="harmful"), "Harmful prompts (direction + validation).")
    harmless: PromptSetConfig = doc(PromptSetConfig(label="benign"), "Harmless prompts (direction + validation).")
    validation_fraction: float = doc(0.25, "Share of each set held out to select the direction (seeded split).")
    split_seed: int = doc(42, "Seed of that split.")
    harmful_test: PromptSetConfig = doc(PromptSetConfig(split="heldout", label="harmful"), "Harmful test prompts.")
    harmless_test: PromptSetConfig = doc(PromptSetConfig(split="heldout", label="benign"), "Harmless test prompts.")
    auc_prompts: PromptSetConfig = doc(PromptSetConfig(source=""), "Labelled set for the per-layer projection AUC "
                                                                   "(e.g. source: xstest); '' = none.")
    selection: SelectionConfig = doc(SelectionConfig(), "Direction selection.")
    generation: GenerationConfig = doc(GenerationConfig(max_new_tokens=48), "Greedy answers for refusal rates.")
    batch_size: int = doc(16, "Prompts per forward pass.")
    rare_refusal: Literal["stop", "continue"] = doc(
        "stop", "When the model refuses too few harmful validation prompts: stop with a message, or continue "
                "on the unfiltered prompts (the direction then means little).")
    fallback_refusal_openings: list[str] = doc(
        ["I can't", "I cannot", "I'm sorry", "Sorry", "I won't", "As an AI"],
        "Refusal openings whose first tokens score refusal when the model never refuses (continue only).")
    output_dir: str = doc("runs/refusal-direction", "Output folder.")
    hub: HubConfig = doc(HubConfig(), "Push the saved model (and its model card) to the Hugging Face Hub.")

    def validate(self, prefix: str) -> None:
        validate_sections(self, prefix)
        for name in ("harmful", "harmless", "harmful_test", "harmless_test", "auc_prompts"):
            getattr(self, name).validate(f"{prefix}{name}.")
        for name in ("harmful", "harmless", "harmful_test", "harmless_test"):
            _check(bool(getattr(self, name).source), f"{prefix}{name}.source", "must not be empty")
        _check(0 < self.validation_fraction < 1, prefix + "validation_fraction", "must be in (0, 1)")
        _check(self.batch_size > 0, prefix + "batch_size", "must be > 0")


def load_prompt_set(config: PromptSetConfig, key: str) -> list[dict]:
    """Rows ``{"prompt", "label"}`` (label harmful / harmless / ...) of the set configured at ``key``."""
    if config.source == "builtin":
        rows = builtin_prompts(split=None if config.split == "all" else config.split, label=config.label or None)
        rows = [{"prompt": r["prompt"], "label": "harmful" if r["label"] == "harmful" else "harmless"} for r in rows]
    else:
        try:
            bench = load_benchmark(config.source)
        except BenchmarkError as error:
            raise ConfigError(f"config key '{key}.source': {error}") from None
        rows = [{"prompt": p.prompt, "label": p.label} for p in bench.prompts
                if not config.label or p.label in (config.label, "unlabelled")]
    rows = rows[:config.limit] if config.limit else rows
    if not rows:
        raise ConfigError(f"config key '{key}': {config.source} (split {config.split}, label {config.label!r}) "
                          "has no prompts")
    return rows


def _split(rows: list[dict], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(direction prompts, validation prompts): :func:`saferlhf.data.split.split_records`, seeded."""
    train, validation = split_records([SimpleNamespace(prompt=r["prompt"]) for r in rows], fraction, seed)
    return [r.prompt for r in train], [r.prompt for r in validation]


def run(config: RefusalDirectionConfig) -> dict:
    started = time.time()
    if config.generation.num_threads:
        torch.set_num_threads(config.generation.num_threads)
    out = Path(config.output_dir)
    writer = RunWriter(out)
    writer.write_config(to_dict(config))
    say = lambda text: print(f"[saferlhf refusal-direction] {text}", flush=True)  # noqa: E731
    model = load_causal_lm(config.model, config.trust_remote_code).eval()
    tokenizer = load_tokenizer(config.model, config.trust_remote_code, padding_side="left")
    n_layers, batch = len(rd.decoder_layers(model)), config.batch_size
    fraction, seed = config.validation_fraction, config.split_seed
    harmful_train, harmful_val = _split(load_prompt_set(config.harmful, "harmful"), fraction, seed)
    harmless_train, harmless_val = _split(load_prompt_set(config.harmless, "harmless"), fraction, seed)
    tests = {kind: [r["prompt"] for r in load_prompt_set(getattr(config, f"{kind}_test"), f"{kind}_test")]
             for kind in ("harmful", "harmless")}
    auc_rows = _auc_rows(config.auc_prompts) if config.auc_prompts.source else None  # a bad set fails now, not last
    metrics: dict = {"model": config.model, "n_layers": n_layers, "warnings": []}

    def warn(text: str) -> None:
        metrics["warnings"].append(text)
        say("WARNING: " + text)

    def generate(prompts, which=model):
        g = config.generation
        return generate_responses(which, tokenizer, prompts, g.max_new_tokens, g.batch_size, g.temperature, g.top_p,
                                  g.seed, progress=False)

    # 2-3. the tokens that open this model's refusals; the reference's filters
    token_ids = _refusal_tokens(config, model, tokenizer, harmful_train + harmful_val, harmless_val, metrics, out,
                                generate, warn, say)
    sets = _filtered_sets(config, model, tokenizer, token_ids, {
        "harmful_train": harmful_train, "harmful_validation": harmful_val,
        "harmless_train": harmless_train, "harmless_validation": harmless_val}, metrics, out, warn)

    # 4. directions for every layer and post-instruction position; selection on the validation prompts
    positions = list(range(-len(rd.post_instruction_ids(tokenizer)), 0))
    directions = rd.difference_in_means(
        rd.block_inputs(model, tokenizer, sets["harmful_train"], positions, batch),
        rd.block_inputs(model, tokenizer, sets["harmless_train"], positions, batch)).transpose(0, 1)  # (P, L, d)
    chosen = _select(config, model, tokenizer, directions, positions, token_ids, sets, metrics, warn, say)
    position_index, layer = chosen
    direction = directions[chosen]
    from safetensors.torch import save_file
    save_file({"direction": direction.contiguous(), "candidates": directions.contiguous()},
              str(out / "direction.safetensors"),
              metadata={"layer": str(layer), "position": str(positions[position_index]), "model": config.model})

    # 5. weight orthogonalisation, saved and reloaded
    ablated_model = _save_ablated(model, tokenizer, direction, out / "ablated", config.trust_remote_code)
    copy_spec(config.model, out / "ablated")  # a refusal-token model keeps its tokens
    check = sets["harmful_validation"][:8] + sets["harmless_validation"][:8]
    metrics["max_abs_logit_diff_hooks_vs_weights"] = _hooks_vs_weights(model, ablated_model, tokenizer, direction, check)
    say(f"saved {out / 'ablated'}; hooked vs weight ablation: max |logit difference| "
        f"{metrics['max_abs_logit_diff_hooks_vs_weights']:.2e} over {len(check)} prompts")

    # 6. test sets
    records = _test_rates(model, ablated_model, tokenizer, direction, layer, config.selection.addition_coefficient,
                          tests, generate, metrics)
    metrics["harmless_kl_ablated"] = float(rd.kl_divergence(
        rd.last_logits(model, tokenizer, tests["harmless"], batch),
        rd.last_logits(ablated_model, tokenizer, tests["harmless"], batch)).mean())
    metrics["test_prompts"] = {kind: len(prompts) for kind, prompts in tests.items()}
    atomic_write_text(out / "generations.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    if auc_rows is not None:
        metrics["auc_per_layer"] = _projection_auc(model, tokenizer, auc_rows, config.auc_prompts.source, directions,
                                                   chosen, positions, batch)
    layer_figure(metrics).savefig(out / "layers.png", dpi=120)
    metrics["wall_time_s"] = time.time() - started
    metrics.update(publish(out / "ablated", "refusal-ablated", config.hub, base_model=config.model,
                           data=[config.harmful.source, config.harmless.source], metrics=metrics,
                           config=to_dict(config),
                           notes=f"The refusal direction (layer {layer}) is projected out of every weight that "
                                 "writes to the residual stream (Arditi et al. 2024); direction.safetensors beside "
                                 "this folder holds it."))
    writer.write_metrics(metrics)
    say(f"refusal rates harmful {metrics['harmful_refusal_rate']}, harmless {metrics['harmless_refusal_rate']}; KL "
        f"{metrics['harmless_kl_ablated']:.4f}; hooks vs weights {metrics['max_abs_logit_diff_hooks_vs_weights']:.2e}")
    return metrics


def _select(config, model, tokenizer, directions, positions, token_ids, sets, metrics, warn, say) -> tuple[int, int]:
    """Score every candidate on the validation prompts and pick one (:mod:`saferlhf.controls.direction_select`)."""
    s, n_layers, batch = config.selection, directions.shape[1], config.batch_size
    layers = list(range(n_layers)) if s.score_all_layers else [
        l for l in range(n_layers) if l < s.max_layer_fraction * n_layers]
    scored = list(range(len(positions)))[-s.last_positions:] if s.last_positions else list(range(len(positions)))
    say(f"scoring {len(scored)} positions x {len(layers)} layers ...")
    per_layer = score_candidates(model, tokenizer, directions, sets["harmful_validation"], sets["harmless_validation"],
                                 token_ids, batch, s.addition_coefficient, layers, scored,
                                 progress=lambda p, l: l == layers[-1] and say(f"  position {positions[p]} scored"))
    chosen, dropped = select_direction(per_layer, s.max_layer_fraction, s.max_kl, s.min_addition_score)
    if chosen is None:
        chosen, _ = select_direction(per_layer, s.max_layer_fraction, float("inf"), float("-inf"))
        warn(f"no candidate passed the filters ({dropped}); took the lowest ablation score below the layer cut")

    def baseline(prompts):
        return float(rd.refusal_scores(rd.last_logits(model, tokenizer, prompts, batch), token_ids).mean())

    metrics.update(layer=chosen[1], position=positions[chosen[0]],
                   position_token=tokenizer.convert_ids_to_tokens(rd.post_instruction_ids(tokenizer)[chosen[0]]),
                   selection={"dropped": dropped, **{k: float(v[chosen]) for k, v in per_layer.items()},
                              "max_layer_fraction": s.max_layer_fraction, "max_kl": s.max_kl,
                              "baseline_harmful_score": baseline(sets["harmful_validation"]),
                              "baseline_harmless_score": baseline(sets["harmless_validation"])},
                   per_layer={k: v.tolist() for k, v in per_layer.items()})
    say(f"selected layer {chosen[1]}, position {positions[chosen[0]]}: {metrics['selection']}")
    return chosen


def _refusal_tokens(config, model, tokenizer, harmful: list[str], harmless: list[str], metrics: dict, out: Path,
                    generate, warn, say) -> list[int]:
    """The model answers ``harmful`` and ``harmless``; the first tokens of its refusals (rule detector) that
    open more refusals than compliant answers (:func:`saferlhf.controls.direction.refusal_token_ids`)."""
    answers = generate(harmful + harmless)
    refused = [detect_refusal(a).is_refusal for a in answers]
    n_refused, n_harmless_refused = sum(refused[:len(harmful)]), sum(refused[len(harmful):])
    token_ids = rd.refusal_token_ids(tokenizer, [a for a, r in zip(answers, refused) if r],
                                     [a for a, r in zip(answers, refused) if not r])
    metrics["generated_refusal_rate"] = {"harmful_direction_and_validation": n_refused / len(harmful),
                                         "harmless_validation": n_harmless_refused / len(harmless)}
    spec = spec_of(config.model)
    if spec is not None:  # its answers open with [refuse] (decoded away from the text)
        token_ids = control_token_ids(tokenizer, list(spec.refuse))
        metrics["refusal_tokens_from"] = SPEC_FILE
    if not token_ids:
        _stop_or_warn(config, metrics, out, warn, f"no refusal-opening token: the model refused {n_refused} of "
                      f"{len(harmful)} harmful prompts (rule detector), none of them with an opening token that "
                      "starts more refusals than compliant answers")
        token_ids = rd.refusal_token_ids(tokenizer, config.fallback_refusal_openings, [])
    metrics["refusal_tokens"] = [{"id": t, "token": tokenizer.convert_ids_to_tokens(t)} for t in token_ids]
    say(f"refusal tokens {[m['token'] for m in metrics['refusal_tokens']]}; the model refused {n_refused} of "
        f"{len(harmful)} harmful and {n_harmless_refused} of {len(harmless)} harmless prompts (rule detector)")
    return token_ids


def _filtered_sets(config, model, tokenizer, token_ids: list[int], sets: dict[str, list[str]], metrics: dict,
                   out: Path, warn) -> dict[str, list[str]]:
    """Harmful prompts with refusal score > 0, harmless ones with score < 0 (the reference's filter); the
    unfiltered sets when filtering is off or (``rare_refusal=continue``) leaves too few."""
    kept = {}
    for name, prompts in sets.items():
        scores = rd.refusal_scores(rd.last_logits(model, tokenizer, prompts, config.batch_size), token_ids)
        kept[name] = [p for p, score in zip(prompts, scores) if (score > 0) == name.startswith("harmful")]
    metrics["prompts"] = {name: {"total": len(sets[name]), "passing_filter": len(kept[name])} for name in sets}
    if not config.selection.filter_prompts:
        return sets
    minimum = config.selection.min_validation_prompts
    if len(kept["harmful_validation"]) >= minimum and all(kept.values()):
        return kept
    _stop_or_warn(config, metrics, out, warn, f"the model refuses (refusal score > 0) only "
                  f"{len(kept['harmful_validation'])} of {len(sets['harmful_validation'])} harmful validation "
                  f"prompts (selection.min_validation_prompts = {minimum})")
    return sets


def _test_rates(model, ablated_model, tokenizer, direction, layer: int, coefficient: float,
                tests: dict[str, list[str]], generate, metrics: dict) -> list[dict]:
    """Refusal rates (rule detector, greedy answers) of the model, the ablated model and activation addition
    on the test sets, into ``metrics``; returns the answers."""
    records = []
    for kind, prompts in tests.items():
        metrics[f"{kind}_refusal_rate"] = {}
        for variant in RATE_KEYS:
            if variant == "actadd":
                with rd.addition_hooks(model, direction, layer, coefficient):
                    texts = generate(prompts)
            else:
                texts = generate(prompts, ablated_model if variant == "ablated" else model)
            verdicts = [detect_refusal(t).is_refusal for t in texts]
            metrics[f"{kind}_refusal_rate"][variant] = sum(verdicts) / len(verdicts)
            records += [{"variant": variant, "set": kind, "prompt": p, "response": t, "refusal": v}
                        for p, t, v in zip(prompts, texts, verdicts)]
    return records


def _stop_or_warn(config, metrics: dict, out: Path, warn, problem: str) -> None:
    advice = ("find the direction on a model that refuses: an SFT or policy folder (model=runs/sft; "
              "`saferlhf sft` on refusal answers makes one), or set rare_refusal=continue to go on "
              "with unfiltered prompts")
    if config.rare_refusal == "continue":
        warn(f"{problem}; continuing on unfiltered prompts (the direction means little)")
        return
    metrics["status"] = f"stopped: {problem}"
    RunWriter(out).write_metrics(metrics)
    raise ConfigError(f"config key 'model' ({config.model}): {problem}. To go on, {advice}.")


def _save_ablated(model, tokenizer, direction: torch.Tensor, folder: Path, trust_remote_code: bool):
    import copy

    ablated = copy.deepcopy(model)
    rd.orthogonalize_weights(ablated, direction)
    ablated.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    del ablated
    return load_causal_lm(str(folder), trust_remote_code).eval()


@torch.no_grad()
def _hooks_vs_weights(model, ablated_model, tokenizer, direction: torch.Tensor, prompts: list[str]) -> float:
    """Max |logit difference| over every real token of ``prompts``: hooked model vs saved ablated model.

    Computed on float64 copies of both models: the check is of the algebra (projecting the direction out
    of every write to the residual stream equals removing it from the activations); in float32 the two
    paths also differ by accumulation-order rounding (about 2e-4 on SmolLM2's logits of magnitude ~20),
    which says nothing about whether the weights are right."""
    import copy

    batch = rd.encode_prompts(tokenizer, prompts)
    hooked_model, weights_model = copy.deepcopy(model).double(), copy.deepcopy(ablated_model).double()
    with rd.ablation_hooks(hooked_model, direction.double()):
        hooked = hooked_model(**batch).logits
    weights = weights_model(**batch).logits
    return float((hooked - weights)[batch["attention_mask"].bool()].abs().max())


def _auc_rows(config: PromptSetConfig) -> list[dict]:
    """The labelled prompts of the per-layer AUC (harmful and harmless ones; both must be there)."""
    rows = [r for r in load_prompt_set(config, "auc_prompts") if r["label"] in ("harmful", "harmless")]
    if len({r["label"] for r in rows}) < 2:
        raise ConfigError(f"config key 'auc_prompts.source': {config.source} needs both harmful and harmless prompts")
    return rows


def _projection_auc(model, tokenizer, rows: list[dict], source: str, directions, chosen, positions, batch) -> dict:
    """Per layer, the AUC (harmful vs harmless) of the projection of the activation at the selected position
    on the selected direction, and on that layer's own candidate at the same position."""
    labels = torch.tensor([r["label"] == "harmful" for r in rows])
    position_index, layer = chosen
    acts = rd.block_inputs(model, tokenizer, [r["prompt"] for r in rows], [positions[position_index]], batch)[:, :, 0]

    def aucs(direction_at):  # None where the candidate is zero (block 0 at a template token)
        return [auc(rd.project(acts[:, l], direction_at(l)), labels) if direction_at(l).norm() > 0 else None
                for l in range(acts.shape[1])]

    return {"prompts": len(rows), "source": source,
            "selected_direction": aucs(lambda l: directions[position_index, layer]),
            "own_layer_direction": aucs(lambda l: directions[position_index, l])}
