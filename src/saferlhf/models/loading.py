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


ATTN_IMPLEMENTATIONS = ("", "eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")


def model_load_kwargs(attn_implementation: str = "", load_in_4bit: bool = False,
                      load_in_8bit: bool = False) -> dict:
    """``from_pretrained`` keyword arguments for the loading options of :class:`saferlhf.config.ModelConfig`,
    each checked here with a clear error: ``attn_implementation`` ('' = transformers' default), and 4-bit
    (NF4, double quantisation, bf16 compute, as QLoRA: Dettmers et al. 2023) or 8-bit weights through
    bitsandbytes, which needs the package and a CUDA device."""
    if attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"attn_implementation={attn_implementation!r}: must be one of {ATTN_IMPLEMENTATIONS}")
    if attn_implementation.startswith("flash_attention"):
        import importlib.util

        package = "flash_attn_interface" if attn_implementation.endswith("3") else "flash_attn"
        if importlib.util.find_spec(package) is None or not torch.cuda.is_available():
            raise ValueError(f"attn_implementation={attn_implementation}: needs the {package} package and a CUDA "
                             "device (use sdpa or eager here)")
    kwargs: dict = {"attn_implementation": attn_implementation} if attn_implementation else {}
    if load_in_4bit and load_in_8bit:
        raise ValueError("load_in_4bit and load_in_8bit: choose one")
    if load_in_4bit or load_in_8bit:
        import importlib.util

        key = "load_in_4bit" if load_in_4bit else "load_in_8bit"
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ValueError(f"{key}: needs bitsandbytes (pip install bitsandbytes), which is not installed")
        if not torch.cuda.is_available():
            raise ValueError(f"{key}: bitsandbytes quantisation needs a CUDA device; none is available")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16) if load_in_4bit else BitsAndBytesConfig(load_in_8bit=True)
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    return kwargs


def load_options(model_config) -> dict:
    """The loading options of a :class:`saferlhf.config.ModelConfig` (keywords for :func:`model_load_kwargs`)."""
    return {"attn_implementation": model_config.attn_implementation, "load_in_4bit": model_config.load_in_4bit,
            "load_in_8bit": model_config.load_in_8bit}


def load_causal_lm(name_or_path: str, trust_remote_code: bool = False,
                   dtype: torch.dtype = torch.float32, **options) -> torch.nn.Module:
    """A causal LM in ``dtype`` (float32 by default: training keeps fp32 master weights); ``options``:
    :func:`model_load_kwargs`."""
    return AutoModelForCausalLM.from_pretrained(
        builtin.resolve(name_or_path), trust_remote_code=trust_remote_code, dtype=dtype, use_safetensors=True,
        **model_load_kwargs(**options))


def causal_lm_for(model_config, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The causal LM a :class:`saferlhf.config.ModelConfig` names, with its loading options."""
    return load_causal_lm(model_config.name_or_path, model_config.trust_remote_code, dtype, **load_options(model_config))


def inference_device() -> torch.device:
    """Where evaluation runs a model: the first CUDA device when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_backbone(name_or_path: str, trust_remote_code: bool = False,
                  dtype: torch.dtype = torch.float32, **options) -> torch.nn.Module:
    """The base model without its LM head (``AutoModel``): the trunk of a score model."""
    return AutoModel.from_pretrained(
        builtin.resolve(name_or_path), trust_remote_code=trust_remote_code, dtype=dtype, use_safetensors=True,
        **model_load_kwargs(**options))


def apply_lora(model: torch.nn.Module, lora: LoraConfig, task_type: str | None = None) -> torch.nn.Module:
    """Wrap ``model`` with LoRA adapters when ``lora.enabled``; returns the model unchanged otherwise."""
    if not lora.enabled:
        return model
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model, prepare_model_for_kbit_training

    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)  # QLoRA (Dettmers 2023)

    targets = lora.target_modules if lora.target_modules == "all-linear" else [
        name.strip() for name in lora.target_modules.split(",") if name.strip()
    ]
    peft_config = PeftLoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets, task_type=task_type
    )
    return get_peft_model(model, peft_config)
