"""``train-policy`` on a refusal-token actor (tiny, trained by ``saferlhf sft refusal_tokens=single``): the tokens stay
in the saved policy (spec file, single ids, embedding rows) and never reach the reward / cost functions' text."""

from __future__ import annotations

import json

import torch

from saferlhf.config import load_config
from saferlhf.controls.tokens import REFUSE, RESPOND, SPEC_FILE, RefusalTokens, control_token_ids, copy_spec
from saferlhf.models.loading import load_causal_lm, load_tokenizer

CONTROL_TEXT = ("[refuse", "[respond")


def text_without_control_tokens(prompts, responses):
    """Reward and cost of the run below: fails the run if a control token reaches the scored text."""
    leaked = [r for r in responses if any(token in r for token in CONTROL_TEXT)]
    assert not leaked, f"control tokens in the scored answers: {leaked[:2]}"
    return [float(len(r)) / 100 for r in responses]


def test_rollout_text_leaves_out_the_control_tokens(refusal_token_model):
    from saferlhf.policy.rollout import sample_rollout
    from refusal_token_model import ROWS

    folder, _ = refusal_token_model
    tokenizer, model = load_tokenizer(str(folder)), load_causal_lm(str(folder))
    ids = control_token_ids(tokenizer, [RESPOND, REFUSE])
    rollout = sample_rollout(model, tokenizer, [p for p, _ in ROWS], max_length=96, max_new_tokens=8, greedy=True)
    assert rollout.response_ids[:, 0].tolist() == [ids[1]] * 3 + [ids[0]] * 3  # the trained token comes first
    assert all(text and not any(token in text for token in CONTROL_TEXT) for text in rollout.response_texts)


def test_policy_keeps_the_refusal_tokens(refusal_token_model, tmp_path):
    from saferlhf.policy.stage import PolicyStageConfig, run
    from refusal_token_model import ROWS

    folder, _ = refusal_token_model
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p, _ in ROWS))
    ptx = tmp_path / "ptx.jsonl"
    ptx.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in ROWS))
    scorer = f"{__file__}:text_without_control_tokens"
    run(load_config(PolicyStageConfig, overrides=[
        "algorithm=critic-free", f"actor.name_or_path={folder}", "actor.lora.enabled=true", "actor.lora.r=4",
        f"reward.path={scorer}", f"cost.path={scorer}", f"data.train=[{{path: {prompts}, format: prompts}}]",
        "data.max_length=96", "rollout.max_new_tokens=6", "rollout.prompts_per_step=3", "rollout.samples_per_prompt=2",
        f"ptx.data=[{{path: {ptx}}}]", "train.batch_size=6", "train.max_steps=1", "train.learning_rate=1e-2", "train.save_steps=0",
        "train.num_threads=1", "tracking.progress_bar=false", f"output_dir={tmp_path / 'run'}"]))
    policy = tmp_path / "run" / "policy"
    assert RefusalTokens.load(policy) == RefusalTokens.load(folder)
    ids = control_token_ids(load_tokenizer(str(policy)), [RESPOND, REFUSE])  # single ids in the saved tokenizer
    assert ids == control_token_ids(load_tokenizer(str(folder)), [RESPOND, REFUSE])
    before = load_causal_lm(str(folder)).get_input_embeddings().weight
    after = load_causal_lm(str(policy)).get_input_embeddings().weight
    assert after.shape == before.shape
    torch.testing.assert_close(after[ids], before[ids], rtol=0, atol=0)  # LoRA merged: the token rows as trained


def test_ptx_answers_of_a_refusal_token_actor_open_with_its_token(refusal_token_model, tmp_path):
    from saferlhf.config import DataSource
    from saferlhf.policy.ptx import load_ptx_examples
    from refusal_token_model import ROWS

    folder, _ = refusal_token_model
    tokenizer = load_tokenizer(str(folder))
    respond, refuse = control_token_ids(tokenizer, [RESPOND, REFUSE])
    data = tmp_path / "ptx.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in ROWS))
    examples = load_ptx_examples([DataSource(path=str(data))], tokenizer, 96, spec=RefusalTokens.load(folder))
    assert [ids[start] for ids, start in examples] == [refuse] * 3 + [respond] * 3  # the first answer token
    plain = load_ptx_examples([DataSource(path=str(data))], tokenizer, 96)
    assert not {ids[start] for ids, start in plain} & {respond, refuse}


def test_copy_spec_only_from_a_folder_with_one(refusal_token_model, tmp_path):
    folder, _ = refusal_token_model
    assert not copy_spec("tiny-llama", tmp_path / "a") and not (tmp_path / "a").exists()
    assert copy_spec(folder, tmp_path / "b")
    assert (tmp_path / "b" / SPEC_FILE).read_text() == (folder / SPEC_FILE).read_text()
