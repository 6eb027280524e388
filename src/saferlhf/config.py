"""One configuration schema for every stage.

Every stage's configuration is a tree of dataclasses. Shared sections (``ModelConfig``,
``TrainConfig``, ``DataConfig``, ``LoraConfig``) live here; a stage composes them into its own
top-level dataclass next to the stage's code. ``load_config`` reads a YAML file, applies
``key=value`` overrides (dotted keys reach nested sections: ``train.learning_rate=1e-5``) and
validates types, literals and ranges, raising :class:`ConfigError` that names the bad key.

Each field's docstring is the string in its ``metadata["help"]``; defaults are the reference
implementation's values (PKU-Alignment/safe-rlhf scripts) unless a comment says otherwise.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


def doc(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with a one-line docstring kept in its metadata."""
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        factory = (lambda d=default: _copy(d))
        return field(default_factory=factory, metadata={"help": help}, **kwargs)
    return field(default=default, metadata={"help": help}, **kwargs)


def _copy(value: Any) -> Any:
    import copy

    return copy.deepcopy(value)


@dataclass
class LoraConfig:
    """LoRA adapters (peft) on the backbone; off by default (full fine-tuning)."""

    enabled: bool = doc(False, "Train LoRA adapters instead of all backbone weights.")
    r: int = doc(16, "LoRA rank.")
    alpha: int = doc(32, "LoRA scaling numerator (scale = alpha / r).")
    dropout: float = doc(0.05, "Dropout on the LoRA branch.")
    target_modules: str = doc("all-linear", "Modules to adapt: 'all-linear' or comma-separated names.")

    def validate(self, prefix: str) -> None:
        _check(self.r > 0, prefix + "r", "must be > 0")
        _check(0.0 <= self.dropout < 1.0, prefix + "dropout", "must be in [0, 1)")


@dataclass
class ModelConfig:
    """Which pretrained model to start from."""

    name_or_path: str = doc("smollm2-135m-instruct", "Built-in name, Hugging Face id or local folder.")
    trust_remote_code: bool = doc(False, "Allow code from the model repository to run (off: safe default).")
    lora: LoraConfig = doc(LoraConfig(), "LoRA settings.")
    attn_implementation: str = doc("", "'' (transformers' default) | eager | sdpa | flash_attention_2 | "
                                       "flash_attention_3 | flex_attention.")
    load_in_4bit: bool = doc(False, "Load the weights in 4-bit NF4 (bitsandbytes, CUDA) for QLoRA; needs lora.enabled.")
    load_in_8bit: bool = doc(False, "Load the weights in 8-bit (bitsandbytes, CUDA); needs lora.enabled to train.")

    def validate(self, prefix: str) -> None:
        _check(bool(self.name_or_path), prefix + "name_or_path", "must not be empty")
        self.lora.validate(prefix + "lora.")
        _check(not (self.load_in_4bit and self.load_in_8bit), prefix + "load_in_4bit",
               "load_in_4bit and load_in_8bit exclude each other")
        _check(not (self.load_in_4bit or self.load_in_8bit) or self.lora.enabled, prefix + "load_in_4bit",
               "quantised weights cannot be trained: set lora.enabled (QLoRA)")
        try:
            from saferlhf.models.loading import model_load_kwargs

            model_load_kwargs(self.attn_implementation, self.load_in_4bit, self.load_in_8bit)
        except ValueError as error:
            raise ConfigError(f"{prefix}{error}") from None


@dataclass
class HubConfig:
    """Upload the saved model folder (with its model card) to the Hugging Face Hub; needs a network and a
    token (``huggingface-cli login`` or ``HF_TOKEN``)."""

    push_to_hub: bool = doc(False, "Upload the model folder when the stage has saved it.")
    hub_model_id: str = doc("", "Repository owner/name to create or update (required with push_to_hub).")
    hub_private: bool = doc(True, "Create the repository as private.")

    def validate(self, prefix: str) -> None:
        _check(not self.push_to_hub or bool(self.hub_model_id), prefix + "hub_model_id",
               "must be set (owner/name) when push_to_hub is true")
        _check(not self.hub_model_id or self.hub_model_id.count("/") == 1, prefix + "hub_model_id",
               f"must be owner/name, got {self.hub_model_id!r}")


