"""Choosing one refusal direction among the (position, layer) candidates, with the filters of the
reference (Arditi et al. 2024, appendix C; andyrdt/refusal_direction ``select_direction.py``).

For every candidate r_{i,l}, on validation prompts not used to compute it:

- ``ablation_score``: mean refusal score of the harmful prompts with r̂ ablated everywhere (want low);
- ``addition_score``: mean refusal score of the harmless prompts with r added at block l (want high);
- ``ablation_kl``: mean KL(model ‖ ablated) of the next-token distribution on the harmless prompts.

Candidates are dropped when ``l ≥ max_layer_fraction · L`` (too close to the unembedding), when
``ablation_kl > max_kl`` (ablation changes harmless behaviour), or when ``addition_score <
min_addition_score`` (adding it does not induce refusal); the survivor with the lowest
``ablation_score`` wins.
"""

from __future__ import annotations

import torch

from saferlhf.controls.direction import (
    ablation_hooks, addition_hooks, decoder_layers, kl_divergence, last_logits, refusal_scores,
)


@torch.no_grad()
def score_candidates(model, tokenizer, directions: torch.Tensor, harmful: list[str], harmless: list[str],
                     token_ids: list[int], batch_size: int = 16, coefficient: float = 1.0,
                     layers: list[int] | None = None, positions: list[int] | None = None,
                     progress=None) -> dict[str, torch.Tensor]:
    """``{"ablation_score", "addition_score", "ablation_kl"}``, each (P, L) float64, for ``directions`` (P, L, d).

    Only ``layers`` and ``positions`` (indices into the first dimension) are scored when given; zero candidates (the embedding of a template token, the same
    for every prompt) are not scored either: both stay NaN. ``progress(position, layer)`` is called
    after each candidate."""
    n_positions, n_layers = directions.shape[:2]
    if n_layers != len(decoder_layers(model)):
        raise ValueError(f"directions cover {n_layers} layers, the model has {len(decoder_layers(model))}")
    base_harmless = last_logits(model, tokenizer, harmless, batch_size)
    scores = {key: torch.full((n_positions, n_layers), float("nan"), dtype=torch.float64)
              for key in ("ablation_score", "addition_score", "ablation_kl")}
    for position in range(n_positions) if positions is None else positions:
        for layer in range(n_layers) if layers is None else layers:
            direction = directions[position, layer]
            if direction.norm() == 0:  # block 0's input at a template token: the same embedding for every prompt
                continue
            with ablation_hooks(model, direction):  # harmful and harmless prompts in one pass
                logits = last_logits(model, tokenizer, harmful + harmless, batch_size)
            with addition_hooks(model, direction, layer, coefficient):
                added = last_logits(model, tokenizer, harmless, batch_size)
            scores["ablation_score"][position, layer] = refusal_scores(logits[:len(harmful)], token_ids).mean()
            scores["ablation_kl"][position, layer] = kl_divergence(base_harmless, logits[len(harmful):]).mean()
            scores["addition_score"][position, layer] = refusal_scores(added, token_ids).mean()
            if progress:
                progress(position, layer)
    return scores


def select_direction(scores: dict[str, torch.Tensor], max_layer_fraction: float = 0.8, max_kl: float = 0.1,
                     min_addition_score: float = 0.0) -> tuple[tuple[int, int] | None, dict[str, int]]:
    """``((position index, layer) or None, {reason: candidates dropped})`` by the module's filters.

    A candidate with any NaN score counts as not scored (dropped)."""
    ablation, addition, kl = scores["ablation_score"], scores["addition_score"], scores["ablation_kl"]
    n_layers = ablation.shape[1]
    layers = torch.arange(n_layers).expand_as(ablation)
    unscored = ablation.isnan() | addition.isnan() | kl.isnan()
    reasons = {
        f"layer >= {max_layer_fraction} * {n_layers}": layers >= max_layer_fraction * n_layers,
        f"KL > {max_kl}": kl > max_kl,
        f"addition score < {min_addition_score}": addition < min_addition_score,
        "not scored (zero or skipped)": unscored,
    }
    keep = ~torch.stack(list(reasons.values())).any(dim=0)
    dropped = {reason: int(mask.sum()) for reason, mask in reasons.items()}
    if not keep.any():
        return None, dropped
    masked = torch.where(keep, ablation, torch.tensor(float("inf"), dtype=ablation.dtype))
    flat = int(masked.argmin())
    return (flat // n_layers, flat % n_layers), dropped
