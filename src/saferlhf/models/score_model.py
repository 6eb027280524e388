"""Score model: a backbone (decoder or encoder) plus a scalar head.

Safe RLHF section 2: ``score_t = w · h_t + b`` for every token ``t`` (the per-token scores are the
values of a critic); the sequence score is the value at the last non-padding token. The index of
that token is ``argmax_t(mask_t · t)``, which is right for left padding (last position) and right
padding (``sum(mask) - 1``) alike. ``pooling="mean"`` instead scores the mask-weighted mean hidden
state, which suits small bidirectional encoders such as MiniLM.

A saved score model is one Hugging Face style folder:
``config.json`` (the backbone's config), ``model.safetensors`` (``backbone.*`` and ``score_head.*``),
``score_config.json`` (pooling, kind, score normalisation statistics) and the tokenizer files.
LoRA adapters are merged into the backbone on save, so a folder always loads without peft.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel

from saferlhf.models import builtin
from saferlhf.models.loading import is_decoder, load_backbone

SCORE_CONFIG = "score_config.json"


@dataclass
class ScoreConfig:
    """What is saved beside the weights in ``score_config.json``."""

    kind: str = "reward"  # "reward" (helpfulness, higher = better) or "cost" (> 0 means unsafe)
    pooling: Literal["last", "mean"] = "last"
    score_mean: float = 0.0  # statistics of training-set scores, for normalisation
    score_std: float = 1.0
    base_model: str = ""


def end_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last non-padding token of each row; correct for left and right padding."""
    positions = torch.arange(attention_mask.size(-1), device=attention_mask.device)  # (L,)
    return (attention_mask.long() * positions).argmax(dim=-1)  # (B,)


class ScoreModel(nn.Module):
    """``AutoModel`` backbone + ``nn.Linear(hidden, 1)`` head (bias initialised to zero)."""

    def __init__(self, backbone: nn.Module, score_config: ScoreConfig):
        super().__init__()
        self.backbone = backbone
        if getattr(backbone, "pooler", None) is not None:
            # BERT's pooler is never read by the score head; unused trained weights stall DDP's all-reduce
            backbone.pooler = None
        self.score_config = score_config
        hidden_size = backbone.config.hidden_size
        self.score_head = nn.Linear(hidden_size, 1)
        nn.init.normal_(self.score_head.weight, std=1.0 / (hidden_size + 1) ** 0.5)
        nn.init.zeros_(self.score_head.bias)

    @property
    def config(self):
        return self.backbone.config

    @classmethod
    def from_backbone(cls, name_or_path: str, kind: str = "reward", pooling: str = "auto",
                      trust_remote_code: bool = False) -> "ScoreModel":
        """Fresh head on a pretrained backbone. ``pooling="auto"``: last token for decoders, mean for encoders."""
        if pooling == "auto":
            pooling = "last" if is_decoder(name_or_path, trust_remote_code) else "mean"
        backbone = load_backbone(name_or_path, trust_remote_code=trust_remote_code)
        return cls(backbone, ScoreConfig(kind=kind, pooling=pooling, base_model=name_or_path))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **backbone_kwargs) -> "ScoreOutput":
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, **backbone_kwargs
        ).last_hidden_state  # (B, L, H)
        token_scores = self.score_head(hidden).squeeze(-1)  # (B, L)
        if self.score_config.pooling == "mean":
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, H)
            end_scores = self.score_head(pooled).squeeze(-1)  # (B,)
        else:
            index = end_index(attention_mask)  # (B,)
            end_scores = token_scores.gather(1, index.unsqueeze(1)).squeeze(1)  # (B,)
        return ScoreOutput(token_scores=token_scores.float(), end_scores=end_scores.float())

    def normalize(self, scores: torch.Tensor, mode: Literal["none", "scale", "affine"] = "none") -> torch.Tensor:
        """``scale``: s / std (keeps the sign, so cost > 0 still means unsafe); ``affine``: (s - mean) / std."""
        std = max(self.score_config.score_std, 1e-6)
        if mode == "scale":
            return scores / std
        if mode == "affine":
            return (scores - self.score_config.score_mean) / std
        return scores

    # ----------------------------------------------------------------------------------------
    def save_pretrained(self, folder: str | Path, tokenizer=None) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        backbone = self.backbone
        if hasattr(backbone, "merge_and_unload"):  # peft: merge a copy, keep training adapters intact
            import copy

            backbone = copy.deepcopy(backbone).merge_and_unload()
        state = {f"backbone.{k}": v.detach().contiguous().cpu() for k, v in backbone.state_dict().items()}
        state.update({f"score_head.{k}": v.detach().contiguous().cpu() for k, v in self.score_head.state_dict().items()})
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
        backbone.config.save_pretrained(folder)
        (folder / SCORE_CONFIG).write_text(json.dumps(asdict(self.score_config), indent=2))
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)

    @classmethod
    def from_pretrained(cls, folder: str | Path, trust_remote_code: bool = False,
                        dtype: torch.dtype = torch.float32) -> "ScoreModel":
        """A saved score model in ``dtype`` (float32 for training; bf16 for a frozen scorer,
        :mod:`saferlhf.models.precision`)."""
        folder = Path(builtin.resolve(str(folder)))
        if not (folder / SCORE_CONFIG).exists():
            raise FileNotFoundError(f"{folder}: not a saferlhf score model folder (no {SCORE_CONFIG})")
        score_config = ScoreConfig(**json.loads((folder / SCORE_CONFIG).read_text()))
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
        backbone = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
        model = cls(backbone, score_config)
        state = load_file(str(folder / "model.safetensors"))
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if "rotary_emb" not in k and "position_ids" not in k]
        unexpected = [k for k in unexpected if not k.startswith("backbone.pooler.")]  # folders saved with it
        if missing or unexpected:
            raise ValueError(f"{folder}: weights do not match the model (missing {missing[:5]}, unexpected {unexpected[:5]})")
        return model.to(dtype).eval()


@dataclass
class ScoreOutput:
    token_scores: torch.Tensor  # (B, L): score at every position (critic values)
    end_scores: torch.Tensor  # (B,): sequence score
