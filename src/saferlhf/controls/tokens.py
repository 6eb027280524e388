"""Refusal tokens (Jain et al. 2024, "Refusal Tokens: A Simple Way to Calibrate Refusals in Large Language
Models"; reference: neelsjain/refusal-tokens).

Training (``saferlhf sft refusal_tokens=single|per-category``): every answer starts with a control token,
``[refuse]`` before a refusal and ``[respond]`` before any other answer, or one ``[refuse:<category>]``
per harm category. The tokens are added to the tokenizer as special tokens and their embedding rows
are trained (under LoRA too: those rows only, :func:`train_only_new_rows`). Which answers are refusals:
the row's ``refusal`` column when it has one, else the project's rule detector
(:func:`saferlhf.refusal.patterns.detect_refusal`).

Inference: one forward pass gives, at the first answer position (after the chat template's
generation prompt), p = softmax(logits / T) over the vocabulary, read at the control tokens. With
c* = argmax over the refusal tokens of p_c, the token forced is

    [refuse(c*)]   if p_{c*} >= t_{c*}    (t_c = None: if p_{c*} >= p([respond]), the model's own choice)
    [respond]      otherwise,

so a threshold set for one category moves only the prompts whose most likely refusal token is that
category's. The answer is then generated after the forced token. Sweeping one global t over the
refusal score max_c p_c traces the whole harmful-compliance / false-refusal curve of a model from
the one forward pass (:func:`saferlhf.controls.probe.sweep`).

Traps (from the reference): a string that was never added encodes as several sub-tokens, silently, so
:func:`control_token_ids` insists on exactly one id per token; SmolLM2 ties its input and output
embeddings, so the new row of the one matrix serves both, and LoRA leaves new rows untrained unless told
(:func:`train_only_new_rows`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from saferlhf.data.templates import render_prompt
from saferlhf.refusal.patterns import LABELS, detect_refusal, is_refusal

RESPOND = "[respond]"
REFUSE = "[refuse]"
SPEC_FILE = "refusal_tokens.json"
MODES = ("none", "single", "per-category")


@dataclass
class RefusalTokens:
    """The control tokens of a model: ``[respond]`` and its refusal tokens (one, or one per category)."""

    respond: str = RESPOND
    refuse: tuple[str, ...] = (REFUSE,)
    categories: tuple[str, ...] = ("",)  # the harm category of each refusal token ("" = any)

    @property
    def tokens(self) -> list[str]:
        """``[respond]`` first, then the refusal tokens: the column order of :func:`control_probabilities`."""
        return [self.respond, *self.refuse]

    @classmethod
    def for_categories(cls, categories: list[str]) -> "RefusalTokens":
        names = sorted(set(categories))
        return cls(refuse=tuple(f"[refuse:{name}]" for name in names), categories=tuple(names))

    def save(self, folder: str | Path) -> None:
        (Path(folder) / SPEC_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, folder: str | Path) -> "RefusalTokens":
        path = Path(folder) / SPEC_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {folder} was not trained with refusal tokens "
                                    f"(saferlhf sft refusal_tokens=single)")
        data = json.loads(path.read_text())
        return cls(data["respond"], tuple(data["refuse"]), tuple(data["categories"]))


def spec_of(model: str | Path) -> RefusalTokens | None:
    """The refusal tokens of a model folder; None for a model without (or a built-in name / hub id)."""
    return RefusalTokens.load(model) if (Path(model) / SPEC_FILE).is_file() else None


def copy_spec(source: str | Path, destination: str | Path) -> bool:
    """Carry a model's ``refusal_tokens.json`` into the folder of a model trained from it (policy, DPO, SFT,
    ablated copies): the tokens stay in the saved tokenizer and embeddings, and the spec says which they are.
    True when ``source`` is a local folder that has one (a built-in name or hub id has none to copy)."""
    spec = Path(source) / SPEC_FILE
    if not spec.is_file():
        return False
    Path(destination).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(spec, Path(destination) / SPEC_FILE)
    return True


def answer_is_refusal(row: dict, prompt: str, response: str, where: str) -> bool:
    """The row's ``refusal`` column (true/false or a refusal label) when present, else the rule detector."""
    value = row.get("refusal")
    if value is None or value == "":
        return detect_refusal(response, prompt).is_refusal
    if isinstance(value, bool):
        return value
    if value in LABELS:
        return is_refusal(value)
    raise ValueError(f"{where}: key 'refusal' is {value!r}, expected true, false or one of {LABELS}")


