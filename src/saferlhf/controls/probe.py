"""A linear harm probe on a model's hidden states, and the threshold arithmetic every control shares.

Probe (the analysis of ``experiments/harm_probe.py``, docs/pipeline.md): the hidden state h_l of the
last token of the chat-templated prompt at layer l, standardised with the training prompts' mean and
standard deviation, z = (h_l - mu) / sigma; logistic regression with an L2 penalty fitted by LBFGS,

    minimise  mean_i BCE(w . z_i + b, y_i) + l2 * ||w||^2,     y = 1 for a harmful prompt,

and the harm score of a prompt is the logit s = w . z + b.

Thresholds: a score s flags a prompt iff s >= t. Over prompts with harm labels y, the control's
harmful compliance is the share of harmful prompts NOT flagged and its false refusal the share of
harmless prompts flagged (before the model's own refusals are added). :func:`sweep` traces both for
every distinct threshold (both fall or rise monotonically with t); :func:`choose_threshold` picks the
lowest threshold whose harmless flagged share stays within a budget: the most harmful prompts caught
at that false-refusal cost. Used by the gate on probe scores and by refusal tokens on p([refuse]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from saferlhf.data.templates import render_prompt


def last_token_states(model, tokenizer, prompts: list[str], batch_size: int = 32) -> torch.Tensor:
    """(N, layers + 1, hidden) hidden states at the last token of each chat-templated prompt (left padding)."""
    device = next(model.parameters()).device
    states = []
    for start in range(0, len(prompts), batch_size):
        texts = [render_prompt(tokenizer, p) for p in prompts[start:start + batch_size]]
        batch = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left").to(device)
        with torch.no_grad():
            hidden = model(**batch, output_hidden_states=True, logits_to_keep=1).hidden_states  # no full-vocab logits
        states.append(torch.stack([h[:, -1] for h in hidden], dim=1).float().cpu())
    return torch.cat(states)


def fit_probe(x: torch.Tensor, y: torch.Tensor, l2: float = 1e-2) -> tuple[torch.Tensor, torch.Tensor]:
    """Logistic regression ``(weight (D,), bias (1,))`` on features ``x`` (N, D) and labels ``y`` (N,) in {0, 1}."""
    weight = torch.zeros(x.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=200)

    def closure():
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ weight + bias, y) + l2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counting one half
    (the Mann-Whitney form); ``ValueError`` without at least one positive and one negative."""
    labels = labels.bool()
    positive, negative = scores[labels], scores[~labels]
    if len(positive) == 0 or len(negative) == 0:
        raise ValueError("AUC needs at least one positive and one negative example")
    greater = (positive[:, None] > negative[None, :]).double() + 0.5 * (positive[:, None] == negative[None, :]).double()
    return float(greater.mean())


@dataclass
class LinearProbe:
    """A fitted probe on one layer: score = ((h - mean) / std) . weight + bias."""

    layer: int
    mean: torch.Tensor  # (hidden,)
    std: torch.Tensor  # (hidden,)
    weight: torch.Tensor  # (hidden,)
    bias: torch.Tensor  # (1,)

    @classmethod
    def fit(cls, states: torch.Tensor, labels: torch.Tensor, layer: int, l2: float = 1e-2) -> "LinearProbe":
        """Fit on ``states`` (N, layers + 1, hidden) at ``layer`` against ``labels`` (N,) in {0, 1}."""
        x = states[:, layer]
        mean, std = x.mean(0), x.std(0) + 1e-6
        weight, bias = fit_probe((x - mean) / std, labels.float(), l2)
        return cls(layer, mean, std, weight, bias)

    def score(self, states: torch.Tensor) -> torch.Tensor:
        """(N,) harm logits from ``states`` (N, layers + 1, hidden)."""
        return (states[:, self.layer] - self.mean) / self.std @ self.weight + self.bias


def sweep(scores: list[float], harmful: list[bool], refused_anyway: list[bool] | None = None) -> list[dict]:
    """Every operating point of "refuse iff score >= threshold", lowest threshold first.

    One row per distinct score (and +inf, which flags nothing): ``threshold``, ``harmful_compliance`` =
    #(harmful, score < t, not refused_anyway) / #harmful and ``false_refusal`` = #(harmless, score >= t or
    refused_anyway) / #harmless (``None`` when a side is empty). ``refused_anyway`` marks the prompts the
    model refuses on its own (a gate's unflagged prompts keep the model's answer). Harmful compliance
    never falls and false refusal never rises as t grows.
    """
    refused_anyway = refused_anyway or [False] * len(scores)
    if not len(scores) == len(harmful) == len(refused_anyway):
        raise ValueError(f"{len(scores)} scores, {len(harmful)} labels, {len(refused_anyway)} refusal flags")
    n_harmful, n_harmless = sum(harmful), len(harmful) - sum(harmful)
    rows = []
    for t in sorted(set(scores)) + [math.inf]:
        complied = sum(h and s < t and not r for s, h, r in zip(scores, harmful, refused_anyway))
        refused = sum((not h) and (s >= t or r) for s, h, r in zip(scores, harmful, refused_anyway))
        rows.append({"threshold": t, "harmful_compliance": complied / n_harmful if n_harmful else None,
                     "false_refusal": refused / n_harmless if n_harmless else None})
    return rows


def choose_threshold(scores: list[float], harmful: list[bool], max_false_refusal: float) -> dict:
    """The sweep row with the lowest threshold whose harmless flagged share is <= ``max_false_refusal``."""
    if not any(not h for h in harmful):
        raise ValueError("choosing a threshold needs harmless prompts (none given)")
    return next(row for row in sweep(scores, harmful) if row["false_refusal"] <= max_false_refusal)
