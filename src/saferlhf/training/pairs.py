"""Preference records -> tokenised (first, second) pairs -> padded batches for score models.

For the reward model ``first`` is the more helpful response (``better_response_id``); for the cost
model ``first`` is the safer one (``safer_response_id``). A batch of B pairs is one forward pass
over 2B sequences: rows ``[0, B)`` are the firsts, rows ``[B, 2B)`` the seconds.

Batches are grouped by length (transformers' ``LengthGroupedSampler``: shuffled mega-batches,
sorted by length inside), which removes most padding on data whose lengths vary as much as
preference transcripts do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset
from transformers.trainer_pt_utils import LengthGroupedSampler

from saferlhf.data.records import PreferenceRecord
from saferlhf.data.templates import encode


@dataclass
class EncodedPair:
    first_ids: list[int]
    second_ids: list[int]
    first_is_safe: float  # 1.0 safe, 0.0 unsafe, NaN unlabelled
    second_is_safe: float
    ranked: float = 1.0  # 0.0 for an unpaired record: no pairwise term, the sign term of the first copy only
    severity_level: float = math.nan  # the more severe response's level 0-3 (PKU-SafeRLHF), NaN = not labelled

    def __len__(self) -> int:
        return max(len(self.first_ids), len(self.second_ids))


def _safety(value: bool | None) -> float:
    return math.nan if value is None else float(bool(value))


def pair_severity(record: PreferenceRecord) -> float:
    """Severity level of the more severe response (0-3), NaN unless every response of the record has one."""
    levels = [record.response_0_severity_level] if record.unpaired else \
        [record.response_0_severity_level, record.response_1_severity_level]
    return math.nan if any(level is None for level in levels) else float(max(levels))


def encode_pairs(records: list[PreferenceRecord], tokenizer, max_length: int, kind: str) -> list[EncodedPair]:
    """Tokenise each record's two responses in preference order (``kind`` is "reward" or "cost")."""
    pairs = []
    for record in records:
        if record.unpaired:
            if kind == "reward":
                raise ValueError(f"{record.source}: an unpaired row (one response, a safety label) cannot train a "
                                 "reward model (validate the data with need='helpfulness')")
            ids = encode(tokenizer, record.prompt, record.response_0, max_length).input_ids
            pairs.append(EncodedPair(ids, ids, _safety(record.is_response_0_safe), math.nan, ranked=0.0,
                                     severity_level=pair_severity(record)))
            continue
        first = record.better_response_id if kind == "reward" else record.safer_response_id
        if first is None:
            raise ValueError(f"{record.source}: no {'better' if kind == 'reward' else 'safer'}_response_id "
                             f"(validate the data with need='{'helpfulness' if kind == 'reward' else 'harmlessness'}')")
        second = 1 - first
        pairs.append(EncodedPair(
            first_ids=encode(tokenizer, record.prompt, record.response(first), max_length).input_ids,
            second_ids=encode(tokenizer, record.prompt, record.response(second), max_length).input_ids,
            first_is_safe=_safety(record.is_safe(first)),
            second_is_safe=_safety(record.is_safe(second)),
            severity_level=pair_severity(record),
        ))
    return pairs


class PairDataset(Dataset):
    def __init__(self, pairs: list[EncodedPair]):
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> EncodedPair:
        return self.pairs[index]


def collate_pairs(pairs: list[EncodedPair], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``/``attention_mask`` of shape (2B, L) plus safety labels and severity levels (B,)."""
    sequences = [p.first_ids for p in pairs] + [p.second_ids for p in pairs]
    length = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), length), pad_token_id, dtype=torch.long)  # (2B, L)
    attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)  # (2B, L)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "first_is_safe": torch.tensor([p.first_is_safe for p in pairs], dtype=torch.float32),  # (B,)
        "second_is_safe": torch.tensor([p.second_is_safe for p in pairs], dtype=torch.float32),  # (B,)
        "ranked": torch.tensor([p.ranked for p in pairs], dtype=torch.float32),  # (B,) 0.0 = unpaired
        "severity_level": torch.tensor([p.severity_level for p in pairs], dtype=torch.float32),  # (B,) NaN = none
    }


def pair_loader(pairs: list[EncodedPair], batch_size: int, pad_token_id: int, shuffle: bool,
                seed: int = 0, group_by_length: bool = True) -> DataLoader:
    """A DataLoader over pairs; training loaders shuffle with length grouping, evaluation keeps order."""
    dataset = PairDataset(pairs)
    sampler = None
    if shuffle:
        generator = torch.Generator().manual_seed(seed)
        if group_by_length:
            sampler = LengthGroupedSampler(batch_size, lengths=[len(p) for p in pairs], generator=generator)
        else:
            sampler = torch.utils.data.RandomSampler(dataset, generator=generator)
    # The loader gets its own generator: creating an iterator would otherwise draw from the global
    # torch RNG, and a resumed run (which creates its iterator after restoring RNG states) would
    # then see different dropout masks than an uninterrupted one.
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False,
                      generator=torch.Generator().manual_seed(seed),
                      collate_fn=lambda batch: collate_pairs(batch, pad_token_id))


def forward_in_length_buckets(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                              bucket_size: int) -> torch.Tensor:
    """End scores (N,) of right-padded rows, computed in forwards over rows of similar length.

    The two answers of a preference pair often differ a lot in length, so one (2B, L) forward
    spends much of its work on padding (about half of it on hh-rlhf). Sorting the rows by length and
    running ``ceil(N / bucket_size)`` forwards, each trimmed to its own longest row, does the same
    arithmetic on the real tokens only; gradients flow through every bucket as usual.
    ``bucket_size <= 0`` runs a single forward.
    """
    rows = input_ids.size(0)
    if bucket_size <= 0 or bucket_size >= rows:
        return model(input_ids=input_ids, attention_mask=attention_mask).end_scores
    lengths = attention_mask.sum(dim=1)  # (N,)
    order = torch.argsort(lengths, descending=True)
    scores = []
    for start in range(0, rows, bucket_size):
        index = order[start:start + bucket_size]
        width = int(lengths[index].max())
        scores.append(model(input_ids=input_ids[index, :width], attention_mask=attention_mask[index, :width]).end_scores)
    end_scores = torch.empty(rows, dtype=scores[0].dtype, device=input_ids.device)
    return end_scores.index_put((order,), torch.cat(scores))  # back in the input's row order
