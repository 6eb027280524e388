"""Atomic, resumable checkpoints of a policy run.

One checkpoint is the folder ``<output_dir>/checkpoints/step-NNNNNN`` holding

- ``<model>.safetensors`` for every trained model: the actor's *trainable* parameters (all weights,
  or only the LoRA adapter) and each critic's weights (frozen models are rebuilt from the config);
- ``optimizers.pt`` and ``schedulers.pt`` (``state_dict`` of each, by name);
- ``rng_state_<rank>.pt``: Python, NumPy, torch CPU (and CUDA) generator states of every process;
- ``trainer_state.json``: the step, the data position, the Lagrange multiplier's state (with every
  process's own episode-cost window), the number of processes, the run's identity
  (:mod:`saferlhf.training.run_identity`) and whatever else the loop needs.

Nothing is unpickled on load: weights are safetensors, the state is JSON, and the ``.pt`` files hold
only tensors and plain containers, read with ``torch.load(weights_only=True)``; a file that would need
more (a crafted pickle that runs code) is refused with :class:`ResumeError` naming it.

Only the main process writes weights, optimisers and schedulers (under DDP every process holds the
same ones); each process writes its own RNG state. Any number of processes can read a checkpoint:
with the number that wrote it the continuation is exact; with another, each process starts from the
same weights, optimiser states, λ and data position, takes the RNG state of its rank if one was
saved, and the loop re-deals the cost windows (``saferlhf.policy.stage``).

It is written to ``step-NNNNNN.tmp``, every file is fsync'ed, and the folder is renamed into place
(an atomic operation) and its parent fsync'ed. A process killed at any moment therefore leaves only
complete ``step-*`` folders (plus a stale ``.tmp`` that the next save or resume removes); older
checkpoints beyond ``keep`` are deleted only after the new one is in place.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from saferlhf.training.run_identity import STATE_FILE, ResumeError

_NAME = re.compile(r"^step-(\d+)$")


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / "checkpoints" / f"step-{step:06d}"


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint under ``output_dir/checkpoints``, or None."""
    root = Path(output_dir) / "checkpoints"
    found = [(int(m.group(1)), p) for p in root.glob("step-*")
             if (m := _NAME.match(p.name)) and (p / STATE_FILE).exists()]
    return max(found)[1] if found else None


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters that receive gradients (whole model, or only LoRA adapters), by name."""
    return {name: p.detach().contiguous().cpu() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    expected = {name for name, p in model.named_parameters() if p.requires_grad}
    if set(state) != expected:
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        raise ValueError(f"{where}: checkpoint does not match the model (missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]}); was the run started with other model or LoRA settings?")
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            parameters[name].copy_(value.to(parameters[name].device, parameters[name].dtype))


def rng_state() -> dict[str, Any]:
    name, keys, position, has_gauss, cached = np.random.get_state()  # keys as a tensor: no NumPy object to unpickle
    state = {"python": random.getstate(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position,
                                                     has_gauss, cached), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(accelerator, output_dir: str | Path, step: int, models: dict[str, torch.nn.Module],
                    optimizers: dict[str, Any], schedulers: dict[str, Any], state: dict[str, Any],
                    keep: int = 1) -> Path:
    """Write checkpoint ``step`` atomically (see the module docstring); returns its folder."""
    final = checkpoint_dir(output_dir, step)
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(rng_state(), tmp / f"rng_state_{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        for name, model in models.items():
            save_file(trainable_state(accelerator.unwrap_model(model)), str(tmp / f"{name}.safetensors"))
        torch.save({name: opt.state_dict() for name, opt in optimizers.items()}, tmp / "optimizers.pt")
        torch.save({name: sch.state_dict() for name, sch in schedulers.items()}, tmp / "schedulers.pt")
        (tmp / STATE_FILE).write_text(json.dumps({**state, "step": step, "num_processes": accelerator.num_processes}))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _fsync_tree(tmp)
        shutil.rmtree(final, ignore_errors=True)  # only if this very step was saved before
        os.rename(tmp, final)
        _fsync_dir(final.parent)
        older = sorted(p for p in final.parent.glob("step-*") if _NAME.match(p.name) and p != final)
        for path in older[: max(0, len(older) - (keep - 1))]:
            shutil.rmtree(path, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, folder: str | Path, models: dict[str, torch.nn.Module],
                    optimizers: dict[str, Any], schedulers: dict[str, Any]) -> dict[str, Any]:
    """Restore everything :func:`save_checkpoint` wrote; returns the loop's state dict."""
    folder = Path(folder)
    state = json.loads((folder / STATE_FILE).read_text())
    for name, model in models.items():
        load_trainable_state(accelerator.unwrap_model(model), load_file(str(folder / f"{name}.safetensors")),
                             f"{folder}/{name}.safetensors")
    saved = load_tensors(folder / "optimizers.pt")
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(saved[name])
    saved = load_tensors(folder / "schedulers.pt")
    for name, scheduler in schedulers.items():
        scheduler.load_state_dict(saved[name])
    rng_file = folder / f"rng_state_{accelerator.process_index}.pt"
    if rng_file.exists():  # absent when resuming with more processes than wrote the checkpoint
        set_rng_state(load_tensors(rng_file))
    return state


def load_tensors(path: Path) -> Any:
    """``torch.load(weights_only=True)``: tensors and plain containers only, never code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError for a forbidden object, RuntimeError for a damaged file
        raise ResumeError(f"resume: {path} is not a plain tensor file ({type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else ''}); refusing to load it") from error


def remove_stale_tmp(output_dir: str | Path) -> int:
    """Delete ``step-*.tmp`` folders left by a killed save; returns how many."""
    stale = list((Path(output_dir) / "checkpoints").glob("step-*.tmp"))
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return len(stale)
