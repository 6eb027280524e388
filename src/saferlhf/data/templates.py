"""Render prompts with the model's chat template and tokenise (prompt, response) pairs.

Chat models (a tokenizer with ``chat_template``): the prompt is rendered with
``apply_chat_template(..., add_generation_prompt=True)`` and the response follows, closed by the
eos token (``<|im_end|>`` for SmolLM2). Tokenizers without a template (BERT-style encoders) get a
plain ``Human: ... Assistant: ...`` transcript wrapped in their special tokens.

Over-long inputs are truncated from the **left of the prompt**, so the response, and the last
token where the score is read, are always kept. When the response alone does not fit, the pair is
"over-long after truncation" and :func:`encode` reports it instead of silently cutting the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from saferlhf.data.records import Prompt, prompt_messages

MIN_PROMPT_TOKENS = 4  # a pair keeps at least this many prompt tokens, or it is over-long


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(tokenizer, prompt: Prompt) -> str:
    """The text the model sees before it answers."""
    messages = prompt_messages(prompt)
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    turns = [("Human: " if m["role"] == "user" else "Assistant: ") + m["content"] for m in messages if m["role"] != "system"]
    return "\n\n".join(turns) + "\n\nAssistant:"


@dataclass
class Encoded:
    input_ids: list[int]
    prompt_length: int  # tokens before the response starts (after truncation)
    overlong: bool = False  # the response alone did not fit in max_length


def encode(tokenizer, prompt: Prompt, response: str, max_length: int) -> Encoded:
    """Token ids of prompt + response (+ end-of-turn), prompt truncated from the left to fit."""
    prompt_ids = tokenizer(render_prompt(tokenizer, prompt), add_special_tokens=False)["input_ids"]
    if has_chat_template(tokenizer):
        response_ids = tokenizer(response + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        head, tail = [], []
    else:
        response_ids = tokenizer(" " + response, add_special_tokens=False)["input_ids"]
        head, tail = _special_tokens_around(tokenizer)
    budget = max_length - len(head) - len(tail) - len(response_ids)
    overlong = budget < MIN_PROMPT_TOKENS
    if overlong:  # keep the prompt's tail and cut the response's end (caller decides what to do)
        prompt_ids = prompt_ids[-MIN_PROMPT_TOKENS:]
        response_ids = response_ids[: max(0, max_length - len(head) - len(tail) - len(prompt_ids))]
    elif len(prompt_ids) > budget:
        prompt_ids = prompt_ids[len(prompt_ids) - budget:]
    ids = head + prompt_ids + response_ids + tail
    return Encoded(input_ids=ids, prompt_length=len(head) + len(prompt_ids), overlong=overlong)


def closes_with_eos(tokenizer) -> bool:
    """Whether :func:`encode` ends an answer with the eos token (chat template, or a tokenizer that appends it)."""
    return has_chat_template(tokenizer) or (tokenizer.eos_token_id is not None
                                            and _special_tokens_around(tokenizer)[1][-1:] == [tokenizer.eos_token_id])


def _special_tokens_around(tokenizer) -> tuple[list[int], list[int]]:
    """Special tokens the tokenizer puts before and after a text (``[CLS]`` / ``[SEP]`` for BERT)."""
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    wrapped = tokenizer("x", add_special_tokens=True)["input_ids"]
    for start in range(len(wrapped) - len(plain) + 1):
        if wrapped[start:start + len(plain)] == plain:
            return wrapped[:start], wrapped[start + len(plain):]
    return [], []
