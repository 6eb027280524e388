"""precision: auto picks bf16 only where the hardware has it; fp32 stays one key away."""

from __future__ import annotations

import pytest
import torch

from saferlhf.models import precision


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("SAFERLHF_NO_BF16", raising=False)


@pytest.mark.parametrize("has_bf16, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_follows_the_cpu(cpu_only, monkeypatch, has_bf16, expected):
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: has_bf16)
    assert precision.resolve_precision("auto") == expected
    assert precision.resolve_precision("fp32") == "fp32"  # explicit settings are never changed
    assert precision.resolve_precision("bf16") == "bf16"


def test_environment_switch_forces_fp32(cpu_only, monkeypatch):
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: True)
    monkeypatch.setenv("SAFERLHF_NO_BF16", "1")
    assert precision.resolve_precision("auto") == "fp32"


def test_role_dtype_follows_the_run_unless_set(cpu_only, monkeypatch):
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: True)
    assert precision.role_dtype("auto", "fp32") == torch.float32
    assert precision.role_dtype("auto", "bf16") == torch.bfloat16
    assert precision.role_dtype("auto", "auto") == torch.bfloat16
    assert precision.role_dtype("fp32", "bf16") == torch.float32
    assert precision.role_dtype("bf16", "fp32") == torch.bfloat16
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.resolve_precision("fp8")


def test_accelerator_gets_bf16_autocast_on_a_bf16_cpu(cpu_only, monkeypatch):
    from saferlhf.config import TrainConfig
    from saferlhf.training.setup import mixed_precision

    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: True)
    assert mixed_precision("auto") == "bf16"
    assert mixed_precision("fp32") == "no"
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)
    assert mixed_precision("auto") == "no"
    assert TrainConfig().precision == "auto"


@pytest.mark.skipif(not precision.cpu_supports_bf16(), reason="this CPU has no AVX512-BF16 / AMX-BF16")
def test_bf16_autocast_runs_on_this_cpu():
    from saferlhf.models.loading import load_causal_lm

    model = load_causal_lm("tiny-llama")
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(input_ids=ids).logits
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()
    reference = model(input_ids=ids).logits
    assert (logits.float() - reference).abs().max() < 0.1  # bf16 keeps about 3 significant digits