@dataclass
class DataSource:
    """One preference or prompt data source."""

    path: str = doc("", "Local file/folder or Hugging Face dataset id.")
    format: str = doc("auto", "auto | pku-saferlhf (= decoupled) | hh-rlhf | hh-rlhf-harmless | hh-rlhf-helpful "
                              "| trl | trl-harmless | trl-unpaired | beavertails | prompts (see docs/data.md)")
    split: str = doc("", "Split to read for dataset ids / folders ('' = the source's default).")
    limit: int = doc(0, "Read at most this many records (0 = all).")

    def validate(self, prefix: str) -> None:
        _check(bool(self.path), prefix + "path", "must not be empty")
        _check(self.limit >= 0, prefix + "limit", "must be >= 0")


@dataclass
class DataConfig:
    """Training and evaluation data."""

    train: list[DataSource] = doc([], "Training sources (records concatenated).")
    eval: list[DataSource] = doc([], "Evaluation sources; empty = split `eval_fraction` off the train data.")
    eval_fraction: float = doc(0.2, "Held-out share when no eval source is given (seeded split).")
    split_seed: int = doc(42, "Seed of the train/eval split.")
    max_length: int = doc(512, "Maximum tokens of prompt + response (prompt truncated from the left).")
    invalid_rows: Literal["error", "drop", "keep"] = doc("drop", "What to do with rows that fail validation.")

    def validate(self, prefix: str) -> None:
        _check(0.0 <= self.eval_fraction < 1.0, prefix + "eval_fraction", "must be in [0, 1)")
        _check(self.max_length > 8, prefix + "max_length", "must be > 8")
        for i, source in enumerate(self.train):
            source.validate(f"{prefix}train[{i}].")
        for i, source in enumerate(self.eval):
            source.validate(f"{prefix}eval[{i}].")


@dataclass
class TrainConfig:
    """Optimisation settings shared by every training stage."""

    epochs: float = doc(2.0, "Passes over the training data (fractions allowed).")
    max_steps: int = doc(0, "Stop after this many optimiser steps (0 = use epochs).")
    learning_rate: float = doc(2e-5, "Peak learning rate.")
    weight_decay: float = doc(0.1, "AdamW weight decay.")
    batch_size: int = doc(16, "Examples (pairs for score models) per process per micro-batch.")
    eval_batch_size: int = doc(32, "Examples per process per evaluation batch.")
    gradient_accumulation_steps: int = doc(1, "Micro-batches per optimiser step.")
    lr_scheduler: Literal["cosine", "linear", "constant"] = doc("cosine", "Learning-rate schedule.")
    warmup_ratio: float = doc(0.03, "Share of steps with linear warm-up.")
    max_grad_norm: float = doc(1.0, "Gradient clipping norm (0 = off).")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = doc(
        "auto", "auto = bf16 autocast where the hardware has bf16 (GPU, AVX512-BF16/AMX CPU), else fp32."
    )
    seed: int = doc(42, "Random seed.")
    logging_steps: int = doc(10, "Write a log.jsonl line every N optimiser steps.")
    eval_steps: int = doc(0, "Evaluate every N optimiser steps (0 = only at the end).")
    save_steps: int = doc(0, "Write a resumable checkpoint every N steps (0 = only the final model).")
    num_threads: int = doc(0, "torch CPU threads (0 = torch default).")
    gradient_checkpointing: bool = doc(False, "Recompute activations in the backward pass instead of keeping them "
                                              "(less memory, about a third more compute).")

    def validate(self, prefix: str) -> None:
        _check(self.epochs > 0 or self.max_steps > 0, prefix + "epochs", "must be > 0 (or set max_steps)")
        for key in ("epochs", "learning_rate", "weight_decay", "max_grad_norm", "warmup_ratio"):
            _check(math.isfinite(getattr(self, key)), prefix + key, "must be a finite number")
        for key in ("max_steps", "weight_decay", "max_grad_norm", "eval_steps", "save_steps", "num_threads"):
            _check(getattr(self, key) >= 0, prefix + key, "must be >= 0")
        _check(self.learning_rate > 0, prefix + "learning_rate", "must be > 0")
        _check(self.batch_size > 0, prefix + "batch_size", "must be > 0")
        _check(self.eval_batch_size > 0, prefix + "eval_batch_size", "must be > 0")
        _check(self.gradient_accumulation_steps > 0, prefix + "gradient_accumulation_steps", "must be > 0")
        _check(0.0 <= self.warmup_ratio < 1.0, prefix + "warmup_ratio", "must be in [0, 1)")
        _check(self.logging_steps > 0, prefix + "logging_steps", "must be > 0")


