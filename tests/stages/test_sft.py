"""``saferlhf sft`` on tiny-llama: one step from prompt/response rows writes a changed model."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from saferlhf.cli import main
from saferlhf.models.loading import load_causal_lm


def test_one_sft_step_on_tiny_llama(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"prompt": f"Question {i}?", "response": f"Answer {i}."}) + "\n"
                            for i in range(4)))
    out = tmp_path / "sft"
    assert main(["sft", "model.name_or_path=tiny-llama", f"train_data=[{rows}]", "train.batch_size=2",
                 "train.max_steps=1", "train.save_steps=0", "train.warmup_ratio=0.0", "train.learning_rate=1e-3",
                 "max_length=64", f"output_dir={out}"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_steps"] == 1 and metrics["num_train_examples"] == 4
    card = (out / "README.md").read_text()
    assert "Supervised fine-tuned" in card and "tiny-llama" in card and str(rows) in card and "train_loss" in card
    trained, base = load_file(str(out / "model.safetensors")), load_causal_lm("tiny-llama").state_dict()
    assert any(not torch.equal(tensor, base[name]) for name, tensor in trained.items())
