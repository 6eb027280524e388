"""experiments/hooks_vs_weights.py on the tiny model: the saved orthogonalised model matches the hooks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "hooks_vs_weights.py"


def test_script_on_the_tiny_model():
    spec = importlib.util.spec_from_file_location("hooks_vs_weights", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--model", "tiny-llama", "--layer", "1", "--prompts", "2"])
    assert result["prompts"] == 4 and 0 <= result["max_abs_logit_diff_hooks_vs_weights"] <= 1e-4
