"""What N processes need on top of Accelerate, in one place (no engine of our own).

Every stage runs unchanged under ``accelerate launch`` (DDP, FSDP, DeepSpeed) or ``torchrun``; the
pieces below close the gaps that Accelerate leaves to the training loop:

- :func:`use_cpu_process_group_if_no_gpu`: a process started by a multi-process launcher on a machine
  without GPUs joins a CPU (gloo) process group. Accelerate 1.x only does this when the environment
  says ``ACCELERATE_USE_CPU=true``; its torchrun-based launcher does not set it, and without it every
  rank silently trains alone as ``DistributedType.NO`` (measured with accelerate 1.15, see
  ``docs/scaling.md``). :func:`check_process_group` turns such a mismatch into an error.
- :func:`is_main_process`: rank 0 before any ``Accelerator`` exists (stages built on the transformers
  ``Trainer`` create theirs late), read from the launcher's environment.
- :func:`full_parameters`: a context in which a prepared model holds its full weights for
  ``generate`` and no-grad forwards. DeepSpeed ZeRO-3 partitions every weight, so they are gathered
  (``deepspeed.zero.GatheredParameters``, as TRL's ``unwrap_model_for_generation``); DDP, FSDP2
  (whose forward hooks gather by themselves) and single-process runs use the unwrapped model as is.
- :func:`broadcast_from_main`: rank 0's picklable object on every process.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import torch

RANK_VARIABLES = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def _first_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        if os.environ.get(name, "").strip():
            return int(os.environ[name])
    return default


def launched_world_size() -> int:
    """Number of processes the launcher (torchrun, accelerate launch, mpirun) started; 1 without one."""
    return _first_int(WORLD_SIZE_VARIABLES, 1)


def is_main_process() -> bool:
    """True on global rank 0 (and in a plain single-process run)."""
    return _first_int(RANK_VARIABLES, 0) == 0


def has_accelerator_device() -> bool:
    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def use_cpu_process_group_if_no_gpu() -> bool:
    """Set ``ACCELERATE_USE_CPU=true`` for a multi-process launch on a machine without GPUs.

    Both ``accelerate.Accelerator`` and transformers' ``TrainingArguments`` read this flag and then
    set up ``DistributedType.MULTI_CPU`` with the gloo backend. Returns True when it was set.
    """
    if launched_world_size() > 1 and not has_accelerator_device():
        os.environ["ACCELERATE_USE_CPU"] = "true"
        return True
    return False


def check_process_group(accelerator) -> None:
    """Fail loudly when the launcher started N processes but Accelerate set up another number."""
    launched = launched_world_size()
    if launched > 1 and accelerator.num_processes != launched:
        raise RuntimeError(
            f"the launcher started {launched} processes (WORLD_SIZE) but Accelerate set up "
            f"{accelerator.num_processes} ({accelerator.distributed_type}); each process would train alone. "
            "On a machine without GPUs set ACCELERATE_USE_CPU=true or use configs/accelerate/cpu_2proc.yaml.")


@contextlib.contextmanager
def full_parameters(accelerator, model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The unwrapped ``model`` with all its weights present (gathered under ZeRO-3) for the block."""
    unwrapped = accelerator.unwrap_model(model)
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is None or getattr(plugin, "zero_stage", 0) != 3:
        yield unwrapped
        return
    import deepspeed  # only present on DeepSpeed set-ups

    with deepspeed.zero.GatheredParameters(list(unwrapped.parameters()), modifier_rank=None):
        yield unwrapped


def broadcast_from_main(accelerator, value: Any) -> Any:
    """``value`` as rank 0 has it, on every process (identity on one process)."""
    if accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value], from_process=0)[0]


def gather_from_all(accelerator, value: Any) -> list[Any]:
    """``[value of rank 0, value of rank 1, ...]`` on every process."""
    if accelerator.num_processes == 1:
        return [value]
    from accelerate.utils import gather_object

    return gather_object([value])
