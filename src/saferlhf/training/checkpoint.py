"""Atomic, resumable checkpoints on top of ``Accelerator.save_state``.

``save_checkpoint`` writes model(s), optimiser(s) and RNG states (Accelerate's ``save_state``) plus
a ``trainer_state.json`` (step, data position, the scheduler's state, the run's identity, anything
else the loop needs) into ``<folder>.tmp``, then renames it over ``<folder>``. A process killed at
any moment leaves the previous checkpoint intact. Only the main process writes; every process can read.

Nothing is unpickled: Accelerate reads weights from safetensors and optimiser and RNG states with
``weights_only=True``; the scheduler's state travels in the JSON file instead of Accelerate's
``custom_checkpoint_<i>.pkl`` (which Accelerate would unpickle without restriction), so nothing may be
registered with ``register_for_checkpointing``. A file that would need more is refused
(:class:`~saferlhf.training.run_identity.ResumeError` naming it).
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from saferlhf.training.run_identity import STATE_FILE, ResumeError



def save_checkpoint(accelerator: Accelerator, folder: str | Path, state: dict[str, Any], scheduler=None) -> None:
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    old = folder.with_name(folder.name + ".old")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        scheduler_state = {"scheduler": scheduler.state_dict()} if scheduler is not None else {}
        (tmp / STATE_FILE).write_text(json.dumps({**state, **scheduler_state}))
        if folder.exists():
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def find_checkpoint(folder: str | Path) -> Path | None:
    """The complete checkpoint at ``folder`` (or its ``.old`` copy if a rename was interrupted)."""
    folder = Path(folder)
    for candidate in (folder, folder.with_name(folder.name + ".old")):
        if (candidate / STATE_FILE).exists():
            return candidate
    return None


def load_checkpoint(accelerator: Accelerator, folder: str | Path, scheduler=None) -> dict[str, Any]:
    """Restore everything ``save_checkpoint`` saved; returns the loop's own state dict."""
    found = find_checkpoint(folder)
    if found is None:
        raise FileNotFoundError(f"no complete checkpoint at {folder}")
    state = json.loads((found / STATE_FILE).read_text())
    if getattr(accelerator, "_custom_objects", None):
        raise RuntimeError("objects registered with register_for_checkpointing would be unpickled on load")
    for path in found.glob("custom_checkpoint_*.pkl"):
        raise ResumeError(f"resume: {path} is a pickle that this version never writes nor reads (an older saferlhf's "
                          "checkpoint, or a crafted file); refusing to resume from it")
    try:
        accelerator.load_state(str(found))
    except pickle.UnpicklingError as error:
        raise ResumeError(f"resume: {_unsafe_file(found) or found} is not a plain tensor file "
                          f"({str(error).splitlines()[0]}); refusing to load it") from error
    if scheduler is not None:
        scheduler.load_state_dict(state.pop("scheduler"))
    return state


def _unsafe_file(folder: Path) -> Path | None:
    """The first file of ``folder`` that Accelerate's ``weights_only`` loader refuses (to name it)."""
    from accelerate.utils import load

    for path in sorted(folder.glob("*.bin")) + sorted(folder.glob("random_states_*.pkl")):
        try:
            load(path, map_location="cpu")
        except Exception:
            return path
    return None
