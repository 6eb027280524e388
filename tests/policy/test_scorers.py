"""Reward/cost sources: token reuse when tokenizers match, re-tokenisation when they differ, functions."""

import pytest
import torch

from saferlhf.data.templates import encode, render_prompt
from saferlhf.models.loading import load_tokenizer
from saferlhf.models.score_model import ScoreModel
from saferlhf.policy.rollout import Rollout, encode_prompts, position_ids_from_mask
from saferlhf.policy.scorers import FunctionScorer, ScoreModelScorer, load_function, make_scorer, same_tokenizer

PROMPTS = ["Hi", "How are you today? Tell me everything."]
ANSWERS = ["Hello there, nice to meet you.", "Fine"]


def handmade_rollout(tokenizer, prefix: str = "") -> Rollout:
    """The rollout generate() would give if the policy had answered ANSWERS (then the end token)."""
    prompt_ids, prompt_mask, _ = encode_prompts(tokenizer, PROMPTS, 64)
    answers = [tokenizer(prefix + a + tokenizer.eos_token, add_special_tokens=False)["input_ids"] for a in ANSWERS]
    width = max(len(a) for a in answers)
    answer_ids = torch.full((len(answers), width), tokenizer.pad_token_id)
    response_mask = torch.zeros((len(answers), width), dtype=torch.long)
    for i, answer in enumerate(answers):
        answer_ids[i, :len(answer)] = torch.tensor(answer)
        response_mask[i, :len(answer)] = 1
    mask = torch.cat([prompt_mask, response_mask], dim=1)
    return Rollout(prompts=list(PROMPTS), input_ids=torch.cat([prompt_ids, answer_ids], dim=1), attention_mask=mask,
                   position_ids=position_ids_from_mask(mask), response_mask=response_mask,
                   prompt_width=prompt_ids.size(1), response_texts=list(ANSWERS))


def direct_scores(model, tokenizer) -> torch.Tensor:
    """Each (prompt, answer) scored alone, unpadded, in the score model's own format."""
    rows = [encode(tokenizer, p, a, 512).input_ids for p, a in zip(PROMPTS, ANSWERS)]
    with torch.no_grad():
        return torch.stack([model(torch.tensor([r]), torch.ones(1, len(r), dtype=torch.long)).end_scores[0]
                            for r in rows])


def test_same_tokenizer():
    llama = load_tokenizer("tiny-llama")
    assert same_tokenizer(llama, load_tokenizer("tiny-llama", padding_side="left"))
    assert not same_tokenizer(llama, load_tokenizer("tiny-bert"))


def test_shared_tokenizer_reuses_the_policy_tokens(tmp_path):
    tokenizer = load_tokenizer("tiny-llama", padding_side="left")
    torch.manual_seed(0)
    ScoreModel.from_backbone("tiny-llama", kind="cost").save_pretrained(tmp_path / "cost", tokenizer)
    scorer = ScoreModelScorer(tmp_path / "cost", tokenizer, batch_size=1)
    assert scorer.shares_tokenizer
    rollout = handmade_rollout(tokenizer)
    assert rollout.attention_mask[0, 0] == 0 and rollout.attention_mask[1, -1] == 0  # left padding, early stop
    reused = scorer(rollout)
    scorer.shares_tokenizer = False  # force the decode / re-encode path
    retokenized = scorer(rollout)
    torch.testing.assert_close(reused, retokenized, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reused, direct_scores(scorer.model, scorer.tokenizer), atol=1e-5, rtol=1e-5)


def test_shared_tokenizer_without_chat_template_reads_the_score_where_training_did(tmp_path):
    """Without a chat template a score model is trained on prompt + answer with no end-of-turn token after it;
    the policy's answers end with one, so the score is read at the answer's last token, not at that one."""
    tokenizer = load_tokenizer("tiny-llama", padding_side="left")
    tokenizer.chat_template = None
    torch.manual_seed(0)
    ScoreModel.from_backbone("tiny-llama", kind="reward").save_pretrained(tmp_path / "reward", tokenizer)
    scorer = ScoreModelScorer(tmp_path / "reward", tokenizer, batch_size=2)
    assert scorer.shares_tokenizer and scorer.tokenizer.chat_template is None
    rollout = handmade_rollout(tokenizer, prefix=" ")  # after "Assistant:" the answer starts with a space
    assert all(row[mask.bool()][-1] == tokenizer.eos_token_id
               for row, mask in zip(rollout.response_ids, rollout.response_mask))  # answers end with the eos
    torch.testing.assert_close(scorer(rollout), direct_scores(scorer.model, scorer.tokenizer), atol=1e-5, rtol=1e-5)


def test_other_tokenizer_retokenizes(tmp_path):
    actor_tokenizer = load_tokenizer("tiny-llama", padding_side="left")
    encoder_tokenizer = load_tokenizer("tiny-bert")
    torch.manual_seed(0)
    ScoreModel.from_backbone("tiny-bert", kind="reward").save_pretrained(tmp_path / "reward", encoder_tokenizer)
    scorer = make_scorer(str(tmp_path / "reward"), actor_tokenizer, "none", 16, 512, "cpu")
    assert isinstance(scorer, ScoreModelScorer) and not scorer.shares_tokenizer
    assert render_prompt(encoder_tokenizer, "Hi").startswith("Human: Hi")
    expected = direct_scores(scorer.model, encoder_tokenizer)
    torch.testing.assert_close(scorer(handmade_rollout(actor_tokenizer)), expected, atol=1e-5, rtol=1e-5)


def test_function_scorers(tmp_path, monkeypatch):
    (tmp_path / "my_scores.py").write_text(
        "def length(prompts, responses):\n    return [len(r) for r in responses]\n"
        "def wrong_count(prompts, responses):\n    return [1.0]\n"
        "def not_numbers(prompts, responses):\n    return ['high'] * len(responses)\n")
    rollout = handmade_rollout(load_tokenizer("tiny-llama", padding_side="left"))
    by_file = FunctionScorer(f"{tmp_path / 'my_scores.py'}:length")
    assert by_file(rollout).tolist() == [float(len(a)) for a in ANSWERS]
    monkeypatch.syspath_prepend(str(tmp_path))
    assert FunctionScorer("my_scores:length")(rollout).tolist() == [float(len(a)) for a in ANSWERS]
    with pytest.raises(ValueError, match="returned 1 scores for 2 answers"):
        FunctionScorer("my_scores:wrong_count")(rollout)
    with pytest.raises(TypeError, match="not a number"):
        FunctionScorer("my_scores:not_numbers")(rollout)
    with pytest.raises(AttributeError, match="no function 'missing'"):
        load_function("my_scores:missing")
    with pytest.raises(FileNotFoundError):
        load_function(f"{tmp_path / 'absent.py'}:length")
    with pytest.raises(ValueError, match="needs a score model folder"):
        make_scorer("my_scores:length", None, "scale", 16, 512, "cpu")
