"""Sampling layout and masks: prompts of different lengths, answers that stop early."""

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from saferlhf.models.score_model import ScoreModel
from saferlhf.policy.losses import gather_log_probs
from saferlhf.policy.rollout import (answer_logits, answer_values, position_ids_from_mask, response_mask_until_end,
                                     sample_rollout)


def test_response_mask_stops_after_the_first_end_token():
    ids = torch.tensor([[5, 6, 2, 2], [5, 2, 7, 2], [5, 6, 7, 8], [2, 2, 2, 2]])
    assert response_mask_until_end(ids, [2]).tolist() == [[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert response_mask_until_end(ids, [2, 8]).tolist()[2] == [1, 1, 1, 1]


def test_position_ids_skip_left_padding():
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
    assert position_ids_from_mask(mask).tolist() == [[0, 0, 0, 1, 2, 2], [0, 1, 2, 3, 4, 5]]


def _load(toy_model):
    tokenizer = AutoTokenizer.from_pretrained(toy_model, padding_side="left")
    return AutoModelForCausalLM.from_pretrained(toy_model), tokenizer


def test_rollout_layout_with_different_prompt_lengths(toy_model):
    model, tokenizer = _load(toy_model)
    torch.manual_seed(0)
    prompts = ["q", "q q", "q q q"] * 20
    rollout = sample_rollout(model, tokenizer, prompts, samples_per_prompt=2, max_length=16, max_new_tokens=8)
    assert len(rollout) == 120 and rollout.prompts[:4] == ["q", "q", "q q", "q q"]
    assert rollout.prompt_width == 4  # "q q q >"
    assert rollout.attention_mask[:6, :4].tolist() == [[0, 0, 1, 1]] * 2 + [[0, 1, 1, 1]] * 2 + [[1, 1, 1, 1]] * 2
    end = tokenizer.eos_token_id
    lengths = rollout.response_lengths.tolist()
    assert min(lengths) < 8, "the toy policy ends 3% of its tokens: some of 120 answers must stop early"
    for row, length in enumerate(lengths):
        answer = rollout.response_ids[row].tolist()
        if length < rollout.response_ids.size(1) or answer[length - 1] == end:
            assert answer[length - 1] == end and end not in answer[:length - 1]
        assert rollout.response_texts[row].split() == tokenizer.convert_ids_to_tokens(
            [t for t in answer[:length] if t != end])
    assert rollout.position_ids[0, 2:5].tolist() == [0, 1, 2]


def test_batched_log_probs_equal_unpadded_ones_with_learned_positions(toy_model):
    """RoPE (the toy Llama) ignores a constant shift of the position ids, so wrong ids for a left-padded row
    would still give the unpadded numbers there; GPT-2's learned absolute positions do not."""
    from transformers import GPT2Config, GPT2LMHeadModel

    _, tokenizer = _load(toy_model)
    torch.manual_seed(2)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=64,
                                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    rollout = sample_rollout(model.eval(), tokenizer, ["q", "q q q", "q q"] * 2, max_length=16, max_new_tokens=6)
    assert rollout.attention_mask[:, 0].min() == 0  # some rows are left-padded
    for row in range(len(rollout)):  # the ids themselves: 0, 1, 2, ... over each row's own tokens
        attended = rollout.attention_mask[row].bool()
        assert rollout.position_ids[row][attended].tolist() == list(range(int(attended.sum())))
    with torch.no_grad():
        batched = gather_log_probs(answer_logits(model, rollout), rollout.response_ids)  # (N, T)
        for row in range(len(rollout)):
            ids = rollout.input_ids[row][rollout.attention_mask[row].bool()].unsqueeze(0)
            answer_length = int(rollout.response_lengths[row])
            prompt_length = ids.size(1) - answer_length
            single = gather_log_probs(model(input_ids=ids).logits[:, prompt_length - 1:-1], ids[:, prompt_length:])[0]
            torch.testing.assert_close(batched[row, :answer_length], single, atol=1e-5, rtol=1e-5)


def test_batched_log_probs_and_values_equal_unpadded_ones(toy_model):
    """Left padding + position ids + the answer mask give exactly the per-row, unpadded numbers."""
    model, tokenizer = _load(toy_model)
    critic = ScoreModel.from_backbone(str(toy_model), kind="reward")
    torch.manual_seed(1)
    rollout = sample_rollout(model, tokenizer, ["q", "q q q", "q q"] * 4, max_length=16, max_new_tokens=8)
    with torch.no_grad():
        batched = gather_log_probs(answer_logits(model, rollout), rollout.response_ids)  # (N, T)
        values = answer_values(critic, rollout)  # (N, T)
        for row in range(len(rollout)):
            ids = rollout.input_ids[row][rollout.attention_mask[row].bool()].unsqueeze(0)  # prompt + answer
            answer_length = int(rollout.response_lengths[row])
            prompt_length = ids.size(1) - answer_length
            logits = model(input_ids=ids).logits[0, prompt_length - 1:-1]
            single = gather_log_probs(logits.unsqueeze(0), ids[:, prompt_length:])[0]
            torch.testing.assert_close(batched[row, :answer_length], single, atol=1e-5, rtol=1e-5)
            single_values = critic(ids, torch.ones_like(ids)).token_scores[0, prompt_length - 1:-1]
            torch.testing.assert_close(values[row, :answer_length], single_values, atol=1e-5, rtol=1e-5)


def test_greedy_rollout_is_deterministic(toy_model):
    model, tokenizer = _load(toy_model)
    first = sample_rollout(model, tokenizer, ["q", "q q"], max_length=16, max_new_tokens=6, greedy=True)
    second = sample_rollout(model, tokenizer, ["q", "q q"], max_length=16, max_new_tokens=6, greedy=True)
    assert torch.equal(first.input_ids, second.input_ids)


def test_min_new_tokens_keeps_the_end_of_turn_back(toy_model):
    model, tokenizer = _load(toy_model)
    torch.manual_seed(0)
    free = sample_rollout(model, tokenizer, ["q", "q q"] * 30, max_length=16, max_new_tokens=8)
    assert free.response_lengths.min() < 4, "the toy policy ends 3% of its tokens: some of 60 answers stop early"
    torch.manual_seed(0)
    held = sample_rollout(model, tokenizer, ["q", "q q"] * 30, max_length=16, max_new_tokens=8, min_new_tokens=4)
    assert held.response_lengths.min() >= 4
