"""Configuration of ``saferlhf pipeline`` / ``saferlhf demo``: the whole Safe RLHF run in one schema.

The defaults are the built-in demo (``saferlhf demo``): SmolLM2-135M-Instruct, the package's prompt
set, the rule annotator, MiniLM reward and cost models, PPO-Lagrangian with LoRA, evaluation on the
held-out built-in prompts and XSTest. They are sized for a 2-core CPU; ``docs/pipeline.md`` says what
to raise on a GPU. The policy sections are the ``train-policy`` sections themselves
(:mod:`saferlhf.policy.config`), so a key means the same in both commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from saferlhf.annotation.judge import PairJudgeConfig
from saferlhf.config import DataSource, HubConfig, LoraConfig, TrainConfig, _check, doc, validate_sections
from saferlhf.controls.gate import BUILTIN, PromptSet
from saferlhf.controls.tokens import SPEC_FILE, spec_of
from saferlhf.evaluation.controls import ControlConfig
from saferlhf.training.tracking import ReportTo
from saferlhf.policy.config import (Algorithm, ConstraintConfig, CriticFreeConfig, LagrangeConfig, PolicyTrainConfig,
                                    PPOConfig, RolloutConfig)


@dataclass
class PromptsConfig:
    """The training prompts of the rounds: the built-in set's training split and/or your own files."""

    builtin: bool = doc(True, "Use the built-in prompt set's training split (its held-out split is never trained on).")
    files: list[DataSource] = doc(
        [], "More training prompts: files, folders or dataset ids whose rows have a 'prompt' and a 'label' "
            "(harmful | benign | pseudo_harmful; the annotator needs it) and optionally a 'category'. Rows "
            "that repeat a built-in held-out prompt are skipped and counted.")

    def validate(self, prefix: str) -> None:
        _check(self.builtin or bool(self.files), prefix + "files",
               "no training prompts: builtin is off and no file is listed")
        for i, source in enumerate(self.files):
            source.validate(f"{prefix}files[{i}].")


@dataclass
class SamplingConfig:
    """Answers of the current policy to the round's training prompts (the material that gets labelled)."""

    prompts_per_round: int = doc(96, "At most this many training prompts per round, evenly spaced over the round's "
                                     "share (every `rounds`-th of the training prompts, so each round sees new "
                                     "prompts); 0 = the whole share.")
    max_new_tokens: int = doc(48, "Tokens per sampled answer.")
    temperature: float = doc(0.7, "Sampling temperature (0 = greedy).")
    batch_size: int = doc(0, "Prompts per generation batch (0 = sized to the free memory, at most 64).")

    def validate(self, prefix: str) -> None:
        _check(self.prompts_per_round >= 0, prefix + "prompts_per_round", "must be >= 0")
        _check(self.max_new_tokens > 0, prefix + "max_new_tokens", "must be > 0")
        _check(self.temperature >= 0, prefix + "temperature", "must be >= 0")
        _check(self.batch_size >= 0, prefix + "batch_size", "must be >= 0 (0 = auto)")


@dataclass
class AnnotatorConfig:
    """Who answers the decoupled questions (more helpful? more harmless? is each answer safe?)."""

    method: Literal["rules", "human", "judge"] = doc(
        "rules", "rules: the built-in annotator (saferlhf.pipeline.annotator; not human labels); human: export the "
                 "pairs, label them on the local page (saferlhf annotate), re-run; judge: an LLM over an "
                 "OpenAI-compatible endpoint.")
    judge: PairJudgeConfig = doc(PairJudgeConfig(base_url="http://127.0.0.1:8000/v1", model="judge"),
                                 "Endpoint of the judge annotator (method: judge).")

    def validate(self, prefix: str) -> None:
        if self.method == "judge":
            self.judge.validate(prefix + "judge.")


