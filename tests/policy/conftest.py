"""Fixtures of the policy tests: the toy task's model and prompts (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .toy_task import build_toy_model, write_prompts


@pytest.fixture(scope="session")
def toy_model(tmp_path_factory) -> Path:
    """The toy task's 1-layer Llama "SFT model" and its 13-token tokenizer (see toy_task.py)."""
    return build_toy_model(tmp_path_factory.mktemp("toy") / "model")


@pytest.fixture(scope="session")
def toy_prompts(tmp_path_factory) -> Path:
    return write_prompts(tmp_path_factory.mktemp("toy-prompts") / "prompts.jsonl")
