"""``saferlhf train-reward`` and ``saferlhf train-cost``: the score models of Safe RLHF.

One loop for both (they differ only in which response of a pair comes first and in the loss, see
:mod:`saferlhf.training.score_losses`). Runs on Hugging Face Accelerate, so the same command runs
on one CPU or under ``accelerate launch`` on many GPUs; LoRA optional; cosine schedule with warm-up;
gradient accumulation; bf16 autocast where the hardware supports it; atomic checkpoints every
``train.save_steps`` with exact resume (``resume=true``).

Output folder: the score model (``ScoreModel.save_pretrained``: safetensors + tokenizer +
normalisation statistics; a standard ``AutoModelForSequenceClassification`` folder for decoders,
docs/models.md), ``README.md`` (model card), ``metrics.json`` (with the sign ``canary``), ``log.jsonl``,
``config.yaml`` and ``score_histogram.png``.
"""

from __future__ import annotations

import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from accelerate.data_loader import prepare_data_loader, skip_first_batches
from tqdm.auto import tqdm

from saferlhf.config import DataConfig, HubConfig, ModelConfig, TrainConfig, _check, doc, to_dict, validate_sections
from saferlhf.data.loading import load_preference_data
from saferlhf.models.loading import apply_lora, load_options, load_tokenizer
from saferlhf.models.canary import canary_check
from saferlhf.models.model_card import publish
from saferlhf.models.precision import resolve_precision
from saferlhf.models.score_model import ScoreModel
from saferlhf.runio import RunWriter
from saferlhf.training.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from saferlhf.training.pairs import encode_pairs, forward_in_length_buckets, pair_loader
from saferlhf.training.run_identity import begin_run, run_identity
from saferlhf.training.score_losses import cost_loss, reward_loss, severity_weights
from saferlhf.training.score_metrics import per_category_metrics, save_histogram, score_metrics
from saferlhf.training.setup import (enable_gradient_checkpointing, make_accelerator, make_optimizer, make_scheduler,
                                    total_steps)
from saferlhf.training.tracking import ReportTo, open_tracker, report_to_field


@dataclass
class ScoreStageConfig:
    """Configuration of ``train-reward`` / ``train-cost`` (reference defaults: 2 epochs, lr 2e-5,
    weight decay 0.1, batch 16, max length 512)."""

    model: ModelConfig = doc(ModelConfig(), "Backbone of the score model (decoder or encoder).")
    data: DataConfig = doc(DataConfig(), "Preference data.")
    train: TrainConfig = doc(TrainConfig(), "Optimisation.")
    output_dir: str = doc("runs/score-model", "Folder for the model, metrics.json and log.jsonl.")
    hub: HubConfig = doc(HubConfig(), "Push the saved model (and its model card) to the Hugging Face Hub.")
    regularization: float = doc(0.001, "η: weight of the score regulariser mean(score²).")
    severity_weights: list[float] = doc(
        [], "train-cost: w(level) for PKU-SafeRLHF severity levels 0-3 of a pair's more severe answer, e.g. "
            "[1, 1, 2, 3]; pairs without a level get 1; [] = unweighted L_C (training/score_losses.py).")
    pooling: Literal["auto", "last", "mean"] = doc(
        "auto", "Sequence score: last non-padding token, or masked mean; auto = last for decoders, mean for encoders.")
    group_by_length: bool = doc(True, "Batch pairs of similar length together (less padding, faster).")
    forward_bucket_size: int = doc(
        8, "Sequences per forward pass, grouped by length so padding is not computed (0 = one forward per batch).")
    disable_dropout: bool = doc(True, "Turn off dropout in the backbone (common for score models; TRL's default).")
    normalization_samples: int = doc(256, "Training pairs scored at the end for the normalisation statistics.")
    resume: bool = doc(False, "Continue from output_dir/checkpoint if it exists.")
    report_to: ReportTo = report_to_field()

    def validate(self, prefix: str) -> None:
        validate_sections(self, prefix)
        _check(len(self.data.train) > 0, prefix + "data.train", "must list at least one data source")
        _check(self.regularization >= 0, prefix + "regularization", "must be >= 0")
        _check(not self.severity_weights or (len(self.severity_weights) == 4 and
                                             all(w >= 0 and math.isfinite(w) for w in self.severity_weights)),
               prefix + "severity_weights", "must be [] or 4 finite weights >= 0, one per severity level 0-3")
        _check(self.forward_bucket_size >= 0, prefix + "forward_bucket_size", "must be >= 0")
        _check(self.normalization_samples > 0, prefix + "normalization_samples", "must be > 0")
        _check(bool(self.output_dir), prefix + "output_dir", "must not be empty")


