"""Pair batches: collation layout and the length-bucketed forward."""

import torch

from saferlhf.models.loading import load_tokenizer
from saferlhf.models.score_model import ScoreModel
from saferlhf.training.pairs import EncodedPair, collate_pairs, forward_in_length_buckets


def test_collate_puts_firsts_then_seconds_right_padded():
    batch = collate_pairs([EncodedPair([1, 2, 3], [4], 1.0, 0.0), EncodedPair([5], [6, 7], float("nan"), 1.0)], 0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [5, 0, 0], [4, 0, 0], [6, 7, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0], [1, 0, 0], [1, 1, 0]]
    assert batch["first_is_safe"][0] == 1.0 and torch.isnan(batch["first_is_safe"][1])


def test_bucketed_forward_matches_single_forward_and_gradients():
    tokenizer = load_tokenizer("tiny-llama")
    texts = ["a", "a much longer text with many more tokens in it than the others", "mid length text", "b c",
             "another fairly long sentence here", "x"]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    model = ScoreModel.from_backbone("tiny-llama")
    single = model(**batch).end_scores
    single.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    bucketed = forward_in_length_buckets(model, batch["input_ids"], batch["attention_mask"], bucket_size=2)
    assert torch.allclose(single, bucketed, atol=1e-5)
    bucketed.sum().backward()
    for before, parameter in zip(grads, model.parameters()):
        assert torch.allclose(before, parameter.grad, atol=1e-5)
