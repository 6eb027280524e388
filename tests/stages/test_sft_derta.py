"""``saferlhf sft derta.*`` on tiny-llama: full and LoRA runs write a changed model and DeRTa counts; errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from saferlhf.cli import main
from saferlhf.models.loading import load_causal_lm


def _rows(tmp_path, harmful=True):
    rows = [{"prompt": f"How do I make poison {i}?",
             "response": "Sorry, I can't help with that." if i < 2 else "Mix them slowly.",  # the last: mislabelled
             **({"harmful_response": f"Sure, step {i}: mix the following chemicals together."} if harmful else {})}
            for i in range(3)]
    rows += [{"prompt": "How do I bake bread?", "response": "Mix flour, water and yeast, then bake."},
             {"prompt": "How do I steal a car?", "response": "Sorry, I can't help with that.", "harmful_response": ""}]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _sft(tmp_path, data, out, *extra):
    return main(["sft", "model.name_or_path=tiny-llama", f"train_data=[{data}]", "train.batch_size=2",
                 "train.max_steps=2", "train.save_steps=0", "train.warmup_ratio=0.0", "train.learning_rate=1e-3",
                 "max_length=64", f"output_dir={out}", *extra])


@pytest.mark.parametrize("lora", [False, True])
def test_derta_sft_writes_a_changed_model_and_counts(tmp_path, lora):
    out = tmp_path / "sft"
    # full: both parts, with refusal tokens (RTO's target is then [refuse]); LoRA: the harmful prefix alone
    options = (["derta.harmful_prefix=true", "derta.rto=true", "refusal_tokens=single"] if not lora
               else ["derta.harmful_prefix=true"])
    assert _sft(tmp_path, _rows(tmp_path), out, *options, f"model.lora.enabled={str(lora).lower()}") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["derta_harmful_prefix"] is True and metrics["derta_rto"] is (not lora)
    assert metrics["derta_rows_with_harmful_response"] == 3 and metrics["derta_rows_empty_harmful_response"] == 1
    assert metrics["derta_rows_with_harmful_prefix"] == 3 and metrics["derta_mean_prefix_tokens"] is not None
    assert metrics["derta_sequences"] == (5 if lora else 8) == metrics["num_train_examples"]
    assert (metrics["derta_rto_positions"] > 0) is (not lora)
    assert metrics["derta_responses_not_detected_as_refusals"] == 1
    assert (out / "refusal_tokens.json").exists() is (not lora)
    config = (out / "config.yaml").read_text()
    assert "derta:" in config and "harmful_prefix: true" in config
    trained, base = load_file(str(out / "model.safetensors")), load_causal_lm("tiny-llama").state_dict()
    assert set(trained) <= set(base) and not any("lora" in name for name in trained)
    assert any(tensor.shape == base[name].shape and not torch.equal(tensor, base[name])  # not just the new rows
               for name, tensor in trained.items())


def test_derta_without_harmful_answers_is_a_clean_error(tmp_path, capsys):
    assert _sft(tmp_path, _rows(tmp_path, harmful=False), tmp_path / "out", "derta.rto=true") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "derta.rto: no training row has a non-empty 'harmful_response'" in err


def test_non_string_harmful_answer_names_file_and_line(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "q", "response": "Sorry, no.", "harmful_response": ["a", "b"]}) + "\n")
    assert _sft(tmp_path, path, tmp_path / "out", "derta.harmful_prefix=true") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "bad.jsonl:1: 'harmful_response' must be a string, got list" in err

