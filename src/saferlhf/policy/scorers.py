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

Cost convention: C > 0 means unsafe.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path
from typing import Callable

import torch

from saferlhf.data.templates import closes_with_eos, encode
from saferlhf.models.loading import load_tokenizer
from saferlhf.models.score_model import ScoreModel
from saferlhf.policy.rollout import Rollout


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
        raise FileNotFoundError(f"{folder}: no tokenizer files and no base_model in score_config.json")
    return load_tokenizer(model.score_config.base_model, padding_side="right")


class ScoreModelScorer:
    """Sequence scores of a frozen :class:`ScoreModel` (see the module docstring)."""

    def __init__(self, folder: str | Path, actor_tokenizer, normalize: str = "none", batch_size: int = 16,
                 max_length: int = 512, device: torch.device | str = "cpu"):
        self.folder = str(folder)
        self.model = ScoreModel.from_pretrained(folder).to(device).eval().requires_grad_(False)
        self.tokenizer = score_model_tokenizer(folder, self.model)
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


def make_scorer(path: str, actor_tokenizer, normalize: str, batch_size: int, max_length: int, device):
    """A :class:`ScoreModelScorer` for a folder, else a :class:`FunctionScorer`."""
    if Path(path).is_dir():
        return ScoreModelScorer(path, actor_tokenizer, normalize, batch_size, max_length, device)
    if normalize != "none":
        raise ValueError(f"scorer {path}: normalize={normalize!r} needs a score model folder")
    return FunctionScorer(path, device)

