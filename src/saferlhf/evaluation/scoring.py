"""Score (prompt, answer) pairs with a trained reward or cost model (:class:`ScoreModel`).

Each pair is tokenised with :func:`saferlhf.data.templates.encode` (the same rendering the score
model was trained on), right-padded into batches, and read at the last non-padding token. A pair
whose answer alone exceeds ``max_length`` is scored on its truncated form and counted as
``overlong`` (reported, never dropped). Cost convention: cost > 0 means unsafe.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from saferlhf.data.templates import encode
from saferlhf.models.canary import canary_check
from saferlhf.models.loading import inference_device, load_tokenizer
from saferlhf.models.score_model import ScoreModel, resolve_folder


def score_pairs(model: ScoreModel, tokenizer, prompts: list, responses: list[str], max_length: int = 512,
                batch_size: int = 16, progress: bool = True, description: str = "score") -> tuple[list[float], int]:
    """``(scores, overlong_count)``: the sequence score of every pair, in order."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    encoded = [encode(tokenizer, p, r, max_length) for p, r in zip(prompts, responses)]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))  # batches of similar length
    pad_id = tokenizer.pad_token_id
    scores: list[float] = [0.0] * len(encoded)
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        for start in tqdm(range(0, len(order), batch_size), desc=description, unit="batch", disable=not progress):
            batch = order[start:start + batch_size]
            rows = [encoded[i].input_ids for i in batch]
            length = max(len(row) for row in rows)
            input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)  # (B, L)
            attention_mask = torch.zeros((len(rows), length), dtype=torch.long)  # (B, L)
            for b, row in enumerate(rows):
                input_ids[b, :len(row)] = torch.tensor(row, dtype=torch.long)
                attention_mask[b, :len(row)] = 1
            output = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device))
            for i, score in zip(batch, output.end_scores.tolist()):  # (B,)
                scores[i] = score
    return scores, sum(e.overlong for e in encoded)


def load_checked(folder: str, dtype: torch.dtype = torch.float32, kind: str | None = None):
    """``(model, tokenizer, canary)``: a score model folder or hub id (any layout of
    :mod:`saferlhf.models.score_layouts`) in ``dtype``, with its sign canary checked
    (:mod:`saferlhf.models.canary`; a loud warning when it ranks the pairs the wrong way round)."""
    model = ScoreModel.from_pretrained(folder, dtype=dtype, kind=kind).to(inference_device())
    tokenizer = load_tokenizer(str(resolve_folder(folder)), padding_side="right")
    return model, tokenizer, canary_check(model, tokenizer, model.score_config.kind, folder)


def score_with_folder(folder: str, prompts: list, responses: list[str], max_length: int = 512,
                      batch_size: int = 16, description: str = "score",
                      dtype: torch.dtype = torch.float32, kind: str | None = None) -> tuple[list[float], int]:
    """Load a saved score model folder (weights + tokenizer) in ``dtype``, check its canary, score the pairs."""
    model, tokenizer, _ = load_checked(folder, dtype, kind)
    return score_pairs(model, tokenizer, prompts, responses, max_length, batch_size, description=description)