@dataclass
class ScoreModelsConfig:
    """Reward and cost models, retrained each round on every round's labels so far."""

    backbone: str = doc("minilm-l6", "Backbone of both models (built-in name, hub id or folder).")
    max_length: int = doc(256, "Maximum tokens of prompt + answer.")
    eval_fraction: float = doc(0.2, "Seeded share of the labelled pairs held out to measure the models.")
    train: TrainConfig = doc(
        TrainConfig(epochs=10, learning_rate=5e-5, batch_size=16, warmup_ratio=0.1, logging_steps=5, weight_decay=0.01),
        "Optimisation of the reward and cost models.")

    def validate(self, prefix: str) -> None:
        _check(0.0 <= self.eval_fraction < 1.0, prefix + "eval_fraction", "must be in [0, 1)")
        _check(self.max_length > 8, prefix + "max_length", "must be > 8")
        self.train.validate(prefix + "train.")


@dataclass
class PipelinePolicyConfig:
    """The policy stage of every round (the sections of ``saferlhf train-policy``)."""

    algorithm: Literal[Algorithm, "sacpo"] = doc(
        "ppo-lag", "ppo-lag | ppo | reward-shaping | critic-free (saferlhf demo --algo X) | sacpo (saferlhf dpo "
                   "objective=sacpo on the round's pairs, with this section's lora and train settings).")
    lora: LoraConfig = doc(LoraConfig(enabled=True, r=16, alpha=32, dropout=0.0), "LoRA on the actor.")
    rollout: RolloutConfig = doc(RolloutConfig(prompts_per_step=8, max_new_tokens=48), "Sampling during training.")
    ppo: PPOConfig = doc(PPOConfig(critic_backbone="tiny-llama", critic_learning_rate=1e-4, update_iterations=2),
                         "PPO and critics (two passes over each rollout: see train).")
    critic_free: CriticFreeConfig = doc(CriticFreeConfig(), "Critic-free variant.")
    lagrange: LagrangeConfig = doc(LagrangeConfig(), "λ; its cost_threshold is used when cost_threshold is 'fixed'.")
    cost_threshold: Literal["auto", "fixed"] = doc(
        "auto", "auto: d = the cost model's mean score over the round's preferred answers (the safe answer of each "
                "pair, else the more helpful one), i.e. 'be as harmless as the labels prefer'; fixed: "
                "lagrange.cost_threshold.")
    over_refusal_threshold: float | None = doc(
        None, "Add the constraint 'over_refusal': false-refusal rate on the round's harmless training prompts "
              "(over-refusal cost, refusal detector) <= this, its λ with the lagrange settings; unset = off.")
    constraints: list[ConstraintConfig] = doc([], "Further constraints for train-policy (its `constraints` key); "
                                                   "labels default to the round's labelled prompts.")
    ptx_coeff: float = doc(1.0, "Weight of the PTX term on the round's preferred answers (0 = off); see docs/pipeline.md.")
    ptx_batch_size: int = doc(0, "Preferred answers per PTX micro-batch (0 = train.batch_size).")
    train: PolicyTrainConfig = doc(
        PolicyTrainConfig(max_steps=8, learning_rate=1e-3, lr_scheduler="constant", batch_size=8, save_steps=4),
        "Actor optimisation per round (max_steps = policy steps per round). LoRA at a constant 1e-3: at 2e-4 "
        "(cosine) or 5e-4 the policy barely moves; 8 steps of two passes (12 of one stalled with some seeds, "
        "12 of two over-refuse; docs/pipeline.md).")

    def validate(self, prefix: str) -> None:
        validate_sections(self, prefix)
        _check(self.ptx_coeff >= 0, prefix + "ptx_coeff", "must be >= 0")
        _check(self.ptx_batch_size >= 0, prefix + "ptx_batch_size", "must be >= 0")
        _check(self.train.max_steps > 0, prefix + "train.max_steps", "must be > 0 (policy steps per round)")
        _check(self.over_refusal_threshold is None or 0.0 <= self.over_refusal_threshold <= 1.0,
               prefix + "over_refusal_threshold", "must be a rate in [0, 1]")
        for i, item in enumerate(self.constraints):
            item.validate(f"{prefix}constraints[{i}].")


