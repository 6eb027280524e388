"""Batched generation with tiny-llama: order restored, longest prompts first, greedy = one by one."""

from __future__ import annotations

import pytest
import torch

from saferlhf.evaluation.generation import _left_pad, generate_responses
from saferlhf.models.loading import load_causal_lm, load_tokenizer

PROMPTS = ["Hi", "How can I kill a Python process that hangs forever on my laptop?", "What is 2+2?",
           [{"role": "user", "content": "Tell me a joke"}, {"role": "assistant", "content": "Why?"},
            {"role": "user", "content": "Another one"}]]


@pytest.fixture(scope="module")
def tiny():
    return load_causal_lm("tiny-llama"), load_tokenizer("tiny-llama", padding_side="left")


class _Recorder(torch.nn.Module):
    """Wraps a model and records the (B, L) shape of every generate call."""

    def __init__(self, model):
        super().__init__()
        self.model, self.shapes = model, []

    def generate(self, input_ids, **kwargs):
        self.shapes.append(tuple(input_ids.shape))
        return self.model.generate(input_ids=input_ids, **kwargs)


def test_left_pad():
    ids, mask = _left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_batched_greedy_matches_one_by_one(tiny):
    model, tokenizer = tiny
    batched = generate_responses(model, tokenizer, PROMPTS, max_new_tokens=6, batch_size=3, progress=False)
    single = [generate_responses(model, tokenizer, [p], max_new_tokens=6, batch_size=1, progress=False)[0]
              for p in PROMPTS]
    assert batched == single
    assert len(batched) == len(PROMPTS) and all(isinstance(a, str) for a in batched)


def test_longest_prompts_first(tiny):
    model, tokenizer = tiny
    recorder = _Recorder(model)
    generate_responses(recorder, tokenizer, PROMPTS, max_new_tokens=2, batch_size=1, progress=False)
    lengths = [shape[1] for shape in recorder.shapes]
    assert lengths == sorted(lengths, reverse=True) and len(lengths) == 4


def test_sampling_is_seeded(tiny):
    model, tokenizer = tiny
    options = dict(max_new_tokens=6, batch_size=2, temperature=1.0, top_p=0.9, progress=False)
    first = generate_responses(model, tokenizer, PROMPTS, seed=1, **options)
    assert generate_responses(model, tokenizer, PROMPTS, seed=1, **options) == first
    assert generate_responses(model, tokenizer, [], max_new_tokens=4) == []
    with pytest.raises(ValueError, match="must be > 0"):
        generate_responses(model, tokenizer, PROMPTS, max_new_tokens=0)


def test_auto_batch_size_fits_the_free_memory(tiny, monkeypatch):
    from types import SimpleNamespace

    import psutil

    from saferlhf.evaluation.generation import LARGEST_AUTO_BATCH, auto_batch_size

    model, _ = tiny  # 2 layers, 2 KV heads of 16, vocabulary 49,152, float32
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=100_000_000))
    # per sequence of 100 tokens: KV 2·2·2·16·100·4 = 51,200 B + logits 2·49,152·4 = 393,216 B = 444,416 B
    # a quarter of 100 MB holds 56 of them
    assert auto_batch_size(model, 100, largest=1000) == 56
    assert auto_batch_size(model, 100) == min(56, LARGEST_AUTO_BATCH)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=1000))
    assert auto_batch_size(model, 100) == 1  # never zero


def test_auto_batch_gives_the_same_greedy_answers(tiny):
    model, tokenizer = tiny
    auto = generate_responses(model, tokenizer, PROMPTS, max_new_tokens=6, batch_size=0, progress=False)
    assert auto == generate_responses(model, tokenizer, PROMPTS, max_new_tokens=6, batch_size=1, progress=False)


def test_a_prompt_longer_than_the_context_keeps_its_end(tiny, capsys):
    model, tokenizer = tiny
    recorder = _Recorder(model)
    recorder.config = model.config
    long_prompt = "word " * 3000 + "What is 2+2?"  # ~3000 tokens; tiny-llama's context is 1024
    answers = generate_responses(recorder, tokenizer, [long_prompt, "Hi"], max_new_tokens=4, batch_size=2,
                                 progress=False)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    assert recorder.shapes[0][1] == model.config.max_position_embeddings - 4
    assert "1 prompt(s) longer than 1020 tokens" in capsys.readouterr().out
