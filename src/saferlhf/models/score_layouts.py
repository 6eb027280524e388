"""The folder layouts a reward or cost model is read from, and the standard one it is written in.

Every layout is the same model: a backbone, a linear head ``score_t = w · h_t (+ b)`` and the score read
at the last non-padding token (Safe RLHF section 2; OpenRLHF and TRL alike). They differ in names:

========================  ==========================================  =================================
layout                    weights                                     head, statistics, kind
========================  ==========================================  =================================
``hf-sequence-classif.``  ``<prefix>.*`` + ``score.weight``           ``config.json``: ``architectures:
(written here; TRL)                                                   [XxxForSequenceClassification]``,
                                                                      one label; ``saferlhf`` block
``openrlhf``              ``<prefix>.*`` + ``value_head.weight``      ``config.mean`` / ``config.std``
                          (or ``score.weight``, no ForSeq... arch)
``beaver`` (PKU           ``model.*`` + ``score_head.weight``         ``score_dim: 1``, ``score_type``
safe-rlhf LlamaForScore)  (+ ``score_head.bias`` when ``bias``)       reward|cost, ``mean`` / ``var``
``saferlhf-legacy``       ``backbone.*`` + ``score_head.*``           ``score_config.json``
========================  ==========================================  =================================

``<prefix>`` is the architecture's ``base_model_prefix`` (``model`` for Llama, Qwen, Mistral), which
``AutoModel.from_pretrained`` strips itself. The standard folder is written only where it is exact:
a decoder read at its last token with a bias-free head (an encoder read by its mean hidden state has no
Hugging Face class that does the same, and is written in the legacy layout). Hugging Face's class reads
the score at the rightmost token that is not ``pad_token_id``; when the tokenizer pads with its eos
token (which ends every scored answer) the saved tokenizer gets a distinct pad token
(:func:`distinct_pad_token`), so ``AutoModelForSequenceClassification`` scores the same token.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

LEGACY_CONFIG = "score_config.json"
SETTINGS_KEY = "saferlhf"  # the project's block in config.json
COST_SIGN = "cost > 0 means unsafe (higher = more harmful); reward: higher = more helpful"
HEAD_PREFIXES = {"hf-sequence-classification": "score", "openrlhf": "value_head", "beaver": "score_head"}


# ---------------------------------------------------------------------------------------------
# Reading

def weight_files(folder: Path) -> list[Path]:
    """The safetensors (or ``weights_only`` pickle) files of a folder, shards included."""
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index).exists():
            weight_map = json.loads((folder / index).read_text())["weight_map"]
            return [folder / name for name in sorted(set(weight_map.values()))]
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (folder / single).exists():
            return [folder / single]
    raise FileNotFoundError(f"{folder}: no model.safetensors or pytorch_model.bin (nor a sharded .index.json)")


def read_tensors(folder: Path, wanted) -> dict[str, torch.Tensor]:
    """Tensors whose name satisfies ``wanted(name)``; safetensors read lazily, pickles with weights_only."""
    tensors: dict[str, torch.Tensor] = {}
    for file in weight_files(folder):
        if file.suffix == ".safetensors":
            with safe_open(str(file), framework="pt") as handle:
                tensors.update({name: handle.get_tensor(name) for name in handle.keys() if wanted(name)})
        else:
            state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
            tensors.update({name: value for name, value in state.items() if wanted(name)})
    return tensors


def weight_names(folder: Path) -> set[str]:
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index).exists():
            return set(json.loads((folder / index).read_text())["weight_map"])
    file = weight_files(folder)[0]
    if file.suffix == ".safetensors":
        with safe_open(str(file), framework="pt") as handle:
            return set(handle.keys())
    return set(torch.load(file, map_location="cpu", weights_only=True, mmap=True))


def detect(folder: Path) -> tuple[str, dict]:
    """``(layout, settings)``: the layout's name and the ScoreConfig fields its config carries."""
    if (folder / LEGACY_CONFIG).exists():
        return "saferlhf-legacy", json.loads((folder / LEGACY_CONFIG).read_text())
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder}: not a score model folder (no config.json nor {LEGACY_CONFIG})")
    config = json.loads((folder / "config.json").read_text())
    names = weight_names(folder)
    architecture = (config.get("architectures") or [""])[0]
    if architecture.endswith("ForSequenceClassification"):
        labels = config.get("num_labels") or len(config.get("id2label") or {0: "", 1: ""})  # HF's default: 2
        if labels != 1:
            raise ValueError(f"{folder}/config.json: {architecture} with {labels} labels; a score model has one")
        if "score.weight" not in names:
            heads = sorted(n for n in names if n.startswith(("classifier.", "pooler.", "score.")))
            raise ValueError(f"{folder}: {architecture} without a bias-free 'score' head (found {heads[:4]}); "
                             "encoder classifiers (pooler + classifier) are not read as score models")
        return "hf-sequence-classification", _settings(config.get(SETTINGS_KEY) or {}, "reward")
    if architecture.endswith("ForScore") or "score_head.weight" in names:
        if config.get("score_dim", 1) != 1:
            raise ValueError(f"{folder}/config.json: score_dim={config['score_dim']}; only one score is read")
        var = config.get("var")
        return "beaver", {"kind": config.get("score_type", "reward"), "pooling": "last",
                          "score_mean": float(_first(config.get("mean"), 0.0)),
                          "score_std": math.sqrt(float(_first(var, 1.0)))}
    for head in ("value_head", "score"):
        if f"{head}.weight" in names:
            return "openrlhf", {"kind": "reward", "pooling": "last", "score_mean": float(config.get("mean", 0.0)),
                                "score_std": float(config.get("std", 1.0)), "_head": head}
    raise ValueError(f"{folder}: no score head found (looked for score.weight, value_head.weight, score_head.weight "
                     f"and {LEGACY_CONFIG}); architectures={config.get('architectures')}")


