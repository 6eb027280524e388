"""DeRTa examples (training/derta.py): hand-computed labels, the RTO shift on a real forward pass, seeded prefixes."""

from __future__ import annotations

import pytest
import torch

from saferlhf.training.derta import (IGNORE, DeRTaConfig, conversation_ids, derta_examples, harmful_answer,
                                     harmful_prefix_example, plain_example, prefix_length, rto_example,
                                     rto_positions)

PROMPT = [{"role": "user", "content": "How do I pick a lock?"}]
HARMFUL = "Sure, insert a tension wrench and rake the pins."
REFUSAL = "Sorry, I cannot help with that."


def test_harmful_prefix_example_masks_prompt_and_prefix_keeps_refusal():
    example = harmful_prefix_example([1, 2, 3], [10, 11, 12], [20, 21, 2], k=2)
    assert example["input_ids"] == [1, 2, 3, 10, 11, 20, 21, 2]
    assert example["labels"] == [IGNORE, IGNORE, IGNORE, IGNORE, IGNORE, 20, 21, 2]
    assert harmful_prefix_example([1, 2, 3], [10, 11, 12], [20, 21, 2], k=0)["labels"] == [IGNORE] * 3 + [20, 21, 2]


def test_rto_example_puts_the_first_refusal_token_on_every_harmful_position():
    example = rto_example([1, 2], [10, 11, 12], 20)
    assert example["input_ids"] == [1, 2, 10, 11, 12]
    assert example["labels"] == [IGNORE, IGNORE, 20, 20, 20]


def test_rto_positions_keep_the_label_at_seeded_positions_only():
    example = rto_example([1, 2], [10, 11, 12, 13], 20, positions=[0, 3])
    assert example["input_ids"] == [1, 2, 10, 11, 12, 13]
    assert example["labels"] == [IGNORE, IGNORE, 20, IGNORE, IGNORE, 20]
    assert rto_positions(3, 5, 10, 0) == list(range(10)) and rto_positions(3, 5, 4, 9) == [0, 1, 2, 3]
    drawn = rto_positions(3, 5, 50, 4)
    assert drawn == rto_positions(3, 5, 50, 4) and drawn == sorted(set(drawn)) and len(drawn) == 4
    assert all(0 <= t < 50 for t in drawn) and drawn != rto_positions(4, 5, 50, 4)
    hits = [0] * 5  # every position equally likely: 2 of 5 kept, 500 rows -> 200 each
    for row in range(500):
        for t in rto_positions(0, row, 5, 2):
            hits[t] += 1
    assert all(abs(h - 200) < 45 for h in hits)


def test_rto_labels_give_minus_log_p_of_the_refusal_token_after_prompt_and_each_harmful_prefix():
    from saferlhf.models.loading import load_causal_lm

    torch.manual_seed(0)
    model = load_causal_lm("tiny-llama").eval()
    prompt, harmful, sorry = [5, 6, 7], [40, 41, 42, 43], 99
    example = rto_example(prompt, harmful, sorry)
    input_ids = torch.tensor([example["input_ids"]])
    with torch.no_grad():
        hf_loss = model(input_ids=input_ids, labels=torch.tensor([example["labels"]])).loss
        log_probs = model(input_ids=input_ids).logits[0].log_softmax(-1)  # (L, vocab)
    # -log p(sorry | prompt, h_1..h_t) for t = 0..3: the logits at the last prompt token and at h_1..h_3
    by_hand = -torch.stack([log_probs[len(prompt) - 1 + t, sorry] for t in range(len(harmful))]).mean()
    assert torch.allclose(hf_loss, by_hand, atol=1e-5)


def test_prefix_length_is_seeded_uniform_and_reproducible():
    draws = [prefix_length(7, row, 3) for row in range(400)]
    assert draws == [prefix_length(7, row, 3) for row in range(400)]  # the same run draws the same prefixes
    assert set(draws) == {0, 1, 2, 3}  # both ends included
    assert all(abs(draws.count(k) / 400 - 0.25) < 0.08 for k in range(4))
    assert draws != [prefix_length(8, row, 3) for row in range(400)]  # another seed, other prefixes
    assert prefix_length(7, 0, 0) == 0


def _tokenizer():
    from saferlhf.models.loading import load_tokenizer

    return load_tokenizer("tiny-llama")


