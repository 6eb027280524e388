"""Benchmark: one policy step (generate, score, update), saferlhf vs TRL's ``GRPOTrainer``.

Same policy (SmolLM2-135M-Instruct, full fine-tuning, fp32 or ``--precision bf16`` on every side, CPU,
same thread count), same built-in
prompts, same sampler (temperature 1, no top-k / top-p), exactly ``max_new_tokens`` new tokens per
answer on every side (end-of-turn suppressed until then with ``min_new_tokens``, so the token counts
are equal by construction), the same reward and cost models (TRL gets them as two Python reward
functions that call the same :class:`~saferlhf.policy.scorers.ScoreModelScorer` objects, with
``reward_weights = [1, -λ]``) and the same KL coefficient β (TRL's ``beta``; with β > 0 both sides
hold a frozen reference model). Sides:

- ``trl-grpo``: ``GRPOTrainer``, 2 prompts x 4 completions (``num_generations=4``, batch 8);
- ``ppo-lag``: ``PolicyTrainer``, 8 prompts x 1 answer, reward and cost critics;
- ``critic-free``: ``PolicyTrainer``, 2 prompts x 4 answers (the same prompts as TRL), no critics.

Each side runs in its own process (so peak memory is its own); the processes are built one after
the other, then take their steps in interleaved rounds (one step of each side per round, the order
rotating), so load from other programs on the machine hits every side alike. Round 0 is a warm-up.
A step's time is the wall time of one ``PolicyTrainer.step()`` / one TRL optimiser step
(``on_step_begin`` to ``on_step_end``: generation, rewards, reference log-probabilities, update).

    tokens/s   = completion tokens generated in a step / median step time (wall clock); the same with
                 the process's CPU time (``tokens_per_cpu_s``, ``cpu_time_ratio_vs_trl``) is less
                 sensitive to other programs on a shared machine (one thread per side by default)
    model FLOPs: 2·N·tokens for a forward-only pass (generation: prompt + new tokens; reference,
                 old log-probabilities, critics' values, scoring) and 6·N·tokens for a training pass
                 (forward + backward), N = weights of the model's linear layers (LM / score head
                 included, input embeddings and norms excluded), tokens = non-padding tokens of the
                 pass; attention-score FLOPs are left out. Counted by forward pre-hooks on each
                 model's backbone, identically for every side (the convention, not the arithmetic
                 each implementation does: padding, TRL's LM head over prompt positions, ...).
    MFU        = model FLOPs per step / median step time / matmul peak of the precision used, measured in
                 the same run (best of repeated square ``torch.matmul``, same thread count);
                 ``mfu_cpu_time`` divides by the step's CPU time instead.
    memory     = peak resident set size (``ru_maxrss``) of the side's process, set-up included.

    python bench/policy_step.py            # defaults as in issue 3: 1 warm-up + 3 measured rounds, 1 thread
                                           # (8-14 minutes on the shared 2-core machine, depending on its load)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from policy_step_sides import SHAPES, TRL_SIDE, worker  # bench/ is on sys.path when this script runs

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"ppo-lag": 1.0, "critic-free": 2.0}  # issue 3: minimum ratio of tokens/s against TRL GRPO


# ----------------------------------------------------------------------------------------------
# Shared inputs: prompts, score models, matmul peak


def benchmark_prompts(count: int) -> list[str]:
    """Built-in training prompts, harmful and benign alternating; the first two are the 2-prompt sides'."""
    from saferlhf.data.builtin import builtin_prompts

    harmful, benign = (builtin_prompts(split="train", label=label) for label in ("harmful", "benign"))
    mixed = [row["prompt"] for pair in zip(harmful, benign) for row in pair]
    return mixed[:count]


