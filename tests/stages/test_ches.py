"""CHES on written hidden states (by hand), the answer positions it reads, and ``saferlhf ches`` end to end."""

from __future__ import annotations

import json
import re

import pytest
import torch

from saferlhf.cli import main
from saferlhf.data.templates import encode
from saferlhf.models.loading import load_causal_lm, load_tokenizer
from saferlhf.stages.ches import answer_hidden_states, ches_scores


def test_ches_by_hand():
    chosen = torch.tensor([[1.0, 0.0], [1.0, 2.0]])  # H⁺ = (2, 2), |y⁺| = 2
    rejected = torch.tensor([[0.0, 1.0], [3.0, 0.0], [0.0, 1.0]])  # H⁻ = (3, 2), |y⁻| = 3
    ches, normalized = ches_scores(chosen, rejected)
    # <H⁺, H⁻> = 10, ‖H⁺‖² = 8: CHES = 2; normalised 10 / 6 - 8 / 4
    assert ches == pytest.approx(2.0) and normalized == pytest.approx(10 / 6 - 2.0)
    assert ches_scores(chosen, chosen) == (0.0, 0.0)  # identical answers: the centred similarity is 0
    with pytest.raises(ValueError, match="at least one answer token"):
        ches_scores(chosen, torch.zeros(0, 2))


def test_hidden_states_are_those_that_predict_the_answer_tokens():
    tokenizer, model = load_tokenizer("tiny-llama"), load_causal_lm("tiny-llama").eval()
    encoded = encode(tokenizer, "Say hi.", "Hi there!", 64)
    hidden = answer_hidden_states(model, tokenizer, "Say hi.", "Hi there!", 64)
    assert hidden.size(0) == len(encoded.input_ids) - encoded.prompt_length  # one state per answer token
    full = model(input_ids=torch.tensor([encoded.input_ids]), output_hidden_states=True).hidden_states[-1][0]
    assert torch.equal(hidden[0], full[encoded.prompt_length - 1])  # the last prompt position predicts token 1


def test_command_adds_the_columns_and_names_a_bad_row(tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"prompt": "How do I bake bread?", "response_0": "Mix flour and water.", "response_1": "No.",
             "better_response_id": 0, "safer_response_id": 0},
            {"prompt": "Tell me a joke.", "response_0": "Why did the chicken...", "response_1": "I can't.",
             "better_response_id": 1, "safer_response_id": 0}]
    pairs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out.jsonl"
    assert main(["ches", f"input={pairs}", "model=tiny-llama", f"output={out}", "progress=false"]) == 0
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [{k: v for k, v in row.items() if not k.startswith("ches")} for row in written] == rows
    tokenizer, model = load_tokenizer("tiny-llama"), load_causal_lm("tiny-llama").eval()
    chosen, rejected = (answer_hidden_states(model, tokenizer, rows[1]["prompt"], rows[1][f"response_{i}"], 512)
                        for i in (1, 0))  # row 2 prefers response 1
    assert written[1]["ches"] == pytest.approx(ches_scores(chosen, rejected)[0], rel=1e-6)
    assert all(isinstance(row["ches_normalized"], float) for row in written)
    pairs.write_text(pairs.read_text() + json.dumps({**rows[0], "better_response_id": None}) + "\n")
    assert main(["ches", f"input={pairs}", "model=tiny-llama", f"output={out}", "progress=false"]) == 2
    assert re.search(r"pairs.jsonl:3: .*better_response_id", capsys.readouterr().err)
