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


def close(actual: torch.Tensor, expected: list) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected), atol=1e-6, rtol=1e-6)


def _config(algorithm: str, *overrides: str):
    from saferlhf.config import load_config
    from saferlhf.policy.config import PolicyStageConfig

    return load_config(PolicyStageConfig, None, ["data.train=[p.jsonl]", "reward.path=m:r", "cost.path=m:c",
                                                 f"algorithm={algorithm}", *overrides])


def test_compute_advantages_critic_free_hand_computed():
    """R - β·KL and C + β·KL per answer, clamped to ±clip, leave-one-out within each prompt's 2 answers, then
    (A_r - λ·A_c)/(1 + λ) on every token of the answer."""
    from saferlhf.policy.algorithms import compute_advantages

    config = _config("critic-free", "rollout.samples_per_prompt=2", "ppo.kl_coeff=0.5", "ppo.clip_range_score=1.0")
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    log_probs = torch.tensor([[-1.0, -2.0], [-0.5, -9.0]])
    ref_log_probs = torch.tensor([[-1.5, -2.0], [-2.5, 0.0]])  # Σ KL = 0.5 and 2.0 (the -9 is padding)
    reward, cost = torch.tensor([1.0, 0.2]), torch.tensor([0.3, 0.9])
    # G_r = [1 - 0.25, 0.2 - 1.0] = [0.75, -0.8]; G_c = [0.3 + 0.25, 0.9 + 1.0 -> clamp 1.0] = [0.55, 1.0]
    # leave-one-out (k = 2): A_r = [1.55, -1.55], A_c = [-0.45, 0.45]; λ = 1: A = (A_r - A_c) / 2 = [1, -1]
    advantages, returns = compute_advantages(config, reward, {"cost": cost}, log_probs, ref_log_probs, mask, {},
                                                 {"cost": 1.0})
    close(advantages, [[1.0, 1.0], [-1.0, 0.0]])
    assert returns == {}
    # without a cost model the reward advantage alone: [1.55, -1.55]
    advantages, _ = compute_advantages(config, reward, {}, log_probs, ref_log_probs, mask, {}, {})
    close(advantages, [[1.55, 1.55], [-1.55, 0.0]])


def test_compute_advantages_ppo_lag_and_reward_shaping_hand_computed():
    from saferlhf.policy.algorithms import compute_advantages

    extra = ("ppo.kl_coeff=0.1", "ppo.gamma=1.0", "ppo.gae_lambda=0.5", "ppo.clip_range_score=50")
    mask = torch.ones(1, 2)
    log_probs, ref_log_probs = torch.tensor([[-1.0, -1.0]]), torch.tensor([[-1.5, -2.0]])  # KL_t = [0.5, 1.0]
    reward, cost = torch.tensor([1.0]), torch.tensor([0.5])
    values = {"reward": torch.tensor([[0.2, 0.4]]), "cost": torch.tensor([[0.1, 0.3]])}
    # r = [-0.05, -0.1 + 1] = [-0.05, 0.9]; c = [0.05, 0.1 + 0.5] = [0.05, 0.6]
    # reward GAE: δ1 = 0.9 - 0.4 = 0.5, δ0 = -0.05 + 0.4 - 0.2 = 0.15; A = [0.15 + 0.5·0.5, 0.5] = [0.4, 0.5]
    # cost GAE:   δ1 = 0.6 - 0.3 = 0.3,  δ0 = 0.05 + 0.3 - 0.1 = 0.25;  A = [0.25 + 0.5·0.3, 0.3] = [0.4, 0.3]
    # λ = 0.5: A = (A_r - 0.5·A_c) / 1.5 = [0.2 / 1.5, 0.35 / 1.5]
    advantages, returns = compute_advantages(_config("ppo-lag", *extra), reward, {"cost": cost}, log_probs,
                                             ref_log_probs, mask, values, {"cost": 0.5})
    close(advantages, [[0.2 / 1.5, 0.35 / 1.5]])
    close(returns["reward"], [[0.6, 0.9]])
    close(returns["cost"], [[0.5, 0.6]])
    # reward-shaping: one stream R - λ·C = 0.75, so r = [-0.05, 0.65]; δ1 = 0.25, δ0 = 0.15; A = [0.275, 0.25]
    advantages, returns = compute_advantages(_config("reward-shaping", *extra), reward, {"cost": cost}, log_probs,
                                             ref_log_probs, mask, {"reward": values["reward"]}, {"cost": 0.5})
    close(advantages, [[0.275, 0.25]])
    assert set(returns) == {"reward"}
    close(returns["reward"], [[0.475, 0.65]])
