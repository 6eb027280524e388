"""KL-penalised rewards and PPO losses against hand-computed values."""

import math

import pytest
import torch

from saferlhf.policy.losses import (clipped_surrogate_loss, clipped_value_loss, end_index, entropy_from_logits,
                                    gather_log_probs, kl_penalized_rewards, masked_mean, sequence_kl)


def test_kl_penalized_rewards_split_between_reward_and_cost():
    log_probs = torch.tensor([[-1.0, -1.0, -1.0]])
    ref_log_probs = torch.tensor([[-2.0, -1.0, -1.5]])  # KL_t = [1, 0, 0.5]
    mask = torch.tensor([[1, 1, 0]])  # the answer ends at t = 1
    rewards, costs = kl_penalized_rewards(torch.tensor([2.0]), torch.tensor([-1.0]), log_probs, ref_log_probs, mask,
                                          kl_coeff=0.1)
    assert rewards[0].tolist() == pytest.approx([-0.1, 2.0, 0.0])  # r_t = -β·KL_t + R·1[t=T]
    assert costs[0].tolist() == pytest.approx([0.1, -1.0, 0.0])  # c_t = +β·KL_t + C·1[t=T]
    rewards, costs = kl_penalized_rewards(torch.tensor([100.0]), None, log_probs, ref_log_probs, mask, 0.1,
                                          clip_range_score=50.0)
    assert rewards[0].tolist() == pytest.approx([-0.1, 50.0, 0.0]) and costs is None
    assert sequence_kl(log_probs, ref_log_probs, mask).tolist() == [1.0]
    assert end_index(mask).tolist() == [1]


def test_clipped_surrogate_loss():
    old = torch.zeros(1, 2)
    new = torch.full((1, 2), math.log(1.5))  # ratio 1.5
    mask = torch.ones(1, 2)
    loss, clip_fraction = clipped_surrogate_loss(new, old, torch.ones(1, 2), mask, clip_range_ratio=0.2)
    assert loss.item() == pytest.approx(-1.2) and clip_fraction.item() == 1.0  # min(1.5, 1.2)·A
    loss, clip_fraction = clipped_surrogate_loss(new, old, -torch.ones(1, 2), mask, clip_range_ratio=0.2)
    assert loss.item() == pytest.approx(1.5) and clip_fraction.item() == 0.0  # min(-1.5, -1.2)
    loss, _ = clipped_surrogate_loss(new, old, torch.tensor([[1.0, -1.0]]), torch.tensor([[1.0, 0.0]]), 0.2)
    assert loss.item() == pytest.approx(-1.2)  # the masked token does not count


def test_clipped_value_loss():
    def loss(value, old, ret, clip=1.0):
        return clipped_value_loss(torch.tensor([[value]]), torch.tensor([[old]]), torch.tensor([[ret]]),
                                  torch.ones(1, 1), clip).item()

    assert loss(3.0, 0.0, 2.0) == pytest.approx(0.5)  # max((3-2)², (1-2)²) / 2
    assert loss(0.5, 0.0, 2.0) == pytest.approx(1.125)  # inside the clip range: (1.5)² / 2
    assert loss(4.0, 0.0, 4.0) == pytest.approx(4.5)  # clipped value 1 is far: (1-4)² / 2


def test_masked_mean_is_per_sequence_then_batch():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 100.0, 100.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert masked_mean(x, mask).item() == pytest.approx(3.0)  # mean(2, 4)


def test_log_probs_and_entropy_of_uniform_logits():
    logits = torch.zeros(1, 2, 4)
    assert gather_log_probs(logits, torch.tensor([[0, 3]]))[0].tolist() == pytest.approx([-math.log(4)] * 2)
    assert entropy_from_logits(logits)[0].tolist() == pytest.approx([math.log(4)] * 2)