def run_reward(config: ScoreStageConfig) -> dict:
    return train_score_model(config, "reward")


def run_cost(config: ScoreStageConfig) -> dict:
    return train_score_model(config, "cost")


def _loss(kind: str, scores: torch.Tensor, batch: dict, regularization: float,
          weights_per_level: list[float] | None = None) -> torch.Tensor:
    """The training loss of a batch; ``weights_per_level`` (cost only) weights pairs by severity (``L_C^w``)."""
    first, second = scores.chunk(2)  # (B,), (B,): preferred / safer first
    if kind == "reward":
        return reward_loss(first, second, regularization)
    weights = severity_weights(batch["severity_level"], weights_per_level) if weights_per_level else None
    return cost_loss(first, second, batch["first_is_safe"], batch["second_is_safe"], regularization, batch.get("ranked"),
                     weights)


def severity_counts(pairs: list, weights_per_level: list[float]) -> dict:
    """How the severity weighting applies to the training pairs: pairs per level and without a level (w = 1)."""
    levels = [pair.severity_level for pair in pairs]
    return {"weights": list(weights_per_level),
            "train_pairs_per_level": {str(level): sum(1 for x in levels if x == level) for level in range(4)},
            "train_pairs_without_level": sum(1 for x in levels if math.isnan(x))}


