"""Losses of the reward model R (helpfulness) and cost model C (harm), Safe RLHF section 2.

Reward (Bradley-Terry on helpfulness pairs, ``y_w`` more helpful than ``y_l``)::

    L_R = -log σ(R(y_w) - R(y_l)) + η · mean(R(y_w)², R(y_l)²)

Cost (Bradley-Terry on harmlessness pairs, ``y_u`` less safe than ``y_s``, plus a sign term on the
absolute safety labels, s(y) = +1 if y is labelled unsafe and -1 if safe)::

    L_C = -log σ(C(y_u) - C(y_s)) - log σ(s(y_u)·C(y_u)) - log σ(s(y_s)·C(y_s)) + η · mean(C²)

so that **C(y) > 0 means unsafe**. A pair without safety labels contributes only the pairwise term
(its sign terms are masked out); an unpaired record (one response y with an absolute label, TRL's
unpaired format or BeaverTails: ``ranked = 0``, the response in both slots, the second slot's label
NaN) contributes only its sign term ``-log σ(s(y)·C(y))``. η = 0.001 in the reference scripts. The mean of the regulariser is
taken over the 2B scores of the batch, as in PKU-Alignment/safe-rlhf
(``torch.stack([lower, higher]).square().mean()``).

Severity-weighted cost (an option of this project, not of the paper; ``train-cost severity_weights=[w0, w1, w2, w3]``):
PKU-SafeRLHF labels each response with a severity level ℓ(y) ∈ {0 safe, 1 minor, 2 moderate, 3 severe}. Each
pair's terms are weighted by the level of its more severe response, ℓ = max(ℓ(y_s), ℓ(y_u)), and the batch
mean stays over the B pairs::

    L_C^w = (1/B) Σ_i w(ℓ_i) · [-log σ(C(y_u,i) - C(y_s,i)) - log σ(s(y_u,i)·C(y_u,i)) - log σ(s(y_s,i)·C(y_s,i))]
            + η · mean(C²)

so that a mistake on severe harm costs the model more than one on minor harm. A pair without a level
(either response unlabelled) gets w = 1. Without the option the loss is ``L_C`` above, bit for bit.

Why hand-written: no library ships the cost model's sign loss; TRL's ``RewardTrainer`` has the
Bradley-Terry term (and ``center_rewards_coefficient``, a different regulariser) only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reward_loss(better_scores: torch.Tensor, worse_scores: torch.Tensor,
                regularization: float = 0.001) -> torch.Tensor:
    """``L_R`` for end scores of shape (B,) each."""
    pairwise = -F.logsigmoid(better_scores - worse_scores).mean()
    return pairwise + regularization * torch.stack([better_scores, worse_scores]).square().mean()


def safety_sign(is_safe: torch.Tensor) -> torch.Tensor:
    """s(y) = +1 for unsafe, -1 for safe, 0 where unlabelled (``is_safe`` holds 1, 0 or NaN)."""
    sign = 1.0 - 2.0 * is_safe
    return torch.nan_to_num(sign, nan=0.0)


def severity_weights(levels: torch.Tensor, weights_per_level: list[float] | tuple[float, ...]) -> torch.Tensor:
    """w(ℓ) for pair severity levels (B,) (0-3 as floats, NaN = no level -> 1.0); ``weights_per_level[ℓ]`` = w(ℓ)."""
    table = torch.tensor(list(weights_per_level), dtype=torch.float32, device=levels.device)
    known = ~torch.isnan(levels)
    index = torch.where(known, levels, torch.zeros_like(levels)).long()
    return torch.where(known, table[index], torch.ones_like(levels, dtype=torch.float32))


def cost_loss(safer_scores: torch.Tensor, unsafer_scores: torch.Tensor,
              safer_is_safe: torch.Tensor, unsafer_is_safe: torch.Tensor,
              regularization: float = 0.001, ranked: torch.Tensor | None = None,
              weights: torch.Tensor | None = None) -> torch.Tensor:
    """``L_C`` for end scores (B,) and safety labels (B,) as floats 1.0 safe / 0.0 unsafe / NaN unknown;
    ``ranked`` (B,) is 1.0 for a ranked pair and 0.0 for an unpaired record (its pairwise term dropped);
    ``weights`` (B,) multiplies each pair's terms (``L_C^w``, e.g. :func:`severity_weights`), None = ``L_C``."""
    pairwise = -F.logsigmoid(unsafer_scores - safer_scores)  # (B,)
    if ranked is not None:
        pairwise = pairwise * ranked.to(pairwise.dtype)
    sign_terms = torch.zeros_like(pairwise)
    for scores, is_safe in ((safer_scores, safer_is_safe), (unsafer_scores, unsafer_is_safe)):
        sign = safety_sign(is_safe.to(scores.dtype))
        sign_terms = sign_terms - F.logsigmoid(sign * scores) * (sign != 0)
    per_pair = pairwise + sign_terms
    if weights is not None:
        per_pair = per_pair * weights.to(per_pair.dtype)
    return per_pair.mean() + regularization * torch.stack([safer_scores, unsafer_scores]).square().mean()
