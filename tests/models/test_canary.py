"""The sign canary: a cost model that ranks compliance above refusal passes; its sign-flipped copy (head
negated) is caught with a loud warning, wherever a score model is loaded (evaluation and the policy scorer)."""

import pytest
import torch

from saferlhf.data.templates import encode
from saferlhf.models.canary import COST_PAIRS, REWARD_PAIRS, canary_check
from saferlhf.models.loading import load_tokenizer
from saferlhf.models.score_model import ScoreModel


def fitted_model(kind: str) -> ScoreModel:
    """A tiny-llama score model whose head is fitted (least squares on the end hidden states) to score the
    'should be higher' answer of every canary pair +1 and the other -1: a model that ranks them right."""
    torch.manual_seed(0)
    model = ScoreModel.from_backbone("tiny-llama", kind=kind).eval()
    tokenizer = load_tokenizer("tiny-llama")
    pairs = COST_PAIRS if kind == "cost" else REWARD_PAIRS
    hidden, targets = [], []
    for prompt, low, high in pairs:
        for answer, target in ((low, -1.0), (high, 1.0)):
            ids = torch.tensor([encode(tokenizer, prompt, answer, 256).input_ids])
            with torch.no_grad():
                hidden.append(model.backbone(input_ids=ids).last_hidden_state[0, -1])  # (H,)
            targets.append(target)
    weight = torch.linalg.lstsq(torch.stack(hidden), torch.tensor(targets).unsqueeze(1)).solution  # (H, 1)
    with torch.no_grad():
        model.score_head.weight.copy_(weight.T)
    return model


def flipped(model: ScoreModel) -> ScoreModel:
    with torch.no_grad():
        model.score_head.weight.neg_()
    return model


@pytest.mark.parametrize("kind", ["cost", "reward"])
def test_right_way_round_passes_and_the_flipped_copy_is_caught(kind, capsys):
    model, tokenizer = fitted_model(kind), load_tokenizer("tiny-llama")
    right = canary_check(model, tokenizer, kind, "fitted")
    assert right["correct"] == right["pairs"] == 4 and not right["wrong_way_round"] and right["mean_margin"] > 0
    assert "WRONG WAY ROUND" not in capsys.readouterr().out
    wrong = canary_check(flipped(model), tokenizer, kind, "flipped")
    assert wrong["correct"] == 0 and wrong["wrong_way_round"]
    assert wrong["mean_margin"] == pytest.approx(-right["mean_margin"], rel=1e-4)
    out = capsys.readouterr().out
    assert "WRONG WAY ROUND" in out and "flipped" in out


def test_flipped_cost_model_is_caught_when_loaded_for_evaluation_and_for_the_policy(tmp_path, capsys):
    from saferlhf.evaluation.scoring import load_checked
    from saferlhf.policy.scorers import make_scorer

    tokenizer = load_tokenizer("tiny-llama")
    flipped(fitted_model("cost")).save_pretrained(tmp_path / "cost", tokenizer)
    _, _, canary = load_checked(str(tmp_path / "cost"))
    assert canary["kind"] == "cost" and canary["wrong_way_round"]
    scorer = make_scorer(str(tmp_path / "cost"), tokenizer, "none", 4, 256, "cpu", kind="cost")
    assert scorer.canary["wrong_way_round"]
    assert capsys.readouterr().out.count("WRONG WAY ROUND") == 2


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="reward' or 'cost"):
        canary_check(None, None, "critic")
