"""experiments/hooks_vs_weights.py on the tiny model: the saved orthogonalised model matches the hooks."""

from __future__ import annotations

from . import load_script


def test_script_on_the_tiny_model():
    result = load_script("hooks_vs_weights").main(["--model", "tiny-llama", "--layer", "1", "--prompts", "2"])
    assert result["prompts"] == 4 and 0 <= result["max_abs_logit_diff_hooks_vs_weights"] <= 1e-4
