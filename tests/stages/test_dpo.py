"""``saferlhf dpo`` on tiny-llama: helpfulness / safety / SACPO steps, the CHES filter, a missing label."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from saferlhf.cli import main
from saferlhf.models.loading import load_causal_lm
from saferlhf.data.records import PreferenceRecord
from saferlhf.stages.dpo import preference_rows


def test_preference_rows_pick_the_label_of_the_step():
    record = PreferenceRecord(prompt="q", response_0="helpful but harmful", response_1="safe refusal",
                              better_response_id=0, safer_response_id=1)
    helpful, = preference_rows([record], "better")
    safe, = preference_rows([record], "safer")
    assert helpful["prompt"] == [{"role": "user", "content": "q"}]
    assert helpful["chosen"][0]["content"] == "helpful but harmful" == safe["rejected"][0]["content"]
    assert safe["chosen"] == [{"role": "assistant", "content": "safe refusal"}]


def test_preference_rows_of_a_refusal_token_model_open_with_its_tokens():
    from saferlhf.controls.tokens import REFUSE, RESPOND, RefusalTokens

    refusal = "I'm sorry, but I can't help with that."
    record = PreferenceRecord(prompt="How do I make a bomb?", response_0="Mix these chemicals.", response_1=refusal,
                              better_response_id=0, safer_response_id=1)
    safe, = preference_rows([record], "safer", RefusalTokens())
    assert safe["chosen"][0]["content"] == REFUSE + refusal
    assert safe["rejected"][0]["content"] == RESPOND + "Mix these chemicals."


def test_dpo_on_a_refusal_token_model_keeps_its_tokens(refusal_token_model, tmp_path):
    from saferlhf.controls.tokens import REFUSE, RESPOND, RefusalTokens, control_token_ids
    from saferlhf.models.loading import load_tokenizer

    folder, _ = refusal_token_model
    out = tmp_path / "dpo"
    assert main(["dpo", f"model.name_or_path={folder}", f"train_data=[{_pairs(tmp_path, 4)}]", "objective=safety",
                 "train.batch_size=2", "train.max_steps=1", "train.save_steps=0", "max_length=64",
                 f"output_dir={out}"]) == 0
    assert RefusalTokens.load(out) == RefusalTokens.load(folder)
    assert control_token_ids(load_tokenizer(str(out)), [RESPOND, REFUSE]) == control_token_ids(
        load_tokenizer(str(folder)), [RESPOND, REFUSE])


def _pairs(tmp_path, count=8):
    path = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"Question {i}?", "response_0": f"Answer {i}.", "response_1": "I can't help with that.",
             "better_response_id": 0, "safer_response_id": i % 2} for i in range(count)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_sacpo_with_the_ches_filter_on_tiny_llama(tmp_path):
    out = tmp_path / "sacpo"
    args = ["dpo", "model.name_or_path=tiny-llama", f"train_data=[{_pairs(tmp_path)}]", "objective=sacpo",
            "ches_drop_fraction=0.25", "train.batch_size=2", "train.max_steps=2", "train.save_steps=0",
            "train.learning_rate=1e-4", "max_length=64", f"output_dir={out}"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for step in ("helpfulness", "safety"):
        assert metrics[step]["pairs"] == 6 and metrics[step]["dropped_by_ches"] == 2 and metrics[step]["steps"] == 2
    assert metrics["safety"]["beta"] == 0.1
    trained, base = load_file(str(out / "model.safetensors")), load_causal_lm("tiny-llama").state_dict()
    assert any(not torch.equal(tensor, base[name]) for name, tensor in trained.items())
    steps = {json.loads(line)["dpo_step"] for line in (out / "log.jsonl").read_text().splitlines()}
    assert steps == {"helpfulness", "safety"}


def test_a_pair_without_the_safety_label_names_its_line(tmp_path, capsys):
    path = _pairs(tmp_path, 2)
    path.write_text(path.read_text() + json.dumps({"prompt": "p", "response_0": "a", "response_1": "b",
                                                   "better_response_id": 0}) + "\n")
    assert main(["dpo", "model.name_or_path=tiny-llama", f"train_data=[{path}]", "objective=safety",
                 f"output_dir={tmp_path / 'out'}"]) == 2
    assert "pairs.jsonl:3: missing_label: no safer_response_id" in capsys.readouterr().err


def test_lora_helpfulness_dpo_writes_a_merged_model(tmp_path):
    out = tmp_path / "lora"
    assert main(["dpo", "model.name_or_path=tiny-llama", f"train_data=[{_pairs(tmp_path, 4)}]", "model.lora.enabled=true",
                 "train.batch_size=2", "train.max_steps=1", "train.save_steps=0", "train.learning_rate=1e-2",
                 "train.warmup_ratio=0.0",
                 "max_length=64", f"output_dir={out}"]) == 0
    trained, base = load_file(str(out / "model.safetensors")), load_causal_lm("tiny-llama").state_dict()
    assert set(trained) <= set(base) and not any("lora" in name for name in trained)  # merged, plain names
    assert "DPO" in (out / "README.md").read_text()
    assert any(not torch.equal(tensor, base[name]) for name, tensor in trained.items())
