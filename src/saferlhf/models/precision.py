"""Which floating-point precision a run computes in, and which dtype each model role is loaded in.

``precision: auto`` means bf16 wherever the hardware computes it natively, float32 elsewhere:

- a CUDA GPU that supports bf16 (Ampere and later);
- a CPU with the AVX512-BF16 or AMX-BF16 instructions (``avx512_bf16`` / ``amx_bf16`` in
  ``/proc/cpuinfo``; oneDNN then runs bf16 matrix products at up to twice the float32 rate).

Trained models keep float32 master weights and run their forward and backward passes under bf16
autocast (Accelerate's ``mixed_precision="bf16"``, TRL's ``bf16=True``); frozen models (reference,
reward and cost models, the generation copy of a policy) are loaded in bf16 outright, which halves
their memory. ``precision: fp32`` turns all of it off. Set ``SAFERLHF_NO_BF16=1`` to make ``auto``
pick float32 on any hardware (for example, to compare against float32 without editing configs).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@functools.lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 dot products (AVX512-BF16 or AMX-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: leave bf16 to an explicit precision: bf16
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def bf16_supported() -> bool:
    """bf16 runs natively here: on the GPU when there is one, else on the CPU."""
    if os.environ.get("SAFERLHF_NO_BF16", "") not in ("", "0"):
        return False
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_supports_bf16()


def resolve_precision(precision: str) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for a config's ``precision`` (``auto`` resolved for this machine)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if bf16_supported() else "fp32"
    return precision


def torch_dtype(precision: str) -> torch.dtype:
    """The dtype a frozen model (or a generation copy) is loaded in under ``precision``."""
    return _DTYPES[resolve_precision(precision)]


def role_dtype(setting: str, run_precision: str) -> torch.dtype:
    """dtype of a frozen model whose own setting is ``setting`` (``auto``, ``fp32`` or ``bf16``):
    ``auto`` follows the run's precision, so ``precision: fp32`` keeps every model in float32."""
    return torch_dtype(run_precision if setting == "auto" else setting)
