"""The refusal SFT file the refusal-training experiments share (docs/results.md, "Refusal training on SmolLM2").

One row per built-in training prompt (279): a harmful prompt gets a written refusal
(:func:`saferlhf.pipeline.refusal_templates.refusal_for`, as the pipeline's preferred answers) and, in
``harmful_response``, the model's own greedy answer (what DeRTa's harmful-prefix MLE and RTO train
against; the base model answers almost every harmful prompt); a harmless prompt (benign or
pseudo-harmful) gets the model's own greedy answer, so the SFT keeps the model's helpful behaviour.
Nothing here is chosen on a benchmark: the prompts are the built-in training split, plus, with
``--extra FILE --extra-part i/n``, one part of a labelled prompt file (whole minimal pairs with
``--extra-group-size 2``: more refusals per harm category for per-category refusal tokens, the other
part left for evaluation).

    python experiments/refusal_sft_data.py --model smollm2-135m-instruct --output runs/refusal-sft/data.jsonl
    python experiments/refusal_sft_data.py --output runs/refusal-sft/data-mp.jsonl \
        --extra experiments/data/minimal_pairs.jsonl --extra-part 0/2 --extra-group-size 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from saferlhf.controls.gate import PromptSet, read_prompt_set
from saferlhf.data.builtin import builtin_prompts
from saferlhf.evaluation.generation import generate_responses
from saferlhf.models.loading import load_causal_lm, load_tokenizer
from saferlhf.pipeline.refusal_templates import refusal_for


def rows_for(prompts: list[dict], answers: list[str]) -> list[dict]:
    """SFT rows: harmful -> (refusal, own answer as ``harmful_response``); harmless -> own answer."""
    rows = []
    for prompt, answer in zip(prompts, answers, strict=True):
        row = {"prompt": prompt["prompt"], "label": prompt["label"], "category": prompt["category"]}
        if prompt["label"] == "harmful":
            row.update(response=refusal_for(prompt["prompt"]), harmful_response=answer, refusal=True)
        else:
            row.update(response=answer, refusal=False)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--output", required=True)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--limit", type=int, default=0, help="first N training prompts only (tests)")
    parser.add_argument("--extra", default="", help="a labelled prompt file (prompt, label, category) to add")
    parser.add_argument("--extra-part", default="", help="'i/n': keep the i-th of n interleaved parts of --extra")
    parser.add_argument("--extra-group-size", type=int, default=1, help="rows kept together by --extra-part")
    args = parser.parse_args(argv)
    prompts = builtin_prompts(split="train")[:args.limit or None]
    n_builtin = len(prompts)
    if args.extra:
        extra = PromptSet(path=args.extra, part=args.extra_part, group_size=args.extra_group_size)
        extra.validate("--extra ")
        prompts += [{"category": "", **row} for row in read_prompt_set(extra)]
    model, tokenizer = load_causal_lm(args.model).eval(), load_tokenizer(args.model, padding_side="left")
    answers = generate_responses(model, tokenizer, [p["prompt"] for p in prompts], args.max_new_tokens,
                                 batch_size=0, description="own answers")
    rows = rows_for(prompts, answers)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    summary = {"rows": len(rows), "harmful": sum(r["label"] == "harmful" for r in rows), "output": str(output),
               "extra_rows": len(rows) - n_builtin}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
