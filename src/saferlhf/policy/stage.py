"""``saferlhf train-policy``: run :class:`~saferlhf.policy.trainer.PolicyTrainer` to the end.

Around the trainer's ``step()`` this adds what a run needs: the before/after evaluation on
``data.eval`` (greedy answers scored by R and C), ``log.jsonl`` lines and the ``report_to`` tracker
(TensorBoard / W&B / trackio; eval answers as tables), a progress bar, atomic checkpoints every ``train.save_steps`` steps with exact resume (``--resume``), the
non-finite-loss stop, and the final policy in ``output_dir/policy`` (a plain Hugging Face folder;
with LoRA also the adapter in ``output_dir/policy_adapter``).

Outputs: ``log.jsonl`` (one line per step: step, reward, cost, lambda, kl, episode_cost, entropy,
response_length, clip_fraction, losses, time/*; and per constraint lambda/<name>, cost/<name>,
episode_cost/<name>, cost_threshold/<name>), ``eval.jsonl`` and ``eval_answers_<when>.jsonl``,
``metrics.json``, ``config.yaml``, ``tensorboard/`` (``report_to=tensorboard``), ``checkpoints/step-NNNNNN``,
``policy/``.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import torch
from tqdm.auto import tqdm

from saferlhf.config import to_dict
from saferlhf.controls.tokens import copy_spec
from saferlhf.models.model_card import publish
from saferlhf.policy.checkpoint import latest_checkpoint, load_checkpoint, remove_stale_tmp, save_checkpoint
from saferlhf.policy.config import PolicyStageConfig
from saferlhf.policy.rollout import sample_rollout
from saferlhf.policy.trainer import NonFiniteLossError, PolicyTrainer
from saferlhf.runio import RunWriter, _clean, read_log, truncate_jsonl
from saferlhf.training.distributed import full_parameters, gather_from_all
from saferlhf.training.run_identity import begin_run, run_identity
from saferlhf.training.setup import make_accelerator
from saferlhf.training.tracking import open_tracker

__all__ = ["PolicyStageConfig", "run", "evaluate"]
SUMMARY_STEPS = 10  # metrics.json reports the mean of the last this many logged steps


def global_sizes(config: PolicyStageConfig, processes: int) -> dict[str, int]:
    """The per-process sizes of the run identity in global terms, so that a checkpoint of N processes resumes
    in M processes with the same global batch (and no other)."""
    return {"rollout.prompts_per_step": config.rollout.prompts_per_step * processes,
            "train.batch_size": config.train.batch_size * processes,
            "lagrange.episode_cost_window": config.lagrange.episode_cost_window * processes}


def run(config: PolicyStageConfig) -> dict:
    """Train to ``total_steps`` (resuming if asked), evaluate, save the policy; returns final metrics."""
    output_dir = Path(config.output_dir)
    accelerator = make_accelerator(config.train)
    identity = run_identity(config, **global_sizes(config, accelerator.num_processes))
    finished = begin_run(accelerator, output_dir, identity, config.resume, latest_checkpoint(output_dir),
                         ("checkpoints",))
    if finished is not None:
        return finished
    trainer = PolicyTrainer(config, accelerator)
    tracker = open_tracker(config.report_to, output_dir, "train-policy", to_dict(config),
                           enabled=accelerator.is_main_process)
    writer = RunWriter(output_dir, enabled=accelerator.is_main_process, resume=config.resume, tracker=tracker)
    writer.write_config(to_dict(config))

    state = {"eval_before": None}
    checkpoint = latest_checkpoint(output_dir) if config.resume else None
    if config.resume and accelerator.is_main_process:
        removed = remove_stale_tmp(output_dir)
        print(f"[saferlhf] resume: {'from ' + str(checkpoint) if checkpoint else 'no checkpoint found, starting anew'}"
              + (f" ({removed} incomplete checkpoint folder(s) removed)" if removed else ""), flush=True)
    if checkpoint is not None:
        state = load_checkpoint(accelerator, checkpoint, trainer.models, trainer.optimizers, trainer.schedulers)
        _restore(trainer, state)
    if config.tracking.per_process_log:
        process_log = output_dir / "process_logs" / f"rank{accelerator.process_index}.jsonl"
        process_log.parent.mkdir(parents=True, exist_ok=True)
        if not config.resume:
            process_log.unlink(missing_ok=True)
    if config.resume:  # drop lines written after the checkpoint (and a line cut by the kill)
        for name in ("log.jsonl", "eval.jsonl"):
            if accelerator.is_main_process:
                truncate_jsonl(output_dir / name, trainer.global_step if checkpoint else -1)
    if checkpoint is None and trainer.eval_sets:
        state["eval_before"] = evaluate(trainer, "before")
        _log_eval(writer, trainer, 0, state["eval_before"])

    progress = tqdm(total=trainer.total_steps, initial=trainer.global_step, desc=f"train-policy {config.algorithm}",
                    unit="step", disable=not (accelerator.is_main_process and config.tracking.progress_bar))
    last_saved = trainer.global_step if checkpoint is not None else -1
    try:
        while trainer.global_step < trainer.total_steps:
            metrics = trainer.step()
            step = trainer.global_step
            if config.tracking.per_process_log:
                with open(process_log, "a") as handle:
                    handle.write(json.dumps(_clean({"step": step, "process": accelerator.process_index,
                                                    **trainer.process_record})) + "\n")
            if step % config.train.logging_steps == 0 or step == trainer.total_steps:
                writer.log(step, **metrics)
            progress.update(1)
            progress.set_postfix(reward=f"{metrics['reward']:.3f}", cost=f"{metrics.get('cost', math.nan):.3f}",
                                 lam=f"{metrics['lambda']:.3f}", refresh=False)
            if trainer.eval_sets and config.train.eval_steps and step % config.train.eval_steps == 0 \
                    and step < trainer.total_steps:
                _log_eval(writer, trainer, step, evaluate(trainer, f"step{step}"))
            if config.train.save_steps and step % config.train.save_steps == 0:
                _save(trainer, state)
                last_saved = step
    except NonFiniteLossError as error:
        progress.close()
        writer.write_metrics({"status": "stopped", "reason": str(error), "step": trainer.global_step,
                              "last_checkpoint": str(latest_checkpoint(output_dir) or "")})
        writer.finish()
        accelerator.end_training()
        raise
    progress.close()
    if last_saved != trainer.global_step:
        _save(trainer, state)

    lambdas = trainer.constraints.values()
    metrics = {"status": "finished", "algorithm": config.algorithm, "steps": trainer.global_step,
               "lambda": next(iter(lambdas.values()), 0.0), **{f"lambda/{k}": v for k, v in lambdas.items()},
               "precision": trainer.precision}
    metrics.update(_summary(output_dir / "log.jsonl") if accelerator.is_main_process else {})
    if trainer.eval_sets:
        after = evaluate(trainer, "after")
        _log_eval(writer, trainer, trainer.global_step, after)
        metrics.update({f"before/{k}": v for k, v in (state["eval_before"] or {}).items()})
        metrics.update({f"after/{k}": v for k, v in after.items()})
    canaries = {"reward": getattr(trainer.reward_scorer, "canary", None),
                **{item.name: getattr(item.scorer, "canary", None) for item in trainer.constraints.items}}
    metrics["canary"] = {name: result for name, result in canaries.items() if result is not None}
    _save_policy(trainer, output_dir / "policy")
    if accelerator.is_main_process:
        metrics.update(publish(output_dir / "policy", "policy", config.hub, base_model=config.actor.name_or_path,
                               data=[s.path for s in config.data.train], metrics=metrics, config=to_dict(config)))
    metrics["run_identity"] = identity  # a later resume recognises this finished run by it
    writer.write_metrics(metrics)
    writer.finish()
    accelerator.end_training()
    return metrics


# ----------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def evaluate(trainer: PolicyTrainer, when: str) -> dict[str, float]:
    """Greedy answers to every eval set, scored: mean reward, mean cost, unsafe share (C > 0), length."""
    with full_parameters(trainer.accelerator, trainer.models["actor"]) as actor:
        return _evaluate(trainer, actor, when)


def _evaluate(trainer: PolicyTrainer, actor, when: str) -> dict[str, float]:
    c, accelerator = trainer.config, trainer.accelerator
    cost_scorer = trainer.constraints.items[0].scorer if trainer.constraints else None  # the first constraint's
    results, answers = {}, []
    for name, prompts in trainer.eval_sets.items():
        mine = prompts[accelerator.process_index::accelerator.num_processes]
        sums = torch.zeros(4, device=trainer.device)  # reward, cost, unsafe, length
        for start in tqdm(range(0, len(mine), c.train.eval_batch_size), desc=f"eval {name} ({when})", leave=False,
                          disable=not (accelerator.is_main_process and c.tracking.progress_bar)):
            with accelerator.autocast():
                rollout = sample_rollout(actor, trainer.tokenizer, mine[start:start + c.train.eval_batch_size],
                                         max_length=c.data.max_length, max_new_tokens=c.evaluation.max_new_tokens,
                                         greedy=True)
                reward = trainer.reward_scorer(rollout)
                cost = cost_scorer(rollout) if cost_scorer is not None else torch.zeros_like(reward)
            sums += torch.stack([reward.sum(), cost.sum(), (cost > 0).float().sum(),
                                 rollout.response_lengths.float().sum()])
            answers += [{"set": name, "prompt": p, "answer": a, "reward": r, "cost": k}
                        for p, a, r, k in zip(rollout.prompts, rollout.response_texts, reward.tolist(), cost.tolist())]
        count = torch.tensor(float(len(mine)), device=trainer.device)
        if accelerator.num_processes > 1:
            sums, count = accelerator.reduce(sums, "sum"), accelerator.reduce(count, "sum")
        mean = (sums / count.clamp(min=1.0)).tolist()
        results.update({f"eval/{name}/reward": mean[0], f"eval/{name}/response_length": mean[3]})
        if cost_scorer is not None:
            results.update({f"eval/{name}/cost": mean[1], f"eval/{name}/unsafe_share": mean[2]})
    if accelerator.is_main_process:  # this process's share of the answers, for reading
        path = Path(c.output_dir) / f"eval_answers_{when}.jsonl"
        path.write_text("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in answers))
    trainer.answers = answers  # the run logs a sample of them to the tracker as a table
    return results


def _log_eval(writer: RunWriter, trainer: PolicyTrainer, step: int, results: dict[str, float]) -> None:
    """eval.jsonl, and the tracker: the results and a sample of the answers as a table."""
    if writer.enabled:
        with open(writer.output_dir / "eval.jsonl", "a") as handle:
            handle.write(json.dumps({"step": step, **results}) + "\n")
    if writer.tracker is not None:
        writer.tracker.log(results, step)
        writer.log_table("eval/answers", getattr(trainer, "answers", []), step)


# ----------------------------------------------------------------------------------------------
# Checkpoints, final policy, summaries


def _save(trainer: PolicyTrainer, state: dict) -> None:
    windows = {item.name: gather_from_all(trainer.accelerator, list(item.multiplier.window.costs))  # every process's
               for item in trainer.constraints.items}
    loop_state = {"global_step": trainer.global_step, "data_position": trainer.data_position(),
                  "multipliers": trainer.constraints.state_dict(windows),
                  "ptx_position": trainer.ptx.position if trainer.ptx else 0, "algorithm": trainer.config.algorithm,
                  "eval_before": state.get("eval_before"), "run_identity": run_identity(
                      trainer.config, **global_sizes(trainer.config, trainer.accelerator.num_processes))}
    save_checkpoint(trainer.accelerator, trainer.config.output_dir, trainer.global_step, trainer.models,
                    trainer.optimizers, trainer.schedulers, loop_state, keep=trainer.config.keep_checkpoints)


def _restore(trainer: PolicyTrainer, state: dict) -> None:
    if state["algorithm"] != trainer.config.algorithm:
        raise ValueError(f"resume: the checkpoint was written by algorithm {state['algorithm']!r}, "
                         f"the config asks for {trainer.config.algorithm!r}")
    accelerator = trainer.accelerator
    saved_processes = int(state.get("num_processes", 1))
    trainer.global_step = int(state["global_step"])
    trainer.data_origin = (trainer.global_step, int(state["data_position"]))
    trainer.constraints.load_state_dict(state.get("multipliers", {}), accelerator.num_processes,
                                        accelerator.process_index)
    if trainer.ptx is not None:  # PTX batches taken so far by all processes, re-counted per process
        trainer.ptx.position = math.ceil(int(state["ptx_position"]) * saved_processes / accelerator.num_processes)
    if saved_processes != accelerator.num_processes:
        accelerator.print(f"[saferlhf] resume: checkpoint written by {saved_processes} processes, continuing with "
                          f"{accelerator.num_processes}: same weights, optimiser states, λ and data position, but "
                          "not bit-identical to an uninterrupted run (per-process random streams and cost windows "
                          "are re-dealt)")


def _save_policy(trainer: PolicyTrainer, folder: Path) -> None:
    """The trained actor as a plain Hugging Face folder (LoRA merged; the adapter saved beside it)."""
    accelerator = trainer.accelerator
    accelerator.wait_for_everyone()
    state_dict = accelerator.get_state_dict(trainer.models["actor"])  # every process: gathers ZeRO-3 / FSDP shards
    if not accelerator.is_main_process:
        return
    actor = accelerator.unwrap_model(trainer.models["actor"])
    if trainer.config.actor.lora.enabled:
        actor.save_pretrained(folder.with_name(folder.name + "_adapter"))
        actor = copy.deepcopy(actor).merge_and_unload()
        state_dict = None  # the merged copy's own weights
    actor.save_pretrained(folder, state_dict=state_dict, safe_serialization=True)
    trainer.tokenizer.save_pretrained(folder)
    copy_spec(trainer.config.actor.name_or_path, folder)


def _summary(log_path: Path) -> dict[str, float]:
    """Mean of each numeric key over the last SUMMARY_STEPS lines of log.jsonl (``final/<key>``)."""
    lines = read_log(log_path)[-SUMMARY_STEPS:] if log_path.exists() else []
    keys = [k for k in (lines[-1] if lines else {}) if k != "step" and not k.startswith("time/")]
    summary = {}
    for key in keys:
        values = [line[key] for line in lines if isinstance(line.get(key), (int, float))]
        if values:
            summary[f"final/{key}"] = sum(values) / len(values)
    return summary
