"""Reward and cost sources: a trained score model, or a Python function (ground truth for tests).

- :class:`ScoreModelScorer` wraps a :class:`~saferlhf.models.score_model.ScoreModel` folder. When
  its tokenizer is the actor's (same vocabulary, merges, special tokens and chat template), it
  scores the rollout's own tokens: no decode / re-encode round trip, and the score is read at the
  answer's last token exactly as the policy produced it (a tokenizer without chat template trains
  the score model on answers *without* the end-of-turn token, so that token is masked out before
  scoring: the score is read where training read it). Otherwise it decodes the answers and
  re-tokenises prompt + answer with its own tokenizer and template
  (:func:`saferlhf.data.templates.encode`). The same rule decides whether a critic can start from
  the score model (critic values must line up with the actor's tokens).
- :class:`FunctionScorer` calls ``fn(prompts, responses) -> list[float]`` named as
  ``package.module:function`` or ``path/to/file.py:function``.
- :class:`OverRefusalScorer` (cost source ``over-refusal``): C = 1 when the project's refusal
  detector (:func:`saferlhf.refusal.patterns.detect_refusal`) calls the answer to a prompt labelled
  harmless (``benign`` or ``pseudo_harmful``) a refusal, else 0; so E[C] is the false-refusal rate
  on the training prompts.
- :class:`CategoryScorer`: another scorer's cost on prompts of one category, 0 on the others.
  Both read the prompts' labels from :class:`PromptLabels`.

Cost convention: C > 0 means unsafe.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path
from typing import Callable

import torch

from saferlhf.data.builtin import LABELS, builtin_prompts
from saferlhf.data.readers import read_rows
from saferlhf.data.records import prompt_text
from saferlhf.data.templates import closes_with_eos, encode
from saferlhf.models.canary import canary_check
from saferlhf.models.loading import load_tokenizer
from saferlhf.models.score_model import ScoreModel, resolve_folder
from saferlhf.policy.config import HUB_ID_PATTERN, OVER_REFUSAL
from saferlhf.policy.rollout import Rollout
from saferlhf.refusal.patterns import detect_refusal

HARMLESS_LABELS = ("benign", "pseudo_harmful")


def tokenizer_fingerprint(tokenizer) -> tuple:
    """What decides the token ids of a rendered prompt + answer (padding/truncation settings excluded)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)
        spec.pop("padding", None)
        spec = json.dumps(spec, sort_keys=True)
    else:
        spec = json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return spec, getattr(tokenizer, "chat_template", None), tokenizer.bos_token, tokenizer.eos_token


def same_tokenizer(first, second) -> bool:
    return first is second or tokenizer_fingerprint(first) == tokenizer_fingerprint(second)


def score_model_tokenizer(folder: str | Path, model: ScoreModel):
    """The tokenizer saved with a score model, else its base model's."""
    folder = Path(folder)
    if (folder / "tokenizer_config.json").exists() or (folder / "tokenizer.json").exists():
        return load_tokenizer(str(folder), padding_side="right")
    if not model.score_config.base_model:
        raise FileNotFoundError(f"{folder}: no tokenizer files and no base_model in its score settings")
    return load_tokenizer(model.score_config.base_model, padding_side="right")


class ScoreModelScorer:
    """Sequence scores of a frozen :class:`ScoreModel` (see the module docstring)."""

    def __init__(self, folder: str | Path, actor_tokenizer, normalize: str = "none", batch_size: int = 16,
                 max_length: int = 512, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 kind: str | None = None):
        self.folder = str(folder)
        self.model = ScoreModel.from_pretrained(folder, dtype=dtype, kind=kind).to(device).eval().requires_grad_(False)
        self.tokenizer = score_model_tokenizer(resolve_folder(self.folder), self.model)
        self.canary = canary_check(self.model, self.tokenizer, self.model.score_config.kind, self.folder)
        self.shares_tokenizer = same_tokenizer(actor_tokenizer, self.tokenizer)
        self.strip_end_of_turn = not closes_with_eos(self.tokenizer)  # training text had no eos after the answer
        self.normalize_mode = normalize
        self.batch_size = batch_size
        self.max_length = max_length
        self.overlong_answers = 0  # re-tokenised answers cut to fit max_length

    @torch.no_grad()
    def __call__(self, rollout: Rollout) -> torch.Tensor:  # (N,)
        scores = []
        for start in range(0, len(rollout), self.batch_size):
            part = rollout.select(range(start, min(start + self.batch_size, len(rollout))))
            if self.shares_tokenizer:
                out = self.model(part.input_ids, self._scoring_mask(part), position_ids=part.position_ids)
            else:
                input_ids, attention_mask = self._retokenize(part)
                out = self.model(input_ids, attention_mask)
            scores.append(out.end_scores)
        return self.model.normalize(torch.cat(scores), self.normalize_mode).float()

    def _scoring_mask(self, part: Rollout) -> torch.Tensor:  # (B, P + T)
        """The rollout's attention mask, without the answers' end-of-turn token if training never saw one."""
        if not self.strip_end_of_turn:
            return part.attention_mask
        answer = part.attention_mask[:, part.prompt_width:] * (part.response_ids != self.tokenizer.eos_token_id)
        return torch.cat([part.attention_mask[:, :part.prompt_width], answer.long()], dim=1)

    def _retokenize(self, part: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded (B, L) ids and mask of prompt + answer in the score model's own format."""
        device = next(self.model.parameters()).device
        rows = []
        for prompt, text in zip(part.prompts, part.response_texts):
            encoded = encode(self.tokenizer, prompt, text, self.max_length)
            self.overlong_answers += int(encoded.overlong)
            rows.append(encoded.input_ids)
        width = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, :len(row)] = 1
        return input_ids.to(device), attention_mask.to(device)


