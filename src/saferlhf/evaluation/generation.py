"""Batched answer generation with a causal LM (Hugging Face ``generate``, KV cache on).

Prompts are rendered with the model's chat template (:func:`saferlhf.data.templates.render_prompt`),
sorted by token length (longest first, so batches hold prompts of similar length and a batch that
does not fit in memory fails at once), left-padded, generated, and put back in their original
order. ``temperature = 0`` means greedy decoding; otherwise nucleus sampling with ``top_p``, seeded.
Only the new tokens are decoded, special tokens removed. ``answer_prefixes`` puts text after the
rendered prompt, as the start of the answer the model continues (a forced refusal token).
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from saferlhf.data.records import Prompt
from saferlhf.data.templates import render_prompt


def generate_responses(model, tokenizer, prompts: list[Prompt], max_new_tokens: int = 96, batch_size: int = 8,
                       temperature: float = 0.0, top_p: float = 1.0, seed: int = 42,
                       progress: bool = True, description: str = "generate",
                       answer_prefixes: list[str] | None = None) -> list[str]:
    """One answer per prompt, in the order of ``prompts``."""
    if max_new_tokens <= 0 or batch_size <= 0:
        raise ValueError(f"max_new_tokens and batch_size must be > 0 (got {max_new_tokens}, {batch_size})")
    if not prompts:
        return []
    if answer_prefixes is not None and len(answer_prefixes) != len(prompts):
        raise ValueError(f"{len(answer_prefixes)} answer prefixes for {len(prompts)} prompts")
    texts = [render_prompt(tokenizer, prompt) + (answer_prefixes[i] if answer_prefixes else "")
             for i, prompt in enumerate(prompts)]
    token_ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    order = sorted(range(len(prompts)), key=lambda i: -len(token_ids[i]))
    answers: list[str | None] = [None] * len(prompts)
    device = next(model.parameters()).device
    sampling = temperature > 0
    options = dict(max_new_tokens=max_new_tokens, do_sample=sampling,
                   pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    if sampling:
        options.update(temperature=temperature, top_p=top_p)
    else:  # silence "temperature is set but do_sample=False" from generation configs with sampling defaults
        options.update(temperature=None, top_p=None, top_k=None)
    torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    with torch.no_grad():
        for batch in tqdm(batches, desc=description, unit="batch", disable=not progress):
            input_ids, attention_mask = _left_pad([token_ids[i] for i in batch], tokenizer.pad_token_id)
            output = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                    **options)  # (B, L + new)
            new_tokens = output[:, input_ids.size(1):]  # (B, new)
            for i, row in zip(batch, new_tokens):
                answers[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
    model.train(was_training)
    return answers  # type: ignore[return-value]


def _left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` of shape (B, L), padding on the left."""
    length = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for b, row in enumerate(rows):
        input_ids[b, length - len(row):] = torch.tensor(row, dtype=torch.long)
        attention_mask[b, length - len(row):] = 1
    return input_ids, attention_mask
