"""Load tokenizers, causal LMs and encoder backbones by built-in name, hub id or local folder.

Weights are read from safetensors only and ``trust_remote_code`` is off unless the config turns
it on. LoRA adapters come from peft.
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from saferlhf.config import LoraConfig
from saferlhf.models import builtin


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False,
                   padding_side: str = "right") -> PreTrainedTokenizerBase:
    """Tokenizer with a pad token (falls back to eos, or ``[SEP]`` for BERT-style tokenizers)."""
    tokenizer = AutoTokenizer.from_pretrained(builtin.resolve(name_or_path), trust_remote_code=trust_remote_code)
    if tokenizer.eos_token is None and tokenizer.sep_token is not None:
        tokenizer.eos_token = tokenizer.sep_token  # BERT has no eos; TRL and our collators need one
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def is_decoder(name_or_path: str, trust_remote_code: bool = False) -> bool:
    """True for causal-LM architectures (Llama, GPT-2, ...), False for encoders (BERT, ...)."""
    config = AutoConfig.from_pretrained(builtin.resolve(name_or_path), trust_remote_code=trust_remote_code)
    return bool(getattr(config, "is_decoder", False)) or any(
        arch.endswith("ForCausalLM") for arch in (config.architectures or [])
    ) or config.model_type in {"llama", "gpt2", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "gpt_neox"}


def load_causal_lm(name_or_path: str, trust_remote_code: bool = False,
                   dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A causal LM in ``dtype`` (float32 by default: training keeps fp32 master weights)."""
    return AutoModelForCausalLM.from_pretrained(
        builtin.resolve(name_or_path), trust_remote_code=trust_remote_code, dtype=dtype, use_safetensors=True
    )


def inference_device() -> torch.device:
    """Where evaluation runs a model: the first CUDA device when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_backbone(name_or_path: str, trust_remote_code: bool = False,
                  dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The base model without its LM head (``AutoModel``): the trunk of a score model."""
    return AutoModel.from_pretrained(
        builtin.resolve(name_or_path), trust_remote_code=trust_remote_code, dtype=dtype, use_safetensors=True
    )


def apply_lora(model: torch.nn.Module, lora: LoraConfig, task_type: str | None = None) -> torch.nn.Module:
    """Wrap ``model`` with LoRA adapters when ``lora.enabled``; returns the model unchanged otherwise."""
    if not lora.enabled:
        return model
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    targets = lora.target_modules if lora.target_modules == "all-linear" else [
        name.strip() for name in lora.target_modules.split(",") if name.strip()
    ]
    peft_config = PeftLoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets, task_type=task_type
    )
    return get_peft_model(model, peft_config)
