"""Decoupled Refusal Training (DeRTa) examples for ``saferlhf sft``.

Yuan et al. 2024, "Refuse Whenever You Feel Unsafe: Improving Safety in LLMs via Decoupled Refusal
Training" (arXiv 2407.09121). For a harmful prompt q with a harmful answer h = (h_1..h_n) (the row's
``harmful_response``) and a refusal r = (r_1..r_m) (the row's ``response``, followed by the chat
template's end of turn):

1. MLE with a harmful response prefix (``derta.harmful_prefix``): k ~ Uniform{0, ..., n}, drawn once
   per row from the run's seed (:func:`prefix_length`), and

       L_MLE = - sum_{j=1..m} log p(r_j | q, h_1..h_k, r_<j)

   The prefix sits inside the assistant turn (it is the start of the model's own answer) and carries
   no loss; so does the prompt. Rendered: chat-template(q, generation prompt) + h_1..h_k + r + end of turn.
2. Reinforced Transition Optimization (``derta.rto``): on the whole harmful answer,

       L_RTO = - sum_{t=0..n-1} log p(r_1 | q, h_1..h_t)

   the transition to the refusal's first token at every position (the paper's "Sorry"; here the
   first token of that row's refusal). One sequence q + h_1..h_n does it in one forward pass: with
   Hugging Face's shift (``labels[i]`` is predicted from ``input_ids[:i]``) the labels at the n
   positions of h are all r_1.

The paper trains on L_MLE + L_RTO. Here each becomes its own sequence in the training set and the
trainer's loss is the mean over all labelled tokens of a batch, so one RTO position weighs as much as
one refusal token. ``derta.rto_positions = N`` keeps the RTO label at N positions per harmful answer
(drawn without replacement, uniformly, once per row from the seed; the others carry no loss): the sum
over t becomes an unbiased N-sample estimate of it up to the factor n / N, i.e. RTO's weight against
the MLE tokens drops by N / n. 0 (the default) keeps every position, as the paper. ``rto`` without ``harmful_prefix`` keeps the plain refusal row (k = 0) beside the
RTO sequence. Rows without a harmful answer (helpful rows, past-tense refusals) are plain SFT rows:
loss on the answer and end of turn, tokenised as TRL tokenises prompt/completion rows.

Why pre-tokenised rows: TRL's prompt/completion format can only mask the prompt, while DeRTa needs a
loss-free part inside the assistant turn and targets that are not the next input token (RTO). TRL's
``SFTTrainer`` takes a dataset that already has ``input_ids`` and ``labels`` as it is, and its collator
pads the given labels, so no collator, loss or trainer of our own is needed (LoRA works unchanged).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from saferlhf.config import _check, doc

HARMFUL_COLUMN = "harmful_response"
IGNORE = -100  # label of a token without loss (PyTorch's cross-entropy ignore_index)


@dataclass
class DeRTaConfig:
    """Decoupled Refusal Training (Yuan et al. 2024) for rows with a ``harmful_response``."""

    harmful_prefix: bool = doc(False, "MLE with a random-length prefix of the harmful answer before the refusal.")
    rto: bool = doc(False, "Reinforced Transition Optimization: the refusal's first token at every harmful position.")
    rto_positions: int = doc(0, "RTO at this many seeded random positions per harmful answer (0 = every position, "
                                "the paper); fewer lowers RTO's weight against the refusal tokens.")

    @property
    def enabled(self) -> bool:
        return self.harmful_prefix or self.rto

    def validate(self, prefix: str) -> None:
        _check(self.rto_positions >= 0, prefix + "rto_positions", "must be >= 0 (0 = every position)")


def harmful_answer(row: dict, where: str) -> str | None:
    """The row's harmful answer, '' when the column is there but empty, None when absent."""
    value = row.get(HARMFUL_COLUMN)
    if value is None or isinstance(value, str):
        return value if value is None else value.strip()
    raise ValueError(f"{where}: '{HARMFUL_COLUMN}' must be a string, got {type(value).__name__}")


def prefix_length(seed: int, row_index: int, harmful_tokens: int) -> int:
    """k ~ Uniform{0, ..., harmful_tokens} for one row, the same for the same (seed, row)."""
    return random.Random(f"derta:{seed}:{row_index}").randint(0, harmful_tokens)


def conversation_ids(tokenizer, prompt: list[dict], completion: list[dict]) -> tuple[list[int], list[int]]:
    """(prompt ids with the generation prompt, completion ids up to the end of turn), as TRL splits them:
    the completion starts where the rendered prompt and prompt + completion diverge."""
    def render(messages, **kwargs):
        return list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)["input_ids"])

    prompt_ids = render(prompt, add_generation_prompt=True)
    full_ids = render(prompt + completion)
    start = 0
    while start < min(len(prompt_ids), len(full_ids)) and prompt_ids[start] == full_ids[start]:
        start += 1
    return full_ids[:start], full_ids[start:]


