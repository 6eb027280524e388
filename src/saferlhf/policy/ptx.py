"""PTX: a language-model loss on supervised data beside the RL objective (Ouyang et al. 2022, "PPO-ptx").

The reference adds ``ptx_coeff · L_LM`` with L_LM the next-token loss on supervised (prompt, answer)
pairs, answer tokens only. Rows are read as ``saferlhf sft`` reads them
(:func:`saferlhf.stages.sft.to_conversation`: ``prompt`` + ``response`` columns or ``messages``),
rendered with the chat template (:func:`saferlhf.data.templates.encode`). Batches are taken in a
fixed seeded order; the position is part of the checkpoint, so a resumed run sees the same batches.
``ptx.past_tense_refusals=N`` adds N past-tense refusals, as ``saferlhf sft`` does
(:func:`saferlhf.stages.sft.past_tense_rows`). An actor trained with refusal tokens (a ``refusal_tokens.json``
in its folder) gets every answer opened with its control token, as its SFT data was
(:func:`saferlhf.controls.tokens.mark_with`): PTX must not teach it answers without one.
"""

from __future__ import annotations

import torch

from saferlhf.config import DataSource
from saferlhf.controls.tokens import RefusalTokens, mark_with, spec_of
from saferlhf.data.readers import read_rows
from saferlhf.data.templates import encode
from saferlhf.policy.order import EpochOrder

IGNORE_INDEX = -100


def load_ptx(ptx, tokenizer, max_length: int, actor: str = "") -> list[tuple[list[int], int]]:
    """The examples of a :class:`saferlhf.policy.config.PTXConfig`: its data plus its past-tense refusals, marked
    with the control tokens of ``actor`` (its name or folder) when it has refusal tokens."""
    from saferlhf.stages.sft import past_tense_rows

    return load_ptx_examples(ptx.data, tokenizer, max_length, past_tense_rows(ptx), spec_of(actor))


def load_ptx_examples(sources: list[DataSource], tokenizer, max_length: int, extra_rows: list[dict] = (),
                      spec: RefusalTokens | None = None) -> list[tuple[list[int], int]]:
    """``(input_ids, prompt_length)`` per usable row; rows whose answer does not fit are skipped and counted."""
    from saferlhf.stages.sft import to_conversation

    rows = [(row, f"{row.get('source', 'extra')}:{i}") for i, row in enumerate(extra_rows)]
    for source in sources:
        for raw in read_rows(source.path, source.split, source.limit):
            if raw.error or not isinstance(raw.row, dict):
                raise ValueError(f"{raw.location}: unreadable PTX row ({raw.error or type(raw.row).__name__})")
            rows.append((raw.row, raw.location))
    examples, overlong = [], 0
    for row, location in rows:
        conversation = to_conversation(row, location)
        if spec is not None:
            mark_with(spec, [conversation], [row], [location])
        encoded = encode(tokenizer, conversation["prompt"], conversation["completion"][0]["content"], max_length)
        if encoded.overlong:
            overlong += 1
            continue
        examples.append((encoded.input_ids, encoded.prompt_length))
    if overlong:
        print(f"[saferlhf] PTX: skipped {overlong} rows whose answer does not fit in {max_length} tokens", flush=True)
    if not examples:
        raise ValueError("PTX: no usable supervised row in ptx.data (or ptx.past_tense_refusals)")
    return examples


class PTXBatches:
    """Right-padded ``(input_ids, attention_mask, labels)`` batches in a seeded order, resumable by position."""

    def __init__(self, examples: list[tuple[list[int], int]], batch_size: int, pad_token_id: int, seed: int,
                 process_index: int = 0, num_processes: int = 1):
        self.examples = examples
        self.batch_size = batch_size
        self.pad_token_id = pad_token_id
        self.order = EpochOrder(len(examples), seed)
        self.process_index, self.num_processes = process_index, num_processes
        self.position = 0  # batches taken so far (on every process alike)

    def next_batch(self, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        start = (self.position * self.num_processes + self.process_index) * self.batch_size
        rows = [self.examples[self.order[start + i]] for i in range(self.batch_size)]
        self.position += 1
        width = max(len(ids) for ids, _ in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)  # (B, L)
        attention_mask = torch.zeros_like(input_ids)
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        for i, (ids, prompt_length) in enumerate(rows):
            input_ids[i, :len(ids)] = torch.tensor(ids)
            attention_mask[i, :len(ids)] = 1
            labels[i, prompt_length:len(ids)] = torch.tensor(ids[prompt_length:])
        return input_ids.to(device), attention_mask.to(device), labels.to(device)
