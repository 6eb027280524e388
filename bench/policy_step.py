"""Benchmark: one policy step (generate, score, update), saferlhf vs TRL's ``GRPOTrainer``.

Same policy (SmolLM2-135M-Instruct, full fine-tuning, fp32, CPU, same thread count), same built-in
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
    MFU        = model FLOPs per step / median step time / fp32 matmul peak, the peak measured in
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
import resource
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
TRL_SIDE = "trl-grpo"
SHAPES = {TRL_SIDE: (2, 4), "ppo-lag": (8, 1), "critic-free": (2, 4)}  # prompts x answers per prompt
TARGETS = {"ppo-lag": 1.0, "critic-free": 2.0}  # issue 3: minimum ratio of tokens/s against TRL GRPO


# ----------------------------------------------------------------------------------------------
# Shared inputs: prompts, score models, FLOP counting, matmul peak


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


def linear_weights(model: torch.nn.Module) -> int:
    """N of the FLOP formula: weights of the linear layers (each shared weight once)."""
    weights = {id(m.weight): m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear)}
    return sum(weights.values())


class FlopCounter:
    """Model FLOPs by forward pre-hooks: 2·N (forward-only) or 6·N (training) per non-padding token."""

    def __init__(self):
        self.flops = 0.0

    def watch(self, backbone: torch.nn.Module, weights: int) -> None:
        def hook(module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is None:
                ids = kwargs["inputs_embeds"]
            length = ids.shape[1]  # this pass's new positions (1 per decoding step of generate)
            mask = kwargs.get("attention_mask")
            tokens = float(mask[:, -length:].sum()) if mask is not None and mask.dim() == 2 else ids.shape[0] * length
            training = torch.is_grad_enabled() and any(p.requires_grad for p in module.parameters())
            self.flops += (6 if training else 2) * weights * tokens

        backbone.register_forward_pre_hook(hook, with_kwargs=True)


def matmul_peak_flops(threads: int, size: int = 2048, repeats: int = 3, trials: int = 6) -> float:
    """Best fp32 ``torch.matmul`` rate (FLOP/s) on square ``size`` matrices with ``threads`` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)
    best = 0.0
    for _ in range(trials):
        started = time.perf_counter()
        for _ in range(repeats):
            torch.matmul(a, b)
        best = max(best, 2 * size**3 * repeats / (time.perf_counter() - started))
    return best


def text_rollout(prompts: list, responses: list[str]):
    """A :class:`Rollout` holding only prompts and answer texts (what a re-tokenising scorer reads)."""
    from saferlhf.policy.rollout import Rollout

    placeholder = torch.zeros(len(prompts), 1, dtype=torch.long)
    return Rollout(prompts=list(prompts), input_ids=placeholder, attention_mask=placeholder, position_ids=placeholder,
                   response_mask=placeholder, prompt_width=0, response_texts=[r.strip() for r in responses])


# ----------------------------------------------------------------------------------------------
# The sides. Each calls gate.wait() before a step and gate.report(result) after it.


class Gate:
    """In-process: steps run back to back and results are collected (the smoke test uses this)."""

    def __init__(self):
        self.results: list[dict] = []

    def wait(self) -> None:
        pass

    def report(self, result: dict) -> None:
        self.results.append(result)


class PipeGate(Gate):
    """In a worker process: the first wait() says "ready"; each step waits for the parent's "step"."""

    def __init__(self, conn, started: float):
        super().__init__()
        self.conn, self.started, self.ready = conn, started, False

    def wait(self) -> None:
        if not self.ready:
            self.conn.send({"ready": True, "setup_seconds": time.perf_counter() - self.started})
            self.ready = True
        if self.conn.recv() != "step":
            raise RuntimeError("worker: expected 'step'")

    def report(self, result: dict) -> None:
        self.conn.send(result)


