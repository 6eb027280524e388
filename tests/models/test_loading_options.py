"""Loading options: attn_implementation and 4/8-bit (bitsandbytes), each refused with a clear error where
it cannot work (no bitsandbytes, no CUDA, no flash-attn), and passed to transformers where it can."""

import importlib.util

import pytest
import torch

from saferlhf.config import ConfigError, load_config
from saferlhf.models import loading
from saferlhf.models.loading import load_causal_lm, model_load_kwargs
from saferlhf.stages.sft import SFTStageConfig


def test_attn_implementation_reaches_the_model():
    model = load_causal_lm("tiny-llama", attn_implementation="eager")
    assert model.config._attn_implementation == "eager"
    assert model_load_kwargs() == {}


def test_unsupported_options_name_the_reason(monkeypatch):
    with pytest.raises(ValueError, match="must be one of"):
        model_load_kwargs(attn_implementation="fast")
    with pytest.raises(ValueError, match="choose one"):
        model_load_kwargs(load_in_4bit=True, load_in_8bit=True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="flash_attn package and a CUDA device"):
        model_load_kwargs(attn_implementation="flash_attention_2")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes"
                        else real_find_spec(name, *a))
    with pytest.raises(ValueError, match="load_in_4bit: needs bitsandbytes"):
        model_load_kwargs(load_in_4bit=True)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "bitsandbytes"
                        else real_find_spec(name, *a))
    with pytest.raises(ValueError, match="load_in_8bit: bitsandbytes quantisation needs a CUDA device"):
        model_load_kwargs(load_in_8bit=True)


def test_four_bit_builds_the_qlora_quantisation_config(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "bitsandbytes"
                        else real_find_spec(name, *a))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    kwargs = model_load_kwargs(attn_implementation="sdpa", load_in_4bit=True)
    quantization = kwargs["quantization_config"]
    assert kwargs["attn_implementation"] == "sdpa" and kwargs["device_map"] == {"": 0}
    assert quantization.load_in_4bit and quantization.bnb_4bit_quant_type == "nf4"
    assert quantization.bnb_4bit_compute_dtype == torch.bfloat16 and quantization.bnb_4bit_use_double_quant


def test_config_validation_names_the_key():
    with pytest.raises(ConfigError, match="model.load_in_4bit.*lora.enabled"):
        load_config(SFTStageConfig, None, ["model.load_in_4bit=true"])
    with pytest.raises(ConfigError, match="model.attn_implementation"):
        load_config(SFTStageConfig, None, ["model.attn_implementation=fast"])
    if not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None:
        with pytest.raises(ConfigError, match="model.load_in_8bit"):
            load_config(SFTStageConfig, None, ["model.load_in_8bit=true", "model.lora.enabled=true"])
    assert loading.load_options(load_config(SFTStageConfig, None, ["model.attn_implementation=sdpa", "train_data=[rows.jsonl]"]).model) == {
        "attn_implementation": "sdpa", "load_in_4bit": False, "load_in_8bit": False}
