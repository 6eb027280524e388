"""The sides of ``bench/policy_step.py``: saferlhf's ``PolicyTrainer`` and TRL's ``GRPOTrainer``.

Each side builds its trainer, then takes ``steps`` steps, calling ``gate.wait()`` before and
``gate.report(result)`` after each one (in a worker process the gate is the pipe to the parent,
which steps the sides in interleaved rounds). Model FLOPs are counted by :class:`FlopCounter`
hooks placed identically on every side; the conventions are in ``policy_step.py``'s docstring.
"""

from __future__ import annotations

import json
import resource
import time
import traceback
import warnings
from pathlib import Path

import torch

TRL_SIDE = "trl-grpo"
SHAPES = {TRL_SIDE: (2, 4), "ppo-lag": (8, 1), "critic-free": (2, 4)}  # prompts x answers per prompt


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
                  "num_threads": s["threads"], "precision": s.get("precision", "fp32"), "seed": s["seed"], "save_steps": 0},
        "tracking": {"progress_bar": False},
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
    for name in trainer.critic_names:
        critic = trainer.accelerator.unwrap_model(trainer.models[f"{name}_critic"])
        counter.watch(critic.backbone, linear_weights(critic))
    for scorer in (trainer.reward_scorer, *(item.scorer for item in trainer.constraints.items)):
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
        output_dir=str(Path(s["workdir"]) / "trl"), use_cpu=True, bf16=s.get("precision") == "bf16", fp16=False, seed=s["seed"],
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
