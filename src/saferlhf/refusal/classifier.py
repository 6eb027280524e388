"""Learned refusal classifier over (prompt, response): any Hugging Face encoder + a linear head.

Following Reuter & Schulze 2023 ("I'm Afraid I Can't Do That", a fine-tuned BERT over ChatGPT
responses), the model is ``AutoModelForSequenceClassification`` on the text pair
``[CLS] prompt [SEP] response [SEP]``, trained with cross-entropy over the classes

    compliance, full_refusal, partial_refusal (+ technical_refusal when ``technical_class``)

so that ``p(class | prompt, response) = softmax(W h_[CLS] + b)``. ``technical_refusal`` is a full
refusal for a technical reason ("I can't browse the internet"), the distinction of the Chatbot
Arena refusal study (2025); :meth:`predict` folds it into ``full_refusal`` and
:meth:`predict_with_kind` reports it as kind ``"technical"``.

Only the start of the response is read (``response_tokens``; refusals live there); with
``use_prompt`` off the prompt is not read at all.

**Prior correction** (optional, ``label_priors``): a classifier trained on data with 61%
compliance carries that prior into its decisions, while the answers it labels can refuse far more
often (a safety-tuned model on a harm benchmark). With the training frequencies ``π`` of the three labels
saved, the decision is made under a uniform prior (Saerens et al. 2002, "Adjusting the outputs of
a classifier to new a priori probabilities"; the logit adjustment of Menon et al. 2021 with τ = 1):

    p̃(c | x) = (p(c | x) / π_c) / Σ_k p(k | x) / π_k,     label = argmax_c p̃(c | x)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification

from saferlhf.models import builtin
from saferlhf.models.loading import load_tokenizer
from saferlhf.refusal.patterns import FULL_REFUSAL, LABELS

TECHNICAL_REFUSAL = "technical_refusal"
SETTINGS_FILE = "refusal_classifier.json"


def class_names(technical_class: bool) -> tuple[str, ...]:
    """The classifier's output classes (LABELS, plus ``technical_refusal`` when asked)."""
    return LABELS + ((TECHNICAL_REFUSAL,) if technical_class else ())


def fold_probabilities(probs: torch.Tensor, classes: Sequence[str]) -> torch.Tensor:
    """``(N, C)`` class probabilities -> ``(N, 3)`` over LABELS: p(full) = p(full_refusal) + p(technical_refusal)."""
    folded = probs[:, : len(LABELS)].clone()  # classes start with LABELS, in order
    if TECHNICAL_REFUSAL in classes:
        folded[:, LABELS.index(FULL_REFUSAL)] += probs[:, list(classes).index(TECHNICAL_REFUSAL)]
    return folded


def correct_priors(folded: torch.Tensor, label_priors: Sequence[float] | None) -> torch.Tensor:
    """``(N, 3)`` probabilities re-weighted to a uniform prior: ``p_c / π_c``, renormalised (``None``: unchanged)."""
    if label_priors is None:
        return folded
    weighted = folded / torch.tensor(label_priors, dtype=folded.dtype)
    return weighted / weighted.sum(dim=-1, keepdim=True)