# --------------------------------------------------------------------------------------------
# Loading machinery


def _check(ok: bool, key: str, reason: str) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}': {reason}")


def load_config(cls: type, path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict | None = None):
    """Build ``cls`` from an optional YAML file, optional base dict and ``key=value`` overrides."""
    data: dict = dict(base or {})
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            loaded = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
        except UnicodeDecodeError as error:
            raise ConfigError(f"{path}: not UTF-8 text (byte {error.start})") from None
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: invalid YAML: {error}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping of keys, got {type(loaded).__name__}")
        data = _merge(data, loaded)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.load(raw, Loader=_UniqueKeyLoader) if raw != "" else ""
        except yaml.YAMLError as error:
            raise ConfigError(f"override '{key.strip()}': invalid YAML value {raw!r} "
                              f"({getattr(error, 'problem', None) or error})") from None
        _set_dotted(data, key.strip(), value)
    try:
        config = from_dict(cls, data)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    return config


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _set_dotted(data: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{key}': '{part}' is not a section")
    node[parts[-1]] = value


def from_dict(cls: type, data: Any, prefix: str = ""):
    """Recursively build dataclass ``cls`` from ``data``, checking keys and types."""
    if not isinstance(data, dict):
        raise ConfigError(f"config key '{prefix.rstrip('.') or '<root>'}': expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}' (valid keys here: {', '.join(sorted(fields))})"
        )
    kwargs = {name: _convert(hints[name], _onto_default(fields[name], value), prefix + name)
              for name, value in data.items()}
    instance = cls(**kwargs)
    if prefix == "" and hasattr(instance, "validate"):
        instance.validate("")
    return instance


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def _onto_default(f: dataclasses.Field, value: Any) -> Any:
    """A partial section (``train: {epochs: 3}``) overrides the field's own default section, key by key, so a
    stage's section defaults (e.g. ``doc(TrainConfig(learning_rate=5e-5), ...)``) survive partial overrides."""
    default = _field_default(f)
    if dataclasses.is_dataclass(default) and isinstance(value, dict):
        return _merge(dataclasses.asdict(default), value)
    return value


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _convert(non_none[0], value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"config key '{key}': {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        return [_convert(args[0], item, f"{key}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        return {k: _convert(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, str) and tp is DataSource:
            value = {"path": value}
        return from_dict(tp, value, key + ".")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
        return str(value)
    return value


def validate_sections(config: Any, prefix: str = "") -> None:
    """Call ``validate(prefix)`` on every direct dataclass section of ``config`` that has one."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and hasattr(value, "validate"):
            value.validate(f"{prefix}{f.name}.")


def to_dict(config: Any) -> dict:
    """Plain-dict view of a config (for saving next to the outputs)."""
    return dataclasses.asdict(config)


def describe(cls: Any, prefix: str = "") -> list[str]:
    """One line per key with its default and docstring (``saferlhf COMMAND --help-config``)."""
    lines = []
    for f in dataclasses.fields(cls):
        default = getattr(cls, f.name) if not isinstance(cls, type) else _field_default(f)
        if dataclasses.is_dataclass(default):
            lines += describe(default, prefix + f.name + ".")  # the section's own defaults, not its class's
        else:
            lines.append(f"{prefix}{f.name} = {default!r}  # {f.metadata.get('help', '')}")
    return lines