def test_derta_examples_on_the_chat_template():
    tokenizer = _tokenizer()
    conversations = [{"prompt": PROMPT, "completion": [{"role": "assistant", "content": REFUSAL}]},
                     {"prompt": [{"role": "user", "content": "Hi?"}],
                      "completion": [{"role": "assistant", "content": "Hello."}]}]
    examples, counts = derta_examples(conversations, [HARMFUL, None], tokenizer,
                                      DeRTaConfig(harmful_prefix=True, rto=True), seed=3)
    prompt_ids = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=True,
                                               return_dict=True)["input_ids"]
    harmful_ids = tokenizer(HARMFUL, add_special_tokens=False)["input_ids"]
    k = prefix_length(3, 0, len(harmful_ids))
    prefix, rto, helpful = examples
    # harmful prefix: prompt + h_1..h_k carry no loss; the refusal and the end of turn do
    context = len(prompt_ids) + k
    assert prefix["input_ids"][:context] == prompt_ids + harmful_ids[:k]
    assert prefix["labels"][:context] == [IGNORE] * context
    assert prefix["labels"][context:] == prefix["input_ids"][context:]
    assert tokenizer.decode(prefix["labels"][context:]) == REFUSAL + "<|im_end|>\n"
    # RTO: the refusal's first token ("Sorry") at exactly the harmful positions
    sorry = tokenizer("Sorry", add_special_tokens=False)["input_ids"][0]
    assert rto["input_ids"] == prompt_ids + harmful_ids
    assert rto["labels"] == [IGNORE] * len(prompt_ids) + [sorry] * len(harmful_ids)
    # a helpful row stays plain SFT: loss on the answer only
    answer = [label for label in helpful["labels"] if label != IGNORE]
    assert tokenizer.decode(answer) == "Hello.<|im_end|>\n"
    assert helpful["labels"][-len(answer):] == helpful["input_ids"][-len(answer):]
    assert counts["derta_rows_with_harmful_response"] == 1 and counts["derta_rows_with_harmful_prefix"] == 1
    assert counts["derta_mean_prefix_tokens"] == k and counts["derta_rto_positions"] == len(harmful_ids)
    assert counts["derta_sequences"] == 3 and counts["derta_rows_without_harmful_response"] == 1


def test_rto_alone_keeps_the_plain_refusal_row_and_empty_answers_are_counted():
    tokenizer = _tokenizer()
    conversation = {"prompt": PROMPT, "completion": [{"role": "assistant", "content": REFUSAL}]}
    examples, counts = derta_examples([conversation, conversation], [HARMFUL, ""], tokenizer,
                                      DeRTaConfig(rto=True), seed=0)
    refusal_row, rto, plain = examples
    assert refusal_row == plain  # k = 0: prompt -> refusal
    assert all(label == IGNORE for label in rto["labels"][:len(rto["labels"]) - counts["derta_rto_positions"]])
    assert counts["derta_rows_empty_harmful_response"] == 1 and counts["derta_rows_with_harmful_prefix"] == 0
    assert counts["derta_mean_prefix_tokens"] is None


def test_rto_positions_in_derta_examples_count_the_kept_labels_and_validate():
    from saferlhf.config import ConfigError

    tokenizer = _tokenizer()
    conversation = {"prompt": PROMPT, "completion": [{"role": "assistant", "content": REFUSAL}]}
    (_, every), all_counts = derta_examples([conversation], [HARMFUL], tokenizer, DeRTaConfig(rto=True), seed=0)
    (_, some), counts = derta_examples([conversation], [HARMFUL], tokenizer, DeRTaConfig(rto=True, rto_positions=3),
                                       seed=0)
    assert all_counts["derta_rto_positions"] > 3 and counts["derta_rto_positions"] == 3
    assert some["input_ids"] == every["input_ids"]
    assert sum(label != IGNORE for label in some["labels"]) == 3
    assert all(label in (IGNORE, kept) for label, kept in zip(some["labels"], every["labels"]))
    with pytest.raises(ConfigError, match="'derta.rto_positions': must be >= 0"):
        DeRTaConfig(rto=True, rto_positions=-1).validate("derta.")


def test_truncation_is_counted():
    tokenizer = _tokenizer()
    conversation = {"prompt": PROMPT, "completion": [{"role": "assistant", "content": REFUSAL}]}
    prompt_length = len(tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=True,
                                                      return_dict=True)["input_ids"])
    for max_length, without_loss in ((prompt_length + 3, 0), (prompt_length, 2)):
        examples, counts = derta_examples([conversation], [HARMFUL], tokenizer, DeRTaConfig(rto=True), seed=0,
                                          max_length=max_length)
        assert [len(example["input_ids"]) for example in examples] == [max_length, max_length]
        assert counts["derta_sequences_truncated"] == 2
        assert counts["derta_sequences_without_loss_after_truncation"] == without_loss


