"""Benchmark: answer generation, the project's path against the previous path and the machine's limit.

Both sides answer the same prompts (built-in prompts, harmful and benign alternating), greedy, each
answer as long as the model makes it (at most ``--max-new-tokens``), in the same process, in
alternating rounds (the order rotating), so that load from other programs hits both alike:

- ``baseline``: the path ``saferlhf evaluate`` used before issue 20, Hugging Face ``generate`` on a
  float32 model, 16 prompts per batch (longest first);
- ``project``: :func:`saferlhf.evaluation.generation.generate_responses` as ``evaluate``, the
  pipeline's sampling and the demo now call it: ``precision=auto`` (bf16 weights where the CPU has
  AVX512-BF16 / AMX) and ``batch_size=0`` (batches sized to the memory available).

    tokens/s          = real answer tokens (the answer re-tokenised, as ``evaluate`` counts them; end
                        of turn and padding excluded) / wall time of the whole generation
    model FLOPs       = 2·N per generated token, N = weights of the linear layers (LM head included,
                        embeddings excluded); prompt tokens are not counted, which flatters neither side
    fraction_of_peak  = project model FLOP/s / the best bf16 (float32 on CPUs without bf16) square
                        ``torch.matmul`` rate measured in the same run with the same threads

    python bench/generation.py                  # writes bench/results/generation.json (3-6 minutes, 2 threads)
    python bench/generation.py --prompts 32 --rounds 1 --output /tmp/g.json    # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from policy_step import matmul_peak_flops  # bench/ is on sys.path when this script runs

REPO = Path(__file__).resolve().parents[1]
BASELINE_BATCH = 16
TARGETS = {"ratio_vs_baseline": 2.5, "fraction_of_peak": 0.30}  # issue 20's "must show"


def benchmark_prompts(count: int) -> list[str]:
    from saferlhf.data.builtin import builtin_prompts

    harmful, benign = (builtin_prompts(label=label) for label in ("harmful", "benign"))
    return [row["prompt"] for pair in zip(harmful, benign) for row in pair][:count]


def linear_weights(model: torch.nn.Module) -> int:
    """N: weights of the linear layers (a tied LM head counts once, as a matrix product)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def timed_generation(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int) -> dict:
    from saferlhf.evaluation.generation import generate_responses

    started = time.perf_counter()
    answers = generate_responses(model, tokenizer, prompts, max_new_tokens, batch_size, progress=False)
    seconds = time.perf_counter() - started
    tokens = sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)
    return {"seconds": seconds, "tokens": tokens, "answers": answers}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=96)
    parser.add_argument("--max-new-tokens", type=int, default=96, help="as saferlhf evaluate's default")
    parser.add_argument("--rounds", type=int, default=2, help="measured rounds per side (after one warm-up batch)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--matmul-size", type=int, default=2048, help="square size of the matmul-peak probe")
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "generation.json"))
    args = parser.parse_args()

    from saferlhf.data.templates import render_prompt
    from saferlhf.evaluation.generation import auto_batch_size
    from saferlhf.models.loading import load_causal_lm, load_tokenizer
    from saferlhf.models.precision import bf16_supported, resolve_precision, torch_dtype

    torch.set_num_threads(args.threads)
    prompts = benchmark_prompts(args.prompts)
    tokenizer = load_tokenizer(args.model, padding_side="left")
    precision = resolve_precision("auto")
    models = {"baseline": load_causal_lm(args.model), "project": load_causal_lm(args.model, dtype=torch_dtype("auto"))}
    longest = max(len(tokenizer(render_prompt(tokenizer, p), add_special_tokens=False)["input_ids"]) for p in prompts)
    batch = {"baseline": BASELINE_BATCH,  # the project side passes 0 (auto), which resolves to this
             "project": auto_batch_size(models["project"], longest + args.max_new_tokens)}
    for side, model in models.items():  # warm-up: one small batch each
        timed_generation(model, tokenizer, prompts[:4], 8, 4)
    runs: dict[str, list[dict]] = {side: [] for side in models}
    for round_index in range(args.rounds):
        order = list(models) if round_index % 2 == 0 else list(reversed(models))
        for side in order:
            runs[side].append(timed_generation(models[side], tokenizer, prompts, args.max_new_tokens, batch[side]))
            print(f"round {round_index} {side}: {runs[side][-1]['tokens']} tokens in "
                  f"{runs[side][-1]['seconds']:.1f} s", file=sys.stderr, flush=True)
    peaks = {"fp32": matmul_peak_flops(args.threads, args.matmul_size)}
    if bf16_supported():  # an emulated bf16 peak (no AVX512-BF16 / AMX) is slow to measure and means nothing
        peaks["bf16"] = matmul_peak_flops(args.threads, args.matmul_size, dtype=torch.bfloat16)
    peak_used = "bf16" if precision == "bf16" else "fp32"
    weights = linear_weights(models["project"])

    def side_summary(side: str) -> dict:
        rates = [r["tokens"] / r["seconds"] for r in runs[side]]
        rate = statistics.median(rates)
        return {"tokens_per_s": rate, "tokens_per_s_rounds": rates, "tokens": [r["tokens"] for r in runs[side]],
                "seconds": [r["seconds"] for r in runs[side]], "batch_size": batch[side],
                "dtype": str(next(models[side].parameters()).dtype).replace("torch.", ""),
                "model_gflop_per_s": 2 * weights * rate / 1e9}

    project, baseline = side_summary("project"), side_summary("baseline")
    same = sum(a == b for a, b in zip(runs["project"][0]["answers"], runs["baseline"][0]["answers"]))
    result = {
        "benchmark": "answer generation (greedy, natural lengths): project path vs HF generate fp32 batch 16",
        "model": args.model, "prompts": len(prompts), "max_new_tokens": args.max_new_tokens,
        "threads": args.threads, "rounds": args.rounds, "statistic": "median over rounds",
        "precision": precision, "linear_weights_N": weights,
        "project_tokens_per_s": project["tokens_per_s"], "baseline_tokens_per_s": baseline["tokens_per_s"],
        "ratio_vs_baseline": project["tokens_per_s"] / baseline["tokens_per_s"],
        "fraction_of_peak": 2 * weights * project["tokens_per_s"] / peaks[peak_used],
        "peak_used": peak_used,
        "matmul_peak_gflops": {k: v / 1e9 for k, v in peaks.items()},
        "bf16_native": bf16_supported(),
        "baseline_fraction_of_fp32_peak": 2 * weights * baseline["tokens_per_s"] / peaks["fp32"],
        "identical_answers": f"{same} of {len(prompts)} (bf16 and fp32 greedy answers may differ)",
        "targets": TARGETS, "project": project, "baseline": baseline,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "load_average_1min": os.getloadavg()[0], "torch": torch.__version__},
    }
    result["meets_targets"] = all(result[key] >= target for key, target in TARGETS.items())
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("project_tokens_per_s", "baseline_tokens_per_s", "ratio_vs_baseline",
                                              "fraction_of_peak", "meets_targets")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
