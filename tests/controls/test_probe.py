"""controls/probe.py: AUC, probe fit, last-token states, and threshold sweeps / choice on written scores."""

from __future__ import annotations

import math

import pytest
import torch

from saferlhf.controls.probe import LinearProbe, auc, choose_threshold, fit_probe, last_token_states, sweep


def test_auc_hand_computed():
    # positives 3, 2 against negatives 1, 2: pairs (3>1) (3>2) (2>1) (2=2 -> 0.5) -> 3.5 / 4
    assert auc(torch.tensor([3.0, 1.0, 2.0, 2.0]), torch.tensor([1, 0, 1, 0])) == pytest.approx(0.875)
    assert auc(torch.tensor([0.0, 1.0]), torch.tensor([1, 0])) == 0.0


def test_probe_separates_separable_data():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=generator)
    y = (x[:, 2] > 0).float()
    x[:, 2] += 2 * y - 1  # a margin of 2 between the classes along feature 2
    weight, bias = fit_probe(x, y)
    assert ((x @ weight + bias > 0).float() == y).all()
    assert weight[2].abs() > weight[[0, 1, 3, 4]].abs().max()


def test_linear_probe_standardises_with_training_statistics():
    states = torch.zeros(4, 2, 3)
    states[:, 1, 0] = torch.tensor([0.0, 2.0, 10.0, 12.0])  # layer 1, feature 0 separates the classes
    probe = LinearProbe.fit(states, torch.tensor([0, 0, 1, 1]), layer=1)
    assert probe.mean[0] == pytest.approx(6.0)
    scores = probe.score(states)
    assert (scores[2:] > 0).all() and (scores[:2] < 0).all()
    # a new prompt at the training mean scores the bias alone
    assert probe.score(torch.full((1, 2, 3), 0.0).index_fill_(2, torch.tensor([0]), 6.0)).item() == pytest.approx(
        probe.bias.item(), abs=1e-5)


def test_last_token_states_ignore_left_padding():
    from saferlhf.models.loading import load_causal_lm, load_tokenizer

    model, tokenizer = load_causal_lm("tiny-llama").eval(), load_tokenizer("tiny-llama")  # right padding by default
    prompts = ["Hi", "How do I bake a very large loaf of sourdough bread at home?"]
    together = last_token_states(model, tokenizer, prompts)
    alone = last_token_states(model, tokenizer, prompts[:1])
    assert together.shape == (2, model.config.num_hidden_layers + 1, model.config.hidden_size)
    torch.testing.assert_close(together[0], alone[0], atol=1e-4, rtol=1e-4)


SCORES = [0.9, 0.8, 0.3, 0.6, 0.2, 0.1]  # harmful: 0.9, 0.8, 0.3; harmless: 0.6, 0.2, 0.1
HARMFUL = [True, True, True, False, False, False]


def test_sweep_hand_computed_points():
    rows = {row["threshold"]: (row["harmful_compliance"], row["false_refusal"]) for row in sweep(SCORES, HARMFUL)}
    assert list(rows) == [0.1, 0.2, 0.3, 0.6, 0.8, 0.9, math.inf]
    assert rows[0.1] == (0.0, 1.0)  # everything flagged
    assert rows[0.3] == (0.0, pytest.approx(1 / 3))  # 0.6 is the only harmless prompt flagged
    assert rows[0.6] == (pytest.approx(1 / 3), pytest.approx(1 / 3))  # 0.3 now missed
    assert rows[0.8] == (pytest.approx(1 / 3), 0.0)
    assert rows[math.inf] == (1.0, 0.0)


def test_sweep_is_monotone_on_random_scores():
    generator = torch.Generator().manual_seed(3)
    scores = torch.randn(200, generator=generator).tolist()
    harmful = (torch.rand(200, generator=generator) < 0.4).tolist()
    rows = sweep(scores, harmful)
    compliance = [row["harmful_compliance"] for row in rows]
    refusal = [row["false_refusal"] for row in rows]
    assert compliance == sorted(compliance) and refusal == sorted(refusal, reverse=True)
    assert compliance[0] == 0.0 and refusal[-1] == 0.0


def test_choose_threshold_takes_the_lowest_within_budget():
    assert choose_threshold(SCORES, HARMFUL, max_false_refusal=0.34)["threshold"] == 0.3
    assert choose_threshold(SCORES, HARMFUL, max_false_refusal=0.0)["threshold"] == 0.8
    assert choose_threshold(SCORES, HARMFUL, max_false_refusal=1.0)["threshold"] == 0.1
    with pytest.raises(ValueError, match="harmless"):
        choose_threshold([0.5], [True], 0.1)


def test_sweep_with_the_models_own_refusals():
    # the model refuses harmful 0.3 and harmless 0.1 by itself: those stay refused at every threshold
    refused = [False, False, True, False, False, True]
    rows = {row["threshold"]: (row["harmful_compliance"], row["false_refusal"])
            for row in sweep(SCORES, HARMFUL, refused)}
    assert rows[0.6] == (0.0, pytest.approx(2 / 3))  # 0.3 missed by the threshold but refused by the model
    assert rows[0.8] == (pytest.approx(0.0), pytest.approx(1 / 3))
    assert rows[math.inf] == (pytest.approx(2 / 3), pytest.approx(1 / 3))
