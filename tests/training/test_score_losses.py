"""Score-model losses against values computed by hand (softplus(-x) = -log σ(x))."""

import math

import pytest
import torch

from saferlhf.training.score_losses import cost_loss, reward_loss, safety_sign

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
