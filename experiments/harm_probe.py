"""How well can the base model's own hidden states tell harmful prompts from harmless ones?

The analysis behind docs/pipeline.md ("How far the base model can tell them apart"): a linear probe
(:class:`saferlhf.controls.probe.LinearProbe`: logistic regression, L2 1e-2, LBFGS) on the hidden state of the last token of the chat-templated
prompt, one probe per layer, trained on the built-in training prompts (harmful against benign and
pseudo-harmful) and tested on the built-in held-out prompts and on XSTest (unsafe against safe).
For XSTest it also reports the best operating point the issue's over-refusal target allows: the
threshold that flags at most 11.6% of the safe prompts (base 1.6% + 10 points), chosen on XSTest
itself, and the share of unsafe prompts it then misses (an optimistic bound for a policy's harmful
compliance at that false-refusal rate).

    python experiments/harm_probe.py [--model smollm2-135m-instruct] [--xstest ../shared/data/xstest/xstest_prompts.csv]
                                     [--extra-prompts FILE ...]

``--extra-prompts`` adds training prompts in the pipeline's ``prompts.files`` format (read the same
way, so a bad row names its ``file:LINE``) to the built-in training split: does more data move XSTest?

Writes experiments/results/harm_probe.json (``--output``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import torch

from saferlhf.config import DataSource
from saferlhf.controls.probe import LinearProbe, auc, last_token_states
from saferlhf.data.builtin import builtin_prompts
from saferlhf.models.loading import load_causal_lm, load_tokenizer
from saferlhf.pipeline.config import PromptsConfig
from saferlhf.pipeline.prompts import training_prompts


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--xstest", default="../shared/data/xstest/xstest_prompts.csv")
    parser.add_argument("--max-safe-flagged", type=float, default=0.116)
    parser.add_argument("--extra-prompts", nargs="*", default=[], metavar="FILE")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "harm_probe.json"))
    args = parser.parse_args(argv)
    if not Path(args.xstest).exists():
        sys.exit(f"XSTest not found at {args.xstest} (needs ../shared/data/xstest)")
    torch.set_num_threads(args.threads)
    model, tokenizer = load_causal_lm(args.model).eval(), load_tokenizer(args.model, padding_side="left")
    train = training_prompts(PromptsConfig(files=[DataSource(path=path) for path in args.extra_prompts]))
    heldout = builtin_prompts(split="heldout")
    with open(args.xstest, newline="", encoding="utf-8") as handle:
        xstest = list(csv.DictReader(handle))
    sets = {"train": ([r["prompt"] for r in train], [r["label"] == "harmful" for r in train]),
            "heldout": ([r["prompt"] for r in heldout], [r["label"] == "harmful" for r in heldout]),
            "xstest": ([r["prompt"] for r in xstest], [r["label"] == "unsafe" for r in xstest])}
    states = {name: last_token_states(model, tokenizer, prompts) for name, (prompts, _) in sets.items()}
    labels = {name: torch.tensor(flags, dtype=torch.float32) for name, (_, flags) in sets.items()}
    layers = []
    for layer in range(1, states["train"].shape[1]):
        probe = LinearProbe.fit(states["train"], labels["train"], layer)
        scores = {name: probe.score(s) for name, s in states.items()}
        accuracy = {name: ((scores[name] > 0).float() == labels[name]).float().mean().item() for name in scores}
        safe = scores["xstest"][labels["xstest"] == 0].sort().values
        threshold = safe[min(len(safe) - 1, int((1 - args.max_safe_flagged) * len(safe)))]
        missed = (scores["xstest"][labels["xstest"] == 1] <= threshold).float().mean().item()
        layers.append({"layer": layer, "accuracy": accuracy, "xstest_auc": auc(scores["xstest"], labels["xstest"]),
                       "heldout_auc": auc(scores["heldout"], labels["heldout"]),
                       "xstest_unsafe_missed_at_max_safe_flagged": missed})
        print(f"layer {layer:2d}: accuracy held-out {accuracy['heldout']:.3f}, XSTest {accuracy['xstest']:.3f}; "
              f"XSTest AUC {layers[-1]['xstest_auc']:.3f}; flagging {args.max_safe_flagged:.1%} of safe prompts "
              f"misses {missed:.1%} of unsafe", flush=True)
    best = max(layers, key=lambda row: row["xstest_auc"])
    result = {"model": args.model, "extra_prompts": args.extra_prompts, "max_safe_flagged": args.max_safe_flagged,
              "best_layer": best, "layers": layers,
              "sizes": {name: len(prompts) for name, (prompts, _) in sets.items()}}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"best layer {best['layer']}: XSTest AUC {best['xstest_auc']:.3f}, misses "
          f"{best['xstest_unsafe_missed_at_max_safe_flagged']:.1%} of unsafe prompts; wrote {out}")
    return result


if __name__ == "__main__":
    main()
