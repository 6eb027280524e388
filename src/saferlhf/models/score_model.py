"""Score model: a backbone (decoder or encoder) plus a scalar head.

Safe RLHF section 2: ``score_t = w · h_t + b`` for every token ``t`` (the per-token scores are the
values of a critic); the sequence score is the value at the last non-padding token. The index of
that token is ``argmax_t(mask_t · t)``, which is right for left padding (last position) and right
padding (``sum(mask) - 1``) alike. ``pooling="mean"`` instead scores the mask-weighted mean hidden
state, which suits small bidirectional encoders such as MiniLM.

A saved score model is a standard Hugging Face sequence-classification folder (one label, loadable
with ``AutoModelForSequenceClassification``, TRL, OpenRLHF and reward-bench; the project's statistics
and the cost-sign convention in ``config.json["saferlhf"]``), written where that class computes the same
score; otherwise (an encoder read by its mean) the project's legacy layout. :meth:`from_pretrained`
reads those, TRL and OpenRLHF reward models and PKU's Beaver ``LlamaForScore`` folders, by path or hub
id (:mod:`saferlhf.models.score_layouts`). LoRA adapters are merged into the backbone on save, so a
folder always loads without peft.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel
from transformers.utils import logging as hf_logging

from saferlhf.models import builtin, score_layouts
from saferlhf.models.loading import is_decoder, load_backbone, model_load_kwargs

SCORE_CONFIG = score_layouts.LEGACY_CONFIG


@dataclass
class ScoreConfig:
    """What is saved beside the weights in ``score_config.json``."""

    kind: str = "reward"  # "reward" (helpfulness, higher = better) or "cost" (> 0 means unsafe)
    pooling: Literal["last", "mean"] = "last"
    score_mean: float = 0.0  # statistics of training-set scores, for normalisation
    score_std: float = 1.0
    base_model: str = ""
    head_bias: bool = True  # False for decoders read at their last token (TRL, OpenRLHF, PKU: bias-free head)
    layout: str = field(default="saferlhf-legacy", compare=False)  # the layout it was read from (not saved)


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
        self.score_head = nn.Linear(hidden_size, 1, bias=score_config.head_bias)
        nn.init.normal_(self.score_head.weight, std=1.0 / (hidden_size + 1) ** 0.5)
        if self.score_head.bias is not None:
            nn.init.zeros_(self.score_head.bias)

    @property
    def config(self):
        return self.backbone.config

    @classmethod
    def from_backbone(cls, name_or_path: str, kind: str = "reward", pooling: str = "auto",
                      trust_remote_code: bool = False, head_bias: bool | None = None, **load_options) -> "ScoreModel":
        """Fresh head on a pretrained backbone. ``pooling="auto"``: last token for decoders, mean for encoders.
        ``head_bias=None``: a bias only for mean pooling, so a decoder saves as a standard folder.
        ``load_options``: :func:`saferlhf.models.loading.model_load_kwargs`."""
        if pooling == "auto":
            pooling = "last" if is_decoder(name_or_path, trust_remote_code) else "mean"
        backbone = load_backbone(name_or_path, trust_remote_code=trust_remote_code, **load_options)
        head_bias = pooling == "mean" if head_bias is None else head_bias
        return cls(backbone, ScoreConfig(kind=kind, pooling=pooling, base_model=name_or_path, head_bias=head_bias,
                                         layout="new"))

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
    def save_pretrained(self, folder: str | Path, tokenizer=None) -> str:
        """Write the model; returns the layout written (``hf-sequence-classification`` or ``saferlhf-legacy``)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        backbone = self.backbone
        if hasattr(backbone, "merge_and_unload"):  # peft: merge a copy, keep training adapters intact
            import copy

            backbone = copy.deepcopy(backbone).merge_and_unload()
        settings = {k: v for k, v in asdict(self.score_config).items() if k not in ("head_bias", "layout")}
        if score_layouts.write_standard(folder, backbone, self.score_head, settings, tokenizer):
            return "hf-sequence-classification"
        state = {f"backbone.{k}": v.detach().contiguous().cpu() for k, v in backbone.state_dict().items()}
        state.update({f"score_head.{k}": v.detach().contiguous().cpu() for k, v in self.score_head.state_dict().items()})
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
        backbone.config.save_pretrained(folder)
        legacy = {k: v for k, v in asdict(self.score_config).items() if k != "layout"}
        (folder / SCORE_CONFIG).write_text(json.dumps(legacy, indent=2))
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)
        return "saferlhf-legacy"

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, trust_remote_code: bool = False,
                        dtype: torch.dtype = torch.float32, kind: str | None = None, **load_options) -> "ScoreModel":
        """A saved score model in ``dtype`` (float32 for training; bf16 for a frozen scorer,
        :mod:`saferlhf.models.precision`), from a folder or hub id in any layout of
        :mod:`saferlhf.models.score_layouts`. ``kind`` overrides the folder's (TRL and OpenRLHF folders do
        not say whether they score reward or cost). ``load_options``: :func:`~saferlhf.models.loading.model_load_kwargs`."""
        folder = resolve_folder(str(name_or_path))
        layout, settings = score_layouts.detect(folder)
        if layout == "saferlhf-legacy":
            if any(load_options.get(k) for k in ("load_in_4bit", "load_in_8bit")):
                raise ValueError(f"{folder}: 4/8-bit loading needs a standard folder; re-save this legacy one first")
            model = cls._from_legacy(folder, ScoreConfig(**settings), trust_remote_code)
        else:
            head = score_layouts.head_state(folder, layout, settings)
            score_config = ScoreConfig(**settings, head_bias="bias" in head, layout=layout)
            verbosity = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()  # the head's weights are "unexpected" to AutoModel: read below
            try:
                backbone, info = AutoModel.from_pretrained(
                    folder, trust_remote_code=trust_remote_code, dtype=dtype, output_loading_info=True,
                    **model_load_kwargs(**load_options))
            finally:
                hf_logging.set_verbosity(verbosity)
            missing = [k for k in info["missing_keys"] if "rotary_emb" not in k and "position_ids" not in k]
            if missing:
                raise ValueError(f"{folder} ({layout}): backbone weights missing from the folder: {missing[:5]}")
            model = cls(backbone, score_config)
            model.score_head.load_state_dict(head)
        if kind is not None:
            model.score_config.kind = kind
        if any(load_options.get(k) for k in ("load_in_4bit", "load_in_8bit")):
            model.score_head.to(dtype)  # the quantised backbone stays as bitsandbytes left it
        else:
            model.to(dtype)
        return model.eval()

    @classmethod
    def _from_legacy(cls, folder: Path, score_config: ScoreConfig, trust_remote_code: bool) -> "ScoreModel":
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
        backbone = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
        model = cls(backbone, score_config)
        state = load_file(str(folder / "model.safetensors"))
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if "rotary_emb" not in k and "position_ids" not in k]
        unexpected = [k for k in unexpected if not k.startswith("backbone.pooler.")]  # folders saved with it
        if missing or unexpected:
            raise ValueError(f"{folder}: weights do not match the model (missing {missing[:5]}, unexpected {unexpected[:5]})")
        return model


def resolve_folder(name_or_path: str) -> Path:
    """A local folder for a built-in name, a path, or a hub id (downloaded by ``huggingface_hub`` into its
    cache: configs, tokenizer and safetensors; the ``weights_only`` pickles only when there are none)."""
    resolved = builtin.resolve(name_or_path)
    if Path(resolved).expanduser().is_dir():
        return Path(resolved).expanduser()
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "tokenizer*"]
    folder = Path(snapshot_download(resolved, allow_patterns=patterns))
    if not list(folder.glob("*.safetensors")):
        folder = Path(snapshot_download(resolved, allow_patterns=[*patterns, "*.bin"]))
    return folder


@dataclass
class ScoreOutput:
    token_scores: torch.Tensor  # (B, L): score at every position (critic values)
    end_scores: torch.Tensor  # (B,): sequence score
