"""Batched answer generation with a causal LM (Hugging Face ``generate``, KV cache on).

Prompts are rendered with the model's chat template (:func:`saferlhf.data.templates.render_prompt`),
sorted by token length (longest first, so batches hold prompts of similar length and a batch that
does not fit in memory fails at once), left-padded, generated, and put back in their original
order. ``batch_size = 0`` sizes the batches to the memory available (:func:`auto_batch_size`).
The model generates in the dtype it was loaded in: callers load a bf16 copy where the hardware has
bf16 (:mod:`saferlhf.models.precision`; ``bench/generation.py`` measures the gain).
``temperature = 0`` means greedy decoding; otherwise nucleus sampling with ``top_p``, seeded.
Only the new tokens are decoded, special tokens removed. A prompt longer than the model's context
(``max_position_embeddings`` minus ``max_new_tokens``) keeps its last tokens (the question, the
generation prompt), and the number cut is printed: never a 1 TB attention matrix, never dropped.
``answer_prefixes`` puts text after the rendered prompt, as the start of the answer the model
continues (a forced refusal token).
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from saferlhf.data.records import Prompt
from saferlhf.data.templates import render_prompt

LARGEST_AUTO_BATCH = 64  # a cap, not a tuned value: see docs/speed.md for what batch sizes measured


def generate_responses(model, tokenizer, prompts: list[Prompt], max_new_tokens: int = 96, batch_size: int = 8,
                       temperature: float = 0.0, top_p: float = 1.0, seed: int = 42,
                       progress: bool = True, description: str = "generate",
                       answer_prefixes: list[str] | None = None) -> list[str]:
    """One answer per prompt, in the order of ``prompts``."""
    if max_new_tokens <= 0 or batch_size < 0:
        raise ValueError(f"max_new_tokens must be > 0 and batch_size >= 0 (got {max_new_tokens}, {batch_size})")
    if not prompts:
        return []
    if answer_prefixes is not None and len(answer_prefixes) != len(prompts):
        raise ValueError(f"{len(answer_prefixes)} answer prefixes for {len(prompts)} prompts")
    texts = [render_prompt(tokenizer, prompt) + (answer_prefixes[i] if answer_prefixes else "")
             for i, prompt in enumerate(prompts)]
    token_ids = _fit_context(model, [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts],
                             max_new_tokens, description)
    if batch_size == 0:
        batch_size = auto_batch_size(model, max(len(ids) for ids in token_ids) + max_new_tokens)
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


def auto_batch_size(model, sequence_length: int, memory_fraction: float = 0.25,
                    largest: int | None = None) -> int:
    """Sequences per ``generate`` batch: as many as fit in ``memory_fraction`` of the free memory, at most
    ``largest`` (default :data:`LARGEST_AUTO_BATCH`).

    One sequence of ``sequence_length`` tokens holds its KV cache, 2 · layers · kv_heads · head_dim ·
    length values in the model's dtype, plus two float32 rows of vocabulary logits per step (the
    logits and the processed scores). The cap exists because ``generate`` keeps computing finished
    answers until the longest of the batch ends: past it, bigger batches waste more than they gain.
    """
    config = model.config
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    element = next(model.parameters()).element_size()
    per_sequence = (2 * config.num_hidden_layers * kv_heads * head_dim * sequence_length * element
                    + 2 * config.vocab_size * 4)
    device = next(model.parameters()).device
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        import psutil

        free = psutil.virtual_memory().available
    return max(1, min(largest or LARGEST_AUTO_BATCH, int(free * memory_fraction // per_sequence)))


def _fit_context(model, token_ids: list[list[int]], max_new_tokens: int, description: str) -> list[list[int]]:
    """Cut prompts that leave no room for ``max_new_tokens`` in the model's context, from the left."""
    context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if not context:
        return token_ids
    room = max(1, context - max_new_tokens)
    cut = sum(len(ids) > room for ids in token_ids)
    if cut:
        print(f"[saferlhf] {description}: {cut} prompt(s) longer than {room} tokens (context {context} - "
              f"{max_new_tokens} new) keep their last {room} tokens", flush=True)
    return [ids[-room:] for ids in token_ids]


def _left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` of shape (B, L), padding on the left."""
    length = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for b, row in enumerate(rows):
        input_ids[b, length - len(row):] = torch.tensor(row, dtype=torch.long)
        attention_mask[b, length - len(row):] = 1
    return input_ids, attention_mask
