"""``saferlhf env``: what a bug report needs: versions, devices, threads, bf16 support, the precision
that ``precision: auto`` picks here, and the built-in models' state."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from saferlhf.config import doc

PACKAGES = ("saferlhf", "torch", "transformers", "accelerate", "peft", "trl", "datasets", "safetensors", "tokenizers",
            "deepspeed", "vllm", "tensorboard", "wandb", "trackio")


@dataclass
class EnvConfig:
    """Configuration of ``saferlhf env``."""

    output: str = doc("", "Also write the report as JSON to this file ('' = print only).")

    def validate(self, prefix: str) -> None:
        pass


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def report() -> dict:
    import torch

    from saferlhf.models import builtin
    from saferlhf.models.precision import cpu_supports_bf16, resolve_precision

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {
        "python": sys.version.split()[0], "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
        "cpu": {"model": _cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                "capability": torch.backends.cpu.get_cpu_capability(), "bf16_native": cpu_supports_bf16()},
        "cuda": {"available": torch.cuda.is_available(), "version": torch.version.cuda, "devices": gpus,
                 "bf16": bool(gpus) and torch.cuda.is_bf16_supported()},
        "precision_auto": resolve_precision("auto"),
        "environment": {key: os.environ[key] for key in ("OMP_NUM_THREADS", "SAFERLHF_CACHE", "SAFERLHF_NO_BF16",
                                                         "HF_HUB_OFFLINE", "CUDA_VISIBLE_DEVICES") if key in os.environ},
        "builtin_model_cache": str(builtin.cache_dir()),
    }


def run(config: EnvConfig) -> dict:
    result = report()
    width = max(len(name) for name in PACKAGES)
    lines = [f"python {result['python']} on {result['platform']}"]
    lines += [f"  {name:<{width}}  {version}" for name, version in result["packages"].items()]
    cpu, cuda = result["cpu"], result["cuda"]
    lines.append(f"cpu: {cpu['model']}, {cpu['cores']} cores, torch threads {cpu['torch_threads']}, "
                 f"{cpu['capability']}, native bf16: {'yes' if cpu['bf16_native'] else 'no'}")
    lines.append(f"cuda: {', '.join(cuda['devices']) if cuda['devices'] else 'none'}"
                 + (f" (CUDA {cuda['version']}, bf16: {'yes' if cuda['bf16'] else 'no'})" if cuda["devices"] else ""))
    lines.append(f"precision: auto -> {result['precision_auto']}")
    lines += [f"env {key}={value}" for key, value in result["environment"].items()]
    print("\n".join(lines), flush=True)
    if config.output:
        Path(config.output).write_text(json.dumps(result, indent=2) + "\n")
    return {}
