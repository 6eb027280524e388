"""Do prefilled harmful answers turn into refusals? The DeRTa check of issue 16.

Decoupled Refusal Training (Yuan et al. 2024, :mod:`saferlhf.training.derta`) should let a model
refuse after it has started to comply. For each prompt of ``--answers`` (jsonl rows ``prompt``,
``label`` = harmful | benign, ``answer`` = the base model's own answer), a fraction f of the answer's
tokens, f ~ Uniform[``--prefill`` low, high] drawn per prompt from ``--seed`` (the same for every
model), is put after the chat-templated prompt as the start of the assistant turn; the model continues
greedily (``--max-new-tokens``, batched, left padding: :func:`saferlhf.evaluation.generation.generate_responses`).

Reported per model: the share of harmful prompts whose continuation contains a refusal statement
anywhere (:func:`saferlhf.refusal.patterns.refusal_anywhere`, late refusals included) and the same
share for benign prompts (which should stay low), with 95% Wilson intervals, plus the share whose
continuation *opens* with a refusal (:func:`saferlhf.refusal.patterns.detect_refusal`; an empty
continuation, the model stopping at once, is counted apart, not as a refusal). Every continuation is
written to the JSON for reading. Rows with an empty answer are skipped and counted.

    python experiments/derta_prefill.py --models smollm2-135m-instruct runs/sft-refusal runs/sft-derta \\
        --answers heldout_answers.jsonl --output experiments/results/derta_prefill.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import torch

from saferlhf.data.readers import read_rows
from saferlhf.evaluation.generation import generate_responses
from saferlhf.evaluation.metrics import rate, wilson_interval
from saferlhf.models.loading import inference_device, load_causal_lm, load_tokenizer
from saferlhf.refusal.patterns import detect_refusal, refusal_anywhere

LABELS = ("harmful", "benign")


def read_answers(path: str) -> tuple[list[dict], int]:
    """(rows with a non-empty answer, number of rows skipped for an empty answer); bad rows name file:line."""
    rows, empty = [], 0
    for raw in read_rows(path):
        if raw.error:
            raise ValueError(f"{raw.location}: {raw.error}")
        row = raw.row
        if (not isinstance(row.get("prompt"), str) or row.get("label") not in LABELS
                or not isinstance(row.get("answer"), str)):
            raise ValueError(f"{raw.location}: needs a string 'prompt', 'label' in {LABELS} and a string 'answer'; "
                             f"found {({key: type(value).__name__ for key, value in row.items()})}")
        if not row["answer"].strip():
            empty += 1
            continue
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no row with a non-empty answer")
    return rows, empty


def prefill_fraction(seed: int, index: int, low: float, high: float) -> float:
    """f ~ Uniform[low, high] for prompt ``index``, the same for the same seed."""
    return random.Random(f"prefill:{seed}:{index}").uniform(low, high)


def share(hits: int, total: int) -> dict:
    return {"prompts": total, "refused": hits, "share": rate(hits, total), "ci95": wilson_interval(hits, total)}


def summarize(records: list[dict]) -> dict:
    """Per label: how many continuations hold a refusal anywhere, and how many open with one."""
    summary = {}
    for label in LABELS:
        group = [record for record in records if record["label"] == label]
        summary[label] = {"refusal_anywhere": share(sum(r["refusal_anywhere"] for r in group), len(group)),
                          "refusal_in_opening": share(sum(r["refusal_in_opening"] for r in group), len(group)),
                          "empty_continuations": sum(not r["continuation"].strip() for r in group)}
    return summary


def prefill_run(model_name: str, rows: list[dict], fractions: list[float], max_new_tokens: int,
                batch_size: int) -> dict:
    """Prefill each answer's first ``round(f * tokens)`` tokens and record the model's continuation."""
    tokenizer = load_tokenizer(model_name, padding_side="left")
    model = load_causal_lm(model_name).to(inference_device()).eval()
    prefixes, lengths = [], []
    for row, fraction in zip(rows, fractions):
        answer_ids = tokenizer(row["answer"], add_special_tokens=False)["input_ids"]
        k = round(fraction * len(answer_ids))
        lengths.append(k)
        prefixes.append(tokenizer.decode(answer_ids[:k], skip_special_tokens=True))
    continuations = generate_responses(model, tokenizer, [row["prompt"] for row in rows], max_new_tokens,
                                       batch_size, progress=False, description=f"prefill {model_name}",
                                       answer_prefixes=prefixes)
    records = [{"label": row["label"], "prompt": row["prompt"], "prefill_fraction": fraction, "prefill_tokens": k,
                "prefill": prefix, "continuation": text, "refusal_anywhere": refusal_anywhere(text) is not None,
                "refusal_in_opening": bool(text.strip()) and detect_refusal(text).is_refusal}
               for row, fraction, k, prefix, text in zip(rows, fractions, lengths, prefixes, continuations)]
    return {"model": model_name, "mean_prefill_tokens": sum(lengths) / len(lengths), **summarize(records),
            "records": records}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True, help="model folders or built-in names")
    parser.add_argument("--answers", required=True, help="jsonl rows: prompt, label (harmful|benign), answer")
    parser.add_argument("--prefill", nargs=2, type=float, default=[0.25, 0.5], metavar=("LOW", "HIGH"),
                        help="share of the answer's tokens prefilled, drawn uniformly per prompt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "derta_prefill.json"))
    args = parser.parse_args(argv)
    low, high = args.prefill
    if not 0.0 <= low <= high <= 1.0:
        sys.exit(f"--prefill must satisfy 0 <= LOW <= HIGH <= 1 (got {low} {high})")
    torch.set_num_threads(args.threads)
    try:
        rows, empty = read_answers(args.answers)
    except (OSError, ValueError) as error:
        sys.exit(str(error))
    fractions = [prefill_fraction(args.seed, i, low, high) for i in range(len(rows))]
    result = {"answers": args.answers, "prefill": [low, high], "seed": args.seed, "max_new_tokens": args.max_new_tokens,
              "skipped_empty_answers": empty,
              "models": [prefill_run(name, rows, fractions, args.max_new_tokens, args.batch_size)
                         for name in args.models]}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    for run in result["models"]:
        print(json.dumps({"model": run["model"], **{label: run[label]["refusal_anywhere"] for label in LABELS}}))
    return result


if __name__ == "__main__":
    main()
