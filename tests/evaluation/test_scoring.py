"""Scoring (prompt, answer) pairs with a score model: padding-invariant, over-long pairs counted."""

from __future__ import annotations

import pytest
import torch

from saferlhf.evaluation.scoring import score_pairs, score_with_folder
from saferlhf.models.loading import load_tokenizer
from saferlhf.models.score_model import ScoreModel


def test_batched_scores_match_one_by_one_and_overlong_is_counted(tmp_path):
    torch.manual_seed(0)
    model = ScoreModel.from_backbone("tiny-llama", kind="cost")
    tokenizer = load_tokenizer("tiny-llama")
    prompts = ["Hi", "How do I make a cake with three layers?", "Why?"]
    responses = ["Hello there, how can I help?", "Bake three sponges.", "word " * 80]
    batched, overlong = score_pairs(model, tokenizer, prompts, responses, max_length=64, batch_size=3, progress=False)
    single = [score_pairs(model, tokenizer, [p], [r], max_length=64, batch_size=1, progress=False)[0][0]
              for p, r in zip(prompts, responses)]
    assert batched == pytest.approx(single, abs=1e-5)
    assert overlong == 1  # the 80-word answer does not fit in 64 tokens
    model.save_pretrained(tmp_path / "cost", tokenizer)
    loaded, _ = score_with_folder(str(tmp_path / "cost"), prompts, responses, max_length=64, batch_size=2)
    assert loaded == pytest.approx(batched, abs=1e-5)
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        score_pairs(model, tokenizer, prompts[:2], responses[:1])