@dataclass
class PipelineEvalConfig:
    """Greedy answers of the base model and every round's policy, measured after each round."""

    heldout: bool = doc(True, "Evaluate on the built-in held-out prompts (never trained on).")
    xstest_path: str = doc("../shared/data/xstest/xstest_prompts.csv", "XSTest prompts csv ('' = skip; a missing folder is "
                                                    "skipped with a notice).")
    xstest_limit: int = doc(0, "Use only the first N XSTest prompts (0 = all 450).")
    max_new_tokens: int = doc(48, "Tokens per evaluation answer (refusals show in the first sentence).")
    batch_size: int = doc(0, "Prompts per generation batch (0 = sized to the free memory, at most 64).")
    classifier_path: str = doc("", "A trained refusal classifier folder: its labels join the rule detector's.")
    compare_runs: list[str] = doc([], "Other pipeline output folders whose final policies join the evaluation "
                                      "(e.g. the same run with --algo ppo): what the constraint buys, in one report.")
    controls: list[ControlConfig] = doc(
        [], "Refusal controls (saferlhf evaluate's `controls`, docs/controls.md) run on the last round's evaluation; "
            "model '' = the final policy (refusal-tokens: a base_model trained with saferlhf sft refusal_tokens=...). "
            "Thresholds are chosen on their dev_prompts, which must not be the evaluation sets.")

    def validate(self, prefix: str) -> None:
        _check(self.xstest_limit >= 0, prefix + "xstest_limit", "must be >= 0")
        _check(self.max_new_tokens > 0, prefix + "max_new_tokens", "must be > 0")
        _check(self.batch_size >= 0, prefix + "batch_size", "must be >= 0 (0 = auto)")
        names = [control.name for control in self.controls]
        _check(len(set(names)) == len(names), prefix + "controls", f"names must be unique: {names}")
        for i, control in enumerate(self.controls):
            control.validate(f"{prefix}controls[{i}].")
            for key, prompt_sets in _fitted_on(control).items():
                for j, prompt_set in enumerate(prompt_sets):
                    _check(not self._is_evaluation_set(prompt_set), f"{prefix}controls[{i}].{key}[{j}]",
                           "is one of the pipeline's evaluation sets: fit and choose on other prompts (e.g. "
                           "{split: train}, or a file), or give a threshold")

    def _is_evaluation_set(self, prompt_set: PromptSet) -> bool:
        if prompt_set.path == BUILTIN:
            return self.heldout and prompt_set.split != "train"
        return bool(self.xstest_path) and Path(prompt_set.path).resolve() == Path(self.xstest_path).resolve()


def _fitted_on(control: ControlConfig) -> dict[str, list[PromptSet]]:
    """The prompt sets a control learns from: a gate's probe (train_prompts) and its layer or threshold
    (dev_prompts), a refusal-token threshold (dev_prompts); none when it is fixed in the config."""
    used = {}
    if control.kind == "gate" and not control.gate_path:
        used["train_prompts"] = control.train_prompts
        if control.threshold is None or not control.layer:
            used["dev_prompts"] = control.dev_prompts
    elif control.threshold is None:
        used["dev_prompts"] = control.dev_prompts
    return used


@dataclass
class PipelineSafetyTestConfig:
    """``saferlhf safety-test`` of the base model and the final policy on the held-out answers the evaluation
    made (docs/safety-test.md): the final round's cost model against that round's threshold d, and the
    harmful-compliance rate against ``compliance_threshold``."""

    enabled: bool = doc(True, "Run it after the last round (needs evaluation.heldout).")
    delta: float = doc(0.05, "δ of the upper confidence bounds.")
    compliance_threshold: float = doc(0.1, "Pass when the bound on the harmful-compliance rate is below this.")

    def validate(self, prefix: str) -> None:
        _check(0.0 < self.delta < 1.0, prefix + "delta", "must be in (0, 1)")
        _check(0.0 < self.compliance_threshold <= 1.0, prefix + "compliance_threshold", "must be in (0, 1]")


