"""Sample answers from the policy in batches and build the masks the losses need.

Layout of one rollout of N answers (N = prompts x samples per prompt, answers of a prompt adjacent):

    input_ids       (N, P + T)   [pad ... pad | prompt tokens | answer tokens | pad ... pad]
                                  <- left-padded prompt block, width P -><- answers, width T ->
    attention_mask  (N, P + T)   1 on prompt and answer tokens
    position_ids    (N, P + T)   cumsum(attention_mask) - 1, as ``generate`` uses for left padding
    response_mask   (N, T)       1 on answer tokens up to and including the first end-of-turn token

An answer "stops early" when it emits an end-of-turn token before ``max_new_tokens``; ``generate``
fills the rest of its row with the pad token (for SmolLM2 the pad token *is* the end-of-turn token,
so the mask is built from the first end-of-turn position, not from ``token != pad``). The model's
log-probabilities of answer token t come from the logits at position P + t - 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from saferlhf.data.records import Prompt
from saferlhf.data.templates import render_prompt


@dataclass
class Rollout:
    prompts: list[Prompt]  # (N,) the prompt of every answer
    input_ids: torch.Tensor  # (N, P + T)
    attention_mask: torch.Tensor  # (N, P + T)
    position_ids: torch.Tensor  # (N, P + T)
    response_mask: torch.Tensor  # (N, T)
    prompt_width: int  # P
    response_texts: list[str] = field(default_factory=list)  # (N,) decoded answers, special tokens removed
    truncated_prompts: int = 0  # prompts cut from the left to fit

    @property
    def response_ids(self) -> torch.Tensor:  # (N, T)
        return self.input_ids[:, self.prompt_width:]

    @property
    def response_lengths(self) -> torch.Tensor:  # (N,)
        return self.response_mask.sum(dim=-1)

    def __len__(self) -> int:
        return self.input_ids.size(0)

    def select(self, index: torch.Tensor | list[int]) -> "Rollout":
        """The rows ``index`` (a micro-batch), same layout."""
        rows = index.tolist() if isinstance(index, torch.Tensor) else list(index)
        return Rollout(
            prompts=[self.prompts[i] for i in rows], input_ids=self.input_ids[rows],
            attention_mask=self.attention_mask[rows], position_ids=self.position_ids[rows],
            response_mask=self.response_mask[rows], prompt_width=self.prompt_width,
            response_texts=[self.response_texts[i] for i in rows] if self.response_texts else [],
        )


def end_of_turn_ids(tokenizer, model=None) -> list[int]:
    """Token ids that end an answer: the tokenizer's eos plus the generation config's eos ids."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    return sorted(ids)


def response_mask_until_end(response_ids: torch.Tensor, end_ids: list[int]) -> torch.Tensor:
    """(N, T) mask: 1 up to and including the first end-of-turn token of each row, 0 after it."""
    is_end = torch.isin(response_ids, torch.tensor(end_ids, device=response_ids.device))  # (N, T)
    ends_before = (is_end.long().cumsum(dim=-1) - is_end.long()) > 0  # an end token strictly before t
    return (~ends_before).long()


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """0, 1, 2, ... over the attended tokens of each row (left padding gets 0)."""
    return (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)


def encode_prompts(tokenizer, prompts: list[Prompt], max_prompt_tokens: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Chat-template prompts, truncated from the left, left-padded: ``(input_ids, attention_mask, truncated)``."""
    rows, truncated = [], 0
    for prompt in prompts:
        ids = tokenizer(render_prompt(tokenizer, prompt), add_special_tokens=False)["input_ids"]
        if len(ids) > max_prompt_tokens:
            ids, truncated = ids[len(ids) - max_prompt_tokens:], truncated + 1
        rows.append(ids)
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, width - len(row):] = 1
    return input_ids, attention_mask, truncated


@torch.no_grad()
def sample_rollout(model, tokenizer, prompts: list[Prompt], *, samples_per_prompt: int = 1, max_length: int = 512,
                   max_new_tokens: int = 0, min_new_tokens: int = 0, temperature: float = 1.0, top_p: float = 1.0,
                   top_k: int = 0, repetition_penalty: float = 1.0, greedy: bool = False) -> Rollout:
    """Sample ``samples_per_prompt`` answers per prompt (one batched ``generate`` call, KV cache on).

    ``max_new_tokens = 0`` fills ``max_length`` tokens in total (prompt block included), as the
    reference's ``GenerationConfig(max_length=...)``; prompts are cut from the left so that at least
    ``max_new_tokens`` (or ``max_length // 2`` when 0) answer tokens fit. ``min_new_tokens`` masks
    the end of the turn for the first answer tokens (Hugging Face ``min_new_tokens``).
    """
    device = next(model.parameters()).device
    answer_budget = max_new_tokens or max_length // 2
    input_ids, attention_mask, truncated = encode_prompts(tokenizer, prompts, max(1, max_length - answer_budget))
    input_ids = input_ids.repeat_interleave(samples_per_prompt, dim=0).to(device)  # (N, P)
    attention_mask = attention_mask.repeat_interleave(samples_per_prompt, dim=0).to(device)  # (N, P)
    prompt_width = input_ids.size(1)
    end_ids = end_of_turn_ids(tokenizer, model)
    options = dict(max_new_tokens=max_new_tokens or max(1, max_length - prompt_width), use_cache=True,
                   pad_token_id=tokenizer.pad_token_id, eos_token_id=end_ids, repetition_penalty=repetition_penalty,
                   min_new_tokens=min_new_tokens or None)
    if greedy:
        options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        options.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=top_k)  # top_k=0: off
    was_training = model.training
    model.eval()
    sequences = model.generate(input_ids=input_ids, attention_mask=attention_mask, **options)  # (N, P + T)
    model.train(was_training)
    response_ids = sequences[:, prompt_width:]  # (N, T)
    response_mask = response_mask_until_end(response_ids, end_ids)  # (N, T)
    full_mask = torch.cat([attention_mask, response_mask], dim=1)  # (N, P + T)
    texts = tokenizer.batch_decode(response_ids * response_mask + tokenizer.pad_token_id * (1 - response_mask),
                                   skip_special_tokens=True)
    return Rollout(
        prompts=[prompt for prompt in prompts for _ in range(samples_per_prompt)],
        input_ids=sequences, attention_mask=full_mask, position_ids=position_ids_from_mask(full_mask),
        response_mask=response_mask, prompt_width=prompt_width, response_texts=[t.strip() for t in texts],
        truncated_prompts=truncated,
    )


def answer_logits(model, rollout: Rollout) -> torch.Tensor:
    """Logits predicting each answer token, (N, T, V): positions P - 1 ... P + T - 2.

    Only the last T + 1 positions go through the LM head (``logits_to_keep``), which saves the
    (N, P, V) logits of the prompt.
    """
    width = rollout.response_ids.size(1)
    logits = model(input_ids=rollout.input_ids, attention_mask=rollout.attention_mask,
                   position_ids=rollout.position_ids, use_cache=False, logits_to_keep=width + 1).logits  # (N, T+1, V)
    return logits[:, :-1]


def answer_values(critic, rollout: Rollout) -> torch.Tensor:
    """Critic values V(s_t) of the state before each answer token, (N, T): positions P - 1 ... L - 2."""
    scores = critic(rollout.input_ids, rollout.attention_mask, position_ids=rollout.position_ids).token_scores
    return scores[:, rollout.prompt_width - 1:-1]  # (N, T)
