"""Hooked vs weight-orthogonalised directional ablation on a real model (issue 15's "same logits" check).

The direction is the difference in means of the last chat-template token's hidden state at ``--layer``
between the built-in harmful and harmless training prompts (any direction serves: the check is of the
algebra of :func:`saferlhf.controls.direction.orthogonalize_weights` against
:func:`saferlhf.controls.direction.ablation_hooks`). The ablated model is saved and reloaded as
``saferlhf refusal-direction`` does, and both are compared on float64 copies over held-out prompts.

    python experiments/hooks_vs_weights.py --model smollm2-135m-instruct --layer 12
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from saferlhf.controls.direction_stage import _hooks_vs_weights, _save_ablated
from saferlhf.controls.probe import last_token_states
from saferlhf.data.builtin import builtin_prompts
from saferlhf.models.loading import load_causal_lm, load_tokenizer


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--layer", type=int, default=12)
    parser.add_argument("--prompts", type=int, default=8, help="held-out prompts of each label compared")
    args = parser.parse_args(argv)
    model, tokenizer = load_causal_lm(args.model).eval(), load_tokenizer(args.model, padding_side="left")
    train = builtin_prompts(split="train")
    states = last_token_states(model, tokenizer, [r["prompt"] for r in train])[:, args.layer].double()
    harmful = torch.tensor([r["label"] == "harmful" for r in train])
    direction = states[harmful].mean(0) - states[~harmful].mean(0)  # (hidden,)
    heldout = builtin_prompts(split="heldout")
    prompts = ([r["prompt"] for r in heldout if r["label"] == "harmful"][:args.prompts]
               + [r["prompt"] for r in heldout if r["label"] != "harmful"][:args.prompts])
    with tempfile.TemporaryDirectory() as folder:
        ablated = _save_ablated(model, tokenizer, direction, Path(folder) / "ablated", False)
        difference = _hooks_vs_weights(model, ablated, tokenizer, direction, prompts)
    result = {"model": args.model, "layer": args.layer, "prompts": len(prompts),
              "max_abs_logit_diff_hooks_vs_weights": difference}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