class RefusalClassifier:
    """A sequence classifier and its tokenizer; predicts a label from :data:`LABELS` per pair."""

    def __init__(self, model: torch.nn.Module, tokenizer, max_length: int = 256, prompt_only: bool = False,
                 response_tokens: int = 0, use_prompt: bool = True, label_priors: Sequence[float] | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.prompt_only = prompt_only  # predicts from the prompt alone whether the model will refuse
        self.response_tokens = response_tokens  # read only the first N response tokens (0 = as many as fit)
        self.use_prompt = use_prompt  # False: the response alone is read (the prompt is ignored)
        if prompt_only and not use_prompt:
            raise ValueError("a prompt_only classifier must use the prompt")
        # training frequencies of LABELS; set: decisions under a uniform prior (module docstring)
        self.label_priors = None if label_priors is None else tuple(float(x) for x in label_priors)
        if self.label_priors is not None and (len(self.label_priors) != len(LABELS) or min(self.label_priors) <= 0):
            raise ValueError(f"label_priors must be {len(LABELS)} positive frequencies (one per label in {LABELS}), "
                             f"got {label_priors}")
        if response_tokens and max_length < response_tokens + 16:
            raise ValueError(f"max_length {max_length} must be >= response_tokens {response_tokens} + 16")
        self.classes = tuple(model.config.id2label[i] for i in range(model.config.num_labels))
        if self.classes not in (class_names(False), class_names(True)):
            raise ValueError(f"classifier classes {self.classes} must be {class_names(False)} (+ {TECHNICAL_REFUSAL})")

    # ----------------------------------------------------------------------------------------
    # construction, saving, loading

    @classmethod
    def from_backbone(cls, name_or_path: str, technical_class: bool = True, max_length: int = 256,
                      trust_remote_code: bool = False, prompt_only: bool = False,
                      response_tokens: int = 0, use_prompt: bool = True) -> "RefusalClassifier":
        """A fresh classification head on a pretrained encoder (built-in name, hub id or folder)."""
        classes = class_names(technical_class)
        tokenizer = load_tokenizer(name_or_path, trust_remote_code=trust_remote_code)
        model = AutoModelForSequenceClassification.from_pretrained(
            builtin.resolve(name_or_path), num_labels=len(classes), id2label=dict(enumerate(classes)),
            label2id={c: i for i, c in enumerate(classes)}, trust_remote_code=trust_remote_code,
            use_safetensors=True, dtype=torch.float32,
        )
        model.config.pad_token_id = tokenizer.pad_token_id  # decoder backbones need it to find the last token
        return cls(model, tokenizer, max_length, prompt_only, response_tokens, use_prompt)

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device | None = None) -> "RefusalClassifier":
        """Load a classifier written by :meth:`save_pretrained`."""
        folder = Path(folder)
        settings_path = folder / SETTINGS_FILE
        if not settings_path.exists():
            raise FileNotFoundError(f"{folder} is not a saved refusal classifier (no {SETTINGS_FILE})")
        settings = json.loads(settings_path.read_text())
        tokenizer = load_tokenizer(str(folder))
        model = AutoModelForSequenceClassification.from_pretrained(str(folder), use_safetensors=True)
        classifier = cls(model, tokenizer, int(settings["max_length"]), bool(settings.get("prompt_only", False)),
                         int(settings.get("response_tokens", 0)), bool(settings.get("use_prompt", True)),
                         settings.get("label_priors"))
        if device is not None:
            classifier.model.to(device)
        return classifier

    def save_pretrained(self, folder: str | Path) -> None:
        """Write model (safetensors), tokenizer and ``refusal_classifier.json`` into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        model = self.model
        if hasattr(model, "merge_and_unload"):  # LoRA: save plain weights
            model = model.merge_and_unload()
        model.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        settings = {"max_length": self.max_length, "response_tokens": self.response_tokens,
                    "use_prompt": self.use_prompt, "prompt_only": self.prompt_only, "classes": list(self.classes),
                    "labels": list(LABELS), "label_priors": None if self.label_priors is None else list(self.label_priors)}
        (folder / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")

    # ----------------------------------------------------------------------------------------
    # encoding and prediction

    def encode(self, prompt: str | None, response: str) -> dict[str, list[int]]:
        """Token ids of the (prompt, response) pair, at most ``max_length``.

        With ``response_tokens`` = N > 0 only the response's first N tokens are read and the prompt
        is cut to fit; otherwise truncation is longest-first. Without ``use_prompt`` the response is
        encoded alone (``[CLS] response [SEP]``). A ``prompt_only`` classifier (the prompt-refusal predictor of Reuter & Schulze 2023) encodes
        the prompt alone and ignores the response.
        """
        if self.prompt_only:
            return dict(self.tokenizer(prompt or "", truncation=True, max_length=self.max_length))
        if not self.use_prompt:
            return dict(self.tokenizer(self.response_start(response), truncation=True, max_length=self.max_length))
        strategy = "only_first" if self.response_tokens else "longest_first"
        return dict(self.tokenizer(prompt or "", self.response_start(response), truncation=strategy,
                                   max_length=self.max_length))

    def response_start(self, response: str) -> str:
        """The response up to its ``response_tokens``-th token (the whole response when 0)."""
        if not self.response_tokens:
            return response
        offsets = self.tokenizer(response, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        if len(offsets) <= self.response_tokens:
            return response
        return response[: offsets[self.response_tokens - 1][1]]

    @torch.inference_mode()
    def class_probabilities(self, prompts: Sequence[str | None] | None, responses: Sequence[str] | None,
                            batch_size: int = 32, progress: bool = False) -> torch.Tensor:
        """``(N, C)`` softmax probabilities over :attr:`classes` (batches sorted by length for speed)."""
        if responses is None:
            if not self.prompt_only or prompts is None:
                raise ValueError("responses are required (only a prompt_only classifier predicts from prompts alone)")
            responses = [""] * len(prompts)
        prompts = list(prompts) if prompts is not None else [None] * len(responses)
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        encoded = [self.encode(p, r) for p, r in zip(prompts, responses)]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]["input_ids"]))
        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        out = torch.zeros(len(encoded), len(self.classes))
        starts = range(0, len(order), batch_size)
        for start in tqdm(starts, desc="refusal classifier", disable=not progress, leave=False):
            index = order[start:start + batch_size]
            batch = self.tokenizer.pad([encoded[i] for i in index], return_tensors="pt").to(device)
            logits = self.model(**batch).logits.float()  # size = (B, C)
            out[index] = torch.softmax(logits, dim=-1).cpu()
        self.model.train(was_training)
        return out

    def predict_proba(self, prompts: Sequence[str | None] | None, responses: Sequence[str] | None,
                      batch_size: int = 32, progress: bool = False) -> torch.Tensor:
        """``(N, 3)`` probabilities over :data:`LABELS` (technical refusals folded into full refusal),
        prior-corrected when :attr:`label_priors` is set."""
        return self.decide(self.class_probabilities(prompts, responses, batch_size, progress))

    def decide(self, probs: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` class probabilities -> ``(N, 3)`` over LABELS, folded and prior-corrected."""
        return correct_priors(fold_probabilities(probs, self.classes), self.label_priors)

    def predict_with_kind(self, prompts: Sequence[str | None] | None, responses: Sequence[str] | None,
                          batch_size: int = 32, progress: bool = False) -> list[tuple[str, str | None]]:
        """``(label, kind)`` per pair: kind ``"technical"`` / ``"ethical"`` for refusals, None for compliance.

        The label is the argmax of :meth:`predict_proba`; a full refusal is ``"technical"`` when the
        technical class outweighs the (ethical) full-refusal class. Without a technical class every
        refusal is reported as ``"ethical"``.
        """
        probs = self.class_probabilities(prompts, responses, batch_size, progress)
        folded = self.decide(probs)
        technical = self.classes.index(TECHNICAL_REFUSAL) if TECHNICAL_REFUSAL in self.classes else None
        full = LABELS.index(FULL_REFUSAL)
        out = []
        for row, folded_row in zip(probs, folded):
            label = LABELS[int(folded_row.argmax())]
            if label == LABELS[0]:
                out.append((label, None))
            elif label == FULL_REFUSAL and technical is not None and row[technical] > row[full]:
                out.append((label, "technical"))
            else:
                out.append((label, "ethical"))
        return out

    def predict(self, prompts: Sequence[str | None] | None, responses: Sequence[str] | None,
                batch_size: int = 32, progress: bool = False) -> list[str]:
        """One label from :data:`LABELS` per (prompt, response) pair (argmax over the classes)."""
        return [label for label, _ in self.predict_with_kind(prompts, responses, batch_size, progress)]