def mark_answers(conversations: list[dict], rows: list[dict], locations: list[str], mode: str) -> RefusalTokens:
    """Prepend the control token to each conversation's answer, in place; returns the tokens used.

    ``conversations``: TRL prompt/completion rows; ``rows``: the raw rows they came from (for the
    ``refusal`` and ``category`` columns); ``mode``: ``single`` or ``per-category``.
    """
    if mode not in MODES[1:]:
        raise ValueError(f"refusal token mode must be one of {MODES[1:]}, got {mode!r}")
    refusals = _refusals(conversations, rows, locations)
    if mode == "per-category":
        missing = [where for row, where, refused in zip(rows, locations, refusals) if refused and not row.get("category")]
        if missing:
            raise ValueError(f"{missing[0]}: per-category refusal tokens need a 'category' on every refusal row "
                             f"({len(missing)} refusal rows have none)")
        spec = RefusalTokens.for_categories([row["category"] for row, refused in zip(rows, refusals) if refused])
    else:
        spec = RefusalTokens()
    _prefix(conversations, rows, locations, spec, refusals)
    return spec


def mark_with(spec: RefusalTokens, conversations: list[dict], rows: list[dict], locations: list[str]) -> None:
    """Prepend the tokens of an existing model's ``spec`` (PTX rows of a refusal-token actor), in place: a
    model trained to open every answer with one must not be taught answers without it."""
    _prefix(conversations, rows, locations, spec, _refusals(conversations, rows, locations))


def _refusals(conversations: list[dict], rows: list[dict], locations: list[str]) -> list[bool]:
    return [answer_is_refusal(row, conversation["prompt"][-1]["content"], conversation["completion"][0]["content"],
                              where) for conversation, row, where in zip(conversations, rows, locations)]


def _prefix(conversations, rows, locations, spec: RefusalTokens, refusals: list[bool]) -> None:
    token_of = dict(zip(spec.categories, spec.refuse))
    for conversation, row, where, refused in zip(conversations, rows, locations, refusals):
        category = "" if spec.categories == ("",) else row.get("category")
        if refused and category not in token_of:
            raise ValueError(f"{where}: a refusal needs a 'category' among the model's refusal tokens "
                             f"{list(spec.categories)}, got {category!r}")
        answer = conversation["completion"][0]
        token = token_of[category] if refused else spec.respond
        conversation["completion"] = [{**answer, "content": token + answer["content"]}]


def add_control_tokens(model, tokenizer, spec: RefusalTokens, seed: int = 42) -> list[int]:
    """Add the tokens as special tokens and grow the embeddings; their ids. The new rows are drawn around the old
    rows' mean and covariance (transformers' ``mean_resizing``), seeded: the same run starts from the same rows."""
    rows = model.get_input_embeddings().weight.shape[0]  # may exceed len(tokenizer) (a padded vocabulary)
    tokenizer.add_tokens(spec.tokens, special_tokens=True)
    torch.manual_seed(seed)
    model.resize_token_embeddings(max(len(tokenizer), rows))
    return control_token_ids(tokenizer, spec.tokens)


def control_token_ids(tokenizer, tokens: list[str]) -> list[int]:
    """One id per token; an error when a token would encode as several pieces (it was never added)."""
    ids = []
    for token in tokens:
        encoded = tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise ValueError(f"refusal token {token!r} is not in the tokenizer (it encodes as {len(encoded)} "
                             f"pieces {encoded}); was this model trained with refusal tokens?")
        ids.append(encoded[0])
    return ids


def train_only_new_rows(model, first_new_row: int):
    """Under LoRA (backbone frozen): let the embedding rows from ``first_new_row`` on learn, and only them.

    The embedding matrix (and an untied output embedding) becomes trainable with its gradient masked to the
    new rows. Returns a function that puts the old rows back exactly after training: AdamW's decoupled weight
    decay moves every row of a trainable matrix, even rows whose gradient is zero. (peft's
    ``trainable_token_indices`` would be the library way, but TRL's fused LM-head loss reads the head's
    ``weight`` directly and misses peft's row deltas.)
    """
    saved = []
    for embedding in (model.get_input_embeddings(), model.get_output_embeddings()):
        if embedding is None or any(embedding.weight is weight for weight, _ in saved):
            continue  # absent, or tied to the input embedding
        weight = embedding.weight
        weight.requires_grad_(True)
        mask = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)
        mask[first_new_row:] = 1
        weight.register_hook(lambda grad, mask=mask: grad * mask)
        saved.append((weight, weight.detach()[:first_new_row].clone()))

    def restore_old_rows() -> None:
        with torch.no_grad():
            for weight, old in saved:
                weight[:first_new_row] = old

    return restore_old_rows


