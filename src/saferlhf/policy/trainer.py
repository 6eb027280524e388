"""The one policy-optimisation loop: generate, score, update (all four algorithms).

``PolicyTrainer.step()`` is one policy step, timed in three parts:

1. generate: sample ``samples_per_prompt`` answers for this process's prompts (:mod:`.rollout`);
2. score: reward R and cost C of each answer (:mod:`.scorers`), log-probabilities of the answer
   tokens under the actor and the reference policy, and the critics' values, all without gradient;
3. update: every λ_i takes one step on its constraint's new episode costs (:mod:`.constraints`,
   :mod:`.lagrange`, :mod:`.pid_lagrange`), the advantages are computed (:mod:`.algorithms`), then
   micro-batches of ``train.batch_size`` answers take the clipped-surrogate step on the actor (+ PTX)
   and the clipped value step on each critic (reward, and one cost critic per constraint for ppo-lag).
   With one micro-batch and one pass (``reuse_update_forward``), the actor's old log-probabilities
   come from the update's own forward (it precedes any optimiser step) instead of a pass in step 2.

The reference policy is a frozen copy of the initial actor, or with LoRA the same model with its
adapter switched off (``peft``'s ``disable_adapter``): one copy of the weights, not two.
Hugging Face Accelerate places the models, runs autocast and gradient accumulation, and averages
metrics and episode costs across processes.

With N processes (``accelerate launch``, ``docs/scaling.md``): each process takes its own share of the
step's prompts (:meth:`PolicyTrainer.prompts_for_step`) and samples with its own random stream
(seed + rank); DDP averages the gradients; the episode-cost window means are all-reduced, every
process computes λ from that mean, and rank 0's multiplier state is broadcast on top; metrics are
averaged. Answers come from Hugging Face ``generate`` or, with ``rollout.backend: vllm``, from a
colocated vLLM engine (:mod:`.vllm_rollout`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate.utils import DistributedType, set_seed

from saferlhf.data.loading import BUILTIN, load_prompt_source
from saferlhf.models.loading import apply_lora, causal_lm_for, load_tokenizer
from saferlhf.models.precision import resolve_precision, role_dtype
from saferlhf.models.score_model import ScoreModel
from saferlhf.policy import generation_copy
from saferlhf.policy.algorithms import ALGORITHM_SPECS, compute_advantages
from saferlhf.policy.config import PolicyStageConfig
from saferlhf.policy.constraints import make_constraints
from saferlhf.policy.divergence import NonFiniteLossError, check_actor, non_finite_inputs, raise_if_flagged
from saferlhf.policy.losses import (clipped_surrogate_loss, clipped_value_loss, entropy_from_logits, gather_log_probs,
                                    masked_mean, sequence_kl)
from saferlhf.policy.order import EpochOrder
from saferlhf.policy.ptx import PTXBatches, load_ptx
from saferlhf.policy.rollout import Rollout, answer_logits, answer_values, sample_rollout
from saferlhf.policy.scorers import ScoreModelScorer, make_scorer, same_tokenizer
from saferlhf.training.distributed import broadcast_from_main, full_parameters
from saferlhf.training.setup import enable_gradient_checkpointing, make_accelerator, make_optimizer, make_scheduler


def has_active_dropout(model: torch.nn.Module) -> bool:
    """Whether the model behaves differently in training mode (dropout modules, attention dropout)."""
    config = getattr(model, "config", None)
    return bool(getattr(config, "attention_dropout", 0.0)) or any(
        isinstance(module, torch.nn.Dropout) and module.p > 0 for module in model.modules())


@dataclass
class Experience:
    """One rollout with everything the update needs (tensors on the accelerator's device)."""

    rollout: Rollout
    reward: torch.Tensor  # (N,)
    costs: dict[str, torch.Tensor]  # constraint name -> (N,); empty without a cost
    old_log_probs: torch.Tensor | None  # (N, T); None until update() fills it (PolicyTrainer.reuse_update_forward)
    ref_log_probs: torch.Tensor  # (N, T)
    old_values: dict[str, torch.Tensor] = field(default_factory=dict)  # critic -> (N, T)
    advantages: torch.Tensor | None = None  # (N, T)
    returns: dict[str, torch.Tensor] = field(default_factory=dict)  # critic -> (N, T)


class PolicyTrainer:
    def __init__(self, config: PolicyStageConfig, accelerator=None):
        self.config = c = config
        self.spec = ALGORITHM_SPECS[c.algorithm]
        if c.rollout.backend == "vllm":  # fail before loading any model
            from saferlhf.policy.vllm_rollout import check_vllm_available

            check_vllm_available()
        self.accelerator = accelerator or make_accelerator(c.train)
        self.device = self.accelerator.device
        self.tokenizer = load_tokenizer(c.actor.name_or_path, c.actor.trust_remote_code, padding_side="left")
        self.precision = resolve_precision(c.train.precision)
        actor = apply_lora(causal_lm_for(c.actor), c.actor.lora, "CAUSAL_LM")
        self.reference = None if c.actor.lora.enabled else self._frozen(  # same attn_implementation as the actor
            causal_lm_for(c.actor, role_dtype(c.ppo.reference_dtype, self.precision)))
        scorer_args = dict(actor_tokenizer=self.tokenizer, max_length=c.data.max_length, device=self.device)
        self.reward_scorer = make_scorer(c.reward.path, normalize=c.reward.normalize, batch_size=c.reward.batch_size,
                                         dtype=role_dtype(c.reward.dtype, self.precision), kind="reward", **scorer_args)
        rollout_dtype = role_dtype(c.rollout.precision, self.precision)
        self.generation_copy = None  # made before accelerator.prepare patches the actor's forward
        if c.rollout.backend == "hf" and rollout_dtype != torch.float32 and generation_copy.supported(self.accelerator):
            self.generation_copy = generation_copy.GenerationCopy(actor, rollout_dtype, self.device)
        self.prompts = [p for source in c.data.train for p in load_prompt_source(source)]
        if not self.prompts:
            raise ValueError("data.train: no usable prompt")
        reduce_mean = self._process_mean if self.accelerator.num_processes > 1 else None
        self.constraints = make_constraints(c, self.spec.multiplier, self.prompts, self.tokenizer, self.device,
                                            reduce_mean)
        # the reward critic, then one cost critic per constraint (named after it; the first is "cost")
        self.critic_names = [name for kind in self.spec.critics
                             for name in (["reward"] if kind == "reward" else self.constraints.names)]
        critics = {name: self._initial_critic(name) for name in self.critic_names}
        self.prompt_order = EpochOrder(len(self.prompts), c.train.seed)
        self.eval_sets = self._load_eval_sets()
        self.ptx = None
        if (c.ptx.data or c.ptx.past_tense_refusals) and c.ptx.coeff > 0:
            self.ptx = PTXBatches(load_ptx(c.ptx, self.tokenizer, c.data.max_length, c.actor.name_or_path),
                                  c.ptx.batch_size or c.train.batch_size,
                                  self.tokenizer.pad_token_id, c.train.seed, self.accelerator.process_index,
                                  self.accelerator.num_processes)

        global_prompts = c.rollout.prompts_per_step * self.accelerator.num_processes
        self.total_steps = c.train.max_steps or max(1, math.ceil(c.train.epochs * len(self.prompts) / global_prompts))
        micro_batches = c.rollout.prompts_per_step * c.samples_per_prompt // c.train.batch_size
        optimizer_steps = (self.total_steps * c.ppo.update_iterations * micro_batches
                           // c.train.gradient_accumulation_steps)
        critic_train = dataclasses.replace(c.train, learning_rate=c.ppo.critic_learning_rate,
                                           weight_decay=c.ppo.critic_weight_decay,
                                           lr_scheduler=c.ppo.critic_lr_scheduler)
        self.models: dict[str, torch.nn.Module] = {"actor": actor, **{f"{n}_critic": m for n, m in critics.items()}}
        if self.accelerator.distributed_type == DistributedType.DEEPSPEED and len(self.models) > 1:
            raise ValueError(
                f"algorithm={c.algorithm!r} trains {len(self.models)} models ({', '.join(self.models)}) but Accelerate "
                "drives one DeepSpeed engine per process: use FSDP (configs/accelerate/fsdp_8gpu.yaml) or DDP for it, "
                "or algorithm=critic-free with DeepSpeed (docs/scaling.md)")
        self.optimizers, self.schedulers = {}, {}
        for name, model in self.models.items():
            train = c.train if name == "actor" else critic_train
            enable_gradient_checkpointing(model, c.train)
            optimizer = make_optimizer(model, train)
            self.schedulers[name] = make_scheduler(optimizer, train, optimizer_steps)
            self.models[name], self.optimizers[name] = self.accelerator.prepare(model, optimizer)
        # One micro-batch, one pass, no dropout: the update's forward comes before any optimiser step and
        # computes exactly π_old's log-probabilities, so make_experience skips its own (TRL's GRPO does the same)
        self.reuse_update_forward = (c.ppo.update_iterations == 1 and micro_batches == 1
                                     and not has_active_dropout(self.accelerator.unwrap_model(self.models["actor"])))
        self.global_step = 0
        self.data_origin = (0, 0)  # (step, global prompt position) this run's data order counts from
        self.process_record: dict[str, float] = {}  # this process's own numbers of the last step
        self.vllm = None
        if c.rollout.backend == "vllm":
            from saferlhf.policy.vllm_rollout import VLLMRollout

            self.vllm = VLLMRollout(c, self.tokenizer, self.accelerator,
                                    model=self.accelerator.unwrap_model(self.models["actor"]))
        if self.accelerator.num_processes > 1:  # the same seed everywhere would draw the same answers
            set_seed(c.train.seed, device_specific=True)  # seed + rank (weights are already in sync)

    # ------------------------------------------------------------------------------------------
    # Set-up helpers

    def _process_mean(self, value: float) -> float:
        return self.accelerator.reduce(torch.tensor(value, device=self.device), "mean").item()

    def _frozen(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(self.device).eval().requires_grad_(False)

    def _initial_critic(self, name: str) -> ScoreModel:
        """Reward/cost critic from the score model (reference) or from the actor's backbone (fresh head)."""
        c = self.config
        constraints = {item.name: item for item in self.constraints.items}
        scorer = self.reward_scorer if name == "reward" else constraints[name].scorer
        folder = c.reward.path if name == "reward" else constraints[name].source
        from_score_model = isinstance(scorer, ScoreModelScorer) and scorer.shares_tokenizer
        if c.ppo.critic_init == "score-model" and not from_score_model:
            raise ValueError(f"ppo.critic_init=score-model: the {name} source {folder!r} is not a score-model folder "
                             "sharing the actor's tokenizer (critic values must line up with the actor's tokens)")
        if c.ppo.critic_init != "actor" and from_score_model:
            return ScoreModel.from_pretrained(folder).to(self.device).train()
        backbone = c.ppo.critic_backbone or c.actor.name_or_path
        if backbone != c.actor.name_or_path and not same_tokenizer(
                self.tokenizer, load_tokenizer(backbone, c.actor.trust_remote_code)):
            raise ValueError(f"ppo.critic_backbone={backbone!r} does not share the actor's tokenizer "
                             "(critic values must line up with the actor's tokens)")
        critic = ScoreModel.from_backbone(backbone, kind="reward" if name == "reward" else "cost", pooling="last",
                                          trust_remote_code=c.actor.trust_remote_code, head_bias=True)
        return critic.to(self.device).train()

    def _load_eval_sets(self) -> dict[str, list]:
        sets: dict[str, list] = {}
        for i, source in enumerate(self.config.data.eval):
            builtin = source.path.startswith(BUILTIN)
            name = (source.path.replace(":", "_") if builtin else Path(source.path.rstrip("/")).stem) or f"eval{i}"
            name = name if name not in sets else f"{name}_{i}"
            prompts = load_prompt_source(source)
            sets[name] = prompts[: self.config.evaluation.max_prompts or None]
        return sets

    # ------------------------------------------------------------------------------------------
    # One policy step

    def prompts_for_step(self, step: int) -> list:
        """This process's prompts of policy step ``step`` (a pure function of the step: resumable).

        Step s takes the global positions ``[p, p + N·k)`` of the seeded order (N processes, k =
        ``rollout.prompts_per_step``), process r the slice ``[p + r·k, p + (r+1)·k)``: one process with
        N·k prompts per step sees the same prompts as N processes with k each."""
        local = self.config.rollout.prompts_per_step
        start = self.data_position(step) + self.accelerator.process_index * local
        return [self.prompts[self.prompt_order[start + i]] for i in range(local)]

    def data_position(self, step: int | None = None) -> int:
        """Global prompt position at the start of ``step`` (default: the next step)."""
        step = self.global_step if step is None else step
        origin_step, origin_position = self.data_origin
        global_prompts = self.accelerator.num_processes * self.config.rollout.prompts_per_step
        return origin_position + (step - origin_step) * global_prompts

    def step(self) -> dict[str, float]:
        """Generate, score, update; returns the step's metrics (averaged over processes) and timings."""
        c = self.config
        started = time.perf_counter()
        prompts = self.prompts_for_step(self.global_step)
        if self.vllm is not None:  # weights are copied into the engine when they changed (after each update)
            rollout = self.vllm.generate(self.models["actor"], prompts, weights_version=self.global_step)
        else:
            with contextlib.ExitStack() as context:
                if self.generation_copy is not None:
                    self.generation_copy.refresh()
                    actor = self.generation_copy.model
                else:
                    actor = context.enter_context(full_parameters(self.accelerator, self.models["actor"]))
                    context.enter_context(self.accelerator.autocast())
                rollout = sample_rollout(
                    actor, self.tokenizer, prompts, samples_per_prompt=c.samples_per_prompt,
                    max_length=c.data.max_length, max_new_tokens=c.rollout.max_new_tokens,
                    min_new_tokens=c.rollout.min_new_tokens, temperature=c.rollout.temperature,
                    top_p=c.rollout.top_p, top_k=c.rollout.top_k, repetition_penalty=c.rollout.repetition_penalty)
        generated = time.perf_counter()
        experience = self.make_experience(rollout)
        scored = time.perf_counter()
        episode_costs = self.constraints.update(experience.costs)
        self.synchronize_multipliers()
        lagrange_multipliers = self.constraints.values()
        update_metrics = self.update(experience, lagrange_multipliers)
        self.stop_if_diverged(rollout)
        updated = time.perf_counter()
        self.global_step += 1

        mask = rollout.response_mask
        local = {"reward": experience.reward.mean(),
                 "kl": sequence_kl(experience.old_log_probs, experience.ref_log_probs, mask).mean(),
                 "response_length": mask.float().sum(-1).mean(), **update_metrics}
        local.update(self.constraints.answer_metrics(experience.costs))
        if self.generation_copy is not None:
            gap = self.generation_copy.rollout_gap(rollout, experience.old_log_probs, c.train.batch_size)
            local["rollout/logprob_gap"] = torch.tensor(gap, device=self.device)  # the copy is still π_old here
        multiplier_values = self.constraints.log_values(lagrange_multipliers, episode_costs)
        window = self.constraints.items[0].multiplier.window.costs if self.constraints else []
        self.process_record.update({**{key: multiplier_values[key] for key in ("lambda", "episode_cost")},
                                    "window_mean_local": sum(window) / len(window) if window else math.nan,
                                    **{f"{k}_local": float(local[k]) for k in ("reward", "cost") if k in local}})
        metrics = self.mean_over_processes(local)
        metrics.update({**multiplier_values, "cost_threshold": c.lagrange.cost_threshold,
                        "learning_rate": self.schedulers["actor"].get_last_lr()[0],
                        "time/generate": generated - started, "time/score": scored - generated,
                        "time/update": updated - scored, "time/step": updated - started})
        return metrics

    @torch.no_grad()
    def make_experience(self, rollout: Rollout) -> Experience:
        """Scores, old and reference log-probabilities and critic values of a rollout (no gradient)."""
        with self.accelerator.autocast():
            reward = self.reward_scorer(rollout)
            costs = self.constraints.score(rollout)
        with contextlib.ExitStack() as gathered:  # full weights (ZeRO-3 gathers them) for no-grad forwards
            actor = gathered.enter_context(full_parameters(self.accelerator, self.models["actor"]))
            critics = {name: gathered.enter_context(full_parameters(self.accelerator, self.models[f"{name}_critic"]))
                       for name in self.critic_names}
            for model in (actor, *critics.values()):
                model.eval()
            old, ref, values = [], [], {name: [] for name in critics}
            for start in range(0, len(rollout), self.config.train.batch_size):
                part = rollout.select(range(start, min(start + self.config.train.batch_size, len(rollout))))
                with self.accelerator.autocast():
                    if not self.reuse_update_forward:
                        old.append(gather_log_probs(answer_logits(actor, part), part.response_ids))
                    ref.append(self.reference_log_probs(actor, part))
                    for name, critic in critics.items():
                        values[name].append(answer_values(critic, part))
            for model in (actor, *critics.values()):
                model.train()
        return Experience(rollout, reward, costs, torch.cat(old) if old else None, torch.cat(ref),
                          {name: torch.cat(v).float() for name, v in values.items()})

    def reference_log_probs(self, actor, part: Rollout) -> torch.Tensor:  # (B, T)
        if self.reference is not None:
            return gather_log_probs(answer_logits(self.reference, part), part.response_ids)
        with actor.disable_adapter():  # LoRA: the base model is the reference policy
            return gather_log_probs(answer_logits(actor, part), part.response_ids)

    def update(self, experience: Experience, lagrange_multipliers: dict[str, float]) -> dict[str, torch.Tensor]:
        """Advantages, then PPO micro-batches over the rollout, ``ppo.update_iterations`` times; returns
        mean losses. With ``reuse_update_forward`` the first forward supplies the old log-probabilities."""
        c, rollout = self.config, experience.rollout
        if experience.old_log_probs is not None:
            self.estimate_advantages(experience, lagrange_multipliers)
        totals: dict[str, torch.Tensor] = {}
        count = 0
        models = list(self.models.values())
        for _ in range(c.ppo.update_iterations):
            for start in range(0, len(rollout), c.train.batch_size):
                rows = slice(start, start + c.train.batch_size)
                part = rollout.select(range(len(rollout))[rows])
                mask = part.response_mask.float()
                with self.accelerator.accumulate(*models):
                    with self.accelerator.autocast():
                        logits = answer_logits(self.models["actor"], part)
                    log_probs = gather_log_probs(logits, part.response_ids)
                    if experience.old_log_probs is None:  # the one micro-batch, before any optimiser step: π_old
                        experience.old_log_probs = log_probs.detach()
                        self.estimate_advantages(experience, lagrange_multipliers)
                    actor_loss, clip_fraction = clipped_surrogate_loss(
                        log_probs, experience.old_log_probs[rows], experience.advantages[rows], mask,
                        c.ppo.clip_range_ratio)
                    losses = {"actor_loss": actor_loss}
                    if self.ptx is not None:
                        with self.accelerator.autocast():
                            input_ids, attention_mask, labels = self.ptx.next_batch(self.device)
                            losses["ptx_loss"] = self.models["actor"](
                                input_ids=input_ids, attention_mask=attention_mask, labels=labels, use_cache=False).loss
                    self.stop_if_not_finite(losses, experience)
                    self.accelerator.backward(actor_loss + c.ptx.coeff * losses.get("ptx_loss", 0.0))
                    self.optimizer_step("actor")
                    for name in self.critic_names:
                        with self.accelerator.autocast():
                            values = answer_values(self.models[f"{name}_critic"], part).float()
                        losses[f"{name}_critic_loss"] = critic_loss = clipped_value_loss(
                            values, experience.old_values[name][rows], experience.returns[name][rows], mask,
                            c.ppo.clip_range_value)
                        self.stop_if_not_finite({f"{name}_critic_loss": critic_loss}, experience)
                        self.accelerator.backward(critic_loss)
                        self.optimizer_step(f"{name}_critic")
                losses["clip_fraction"] = clip_fraction
                losses["entropy"] = masked_mean(entropy_from_logits(logits.detach()), mask)
                for key, value in losses.items():
                    totals[key] = totals.get(key, 0.0) + value.detach().float()
                count += 1
        return {key: value / count for key, value in totals.items()}

    def estimate_advantages(self, experience: Experience, lagrange_multipliers: dict[str, float]) -> None:
        experience.advantages, experience.returns = compute_advantages(
            self.config, experience.reward, experience.costs, experience.old_log_probs, experience.ref_log_probs,
            experience.rollout.response_mask, experience.old_values, lagrange_multipliers)

    def optimizer_step(self, name: str) -> None:
        """Clip, step and schedule ``name`` when gradients are synchronised (end of accumulation)."""
        optimizer = self.optimizers[name]
        if self.accelerator.sync_gradients and self.config.train.max_grad_norm > 0:
            self.accelerator.clip_grad_norm_(self.models[name].parameters(), self.config.train.max_grad_norm)
        optimizer.step()
        if self.accelerator.sync_gradients:
            self.schedulers[name].step()
        optimizer.zero_grad()

    # ------------------------------------------------------------------------------------------
    # Cross-process helpers and safety checks

    def synchronize_multipliers(self) -> None:
        """Belt and braces: every process adopts rank 0's state of every λ_i (it computed the same from
        the all-reduced Ĵ_ci); a process whose own λ_i differed says so. Its own cost windows are kept."""
        own = self.constraints.values()
        self.process_record["lambda_local"] = next(iter(own.values()), 0.0)
        if self.accelerator.num_processes == 1 or not self.constraints:
            return
        self.constraints.adopt_shared_state(broadcast_from_main(self.accelerator, self.constraints.shared_state()))
        for name, value in self.constraints.values().items():
            if value != own[name]:
                warnings.warn(f"process {self.accelerator.process_index}: λ[{name}] = {own[name]!r} differed from "
                              f"rank 0's {value!r} at policy step {self.global_step + 1}; using rank 0's")

    def mean_over_processes(self, values: dict[str, torch.Tensor | float]) -> dict[str, float]:
        names = sorted(values)
        stacked = torch.stack([torch.as_tensor(values[n], dtype=torch.float32, device=self.device) for n in names])
        if self.accelerator.num_processes > 1:
            stacked = self.accelerator.reduce(stacked, "mean")
        return dict(zip(names, stacked.tolist()))

    def stop_if_diverged(self, rollout: Rollout) -> None:
        """After the update, before the step counts (:func:`.divergence.check_actor`)."""
        check_actor(self.accelerator, self.models["actor"], rollout, self.config.train.batch_size,
                    self.global_step + 1, self.config.output_dir)

    def stop_if_not_finite(self, losses: dict[str, torch.Tensor], experience: Experience) -> None:
        inputs = {"reward": experience.reward, **{f"cost {name}": cost for name, cost in experience.costs.items()},
                  "old log-probs": experience.old_log_probs, "reference log-probs": experience.ref_log_probs,
                  "advantages": experience.advantages}
        flags = {name: not bool(torch.isfinite(v).all()) for name, v in losses.items()}
        raise_if_flagged(self.accelerator, flags, "in the update", lambda: non_finite_inputs(inputs),
                         self.global_step + 1, self.config.output_dir)
