"""The rounds' training prompts (``prompts`` section): the built-in training split and/or user files.

A user row needs a ``prompt`` and a ``label`` (``harmful``, ``benign`` or ``pseudo_harmful``: the
built-in annotator decides by it whether complying is harmful) and may have a ``category``. A bad
row stops the run with its ``file:LINE`` and the key; rows that repeat a prompt of the built-in
held-out split (compared ignoring case and spacing) are skipped and counted, so that the held-out
evaluation stays untrained on.
"""

from __future__ import annotations

from pathlib import Path

from saferlhf.data.builtin import builtin_prompts, check_labelled_row
from saferlhf.data.readers import read_rows
from saferlhf.pipeline.config import PromptsConfig


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def training_prompts(config: PromptsConfig) -> list[dict]:
    """Rows with ``id``, ``prompt``, ``label`` and ``category``: the built-in ones first, then each file's."""
    rows = builtin_prompts(split="train") if config.builtin else []
    heldout = {_key(row["prompt"]) for row in builtin_prompts(split="heldout")}
    for source in config.files:
        skipped, read = 0, 0
        raws = read_rows(source.path, source.split, source.limit)
        if not raws:
            raise ValueError(f"config key 'prompts.files': {source.path} holds no rows")
        for raw in raws:
            row = check_labelled_row(raw)
            if _key(row["prompt"]) in heldout:
                skipped += 1
                continue
            read += 1
            rows.append({"id": f"{Path(source.path).name}:{raw.location.rsplit(':', 1)[-1]}", "prompt": row["prompt"],
                         "label": row["label"], "category": str(row.get("category") or "user")})
        print(f"[saferlhf pipeline] prompts: {read} from {source.path}"
              + (f", {skipped} skipped (built-in held-out prompts)" if skipped else ""), flush=True)
    if not rows:
        raise ValueError("config key 'prompts.files': no training prompt left "
                         "(every row repeats a built-in held-out prompt)")
    return rows