def run_saferlhf(algorithm: str, s: dict, steps: int, gate: Gate) -> dict:
    """``steps`` policy steps of ``PolicyTrainer`` for ``algorithm``; returns the side's summary."""
    from saferlhf.config import load_config
    from saferlhf.policy.stage import PolicyStageConfig
    from saferlhf.policy.trainer import PolicyTrainer

    prompts_per_step, samples = SHAPES[algorithm]
    prompts_file = Path(s["workdir"]) / f"prompts-{algorithm}.jsonl"
    prompts_file.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in s["prompts"][:prompts_per_step]))
    config = load_config(PolicyStageConfig, base={
        "algorithm": algorithm, "actor": {"name_or_path": s["model"]},
        "reward": {"path": s["reward_model"]}, "cost": {"path": s["cost_model"]},
        "data": {"train": [{"path": str(prompts_file), "format": "prompts"}]},
        "rollout": {"prompts_per_step": prompts_per_step, "samples_per_prompt": samples,
                    "max_new_tokens": s["max_new_tokens"], "temperature": s["temperature"]},
        "ppo": {"kl_coeff": s["kl_coeff"], "critic_backbone": s["critic_backbone"]},
        "lagrange": {"lambda_init": s["lambda_init"]},
        "train": {"batch_size": prompts_per_step * samples, "learning_rate": s["learning_rate"], "max_steps": steps,
                  "num_threads": s["threads"], "precision": "fp32", "seed": s["seed"], "save_steps": 0},
        "tracking": {"tensorboard": False, "progress_bar": False},
        "output_dir": str(Path(s["workdir"]) / algorithm),
    })
    config.validate("")
    trainer = PolicyTrainer(config)
    actor = trainer.accelerator.unwrap_model(trainer.models["actor"])
    actor.generation_config.min_new_tokens = s["max_new_tokens"]  # exactly max_new_tokens per answer
    counter = FlopCounter()
    counter.watch(actor.model, linear_weights(actor))
    if trainer.reference is not None:
        counter.watch(trainer.reference.model, linear_weights(trainer.reference))
    for name in trainer.spec.critics:
        critic = trainer.accelerator.unwrap_model(trainer.models[f"{name}_critic"])
        counter.watch(critic.backbone, linear_weights(critic))
    for scorer in (trainer.reward_scorer, trainer.cost_scorer):
        counter.watch(scorer.model.backbone, linear_weights(scorer.model))
    answers = prompts_per_step * samples
    for _ in range(steps):
        gate.wait()
        flops_before, started, cpu_started = counter.flops, time.perf_counter(), time.process_time()
        metrics = trainer.step()
        seconds = time.perf_counter() - started
        gate.report({"seconds": seconds, "cpu_seconds": time.process_time() - cpu_started,
                     "completion_tokens": round(metrics["response_length"] * answers),
                     "flops": counter.flops - flops_before, "threads": torch.get_num_threads(),
                     "phases": {k.split("/")[1]: metrics[k] for k in ("time/generate", "time/score", "time/update")}})
    return {"critics": {name: str(config.ppo.critic_backbone or s["model"]) for name in trainer.spec.critics},
            "reference_model": trainer.reference is not None, "lora": config.actor.lora.enabled,
            "answers_per_step": answers, "prompts_per_step": prompts_per_step, "samples_per_prompt": samples}


