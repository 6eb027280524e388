"""Shared fixtures: the read-only benchmark folder ``../shared/data`` and a small-model cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SAFERLHF_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (public benchmarks); tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"public benchmark folder {SHARED_DATA} is absent (set SAFERLHF_SHARED_DATA to point at it)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _few_threads(monkeypatch):
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def refusal_token_model(tmp_path_factory):
    """``(folder, sft metrics)`` of a tiny model trained with refusal tokens (tests/refusal_token_model.py)."""
    from refusal_token_model import train_refusal_token_model

    return train_refusal_token_model(tmp_path_factory.mktemp("refusal-token-sft"))
