"""Accelerator, optimiser and schedule from a :class:`~saferlhf.config.TrainConfig`.

Shared by every hand-written training loop (score models, refusal classifier, policy); the stages on
TRL's trainers (sft, dpo) take :func:`trainer_arguments`. Mixed precision comes from Accelerate:
``precision="auto"`` picks bf16 autocast where the hardware computes bf16 natively (GPUs, and CPUs
with AVX512-BF16 / AMX, :mod:`saferlhf.models.precision`) and full fp32 elsewhere, so the same config
runs on a laptop and a cluster.
"""

from __future__ import annotations

import math
import os

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from transformers import get_scheduler

from saferlhf.config import TrainConfig
from saferlhf.models.precision import resolve_precision
from saferlhf.training.distributed import check_process_group, use_cpu_process_group_if_no_gpu


def mixed_precision(precision: str) -> str:
    """Accelerate's ``mixed_precision`` value for a config ``precision``."""
    return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[resolve_precision(precision)]


def make_accelerator(train: TrainConfig, **kwargs) -> Accelerator:
    """The run's ``Accelerator``: one process, or one of N under ``accelerate launch`` / ``torchrun``
    (a CPU-only machine gets a gloo group, see :mod:`saferlhf.training.distributed`)."""
    use_cpu_process_group_if_no_gpu()
    if train.num_threads > 0:
        torch.set_num_threads(train.num_threads)
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["WORLD_SIZE"])))
    accelerator = Accelerator(
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        mixed_precision=mixed_precision(train.precision),
        **kwargs,
    )
    check_process_group(accelerator)
    if accelerator.is_main_process:
        print(f"[saferlhf] precision: {resolve_precision(train.precision)} (precision={train.precision}; "
              f"{'bf16 autocast, float32 master weights' if accelerator.mixed_precision == 'bf16' else 'no autocast'})",
              flush=True)
    plugin = accelerator.state.deepspeed_plugin
    if plugin is not None and plugin.is_auto("train_micro_batch_size_per_gpu"):
        # our loops prepare models without a DataLoader, from which Accelerate would read this value
        plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = train.batch_size
    set_seed(train.seed)  # the same on every process: identical initial weights everywhere
    return accelerator


def enable_gradient_checkpointing(model: torch.nn.Module, train: TrainConfig) -> torch.nn.Module:
    """Hugging Face gradient checkpointing (non-reentrant, so LoRA needs no input gradients) on a trained
    model, or on a score model's backbone, when ``train.gradient_checkpointing``; returns ``model``."""
    if train.gradient_checkpointing:
        target = getattr(model, "backbone", model)
        if not getattr(target, "supports_gradient_checkpointing", True):
            raise ValueError(f"train.gradient_checkpointing: {type(target).__name__} does not support it")
        target.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def make_optimizer(model: torch.nn.Module, train: TrainConfig, learning_rate: float | None = None) -> torch.optim.Optimizer:
    """AdamW (fused kernel: one pass over all parameters, several times faster on CPU than the
    per-tensor loop); no weight decay on biases and normalisation weights (the usual split)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim < 2 or "norm" in name.lower() else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=learning_rate or train.learning_rate, fused=True)


def total_steps(train: TrainConfig, batches_per_epoch: int) -> int:
    """Optimiser steps of a run: ``max_steps`` if set, else ``epochs`` passes."""
    if train.max_steps > 0:
        return train.max_steps
    return max(1, math.ceil(train.epochs * batches_per_epoch / train.gradient_accumulation_steps))


def make_scheduler(optimizer: torch.optim.Optimizer, train: TrainConfig, num_steps: int):
    name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[train.lr_scheduler]
    return get_scheduler(name, optimizer, num_warmup_steps=int(train.warmup_ratio * num_steps),
                         num_training_steps=num_steps)


def trainer_arguments(train: TrainConfig, output_dir: str, has_eval: bool = False) -> dict:
    """Keyword arguments of a Hugging Face ``TrainingArguments`` subclass (TRL's ``SFTConfig``,
    ``DPOConfig``) from a :class:`TrainConfig`; checkpoints go to ``output_dir``."""
    precision = mixed_precision(train.precision)
    return dict(
        output_dir=output_dir,
        num_train_epochs=train.epochs,
        max_steps=train.max_steps or -1,
        learning_rate=train.learning_rate,
        weight_decay=train.weight_decay,
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=train.eval_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        lr_scheduler_type=train.lr_scheduler,
        warmup_steps=train.warmup_ratio,  # a float < 1 is a ratio in transformers >= 5
        max_grad_norm=train.max_grad_norm,
        seed=train.seed,
        logging_steps=train.logging_steps,
        save_strategy="steps" if train.save_steps else "no",
        save_steps=train.save_steps or 500,
        eval_strategy="steps" if has_eval and train.eval_steps else "no",
        eval_steps=train.eval_steps or None,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=precision == "bf16" and not torch.cuda.is_available(),  # bf16 on a CPU with AVX512-BF16 / AMX
        gradient_checkpointing=train.gradient_checkpointing,
        report_to="none",
    )
