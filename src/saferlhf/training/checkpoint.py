"""Atomic, resumable checkpoints on top of ``Accelerator.save_state``.

``save_checkpoint`` writes model(s), optimiser(s), scheduler(s) and RNG states (Accelerate's
``save_state``) plus a ``trainer_state.json`` (step, data position, anything else the loop needs)
into ``<folder>.tmp``, then renames it over ``<folder>``. A process killed at any moment leaves the
previous checkpoint intact. Only the main process writes; every process can read.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from accelerate import Accelerator

STATE_FILE = "trainer_state.json"


def save_checkpoint(accelerator: Accelerator, folder: str | Path, state: dict[str, Any]) -> None:
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    old = folder.with_name(folder.name + ".old")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps(state))
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


def load_checkpoint(accelerator: Accelerator, folder: str | Path) -> dict[str, Any]:
    """Restore everything ``save_checkpoint`` saved; returns the loop's own state dict."""
    found = find_checkpoint(folder)
    if found is None:
        raise FileNotFoundError(f"no complete checkpoint at {folder}")
    accelerator.load_state(str(found))
    return json.loads((found / STATE_FILE).read_text())