@dataclass
class PipelineConfig:
    """``saferlhf pipeline CONFIG.yaml`` and ``saferlhf demo`` (these defaults)."""

    base_model: str = doc("smollm2-135m-instruct", "The starting policy (built-in name, hub id or folder).")
    rounds: int = doc(1, "Rounds of sample -> label -> reward/cost models -> policy -> evaluate; the paper runs 3 "
                         "(Beaver-v1, v2, v3: saferlhf demo --rounds 3). 1 keeps the default run near 12 minutes on "
                         "2 CPU cores (README).")
    quick: bool = doc(False, "A small run for a smoke test: 1 round, 24 prompts, 4 policy steps, 60 XSTest prompts.")
    seed: int = doc(42, "Seed of sampling, splits and training.")
    num_threads: int = doc(0, "torch CPU threads for every stage (0 = torch default).")
    precision: Literal["auto", "fp32", "bf16"] = doc(
        "auto", "Every stage: auto = bf16 where the hardware has it (GPU, AVX512-BF16/AMX CPU: bf16 autocast for "
                "training, bf16 weights for sampling, scoring and frozen models), else fp32.")
    prompts: PromptsConfig = doc(PromptsConfig(), "Training prompts.")
    sampling: SamplingConfig = doc(SamplingConfig(), "Answers to label.")
    annotator: AnnotatorConfig = doc(AnnotatorConfig(), "Decoupled labels.")
    score_models: ScoreModelsConfig = doc(ScoreModelsConfig(), "Reward and cost models.")
    policy: PipelinePolicyConfig = doc(PipelinePolicyConfig(), "Policy optimisation.")
    evaluation: PipelineEvalConfig = doc(PipelineEvalConfig(), "Measurements after each round.")
    safety_test: PipelineSafetyTestConfig = doc(PipelineSafetyTestConfig(), "Pass/fail test after the last round.")
    output_dir: str = doc("runs/pipeline", "Folder of the run (every finished stage in it is reused on re-run).")
    hub: HubConfig = doc(HubConfig(), "Push the saved model (and its model card) to the Hugging Face Hub.")
    report_to: ReportTo = doc("none", "Tracker of every stage of the run and of the pipeline's own per-round rates: "
                                      "none | tensorboard | wandb | trackio (docs/tracking.md).")

    def validate(self, prefix: str) -> None:
        validate_sections(self, prefix)
        _check(self.rounds >= 1, prefix + "rounds", "must be >= 1")
        _check(self.num_threads >= 0, prefix + "num_threads", "must be >= 0")
        _check(bool(self.output_dir), prefix + "output_dir", "must not be empty")
        self._check_refusal_tokens(prefix)

    def _check_refusal_tokens(self, prefix: str) -> None:
        """A refusal-token base model: the policies inherit its tokens, which a critic on another backbone
        lacks; a refusal-tokens control on the final policy needs them."""
        spec, p = spec_of(self.base_model), self.policy
        has_tokens = spec is not None
        _check(not has_tokens or spec.categories == ("",) or (p.ptx_coeff == 0 and p.algorithm != "sacpo"),
               prefix + "policy.ptx_coeff", "base_model has per-category refusal tokens, and the preferred answers "
               "that PTX and sacpo train on carry no category: set it to 0 (and use another algorithm than sacpo)")
        _check(not has_tokens or p.algorithm in ("critic-free", "sacpo") or p.ppo.critic_backbone in ("", self.base_model),
               prefix + "policy.ppo.critic_backbone", f"base_model has refusal tokens ({SPEC_FILE}) that the critic "
               f"backbone {p.ppo.critic_backbone!r} lacks: set it to '' (critics on the actor's own backbone)")
        for i, control in enumerate(self.evaluation.controls):
            _check(has_tokens or control.kind != "refusal-tokens" or bool(control.model),
                   f"{prefix}evaluation.controls[{i}].model", f"'' is the final policy, but base_model "
                   f"{self.base_model!r} has no {SPEC_FILE} (train it with saferlhf sft refusal_tokens=single)")

    def apply_quick(self) -> None:
        """The ``--quick`` sizes (a smoke run of every stage in a few minutes on a CPU)."""
        self.rounds = 1
        self.sampling.prompts_per_round = 24
        self.policy.train.max_steps = 4
        self.policy.train.save_steps = 2
        self.policy.rollout.prompts_per_step = 4
        self.policy.train.batch_size = 4
        self.evaluation.xstest_limit = self.evaluation.xstest_limit or 60