def train_score_model(config: ScoreStageConfig, kind: str) -> dict:
    if config.severity_weights and kind != "cost":
        raise ValueError("severity_weights: only train-cost weights its pairs by severity (a reward model has no harm)")
    accelerator = make_accelerator(config.train)
    output_dir = Path(config.output_dir)
    checkpoint_dir = output_dir / "checkpoint"
    identity = run_identity(config, kind=kind)
    finished = begin_run(accelerator, output_dir, identity, config.resume, find_checkpoint(checkpoint_dir),
                         ("checkpoint", "checkpoint.old", "checkpoint.tmp"))
    if finished is not None:
        return finished
    tracker = open_tracker(config.report_to, output_dir, f"train-{kind}", {"kind": kind, **to_dict(config)},
                           enabled=accelerator.is_main_process)
    writer = RunWriter(output_dir, enabled=accelerator.is_main_process, resume=config.resume, tracker=tracker)
    writer.write_config({"kind": kind, **to_dict(config)})

    tokenizer = load_tokenizer(config.model.name_or_path, config.model.trust_remote_code, padding_side="right")
    data = load_preference_data(config.data, tokenizer, need="helpfulness" if kind == "reward" else "harmlessness")
    train_pairs = encode_pairs(data.train, tokenizer, config.data.max_length, kind)
    eval_pairs = encode_pairs(data.eval, tokenizer, config.data.max_length, kind)
    if not train_pairs:
        raise ValueError("no training pairs left after validation; see the data report above")
    severity = severity_counts(train_pairs, config.severity_weights) if config.severity_weights else None
    if severity and severity["train_pairs_without_level"]:
        accelerator.print(f"[saferlhf] severity_weights: {severity['train_pairs_without_level']} of {len(train_pairs)} "
                          "training pairs have no severity level (weight 1)")

    model = ScoreModel.from_backbone(config.model.name_or_path, kind=kind, pooling=config.pooling,
                                     trust_remote_code=config.model.trust_remote_code, **load_options(config.model))
    model.backbone = apply_lora(model.backbone, config.model.lora, task_type="FEATURE_EXTRACTION")
    enable_gradient_checkpointing(model, config.train)
    if config.disable_dropout:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    optimizer = make_optimizer(model, config.train)
    model, optimizer = accelerator.prepare(model, optimizer)

    def epoch_loader(epoch: int):
        loader = pair_loader(train_pairs, config.train.batch_size, tokenizer.pad_token_id, shuffle=True,
                             seed=config.train.seed + epoch, group_by_length=config.group_by_length)
        return prepare_data_loader(loader, accelerator.device, accelerator.num_processes, accelerator.process_index)

    batches_per_epoch = len(epoch_loader(0))
    num_steps = total_steps(config.train, batches_per_epoch)
    scheduler = make_scheduler(optimizer, config.train, num_steps)
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "pairs_seen": 0, "train_seconds": 0.0,
             "num_processes": accelerator.num_processes, "run_identity": identity}
    if config.resume and find_checkpoint(checkpoint_dir):
        state = load_checkpoint(accelerator, checkpoint_dir, scheduler)
        saved_processes = state.get("num_processes", 1)
        if saved_processes != accelerator.num_processes:  # batches are dealt round-robin: re-count this process's
            state["batch_in_epoch"] = math.ceil(state["batch_in_epoch"] * saved_processes / accelerator.num_processes)
            state["num_processes"] = accelerator.num_processes
        writer.truncate_log(state["step"])
        accelerator.print(f"[saferlhf] resumed from {checkpoint_dir} at step {state['step']}")

    progress = tqdm(total=num_steps, initial=state["step"], desc=f"train-{kind}", disable=not accelerator.is_main_process)
    window_loss, window_correct, window_pairs, window_ranked = 0.0, 0.0, 0, 0.0
    started = time.perf_counter() - state["train_seconds"]
    model.train()
    while state["step"] < num_steps:
        loader = epoch_loader(state["epoch"])
        if state["batch_in_epoch"]:
            loader = skip_first_batches(loader, state["batch_in_epoch"])
        for batch in loader:
            with accelerator.accumulate(model):
                scores = forward_in_length_buckets(model, batch["input_ids"], batch["attention_mask"],
                                                   config.forward_bucket_size)  # (2B,)
                loss = _loss(kind, scores, batch, config.regularization, config.severity_weights)
                if _any_process(accelerator, not torch.isfinite(loss)):  # all stop together, none waits in backward
                    raise FloatingPointError(
                        f"non-finite {kind} loss at step {state['step'] + 1} (this process: {loss.item()}); stopping. "
                        f"The last good checkpoint (if any) is kept at {checkpoint_dir}.")
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.train.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), config.train.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            state["batch_in_epoch"] += 1
            first, second = scores.detach().chunk(2)
            correct = (first > second) if kind == "reward" else (second > first)
            ranked = batch["ranked"].to(first.device)  # (B,) unpaired records have no pairwise accuracy
            window_loss += loss.item() * first.numel()
            window_correct += (correct.float() * ranked).sum().item()
            window_pairs += first.numel()
            window_ranked += ranked.sum().item()
            state["pairs_seen"] += first.numel() * accelerator.num_processes
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            state["step"] += 1
            progress.update(1)
            step = state["step"]
            if config.train.save_steps and step % config.train.save_steps == 0 and step < num_steps:
                _stop_if_diverged(accelerator, model, batch, config.forward_bucket_size, step, checkpoint_dir)
            if step % config.train.logging_steps == 0 or step == num_steps:
                totals = accelerator.reduce(torch.tensor([window_loss, window_correct, window_pairs, window_ranked],
                                                         device=accelerator.device, dtype=torch.float64), "sum")
                loss_mean = (totals[0] / totals[2]).item()
                accuracy = (totals[1] / totals[3]).item() if totals[3] > 0 else math.nan
                writer.log(step, loss=loss_mean, accuracy=accuracy, learning_rate=scheduler.get_last_lr()[0],
                           epoch=state["epoch"] + state["batch_in_epoch"] / max(1, batches_per_epoch))
                progress.set_postfix(loss=f"{loss_mean:.3f}", acc=f"{accuracy:.3f}")
                window_loss, window_correct, window_pairs, window_ranked = 0.0, 0.0, 0, 0.0
            if config.train.eval_steps and step % config.train.eval_steps == 0 and step < num_steps and eval_pairs:
                writer.log(step, **evaluate(accelerator, model, eval_pairs, kind, config, tokenizer)[0])
                model.train()
            if config.train.save_steps and step % config.train.save_steps == 0 and step < num_steps:
                state["train_seconds"] = time.perf_counter() - started
                save_checkpoint(accelerator, checkpoint_dir, state, scheduler)
            if step >= num_steps:
                break
        else:
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
    progress.close()
    train_seconds = time.perf_counter() - started

    metrics, scores = evaluate(accelerator, model, eval_pairs, kind, config, tokenizer) if eval_pairs else ({}, None)
    if kind == "cost" and scores is not None and (groups := per_category_metrics(data.eval, scores[0], scores[1])):
        metrics["eval_per_category"] = groups  # harm categories / severity levels where the data has them
    unwrapped = accelerator.unwrap_model(model)
    mean, std = normalization_statistics(accelerator, model, train_pairs, kind, config, tokenizer)
    unwrapped.score_config.score_mean, unwrapped.score_config.score_std = mean, std
    metrics.update({
        "kind": kind,
        "precision": resolve_precision(config.train.precision),
        "num_train_pairs": len(train_pairs),
        "train_steps": state["step"],
        "train_seconds": train_seconds,
        "train_pairs_per_s": state["pairs_seen"] / max(train_seconds, 1e-9),
        "train_score_mean": mean,
        "train_score_std": std,
        "data_report": data.report.to_dict(),
        **({"severity_weighting": severity} if severity else {}),
    })
    if accelerator.is_main_process:
        metrics["canary"] = canary_check(unwrapped, tokenizer, kind, str(output_dir), config.data.max_length)
        metrics["layout"] = unwrapped.save_pretrained(output_dir, tokenizer)
        legacy = "saferlhf.models.score_model.ScoreModel.from_pretrained(folder) (mean-pooled encoder: no standard class)"
        metrics.update(publish(output_dir, kind, config.hub, base_model=config.model.name_or_path,
                               data=[s.path for s in config.data.train], metrics=metrics, config=to_dict(config),
                               how_to_load=legacy if metrics["layout"] == "saferlhf-legacy" else ""))
        if scores is not None:
            save_histogram(output_dir / "score_histogram.png", kind, *scores[:4])
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    writer.log(state["step"], **{k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    writer.write_metrics({**metrics, "status": "finished", "run_identity": identity})
    writer.finish()
    accelerator.wait_for_everyone()
    return metrics


@torch.no_grad()
def _stop_if_diverged(accelerator, model, batch: dict, bucket_size: int, step: int, checkpoint_dir: Path) -> None:
    """Before a checkpoint: the weights, and the scores of the step's last batch, must be finite (a loss can
    still be finite in the step that blows the weights up). Eval mode: no dropout draw, the RNG stays put."""
    model.eval()
    scores = forward_in_length_buckets(model, batch["input_ids"], batch["attention_mask"], bucket_size)
    model.train()
    bad = [name for name, ok in (("weights", all(bool(torch.isfinite(p).all()) for p in model.parameters())),
                                 ("scores", bool(torch.isfinite(scores).all()))) if not ok]
    if _any_process(accelerator, bool(bad)):
        raise FloatingPointError(
            f"the score model diverged at step {step}: its {' and '.join(bad) or 'values on another process'} "
            f"are not finite (NaN or inf); stopping before writing that checkpoint. The last good checkpoint (if "
            f"any) is kept at {checkpoint_dir}.")


def _any_process(accelerator, flag: bool) -> bool:
    if accelerator.num_processes == 1:
        return flag
    return accelerator.reduce(torch.tensor(float(flag), device=accelerator.device), "sum").item() > 0


@torch.no_grad()
def score_pairs(accelerator, model, pairs, config: ScoreStageConfig, tokenizer):
    """End scores of (first, second) for every pair plus their safety labels, gathered from all processes."""
    loader = pair_loader(pairs, config.train.eval_batch_size, tokenizer.pad_token_id, shuffle=False)
    loader = prepare_data_loader(loader, accelerator.device, accelerator.num_processes, accelerator.process_index)
    model.eval()
    firsts, seconds, first_safe, second_safe, ranked = [], [], [], [], []
    for batch in tqdm(loader, desc="score pairs", leave=False, disable=not accelerator.is_main_process):
        scores = forward_in_length_buckets(model, batch["input_ids"], batch["attention_mask"],
                                           config.forward_bucket_size)
        first, second = scores.chunk(2)
        gathered = accelerator.gather_for_metrics((first, second, batch["first_is_safe"], batch["second_is_safe"],
                                                   batch["ranked"]))
        for bucket, value in zip((firsts, seconds, first_safe, second_safe, ranked), gathered):
            bucket.append(value.float().cpu())
    return tuple(torch.cat(bucket) for bucket in (firsts, seconds, first_safe, second_safe, ranked))


def evaluate(accelerator, model, pairs, kind: str, config: ScoreStageConfig, tokenizer):
    scores = score_pairs(accelerator, model, pairs, config, tokenizer)
    metrics = score_metrics(kind, *scores)
    losses = _loss(kind, torch.cat(scores[:2]), {"first_is_safe": scores[2], "second_is_safe": scores[3],
                                                 "ranked": scores[4]}, config.regularization)
    metrics["eval_loss"] = float(losses)  # unweighted L_C even with severity_weights: comparable across runs
    return metrics, scores


def normalization_statistics(accelerator, model, pairs, kind: str, config: ScoreStageConfig, tokenizer):
    """Mean and std of scores on a seeded sample of training pairs (stored for score normalisation)."""
    sample = random.Random(config.train.seed).sample(pairs, min(len(pairs), config.normalization_samples))
    first, second, _, _, _ = score_pairs(accelerator, model, sample, config, tokenizer)
    scores = torch.cat([first, second])
    std = float(scores.std()) if scores.numel() > 1 else 1.0
    return float(scores.mean()), std if math.isfinite(std) and std > 0 else 1.0