def make_score_models(backbone: str, folder: Path, seed: int) -> tuple[str, str]:
    """Reward and cost score models with fresh (untrained) heads on ``backbone``, saved under ``folder``."""
    from saferlhf.models.loading import load_tokenizer
    from saferlhf.models.score_model import ScoreModel

    paths = []
    for offset, kind in enumerate(("reward", "cost")):
        torch.manual_seed(seed + offset)
        path = folder / f"{kind}-model"
        ScoreModel.from_backbone(backbone, kind=kind).save_pretrained(path, load_tokenizer(backbone))
        paths.append(str(path))
    return paths[0], paths[1]


def matmul_peak_flops(threads: int, size: int = 2048, repeats: int = 3, trials: int = 6,
                      dtype: torch.dtype = torch.float32) -> float:
    """Best ``torch.matmul`` rate (FLOP/s) in ``dtype`` on square ``size`` matrices with ``threads`` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.matmul(a, b)
    best = 0.0
    for _ in range(trials):
        started = time.perf_counter()
        for _ in range(repeats):
            torch.matmul(a, b)
        best = max(best, 2 * size**3 * repeats / (time.perf_counter() - started))
    return best


# ----------------------------------------------------------------------------------------------
# The run: build the sides one after the other, step them in interleaved rounds, summarise


def interleaved_run(sides: list[str], settings: dict, rounds: int, matmul_size: int = 2048) -> dict[str, dict]:
    context = multiprocessing.get_context("spawn")
    connections, processes, setup = {}, {}, {}
    for side in sides:  # one at a time, so that set-ups do not compete
        connections[side], child = context.Pipe()
        processes[side] = context.Process(target=worker, args=(child, side, settings, rounds), daemon=True)
        processes[side].start()
        setup[side] = receive(connections[side], side)["setup_seconds"]
        print(f"{side}: ready after {setup[side]:.1f} s", file=sys.stderr)
    dtype = torch.bfloat16 if settings.get("precision") == "bf16" else torch.float32  # the precision used
    peaks, load = [matmul_peak_flops(settings["threads"], matmul_size, dtype=dtype)], [os.getloadavg()[0]]
    results: dict[str, list[dict]] = {side: [] for side in sides}
    for round_index in range(rounds):
        shift = round_index % len(sides)
        for side in sides[shift:] + sides[:shift]:
            connections[side].send("step")
            results[side].append(receive(connections[side], side))
            print(f"round {round_index} {side}: {results[side][-1]['seconds']:.2f} s", file=sys.stderr)
    peaks.append(matmul_peak_flops(settings["threads"], matmul_size, dtype=dtype))
    load.append(os.getloadavg()[0])
    out = {}
    for side in sides:
        summary = receive(connections[side], side)["summary"]
        processes[side].join(timeout=60)
        out[side] = {"steps": results[side], "summary": summary, "setup_seconds": setup[side]}
    out["_peak_flops"], out["_load_average"] = max(peaks), load
    return out


def receive(conn, side: str) -> dict:
    message = conn.recv()
    if "error" in message:
        raise RuntimeError(f"side {side} failed:\n{message['error']}")
    return message


def side_report(steps: list[dict], warmup: int, peak_flops: float) -> dict:
    """Median step time over the measured steps (after ``warmup``), tokens/s, MFU, phase medians."""
    measured = steps[warmup:] or steps
    seconds = statistics.median(r["seconds"] for r in measured)
    cpu_seconds = statistics.median(r["cpu_seconds"] for r in measured)
    tokens = statistics.median(r["completion_tokens"] for r in measured)
    flops = statistics.median(r["flops"] for r in measured)
    phases = sorted({p for r in measured for p in r["phases"]})
    return {"tokens_per_s": tokens / seconds, "step_seconds_median": seconds,
            "step_seconds": [round(r["seconds"], 3) for r in measured],
            "tokens_per_cpu_s": tokens / cpu_seconds, "step_cpu_seconds": [round(r["cpu_seconds"], 3) for r in measured],
            "warmup_step_seconds": [round(r["seconds"], 3) for r in steps[:warmup]],
            "completion_tokens_per_step": tokens, "model_gflop_per_step": flops / 1e9,
            "model_gflop_per_s": flops / seconds / 1e9, "mfu": flops / seconds / peak_flops,
            "mfu_cpu_time": flops / cpu_seconds / peak_flops,
            "phase_seconds_median": {p: statistics.median(r["phases"].get(p, 0.0) for r in measured) for p in phases},
            "threads": measured[0]["threads"]}


def build_result(raw: dict[str, dict], settings: dict, warmup: int) -> dict:
    peak = raw["_peak_flops"]
    sides = {side: {**side_report(r["steps"], warmup, peak), **r["summary"], "setup_seconds": round(r["setup_seconds"], 1)}
             for side, r in raw.items() if not side.startswith("_")}
    trl = sides.get(TRL_SIDE)
    result = {"benchmark": "one policy step (generate, score, update) vs TRL GRPOTrainer",
              "model": settings["model"], "device": "cpu", "precision": settings.get("precision", "fp32"),
              "threads": settings["threads"],
              "max_new_tokens": settings["max_new_tokens"], "forced_answer_length": True,
              "temperature": settings["temperature"], "kl_coeff_beta": settings["kl_coeff"],
              "lambda": settings["lambda_init"], "learning_rate": settings["learning_rate"],
              "fine_tuning": "full (no LoRA) on every side", "warmup_steps": warmup,
              "measured_steps": min(len(r["steps"]) for k, r in raw.items() if not k.startswith("_")) - warmup,
              "statistic": "median", "matmul_peak_gflops": peak / 1e9,
              "machine": {"cpus": os.cpu_count(), "load_average_1min_start_end": raw.get("_load_average")}}
    if trl:
        result["trl_grpo_tokens_per_s"] = trl["tokens_per_s"]
    for side, report in sides.items():
        if side != TRL_SIDE and trl:
            report["ratio_vs_trl"] = report["tokens_per_s"] / trl["tokens_per_s"]
            report["cpu_time_ratio_vs_trl"] = report["tokens_per_cpu_s"] / trl["tokens_per_cpu_s"]
            report["target_ratio"] = TARGETS.get(side)
            report["meets_target"] = report["ratio_vs_trl"] >= TARGETS.get(side, 0.0)
        result[side] = report
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--algo", action="append", choices=["ppo-lag", "critic-free"],
                        help="saferlhf algorithm(s) to benchmark (default: both)")
    parser.add_argument("--no-trl", action="store_true", help="skip TRL (no ratios)")
    parser.add_argument("--score-backbone", default="minilm-l6", help="backbone of fresh reward/cost heads")
    parser.add_argument("--reward-model", default="", help="trained reward model folder (default: "
                        "runs/demo/reward-model when it and runs/demo/cost-model exist, else fresh heads)")
    parser.add_argument("--cost-model", default="")
    parser.add_argument("--critic-backbone", default="tiny-llama",
                        help="ppo-lag critics' backbone when the score models cannot start them "
                             "(configs/policy-ppo-lag-cpu.yaml: tiny-llama; '' = the actor's)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--kl-coeff", type=float, default=0.01, help="β on every side (TRL's beta)")
    parser.add_argument("--lambda-init", type=float, default=1.0, help="λ (TRL reward_weights [1, -λ])")
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    parser.add_argument("--warmup-steps", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="measured steps per side")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every side (1: on a shared "
                        "2-core machine two threads per process thrash; configs/policy-ppo-lag-cpu.yaml does the same)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--matmul-size", type=int, default=2048, help="square size of the matmul-peak probe")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="every side: fp32, or bf16 autocast (TRL bf16=True; saferlhf train.precision=bf16, "
                             "bf16 frozen models and rollout copy); MFU is against the matmul peak of this precision")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "policy_step.json")
    args = parser.parse_args(argv)
    sides = ([] if args.no_trl else [TRL_SIDE]) + (args.algo or ["ppo-lag", "critic-free"])
    with tempfile.TemporaryDirectory() as tmp:
        reward_model, cost_model, heads = args.reward_model, args.cost_model, "trained (given folders)"
        demo = REPO / "runs" / "demo"
        if not (reward_model and cost_model) and (demo / "reward-model").is_dir() and (demo / "cost-model").is_dir():
            reward_model, cost_model = str(demo / "reward-model"), str(demo / "cost-model")
            heads = "trained (saferlhf demo)"
        elif not (reward_model and cost_model):
            reward_model, cost_model = make_score_models(args.score_backbone, Path(tmp), args.seed)
            heads = f"untrained: fresh seeded heads on {args.score_backbone} (the benchmark measures speed only)"
        settings = {"model": args.model, "prompts": benchmark_prompts(max(p for p, _ in SHAPES.values())),
                    "reward_model": reward_model, "cost_model": cost_model, "critic_backbone": args.critic_backbone,
                    "max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
                    "kl_coeff": args.kl_coeff, "lambda_init": args.lambda_init, "learning_rate": args.learning_rate,
                    "threads": args.threads, "seed": args.seed, "workdir": tmp, "precision": args.precision}
        raw = interleaved_run(sides, settings, args.warmup_steps + args.steps, args.matmul_size)
    result = build_result(raw, settings, args.warmup_steps)
    fresh = heads.startswith("untrained")
    result["score_models"] = {"reward": f"{args.score_backbone} + fresh reward head" if fresh else reward_model,
                              "cost": f"{args.score_backbone} + fresh cost head" if fresh else cost_model, "heads": heads,
                              "scoring": "ScoreModelScorer on every side (TRL: through its reward functions)"}
    result["prompts"] = {"source": "saferlhf.data.builtin train split, harmful/benign alternating; the 2-prompt "
                                   "sides use the first two", "two_prompt_sides": settings["prompts"][:2],
                         "prompt_tokens_per_step": prompt_tokens(args.model, settings["prompts"], sides)}
    result["notes"] = {
        "trl_settings": f"TRL defaults except: use_cpu, {args.precision} (bf16={args.precision == 'bf16'}), batch 8 = 2 prompts x num_generations 4, "
                        "max_completion_length and min_new_tokens = max_new_tokens, beta = kl_coeff, "
                        "learning_rate, reward_weights [1, -λ], gradient_checkpointing=False (saferlhf does not "
                        "recompute activations either), logging and saving off. TRL's own default beta = 0 would "
                        "skip its reference model and forward (a different objective)",
        "saferlhf_settings": f"PolicyTrainer defaults except: train.precision={args.precision}, one micro-batch per step (train.batch_size = "
                             "answers per step), ppo.kl_coeff, lambda_init, learning_rate, num_threads, "
                             "ppo.critic_backbone (ppo-lag), actor.generation_config.min_new_tokens. With one "
                             "micro-batch the update's forward supplies the old log-probabilities "
                             "(PolicyTrainer.reuse_update_forward), as TRL with num_iterations = 1",
        "tokens": "completion tokens per step (all answers exactly max_new_tokens long)",
        "mfu": "model FLOPs per step (2N per token forward-only, 6N training; N = linear-layer weights; "
               "attention scores left out) / median step time / matmul peak of the precision used, measured in this run",
        "peak_rss_mb": "ru_maxrss of the side's own process (model loading included)",
    }
    result["versions"] = versions()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


def prompt_tokens(model: str, prompts: list[str], sides: list[str]) -> dict[str, int]:
    """Chat-template prompt tokens a side feeds to generate per step (its prompts x answers per prompt)."""
    from saferlhf.data.templates import render_prompt
    from saferlhf.models.loading import load_tokenizer

    tokenizer = load_tokenizer(model)
    counts = [len(tokenizer(render_prompt(tokenizer, p), add_special_tokens=False)["input_ids"]) for p in prompts]
    return {side: sum(counts[:SHAPES[side][0]]) * SHAPES[side][1] for side in sides}


def versions() -> dict:
    import transformers
    import trl

    return {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
            "python": platform.python_version(), "cpu": platform.processor() or platform.machine()}


if __name__ == "__main__":
    sys.exit(main())