def plain_example(prompt_ids: list[int], completion_ids: list[int]) -> dict:
    """Plain SFT: loss on the completion only."""
    return {"input_ids": prompt_ids + completion_ids, "labels": [IGNORE] * len(prompt_ids) + completion_ids}


def harmful_prefix_example(prompt_ids: list[int], harmful_ids: list[int], refusal_ids: list[int], k: int) -> dict:
    """prompt + h_1..h_k + refusal; loss on the refusal (and its end of turn) only."""
    context = prompt_ids + harmful_ids[:k]
    return {"input_ids": context + refusal_ids, "labels": [IGNORE] * len(context) + refusal_ids}


def rto_positions(seed: int, row_index: int, harmful_tokens: int, keep: int) -> list[int]:
    """The harmful positions (0-based) that keep the RTO label: ``keep`` of them drawn without replacement,
    the same for the same (seed, row); all when ``keep`` is 0 or at least ``harmful_tokens``."""
    if keep == 0 or keep >= harmful_tokens:
        return list(range(harmful_tokens))
    return sorted(random.Random(f"derta-rto:{seed}:{row_index}").sample(range(harmful_tokens), keep))


def rto_example(prompt_ids: list[int], harmful_ids: list[int], refusal_first_id: int,
                positions: list[int] | None = None) -> dict:
    """prompt + h_1..h_n; label r_1 at each of the n harmful positions (predicted from q, h_<t+1), or only at
    ``positions``."""
    keep = set(range(len(harmful_ids)) if positions is None else positions)
    return {"input_ids": prompt_ids + harmful_ids,
            "labels": [IGNORE] * len(prompt_ids) + [refusal_first_id if t in keep else IGNORE
                                                    for t in range(len(harmful_ids))]}


def derta_examples(conversations: list[dict], harmful_answers: list[str | None], tokenizer, config: DeRTaConfig,
                   seed: int, max_length: int | None = None) -> tuple[list[dict], dict]:
    """Pre-tokenised ``{input_ids, labels}`` rows for the trainer and the counts for metrics.json.

    ``conversations``: TRL prompt/completion rows (the completion is the refusal where the row has a
    harmful answer); ``harmful_answers``: aligned, from :func:`harmful_answer`. Sequences longer than
    ``max_length`` are cut at the end (as TRL does); those left without any labelled token (TRL drops
    them) are counted, not hidden.
    """
    if len(conversations) != len(harmful_answers):
        raise ValueError(f"{len(conversations)} conversations but {len(harmful_answers)} harmful answers")
    if not any(harmful_answers):
        keys = [key for key, on in (("derta.harmful_prefix", config.harmful_prefix), ("derta.rto", config.rto)) if on]
        raise ValueError(f"{' and '.join(keys)}: no training row has a non-empty '{HARMFUL_COLUMN}' column "
                         f"(DeRTa needs harmful answers beside the refusals in 'response')")
    examples, prefix_lengths, rto_labels = [], [], 0
    for index, (conversation, harmful) in enumerate(zip(conversations, harmful_answers)):
        prompt_ids, completion_ids = conversation_ids(tokenizer, conversation["prompt"], conversation["completion"])
        if not harmful:
            examples.append(plain_example(prompt_ids, completion_ids))
            continue
        harmful_ids = list(tokenizer(harmful, add_special_tokens=False)["input_ids"])
        if config.harmful_prefix:
            k = prefix_length(seed, index, len(harmful_ids))
            prefix_lengths.append(k)
            examples.append(harmful_prefix_example(prompt_ids, harmful_ids, completion_ids, k))
        else:
            examples.append(plain_example(prompt_ids, completion_ids))
        if config.rto:
            positions = rto_positions(seed, index, len(harmful_ids), config.rto_positions)
            examples.append(rto_example(prompt_ids, harmful_ids, completion_ids[0], positions))
            rto_labels += len(positions)
    truncated = without_loss = 0
    if max_length is not None:
        for example in examples:
            if len(example["input_ids"]) > max_length:
                truncated += 1
                example["input_ids"] = example["input_ids"][:max_length]
                example["labels"] = example["labels"][:max_length]
                without_loss += all(label == IGNORE for label in example["labels"])
    rows_with_harmful = sum(bool(h) for h in harmful_answers)
    counts = {
        "derta_harmful_prefix": config.harmful_prefix,
        "derta_rto": config.rto,
        "derta_rows_with_harmful_response": rows_with_harmful,
        "derta_rows_empty_harmful_response": sum(h == "" for h in harmful_answers),  # trained as plain rows
        "derta_rows_without_harmful_response": sum(h is None for h in harmful_answers),
        "derta_rows_with_harmful_prefix": len(prefix_lengths),
        "derta_mean_prefix_tokens": sum(prefix_lengths) / len(prefix_lengths) if prefix_lengths else None,
        "derta_rto_positions": rto_labels,
        "derta_sequences": len(examples),
        "derta_sequences_truncated": truncated,
        "derta_sequences_without_loss_after_truncation": without_loss,  # TRL drops these
    }
    return examples, counts