def new_rows_learning_rate(trainer, learning_rate: float) -> None:
    """Give the embedding matrices (their gradient masked to the new rows by :func:`train_only_new_rows`) an
    AdamW group of their own at ``learning_rate``, without weight decay.

    Why: Adam moves each weight by about the learning rate per step, so in a short run at an SFT learning
    rate (35 steps at 2e-4 on SmolLM2) the new rows move ~0.007 per element and their logits stay ~10 below
    the vocabulary's top tokens: the model learns to expect a control token it cannot yet predict, and its
    first answer token degrades (measured on SmolLM2, docs/controls.md). Must be called before training
    (the trainer keeps an optimizer it already has)."""
    model = trainer.model
    weights = {id(e.weight): e.weight for e in (model.get_input_embeddings(), model.get_output_embeddings())
               if e is not None}
    optimizer = trainer.create_optimizer()
    for group in optimizer.param_groups:
        group["params"] = [p for p in group["params"] if id(p) not in weights]
    optimizer.param_groups = [group for group in optimizer.param_groups if group["params"]]
    optimizer.add_param_group({"params": list(weights.values()), "lr": learning_rate, "weight_decay": 0.0})


def control_token_accuracy(model, tokenizer, conversations: list[dict], spec: RefusalTokens) -> float:
    """Share of training conversations whose own control token is the model's most likely first answer token
    (argmax over the whole vocabulary): a fit check on the training rows, saved in metrics.json."""
    ids = control_token_ids(tokenizer, spec.tokens)
    by_token = dict(zip(spec.tokens, ids))
    prompts = [c["prompt"] for c in conversations]
    wanted = [by_token[next(t for t in spec.tokens if c["completion"][0]["content"].startswith(t))]
              for c in conversations]
    best = torch.cat([logits.argmax(dim=-1) for logits in first_answer_logits(model, tokenizer, prompts)]).tolist()
    return sum(b == w for b, w in zip(best, wanted)) / len(prompts)


def first_answer_logits(model, tokenizer, prompts: list, batch_size: int = 16):
    """Per batch, the (B, vocab) float logits at the first answer position (after the chat template's
    generation prompt); batch by batch, so that N x vocab is never held at once."""
    device = next(model.parameters()).device
    for start in range(0, len(prompts), batch_size):
        texts = [render_prompt(tokenizer, p) for p in prompts[start:start + batch_size]]
        batch = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left",
                          add_special_tokens=False).to(device)
        with torch.no_grad():
            yield model(**batch).logits[:, -1].float().cpu()


def control_probabilities(model, tokenizer, prompts: list, token_ids: list[int], temperature: float = 1.0,
                          batch_size: int = 16) -> torch.Tensor:
    """(N, K) probabilities of the K control tokens at the first answer position of each prompt."""
    return torch.cat([torch.softmax(logits / temperature, dim=-1)[:, token_ids]
                      for logits in first_answer_logits(model, tokenizer, prompts, batch_size)])


def refusal_scores(probabilities: torch.Tensor) -> list[float]:
    """max_c p([refuse(c)]) per prompt: the score a single global threshold acts on."""
    return probabilities[:, 1:].max(dim=1).values.tolist()


def forced_tokens(probabilities: torch.Tensor, thresholds: list[float | None]) -> list[int]:
    """Index into ``RefusalTokens.tokens`` of the token forced for each prompt (0 = ``[respond]``).

    ``probabilities``: (N, 1 + C), ``[respond]`` first; ``thresholds``: one per refusal token (None = the
    model's own choice, refuse iff p_{c*} >= p([respond])).
    """
    if probabilities.shape[1] != len(thresholds) + 1:
        raise ValueError(f"{probabilities.shape[1]} token columns but {len(thresholds)} refusal thresholds")
    best_p, best = probabilities[:, 1:].max(dim=1)
    forced = []
    for p_respond, p_refuse, category in zip(probabilities[:, 0].tolist(), best_p.tolist(), best.tolist()):
        threshold = thresholds[category]
        refuse = p_refuse >= (p_respond if threshold is None else threshold)
        forced.append(1 + category if refuse else 0)
    return forced
