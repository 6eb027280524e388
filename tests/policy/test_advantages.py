"""GAE, group baselines and the Lagrangian combination against hand-computed values."""

import pytest
import torch

from saferlhf.policy.advantages import gae_advantages_and_returns, group_baseline_advantages


def test_gae_hand_computed():
    values = torch.tensor([[1.0, 2.0, 3.0]])
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    mask = torch.ones(1, 3)
    # γ=1, λ=0.5: δ = [1, 1, -2]; A2 = -2, A1 = 1 + 0.5·(-2) = 0, A0 = 1 + 0.5·0 = 1
    advantages, returns = gae_advantages_and_returns(values, rewards, mask, gamma=1.0, gae_lambda=0.5)
    assert advantages.tolist() == [[1.0, 0.0, -2.0]]
    assert returns.tolist() == [[2.0, 2.0, 1.0]]
    # γ=0.5, λ=1: δ2 = -2, δ1 = 0.5·3 - 2 = -0.5, δ0 = 0.5·2 - 1 = 0; A1 = -0.5 - 1 = -1.5, A0 = -0.75
    advantages, _ = gae_advantages_and_returns(values, rewards, mask, gamma=0.5, gae_lambda=1.0)
    assert advantages.tolist() == [[-0.75, -1.5, -2.0]]


def test_gae_ignores_everything_after_the_end():
    values = torch.tensor([[1.0, 2.0, 3.0]])
    rewards = torch.tensor([[0.0, 1.0, 5.0]])  # the 5 sits on padding and must not count
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    advantages, returns = gae_advantages_and_returns(values, rewards, mask, gamma=1.0, gae_lambda=0.5)
    # V_2 = 0 after the end: δ1 = 1 - 2 = -1, δ0 = 2 - 1 = 1; A0 = 1 + 0.5·(-1)
    assert advantages.tolist() == [[0.5, -1.0, 0.0]]
    assert returns.tolist() == [[1.5, 1.0, 0.0]]


def test_group_baselines():
    scores = torch.tensor([1.0, 2.0, 3.0, 10.0, 10.0, 10.0])
    loo = group_baseline_advantages(scores, 3, "leave-one-out")
    assert loo.tolist() == pytest.approx([1 - 2.5, 2 - 2.0, 3 - 1.5, 0, 0, 0])  # x_i - mean of the others
    assert group_baseline_advantages(scores, 3, "group-mean").tolist() == pytest.approx([-1, 0, 1, 0, 0, 0])
    normalized = group_baseline_advantages(scores, 3, "group-normalized", eps=0.0 + 1e-12)
    assert normalized[:3].tolist() == pytest.approx([-1, 0, 1])  # std([1, 2, 3]) = 1
    assert normalized[3:].tolist() == [0, 0, 0]
    with pytest.raises(ValueError):
        group_baseline_advantages(scores, 1)
    with pytest.raises(ValueError):
        group_baseline_advantages(scores, 4)

