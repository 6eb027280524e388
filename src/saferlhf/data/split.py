"""Deterministic, seeded train/eval split for sources that come with one split only.

Each record gets the key ``(sha256(f"{seed}|{prompt}"), sha256(f"{seed}|{index}"))``; records are
ordered by that key and the first ``round(eval_fraction * n)`` go to eval. SHA-256 (not Python's
``hash()``, which is salted per process) makes the split identical across runs, machines and
Python versions. Ordering by the prompt's hash first keeps the pairs that share a prompt
(PKU-SafeRLHF has several per prompt) next to each other, so they land in the same split, except
possibly the one prompt group that straddles the boundary: eval prompts are (almost) unseen in
training, and the eval size is exactly the requested share. Both parts keep the source order.
"""

from __future__ import annotations

import hashlib
import json

from saferlhf.data.records import PreferenceRecord


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def eval_size(total: int, eval_fraction: float) -> int:
    """``round(eval_fraction * total)``, at least 1 (and at most ``total - 1``) when the fraction is > 0."""
    if eval_fraction <= 0 or total < 2:
        return 0
    return min(total - 1, max(1, round(eval_fraction * total)))


def split_records(records: list[PreferenceRecord], eval_fraction: float,
                  seed: int) -> tuple[list[PreferenceRecord], list[PreferenceRecord]]:
    """``(train, eval)``: a seeded split keeping records with the same prompt together.

    Works for any objects with a ``.prompt`` (str or message list), not only preference records.
    """
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    keys = [
        (_digest(f"{seed}|{json.dumps(record.prompt, sort_keys=True, ensure_ascii=False)}"),
         _digest(f"{seed}|{index}"))
        for index, record in enumerate(records)
    ]
    order = sorted(range(len(records)), key=keys.__getitem__)
    eval_indices = set(order[: eval_size(len(records), eval_fraction)])
    train = [r for i, r in enumerate(records) if i not in eval_indices]
    evaluation = [r for i, r in enumerate(records) if i in eval_indices]
    return train, evaluation
