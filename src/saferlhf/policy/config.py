"""Configuration of ``saferlhf train-policy`` (one dataclass tree, validated on load).

Defaults are the reference implementation's (PKU-Alignment/safe-rlhf ``scripts/ppo-lag.sh`` and
``ppo_lag/main.py``; see ``docs/SAFE_RLHF.md`` section 4) unless a field's help says otherwise.
Keys: ``saferlhf train-policy --help-config``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from saferlhf.config import (DataConfig, DataSource, HubConfig, ModelConfig, TrainConfig, _check, doc,
                             validate_sections)
from saferlhf.controls.gate import PromptSet
from saferlhf.training.tracking import ReportTo, report_to_field

ALGORITHMS = ("ppo-lag", "ppo", "reward-shaping", "critic-free")
Algorithm = Literal["ppo-lag", "ppo", "reward-shaping", "critic-free"]
FUNCTION_PATTERN = re.compile(r"^[\w./\\-]+(\.py)?:[A-Za-z_]\w*$")  # module:function or file.py:function
HUB_ID_PATTERN = re.compile(r"^[\w.-]+/[\w.-]+$")  # owner/name of a score model on the Hugging Face Hub
OVER_REFUSAL = "over-refusal"  # the built-in cost source: refusals of prompts labelled harmless (policy/scorers.py)
NAME_PATTERN = re.compile(r"^[A-Za-z][\w-]*$")


@dataclass
class ScoreSourceConfig:
    """Where the reward R or the cost C of an answer comes from."""

    path: str = doc("", "A score-model folder or hub id (saferlhf train-reward / train-cost, TRL, OpenRLHF, PKU "
                        "Beaver: docs/models.md), or a Python function "
                        "'module:function' / 'file.py:function': (prompts, responses) -> one float per answer; "
                        "for a cost also 'over-refusal' (1 when the refusal detector calls the answer to a prompt "
                        "labelled harmless a refusal, else 0).")
    normalize: Literal["none", "scale"] = doc(
        "none", "Divide scores by the model's training-set std ('scale' keeps the sign: cost > 0 stays unsafe).")
    batch_size: int = doc(16, "Answers per forward pass when the scorer has to re-tokenise.")
    dtype: Literal["auto", "fp32", "bf16"] = doc(
        "auto", "dtype the frozen score model is loaded in (auto = bf16 when the run computes in bf16).")

    def validate(self, prefix: str) -> None:
        _check(self.batch_size > 0, prefix + "batch_size", "must be > 0")
        if self.path:
            _check(Path(self.path).is_dir() or bool(FUNCTION_PATTERN.match(self.path) or HUB_ID_PATTERN.match(self.path))
                   or self.path == OVER_REFUSAL, prefix + "path",
                   f"{self.path!r} is no existing folder, no hub id owner/name, not of the form 'module:function' / "
                   f"'file.py:function' and not {OVER_REFUSAL!r}")


@dataclass
class RolloutConfig:
    """Sampling answers from the policy (Hugging Face ``generate`` with the KV cache)."""

    prompts_per_step: int = doc(16, "Prompts per process per policy step (reference per_device_prompt_batch_size).")
    samples_per_prompt: int = doc(0, "Answers sampled per prompt; 0 = 1 for ppo-lag/ppo/reward-shaping (reference), "
                                     "4 for critic-free (which needs >= 2).")
    max_new_tokens: int = doc(0, "Longest answer; 0 = fill data.max_length (reference: 512 tokens in total).")
    min_new_tokens: int = doc(0, "The end of the turn cannot be sampled before this many answer tokens (0 = off, the "
                                 "sampler is exactly π_θ). Score models never see empty answers, so they can score "
                                 "them well: the policy then learns to say nothing (docs/policy.md).")
    temperature: float = doc(1.0, "Sampling temperature.")
    top_p: float = doc(1.0, "Nucleus sampling threshold (1.0 = off).")
    top_k: int = doc(0, "Top-k sampling (0 = off, so that the sampler is exactly the policy π_θ).")
    repetition_penalty: float = doc(1.0, "Hugging Face repetition penalty (1.0 = off).")
    backend: Literal["hf", "vllm"] = doc(
        "hf", "hf: transformers generate (default; CPU and GPU); vllm: a vLLM engine beside each GPU process, "
              "the actor's weights copied into it after every update (needs `pip install vllm` and a CUDA GPU).")
    vllm_gpu_memory_utilization: float = doc(0.3, "vllm: share of the GPU's memory the engine may take (KV cache "
                                                  "included); the rest stays for training.")
    vllm_max_model_len: int = doc(0, "vllm: longest prompt + answer the engine plans for (0 = data.max_length).")
    precision: Literal["auto", "fp32", "bf16"] = doc(
        "auto", "hf backend: bf16 = sample from a bf16 copy of the actor refreshed before every rollout (auto = "
                "when the run computes in bf16, on one process or DDP); the losses' log-probabilities still come "
                "from the trained model, and the gap is logged as rollout/logprob_gap (docs/policy.md).")

    def validate(self, prefix: str) -> None:
        _check(self.prompts_per_step > 0, prefix + "prompts_per_step", "must be > 0")
        _check(0.0 < self.vllm_gpu_memory_utilization <= 1.0, prefix + "vllm_gpu_memory_utilization",
               "must be in (0, 1]")
        _check(self.vllm_max_model_len >= 0, prefix + "vllm_max_model_len", "must be >= 0")
        _check(self.samples_per_prompt >= 0, prefix + "samples_per_prompt", "must be >= 0")
        _check(self.max_new_tokens >= 0, prefix + "max_new_tokens", "must be >= 0")
        _check(self.min_new_tokens >= 0, prefix + "min_new_tokens", "must be >= 0")
        _check(not self.max_new_tokens or self.min_new_tokens <= self.max_new_tokens, prefix + "min_new_tokens",
               "must be <= max_new_tokens")
        _check(self.temperature > 0, prefix + "temperature", "must be > 0 (training samples answers)")
        _check(0.0 < self.top_p <= 1.0, prefix + "top_p", "must be in (0, 1]")
        _check(self.top_k >= 0, prefix + "top_k", "must be >= 0")


@dataclass
class PPOConfig:
    """PPO and the critics (ppo-lag, ppo, reward-shaping); the KL coefficient is shared with critic-free."""

    kl_coeff: float = doc(0.01, "β: weight of the per-token KL penalty against the reference policy.")
    clip_range_ratio: float = doc(0.2, "ε of the clipped surrogate.")
    clip_range_value: float = doc(5.0, "Critic values may move at most this far from the old values (clipped loss).")
    clip_range_score: float = doc(50.0, "Per-token rewards and costs are clipped to ±this.")
    gamma: float = doc(1.0, "GAE discount γ.")
    gae_lambda: float = doc(0.95, "GAE λ.")
    update_iterations: int = doc(1, "Passes over each rollout batch (reference update_iters).")
    critic_init: Literal["auto", "score-model", "actor"] = doc(
        "auto", "Critic weights: from the reward/cost model (reference), or the actor's backbone with a fresh head; "
                "auto = the score model when it is a folder sharing the actor's tokenizer, else the actor.")
    critic_backbone: str = doc("", "Backbone of a critic that does not start from a score model ('' = the actor's); "
                                   "must share the actor's tokenizer (e.g. tiny-llama for smollm2-135m-instruct).")
    critic_learning_rate: float = doc(5e-6, "Critic learning rate.")
    critic_weight_decay: float = doc(0.0, "Critic AdamW weight decay.")
    critic_lr_scheduler: Literal["cosine", "linear", "constant"] = doc("constant", "Critic learning-rate schedule.")
    reference_dtype: Literal["auto", "fp32", "bf16"] = doc(
        "auto", "dtype of the frozen reference policy (full fine-tuning; auto = bf16 when the run computes in bf16).")

    def validate(self, prefix: str) -> None:
        _check(self.kl_coeff >= 0, prefix + "kl_coeff", "must be >= 0")
        _check(self.clip_range_ratio > 0, prefix + "clip_range_ratio", "must be > 0")
        _check(self.clip_range_value > 0, prefix + "clip_range_value", "must be > 0")
        _check(self.clip_range_score > 0, prefix + "clip_range_score", "must be > 0")
        _check(0.0 <= self.gamma <= 1.0, prefix + "gamma", "must be in [0, 1]")
        _check(0.0 <= self.gae_lambda <= 1.0, prefix + "gae_lambda", "must be in [0, 1]")
        _check(self.update_iterations > 0, prefix + "update_iterations", "must be > 0")
        _check(self.critic_learning_rate > 0, prefix + "critic_learning_rate", "must be > 0")


@dataclass
class CriticFreeConfig:
    """The critic-free variant: group baselines over several answers per prompt."""

    baseline: Literal["leave-one-out", "group-mean", "group-normalized"] = doc(
        "leave-one-out", "Baseline of each answer's reward and cost (RLOO); group-normalized (GRPO) rescales "
                         "reward and cost by their own group std, which distorts the λ trade-off.")


@dataclass
class LagrangeConfig:
    """The multiplier λ of the cost constraint E[C] <= cost_threshold."""

    rule: Literal["gradient", "pid", "fixed"] = doc(
        "gradient", "gradient: SGD on log λ (Safe RLHF); pid: PID Lagrangian (Stooke et al. 2020); fixed: λ stays at "
                    "lambda_init (critic-free with λ = 0: unconstrained, leave-one-out baseline). Used by ppo-lag and "
                    "critic-free.")
    cost_threshold: float = doc(0.0, "d: the constraint is E[C] <= d (cost > 0 means unsafe).")
    lambda_init: float = doc(1.0, "Initial λ; reward-shaping keeps this λ fixed.")
    lambda_lr: float = doc(0.1, "gradient rule: learning rate of log λ.")
    lambda_max: float = doc(5.0, "Upper bound of λ (0 = none).")
    update_delay_steps: int = doc(0, "Policy steps before λ starts to move.")
    episode_cost_window: int = doc(128, "Ĵ_c is the mean cost of this many most recent episodes (per process).")
    pessimistic_delta: float = doc(0.0, "> 0: Ĵ_c is the Student-t (1 - δ) upper bound on the window's mean cost "
                                        "(HC-RLHF's pessimistic constraint); 0 = the mean (reference).")
    pid_kp: float = doc(0.1, "pid: proportional gain (not in the reference; OmniSafe's default).")
    pid_ki: float = doc(0.1, "pid: integral gain (chosen to match the gradient rule's step at λ = 1).")
    pid_kd: float = doc(0.01, "pid: derivative gain (OmniSafe's default).")
    pid_derivative_delay: int = doc(10, "pid: the derivative compares the cost EMA with its value this many steps ago.")
    pid_proportional_ema: float = doc(0.95, "pid: EMA factor of the proportional term.")
    pid_derivative_ema: float = doc(0.95, "pid: EMA factor of the cost in the derivative term.")

    def validate(self, prefix: str) -> None:
        _check(self.lambda_init >= 0, prefix + "lambda_init", "must be >= 0")
        _check(self.lambda_init > 0 or self.rule != "gradient", prefix + "lambda_init",
               "must be > 0 with rule=gradient (it learns log λ); use rule=fixed for λ = 0")
        _check(self.lambda_lr > 0, prefix + "lambda_lr", "must be > 0")
        _check(self.lambda_max >= 0, prefix + "lambda_max", "must be >= 0")
        _check(self.update_delay_steps >= 0, prefix + "update_delay_steps", "must be >= 0")
        _check(self.episode_cost_window > 0, prefix + "episode_cost_window", "must be > 0")
        _check(0.0 <= self.pessimistic_delta < 1.0, prefix + "pessimistic_delta", "must be in [0, 1)")
        _check(self.pid_derivative_delay >= 1, prefix + "pid_derivative_delay", "must be >= 1")
        for key in ("pid_proportional_ema", "pid_derivative_ema"):
            _check(0.0 <= getattr(self, key) < 1.0, prefix + key, "must be in [0, 1)")


@dataclass
class ConstraintConfig:
    """One more constraint E[C_i] <= d_i with its own multiplier λ_i (:mod:`saferlhf.policy.constraints`)."""

    name: str = doc("", "Name of the constraint: log.jsonl keys lambda/<name>, cost/<name>, and its cost critic "
                        "(letters, digits, '_' or '-'; not 'cost', the first constraint's, nor 'reward').")
    cost: ScoreSourceConfig = doc(ScoreSourceConfig(), "C_i: a cost-model folder, a function, or 'over-refusal'.")
    category: str = doc("", "Count C_i only on prompts of this category of the labels (0 elsewhere): e.g. hold "
                            "self_harm to a stricter threshold than the rest; '' = every prompt.")
    labels: list[DataSource] = doc([], "Labelled prompts (columns prompt, label = harmful | benign | pseudo_harmful, "
                                       "category) that say which training prompts are harmless (over-refusal) or of "
                                       "`category`; empty = the built-in prompt set. Every training prompt needs one.")
    lagrange: LagrangeConfig = doc(LagrangeConfig(), "λ_i: rule (gradient | pid | fixed), threshold d_i "
                                                     "(cost_threshold) and the rule's settings.")

    def validate(self, prefix: str) -> None:
        _check(bool(NAME_PATTERN.match(self.name)), prefix + "name",
               f"{self.name!r} must start with a letter and hold only letters, digits, '_' or '-'")
        _check(self.name not in ("cost", "reward"), prefix + "name", f"{self.name!r} is taken (first constraint, "
                                                                     "reward critic)")
        _check(bool(self.cost.path), prefix + "cost.path", "must name a cost model folder, a function or "
                                                           f"{OVER_REFUSAL!r}")
        validate_sections(self, prefix)
        for i, source in enumerate(self.labels):
            source.validate(f"{prefix}labels[{i}].")


@dataclass
class PTXConfig:
    """Optional language-model loss on supervised data next to the RL objective (InstructGPT's PPO-ptx)."""

    data: list[DataSource] = doc([], "Supervised rows (prompt + response, or messages), as for saferlhf sft; "
                                     "empty = no PTX term.")
    coeff: float = doc(16.0, "Weight of the PTX loss (reference ptx_coeff).")
    batch_size: int = doc(0, "Supervised rows per update micro-batch (0 = train.batch_size, as the reference).")
    past_tense_refusals: int = doc(0, "Add N past-tense rewrites of harmful prompts answered with refusals "
                                      "(Andriushchenko & Flammarion 2024's defence; saferlhf.evaluation.reformulate).")
    past_tense_prompts: list[PromptSet] = doc([PromptSet(split="train", labels=["harmful"])],
                                              "Harmful prompts the past-tense refusals are written from.")

    def validate(self, prefix: str) -> None:
        _check(self.coeff >= 0, prefix + "coeff", "must be >= 0")
        _check(self.past_tense_refusals >= 0, prefix + "past_tense_refusals", "must be >= 0")
        for i, prompt_set in enumerate(self.past_tense_prompts):
            prompt_set.validate(f"{prefix}past_tense_prompts[{i}].")
        _check(self.batch_size >= 0, prefix + "batch_size", "must be >= 0")
        for i, source in enumerate(self.data):
            source.validate(f"{prefix}data[{i}].")


@dataclass
class EvaluationConfig:
    """Greedy answers to held-out prompts (data.eval), scored by R and C before and after training (and
    every ``train.eval_steps`` policy steps when > 0; generation batches of ``train.eval_batch_size``)."""

    max_prompts: int = doc(0, "Use at most this many prompts per eval source (0 = all).")
    max_new_tokens: int = doc(128, "Longest evaluation answer.")

    def validate(self, prefix: str) -> None:
        _check(self.max_prompts >= 0, prefix + "max_prompts", "must be >= 0")
        _check(self.max_new_tokens > 0, prefix + "max_new_tokens", "must be > 0")


@dataclass
class TrackingConfig:
    """Progress bar and per-process logs (the tracker is the stage's ``report_to``, docs/tracking.md)."""

    progress_bar: bool = doc(True, "Show a tqdm progress bar.")
    per_process_log: bool = doc(False, "Also write process_logs/rank<R>.jsonl from every process (its own λ before "
                                       "and after the broadcast, window mean, reward, cost): to check that processes "
                                       "agree (docs/scaling.md).")


@dataclass
class PolicyTrainConfig(TrainConfig):
    """TrainConfig with the reference's actor defaults (a subclass, so that a partial ``train:`` section
    in a YAML file keeps them: ``from_dict`` fills missing keys from the class's defaults)."""

    epochs: float = doc(1.0, "Passes over the training prompts (reference: 1).")
    learning_rate: float = doc(1e-5, "Actor peak learning rate (reference: 1e-5, cosine, 3% warm-up).")
    weight_decay: float = doc(0.01, "Actor AdamW weight decay (reference: 0.01).")
    batch_size: int = doc(16, "Answers per process per micro-batch of the update (reference "
                              "per_device_train_batch_size).")
    logging_steps: int = doc(1, "Write a log.jsonl line every N policy steps.")
    save_steps: int = doc(20, "Write a resumable checkpoint every N policy steps (0 = only at the end).")
    max_steps: int = doc(0, "Stop after this many policy steps (0 = use epochs).")
    eval_steps: int = doc(0, "Evaluate on data.eval every N policy steps (0 = only before and after).")
    eval_batch_size: int = doc(16, "Prompts per generation batch of the evaluation.")


@dataclass
class PromptDataConfig(DataConfig):
    """DataConfig for prompts: ``train`` = RL prompts, ``eval`` = held-out prompts (no automatic split)."""

    eval_fraction: float = doc(0.0, "Unused by train-policy (prompts are never split automatically); keep 0.")


@dataclass
class PolicyStageConfig:
    """``saferlhf train-policy``: ppo-lag (Safe RLHF), ppo, reward-shaping, critic-free."""

    algorithm: Algorithm = doc("ppo-lag", "ppo-lag | ppo (reward only, λ = 0) | reward-shaping (R - λC, fixed λ) | "
                                          "critic-free (group baselines, no critics, learned λ).")
    actor: ModelConfig = doc(ModelConfig(), "The policy to train (and, frozen, the reference policy).")
    reward: ScoreSourceConfig = doc(ScoreSourceConfig(), "Reward (helpfulness) R.")
    cost: ScoreSourceConfig = doc(ScoreSourceConfig(), "Cost (harm) C, > 0 means unsafe; optional for ppo.")
    data: PromptDataConfig = doc(PromptDataConfig(), "Prompts: train = RL prompts, eval = held-out prompts.")
    rollout: RolloutConfig = doc(RolloutConfig(), "Sampling.")
    ppo: PPOConfig = doc(PPOConfig(), "PPO and critics.")
    critic_free: CriticFreeConfig = doc(CriticFreeConfig(), "Critic-free variant.")
    lagrange: LagrangeConfig = doc(LagrangeConfig(), "Lagrange multiplier λ.")
    constraints: list[ConstraintConfig] = doc(
        [], "Further constraints E[C_i] <= d_i beside the first (cost + lagrange, named 'cost'), each with its own "
            "multiplier: e.g. [{name: over_refusal, cost: {path: over-refusal}, lagrange: {cost_threshold: 0.1}}].")
    ptx: PTXConfig = doc(PTXConfig(), "Optional PTX term.")
    evaluation: EvaluationConfig = doc(EvaluationConfig(), "Before/after evaluation on data.eval.")
    tracking: TrackingConfig = doc(TrackingConfig(), "Logging.")
    train: PolicyTrainConfig = doc(PolicyTrainConfig(), "Actor optimisation, steps, checkpoints.")
    keep_checkpoints: int = doc(1, "Checkpoints kept in output_dir/checkpoints (the newest).")
    output_dir: str = doc("runs/policy", "Folder for the policy, log.jsonl, metrics.json and checkpoints.")
    hub: HubConfig = doc(HubConfig(), "Push the saved model (and its model card) to the Hugging Face Hub.")
    resume: bool = doc(False, "Continue from the newest checkpoint in output_dir (saferlhf train-policy --resume).")
    report_to: ReportTo = report_to_field()

    def validate(self, prefix: str) -> None:
        validate_sections(self, prefix)
        _check(len(self.data.train) > 0, prefix + "data.train", "must list at least one prompt source")
        _check(bool(self.reward.path), prefix + "reward.path", "must name a reward model folder or function")
        _check(bool(self.cost.path) or self.algorithm == "ppo", prefix + "cost.path",
               f"must name a cost model folder or function for algorithm {self.algorithm}")
        _check(self.reward.path != OVER_REFUSAL, prefix + "reward.path", f"{OVER_REFUSAL!r} is a cost source")
        _check(bool(self.cost.path) or not self.constraints, prefix + "cost.path",
               "must name the first constraint's cost when `constraints` lists more")
        names = [item.name for item in self.constraints]
        for i, item in enumerate(self.constraints):
            item.validate(f"{prefix}constraints[{i}].")
            _check(item.name not in names[:i], f"{prefix}constraints[{i}].name", f"{item.name!r} is used twice")
        _check(self.keep_checkpoints >= 1, prefix + "keep_checkpoints", "must be >= 1")
        _check(bool(self.output_dir), prefix + "output_dir", "must not be empty")
        if self.algorithm == "critic-free":
            _check(self.rollout.samples_per_prompt != 1, prefix + "rollout.samples_per_prompt",
                   "critic-free compares several answers per prompt: use >= 2 (or 0 for the default 4)")
        answers = self.rollout.prompts_per_step * self.samples_per_prompt
        _check(answers % self.train.batch_size == 0, prefix + "train.batch_size",
               f"must divide the {answers} answers of a policy step (prompts_per_step x samples_per_prompt)")
        micro_batches = answers // self.train.batch_size
        _check(micro_batches % self.train.gradient_accumulation_steps == 0,
               prefix + "train.gradient_accumulation_steps", f"must divide the {micro_batches} micro-batches of a step")

    @property
    def samples_per_prompt(self) -> int:
        """``rollout.samples_per_prompt`` with 0 resolved (4 for critic-free, else 1)."""
        if self.rollout.samples_per_prompt:
            return self.rollout.samples_per_prompt
        return 4 if self.algorithm == "critic-free" else 1