def load_function(target: str) -> Callable:
    """``package.module:function`` or ``path/to/file.py:function`` -> the function."""
    module_name, _, function_name = target.rpartition(":")
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise FileNotFoundError(f"scorer {target!r}: no file {path}")
        spec = importlib.util.spec_from_file_location(f"saferlhf_scorer_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    else:
        module = importlib.import_module(module_name)
    function = getattr(module, function_name, None)
    if not callable(function):
        raise AttributeError(f"scorer {target!r}: {module_name} has no function {function_name!r}")
    return function


class FunctionScorer:
    """Scores from ``fn(prompts, responses) -> list[float]`` (one float per answer)."""

    shares_tokenizer = False

    def __init__(self, target: str, device: torch.device | str = "cpu"):
        self.target = target
        self.function = load_function(target)
        self.device = device

    def __call__(self, rollout: Rollout) -> torch.Tensor:  # (N,)
        values = list(self.function(list(rollout.prompts), list(rollout.response_texts)))
        if len(values) != len(rollout):
            raise ValueError(f"scorer {self.target}: returned {len(values)} scores for {len(rollout)} answers")
        bad = [i for i, v in enumerate(values) if not isinstance(v, (int, float)) or isinstance(v, bool)]
        if bad:
            raise TypeError(f"scorer {self.target}: score {bad[0]} is {values[bad[0]]!r}, not a number")
        return torch.tensor([float(v) for v in values], dtype=torch.float32, device=self.device)


def _prompt_key(prompt) -> str:
    return " ".join(prompt_text(prompt).lower().split())


class PromptLabels:
    """``label`` (harmful | benign | pseudo_harmful) and ``category`` of prompts, by prompt text (case and
    spacing ignored): from labelled prompt files (columns prompt, label, category), else the built-in set."""

    def __init__(self, sources: list | None = None):
        self.labels: dict[str, tuple[str, str]] = {}
        if not sources:
            for row in builtin_prompts():
                self.labels[_prompt_key(row["prompt"])] = (row["label"], row["category"])
        for source in sources or []:
            for raw in read_rows(source.path, source.split, source.limit):
                row = raw.row if isinstance(raw.row, dict) and not raw.error else None
                if row is None or not isinstance(row.get("prompt"), str) or row.get("label") not in LABELS:
                    raise ValueError(f"{raw.location}: a labelled prompt needs a string 'prompt' and a 'label' in "
                                     f"{LABELS}, got {raw.error or raw.row!r:.200}")
                self.labels[_prompt_key(row["prompt"])] = (row["label"], str(row.get("category") or ""))

    def require(self, prompts: list, what: str) -> None:
        """Stop when a prompt has no label (its cost would be meaningless), naming it and ``what`` needs it."""
        missing = [p for p in prompts if _prompt_key(p) not in self.labels]
        if missing:
            raise ValueError(f"{what}: {len(missing)} training prompt(s) have no label in the labelled prompts "
                             f"(first: {prompt_text(missing[0])!r:.120}); list a file with prompt, label, category")

    def label(self, prompt) -> str:
        return self.labels[_prompt_key(prompt)][0]

    def category(self, prompt) -> str:
        return self.labels[_prompt_key(prompt)][1]


class OverRefusalScorer:
    """C = 1[prompt labelled harmless and the detector calls the answer a refusal] (see the module docstring)."""

    shares_tokenizer = False

    def __init__(self, labels: PromptLabels, device: torch.device | str = "cpu"):
        self.labels = labels
        self.device = device

    def __call__(self, rollout: Rollout) -> torch.Tensor:  # (N,)
        values = [float(self.labels.label(prompt) in HARMLESS_LABELS
                        and detect_refusal(answer, prompt_text(prompt)).is_refusal)
                  for prompt, answer in zip(rollout.prompts, rollout.response_texts)]
        return torch.tensor(values, dtype=torch.float32, device=self.device)


class CategoryScorer:
    """``scorer``'s cost on prompts of ``category``, 0 on every other prompt."""

    def __init__(self, scorer, labels: PromptLabels, category: str):
        self.scorer, self.labels, self.category = scorer, labels, category
        self.shares_tokenizer = getattr(scorer, "shares_tokenizer", False)
        self.canary = getattr(scorer, "canary", None)

    def __call__(self, rollout: Rollout) -> torch.Tensor:  # (N,)
        scores = self.scorer(rollout)
        in_category = [self.labels.category(prompt) == self.category for prompt in rollout.prompts]
        return scores * torch.tensor(in_category, dtype=scores.dtype, device=scores.device)


def make_scorer(path: str, actor_tokenizer, normalize: str, batch_size: int, max_length: int, device,
                labels: PromptLabels | None = None, dtype: torch.dtype = torch.float32, kind: str | None = None):
    """A :class:`ScoreModelScorer` (in ``dtype``; ``kind`` reward | cost for its canary check) for a folder, an :class:`OverRefusalScorer` for ``over-refusal`` (reading
    ``labels``), else a :class:`FunctionScorer`."""
    if path == OVER_REFUSAL:
        return OverRefusalScorer(labels or PromptLabels(), device)
    if Path(path).is_dir() or HUB_ID_PATTERN.match(path):
        return ScoreModelScorer(path, actor_tokenizer, normalize, batch_size, max_length, device, dtype, kind)
    if normalize != "none":
        raise ValueError(f"scorer {path}: normalize={normalize!r} needs a score model folder")
    return FunctionScorer(path, device)

