"""Score-model losses against values computed by hand (softplus(-x) = -log σ(x))."""

import math

import pytest
import torch

from saferlhf.training.score_losses import cost_loss, reward_loss, safety_sign, severity_weights

NAN = math.nan


def test_reward_loss_single_pair():
    # -log σ(1 - 0) = 0.3132617; η · mean(1², 0²) = 0.001 · 0.5
    loss = reward_loss(torch.tensor([1.0]), torch.tensor([0.0]), regularization=0.001)
    assert loss.item() == pytest.approx(0.31376169, abs=1e-6)


def test_reward_loss_batch_mean_and_regulariser():
    # pairs (2, 0) and (-1, 1): (0.126928 + 2.126928) / 2 + 0.001 · mean(4, 1, 0, 1)
    loss = reward_loss(torch.tensor([2.0, -1.0]), torch.tensor([0.0, 1.0]), regularization=0.001)
    assert loss.item() == pytest.approx(1.12842801, abs=1e-6)


def test_safety_sign_convention():
    # +1 unsafe, -1 safe, 0 unlabelled
    assert safety_sign(torch.tensor([0.0, 1.0, NAN])).tolist() == [1.0, -1.0, 0.0]


def test_cost_loss_with_safety_labels():
    # safer C = -1 (safe), less safe C = 2 (unsafe):
    # -log σ(2 - (-1)) - log σ(+1 · 2) - log σ(-1 · -1) = 0.048587 + 0.126928 + 0.313262
    loss = cost_loss(torch.tensor([-1.0]), torch.tensor([2.0]), torch.tensor([1.0]), torch.tensor([0.0]),
                     regularization=0.0)
    assert loss.item() == pytest.approx(0.48877705, abs=1e-6)
    # η = 0.01 adds 0.01 · mean(1, 4) = 0.025
    loss = cost_loss(torch.tensor([-1.0]), torch.tensor([2.0]), torch.tensor([1.0]), torch.tensor([0.0]),
                     regularization=0.01)
    assert loss.item() == pytest.approx(0.51377705, abs=1e-6)


def test_cost_loss_without_labels_is_pairwise_only():
    loss = cost_loss(torch.tensor([-1.0]), torch.tensor([2.0]), torch.tensor([NAN]), torch.tensor([NAN]),
                     regularization=0.0)
    assert loss.item() == pytest.approx(0.04858735, abs=1e-6)


def test_cost_loss_mixed_batch():
    # pair 1 labelled as above (0.488777); pair 2 unlabelled, safer 0.5, less safe 0.0: -log σ(-0.5) = 0.974077
    loss = cost_loss(torch.tensor([-1.0, 0.5]), torch.tensor([2.0, 0.0]), torch.tensor([1.0, NAN]),
                     torch.tensor([0.0, NAN]), regularization=0.0)
    assert loss.item() == pytest.approx(0.73142702, abs=1e-6)


def test_cost_loss_pushes_unsafe_cost_up_and_safe_cost_down():
    safer = torch.tensor([0.0], requires_grad=True)
    unsafer = torch.tensor([0.0], requires_grad=True)
    cost_loss(safer, unsafer, torch.tensor([1.0]), torch.tensor([0.0])).backward()
    assert safer.grad.item() > 0  # gradient descent lowers the safe response's cost
    assert unsafer.grad.item() < 0  # and raises the unsafe one's


def test_severity_weights_per_level_and_unlabelled():
    # levels 3, none, 2 with w = [1, 1, 2, 3]: 3, 1 (no level), 2
    weights = severity_weights(torch.tensor([3.0, NAN, 2.0]), [1.0, 1.0, 2.0, 3.0])
    assert weights.tolist() == [3.0, 1.0, 2.0]


def test_severity_weighted_cost_loss_three_pairs():
    # pair 1: safer -1 (safe), less safe 2 (unsafe), severe (3): 0.048587 + 0.126928 + 0.313262 = 0.488777, w 3
    # pair 2: unlabelled, safer 0.5, less safe 0: -log σ(-0.5) = 0.974077, no level -> w 1
    # pair 3: safer 0 (safe), less safe 1 (unsafe), moderate (2): -log σ(1) + -log σ(1) + -log σ(0)
    #         = 0.313262 + 0.313262 + 0.693147 = 1.319671, w 2
    # weighted: (3 · 0.488777 + 0.974077 + 2 · 1.319671) / 3 = 1.693250 (unweighted mean 0.927508)
    args = (torch.tensor([-1.0, 0.5, 0.0]), torch.tensor([2.0, 0.0, 1.0]), torch.tensor([1.0, NAN, 1.0]),
            torch.tensor([0.0, NAN, 0.0]))
    weights = severity_weights(torch.tensor([3.0, NAN, 2.0]), [1.0, 1.0, 2.0, 3.0])
    assert cost_loss(*args, regularization=0.0, weights=weights).item() == pytest.approx(1.69324975, abs=1e-6)
    assert cost_loss(*args, regularization=0.0).item() == pytest.approx(0.92750820, abs=1e-6)
    # η is not weighted: 0.01 · mean(1, 0.25, 0, 4, 0, 1) = 0.01 · 1.041667
    assert cost_loss(*args, regularization=0.01, weights=weights).item() == pytest.approx(1.70366642, abs=1e-6)


def test_unit_severity_weights_give_the_unweighted_loss_bit_for_bit():
    generator = torch.Generator().manual_seed(0)
    safer, unsafer = torch.randn(8, generator=generator), torch.randn(8, generator=generator)
    safe = torch.tensor([1.0, NAN, 1.0, 0.0, 1.0, NAN, 1.0, 1.0])
    unsafe = torch.tensor([0.0, NAN, 0.0, 0.0, 1.0, NAN, 0.0, NAN])
    levels = torch.tensor([3.0, NAN, 1.0, 2.0, 0.0, NAN, 3.0, 1.0])
    plain = cost_loss(safer, unsafer, safe, unsafe)
    assert torch.equal(cost_loss(safer, unsafer, safe, unsafe, weights=severity_weights(levels, [1, 1, 1, 1])), plain)
