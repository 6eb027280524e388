"""Safe RLHF policy optimisation: PPO-Lagrangian, the PPO and reward-shaping baselines, a critic-free
variant, and two Lagrange-multiplier rules (gradient ascent on log λ, PID). Guide: ``docs/policy.md``.

Modules: :mod:`.lagrange` / :mod:`.pid_lagrange` (λ), :mod:`.advantages` (GAE, group baselines),
:mod:`.losses` (KL-penalised rewards, PPO losses), :mod:`.rollout` (sampling and masks),
:mod:`.scorers` (reward / cost sources), :mod:`.algorithms` (what differs between algorithms),
:mod:`.trainer` (the one loop), :mod:`.checkpoint`, :mod:`.stage` (``saferlhf train-policy``).
"""