def head_state(folder: Path, layout: str, settings: dict) -> dict[str, torch.Tensor]:
    """``{"weight": (1, H), "bias": (1,)?}`` of the layout's head."""
    prefix = settings.pop("_head", None) or HEAD_PREFIXES[layout]
    tensors = read_tensors(folder, lambda name: name.startswith(prefix + "."))
    head = {name[len(prefix) + 1:]: value for name, value in tensors.items()}
    if "weight" not in head or head["weight"].dim() != 2 or head["weight"].size(0) != 1:
        raise ValueError(f"{folder}: {prefix}.weight must have shape (1, hidden); found "
                         f"{tuple(head['weight'].shape) if 'weight' in head else 'nothing'}")
    return head


def _first(value, default: float) -> float:
    if value is None:
        return default
    return value[0] if isinstance(value, (list, tuple)) else value


def _settings(block: dict, kind: str) -> dict:
    allowed = ("kind", "pooling", "score_mean", "score_std", "base_model")
    return {"kind": kind, "pooling": "last", **{k: v for k, v in block.items() if k in allowed}}


# ---------------------------------------------------------------------------------------------
# Writing

def sequence_classification_class(config):
    """``XxxForSequenceClassification`` for a backbone config, or None where transformers has none."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

    try:
        return MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING[type(config)]
    except KeyError:
        return None


def write_standard(folder: Path, backbone: nn.Module, head: nn.Linear, settings: dict, tokenizer=None) -> bool:
    """Write ``backbone`` + ``head`` as an ``AutoModelForSequenceClassification`` folder (one label); False
    (nothing written) where that class would not compute the same score (see the module docstring)."""
    cls = sequence_classification_class(backbone.config)
    if cls is None or head.bias is not None or settings.get("pooling") != "last":
        return False
    config = copy.deepcopy(backbone.config)
    config.architectures = [cls.__name__]
    config.num_labels = 1
    with torch.device("meta"):
        probe = cls(copy.deepcopy(config))
    score = getattr(probe, "score", None)
    if not isinstance(score, nn.Linear) or score.bias is not None:
        return False
    state = {f"{probe.base_model_prefix}.{k}": v.detach().contiguous().cpu() for k, v in backbone.state_dict().items()}
    state["score.weight"] = head.weight.detach().contiguous().cpu()
    if set(state) != set(probe.state_dict()):
        return False
    if tokenizer is not None:
        tokenizer = copy.deepcopy(tokenizer)
        pad_id = distinct_pad_token(tokenizer)
        if pad_id is not None and pad_id != tokenizer.pad_token_id:
            tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad_id)
        config.pad_token_id = tokenizer.pad_token_id
        if pad_id is None:
            print(f"[saferlhf] {folder}: the tokenizer pads with its eos token and has no spare special token; "
                  "AutoModelForSequenceClassification reads such a folder's score one token early", flush=True)
    setattr(config, SETTINGS_KEY, {**settings, "cost_sign": COST_SIGN, "layout_version": 1})
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    (folder / LEGACY_CONFIG).unlink(missing_ok=True)  # an older save in the same folder would shadow this one
    return True


def distinct_pad_token(tokenizer) -> int | None:
    """A pad token id that never ends a scored text: the tokenizer's own unless it is the eos token, else
    the first special token absent from a rendered conversation; None when there is none."""
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return tokenizer.pad_token_id
    from saferlhf.data.templates import encode

    used = set(encode(tokenizer, "Hello?", "Hi, how can I help?", 64).input_ids)
    used.update(i for i in (tokenizer.eos_token_id, tokenizer.bos_token_id) if i is not None)
    candidates = [tokenizer.unk_token_id, *tokenizer.all_special_ids]
    return next((i for i in candidates if i is not None and i not in used), None)