def run_trl(s: dict, steps: int, gate: Gate) -> dict:
    """``steps`` optimiser steps of TRL's ``GRPOTrainer`` with the same models as reward functions."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from saferlhf.models.loading import load_causal_lm, load_tokenizer
    from saferlhf.policy.scorers import ScoreModelScorer

    prompts_per_step, samples = SHAPES[TRL_SIDE]
    tokenizer = load_tokenizer(s["model"])
    counter, state = FlopCounter(), {"completion_tokens": 0, "phases": {}}
    scorers = {name: ScoreModelScorer(s[f"{name}_model"], tokenizer, max_length=512) for name in ("reward", "cost")}

    def scoring_function(name: str):
        def score(prompts, completions, completion_ids, **_) -> list[float]:
            state["completion_tokens"] = sum(len(ids) for ids in completion_ids)
            texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
            return scorers[name](text_rollout(prompts, texts)).tolist()

        score.__name__ = name
        return score

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, trainer_state, control, **kwargs):
            gate.wait()
            state.update(started=time.perf_counter(), cpu_started=time.process_time(), flops=counter.flops, phases={})

        def on_step_end(self, args, trainer_state, control, **kwargs):
            seconds = time.perf_counter() - state["started"]  # the rest: reference log-probs, loss, update
            state["phases"]["reference_and_update"] = seconds - sum(state["phases"].values())
            gate.report({"seconds": seconds,
                         "cpu_seconds": time.process_time() - state["cpu_started"],
                         "completion_tokens": state["completion_tokens"], "flops": counter.flops - state["flops"],
                         "threads": torch.get_num_threads(), "phases": dict(state["phases"])})

    config = GRPOConfig(
        output_dir=str(Path(s["workdir"]) / "trl"), use_cpu=True, bf16=False, fp16=False, seed=s["seed"],
        per_device_train_batch_size=prompts_per_step * samples, num_generations=samples, max_steps=steps,
        max_completion_length=s["max_new_tokens"], generation_kwargs={"min_new_tokens": s["max_new_tokens"]},
        temperature=s["temperature"], top_p=1.0, top_k=0, beta=s["kl_coeff"], learning_rate=s["learning_rate"],
        reward_weights=[1.0, -s["lambda_init"]], gradient_checkpointing=False, report_to="none",
        save_strategy="no", logging_strategy="no", disable_tqdm=True,
    )
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in s["prompts"][:prompts_per_step]])
    trainer = GRPOTrainer(model=load_causal_lm(s["model"]), reward_funcs=[scoring_function("reward"),
                          scoring_function("cost")], args=config, train_dataset=dataset, processing_class=tokenizer,
                          callbacks=[StepTimer()])
    for model in (trainer.model, trainer.ref_model):
        if model is not None:
            counter.watch(model.model, linear_weights(model))
    for scorer in scorers.values():
        counter.watch(scorer.model.backbone, linear_weights(scorer.model))
    for method, phase in (("_generate_single_turn", "generate"), ("_calculate_rewards", "score")):
        setattr(trainer, method, timed(getattr(trainer, method), phase, state))
    trainer.train()
    return {"reference_model": trainer.ref_model is not None, "lora": False, "answers_per_step": prompts_per_step * samples,
            "prompts_per_step": prompts_per_step, "samples_per_prompt": samples, "optimizer": getattr(config.optim, "value", config.optim),
            "gradient_checkpointing": config.gradient_checkpointing, "loss_type": config.loss_type,
            "scale_rewards": config.scale_rewards}


def timed(function, phase: str, state: dict):
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            state["phases"][phase] = state["phases"].get(phase, 0.0) + time.perf_counter() - started
    return wrapper


def run_side(side: str, settings: dict, steps: int, gate: Gate) -> dict:
    import transformers

    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.set_num_threads(settings["threads"])
    summary = run_trl(settings, steps, gate) if side == TRL_SIDE else run_saferlhf(side, settings, steps, gate)
    summary["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return summary


def worker(conn, side: str, settings: dict, steps: int) -> None:
    try:
        conn.send({"summary": run_side(side, settings, steps, PipeGate(conn, time.perf_counter()))})
    except BaseException:
        conn.send({"error": traceback.format_exc()})


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
    peaks, load = [matmul_peak_flops(settings["threads"], matmul_size)], [os.getloadavg()[0]]
    results: dict[str, list[dict]] = {side: [] for side in sides}
    for round_index in range(rounds):
        shift = round_index % len(sides)
        for side in sides[shift:] + sides[:shift]:
            connections[side].send("step")
            results[side].append(receive(connections[side], side))
            print(f"round {round_index} {side}: {results[side][-1]['seconds']:.2f} s", file=sys.stderr)
    peaks.append(matmul_peak_flops(settings["threads"], matmul_size))
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
              "model": settings["model"], "device": "cpu", "precision": "fp32", "threads": settings["threads"],
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
                    "threads": args.threads, "seed": args.seed, "workdir": tmp}
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
        "trl_settings": "TRL defaults except: use_cpu, fp32 (bf16=False), batch 8 = 2 prompts x num_generations 4, "
                        "max_completion_length and min_new_tokens = max_new_tokens, beta = kl_coeff, "
                        "learning_rate, reward_weights [1, -λ], gradient_checkpointing=False (saferlhf does not "
                        "recompute activations either), logging and saving off. TRL's own default beta = 0 would "
                        "skip its reference model and forward (a different objective)",
        "saferlhf_settings": "PolicyTrainer defaults except: fp32, one micro-batch per step (train.batch_size = "
                             "answers per step), ppo.kl_coeff, lambda_init, learning_rate, num_threads, "
                             "ppo.critic_backbone (ppo-lag), actor.generation_config.min_new_tokens. With one "
                             "micro-batch the update's forward supplies the old log-probabilities "
                             "(PolicyTrainer.reuse_update_forward), as TRL with num_iterations = 1",
        "tokens": "completion tokens per step (all answers exactly max_new_tokens long)",
        "mfu": "model FLOPs per step (2N per token forward-only, 6N training; N = linear-layer weights; "
               "attention scores left out) / median step time / fp32 matmul peak measured in this run",
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