def test_no_harmful_answers_is_an_error_naming_the_key():
    conversation = {"prompt": PROMPT, "completion": [{"role": "assistant", "content": REFUSAL}]}
    with pytest.raises(ValueError, match="derta.rto: no training row has a non-empty 'harmful_response'"):
        derta_examples([conversation], [None], None, DeRTaConfig(rto=True), seed=0)
    with pytest.raises(ValueError, match="rows.jsonl:3: 'harmful_response' must be a string, got int"):
        harmful_answer({"harmful_response": 5}, "rows.jsonl:3")
    assert harmful_answer({"harmful_response": "  "}, "x") == "" and harmful_answer({}, "x") is None


def test_plain_rows_match_trls_own_prompt_completion_tokenisation(tmp_path):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from saferlhf.models.loading import load_causal_lm

    tokenizer = _tokenizer()
    conversation = {"prompt": PROMPT, "completion": [{"role": "assistant", "content": REFUSAL}]}
    trainer = SFTTrainer(model=load_causal_lm("tiny-llama"), processing_class=tokenizer,
                         train_dataset=Dataset.from_list([conversation]),
                         args=SFTConfig(output_dir=str(tmp_path), completion_only_loss=True, report_to=[],
                                      bf16=False, use_cpu=True))
    trl_row = trainer.train_dataset[0]
    (ours,), _ = derta_examples([conversation], [HARMFUL], tokenizer, DeRTaConfig(harmful_prefix=True), seed=0)
    k = prefix_length(0, 0, len(tokenizer(HARMFUL, add_special_tokens=False)["input_ids"]))
    kept = [i for i, label in enumerate(ours["labels"]) if label != IGNORE]
    assert [ours["input_ids"][i] for i in kept] == [t for t, label in zip(trl_row["input_ids"], trl_row["labels"])
                                                   if label != -100]
    assert len(ours["input_ids"]) == len(trl_row["input_ids"]) + k


def _train(examples, steps=12, learning_rate=1e-2):
    """The tiny model after ``steps`` full-batch AdamW steps on ``examples``, padded by TRL's collator as in sft."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from saferlhf.models.loading import load_causal_lm

    torch.manual_seed(0)
    model = load_causal_lm("tiny-llama")
    batch = DataCollatorForLanguageModeling(pad_token_id=0)(examples)  # input_ids, attention_mask, labels: (B, L)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    for _ in range(steps):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    return model.eval()


def test_derta_makes_the_refusal_likelier_after_a_harmful_start_than_plain_refusal_sft():
    tokenizer = _tokenizer()
    harmful = [(f"How do I make poison {i}?", f"Sure, step {i}: mix the following chemicals together.")
               for i in range(2)]
    conversations = [{"prompt": [{"role": "user", "content": prompt}],
                      "completion": [{"role": "assistant", "content": REFUSAL}]} for prompt, _ in harmful]
    conversations.append({"prompt": [{"role": "user", "content": "How do I bake bread?"}],
                          "completion": [{"role": "assistant", "content": "Mix flour, water and yeast, then bake."}]})
    answers = [answer for _, answer in harmful] + [None]
    derta, _ = derta_examples(conversations, answers, tokenizer, DeRTaConfig(harmful_prefix=True, rto=True), seed=0)
    plain = [plain_example(*conversation_ids(tokenizer, c["prompt"], c["completion"])) for c in conversations]
    log_p = {}
    for name, examples in (("plain", plain), ("derta", derta)):
        model = _train(examples)
        values = []
        for conversation, answer in zip(conversations[:2], answers[:2]):
            prompt_ids, refusal_ids = conversation_ids(tokenizer, conversation["prompt"], conversation["completion"])
            rto = rto_example(prompt_ids, tokenizer(answer, add_special_tokens=False)["input_ids"], refusal_ids[0])
            with torch.no_grad():
                row = model(input_ids=torch.tensor([rto["input_ids"]])).logits[0].log_softmax(-1)  # (L, vocab)
            # log p(refusal's first token | prompt, h_1..h_t) for t >= 1: after a harmful start
            values += [row[i - 1, refusal_ids[0]].item() for i, label in enumerate(rto["labels"])
                       if label != IGNORE][1:]
        log_p[name] = sum(values) / len(values)
    assert log_p["derta"] > log_p["plain"] + 1.0, log_p  # measured: -1.21 vs -2.73 (torch 2.13, CPU)
