"""``saferlhf dpo``: offline preference optimisation on the decoupled labels, on TRL's ``DPOTrainer``.

DPO (Rafailov et al. 2023, arXiv 2305.18290) minimises, with π_ref the model it starts from,

    L = -E log σ( β·log π_θ(y⁺|x)/π_ref(y⁺|x) - β·log π_θ(y⁻|x)/π_ref(y⁻|x) )

Objectives (``objective``), on the same pairs:

- ``helpfulness``: y⁺ = the pair's ``better_response_id`` (β = ``beta``);
- ``safety``: y⁺ = ``safer_response_id`` (β = ``safety_beta``);
- ``sacpo``: Stepwise Alignment for Constrained Policy Optimization (Wachi et al. 2024, arXiv 2404.11049):
  helpfulness DPO first, then safety DPO starting from, and referenced to, its result. SACPO shows
  that this solves the constrained problem max E[R] - β·KL s.t. E[C] <= d for the λ that β / β_safety
  expresses (β_safety = β/λ): a smaller ``safety_beta`` weighs safety more.

Full fine-tuning or LoRA (``model.lora``; the adapter is merged after each step, so the next step's
reference is the merged model). ``ches_drop_fraction`` drops that share of each step's pairs with the
highest CHES under the model about to be trained (Razin et al. 2024, :mod:`saferlhf.stages.ches`)
before the step. A pair without the label a step needs stops the run with its ``file:line``.

A model trained with refusal tokens keeps them: every answer of a pair opens with the model's control token
(:func:`saferlhf.controls.tokens.mark_with`) and ``refusal_tokens.json`` is copied into the output folder.

Outputs: ``output_dir`` is a Hugging Face model folder (merged weights + tokenizer), with
``metrics.json`` (per step: pairs trained on, pairs dropped by CHES and by TRL as too long, final loss,
reward accuracy and margin) and
``log.jsonl`` (TRL's log lines, per step).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from saferlhf.config import DataSource, HubConfig, ModelConfig, TrainConfig, _check, doc, to_dict, validate_sections
from saferlhf.controls.tokens import RefusalTokens, copy_spec, mark_with, spec_of
from saferlhf.data.loading import load_records
from saferlhf.data.records import PreferenceRecord, prompt_messages
from saferlhf.models.loading import apply_lora, causal_lm_for, load_tokenizer
from saferlhf.models.model_card import publish
from saferlhf.runio import RunWriter
from saferlhf.stages.ches import drop_highest_ches, labelled
from saferlhf.training.setup import trainer_arguments
from saferlhf.training.tracking import ReportTo, log_callback, open_tracker, report_to_field

STEPS = {"helpfulness": ("helpfulness",), "safety": ("safety",), "sacpo": ("helpfulness", "safety")}
PREFERENCE = {"helpfulness": "better", "safety": "safer"}  # step -> which label picks y⁺


@dataclass
class DPOStageConfig:
    """Configuration of ``saferlhf dpo``."""

    model: ModelConfig = doc(ModelConfig(), "The model to train (also the reference of the first step).")
    train_data: list[DataSource] = doc([], "Preference pairs (pku-saferlhf, trl, hh-rlhf, ...; docs/data.md).")
    objective: Literal["helpfulness", "safety", "sacpo"] = doc(
        "helpfulness", "helpfulness: y⁺ = better_response_id; safety: y⁺ = safer_response_id; sacpo: "
                       "helpfulness, then safety from its result (Wachi et al. 2024).")
    beta: float = doc(0.1, "β of the helpfulness step (TRL's default).")
    safety_beta: float = doc(0.1, "β of the safety step; SACPO: β/λ, smaller = safety weighs more.")
    ches_drop_fraction: float = doc(0.0, "Drop this share of each step's pairs with the highest CHES before it.")
    train: TrainConfig = doc(TrainConfig(epochs=1.0, batch_size=8, learning_rate=1e-6),
                             "Optimisation of each step (TRL's DPO learning rate 1e-6 by default).")
    max_length: int = doc(512, "Maximum tokens of prompt + answer.")
    output_dir: str = doc("runs/dpo", "Folder for the model, metrics.json and log.jsonl.")
    hub: HubConfig = doc(HubConfig(), "Push the saved model (and its model card) to the Hugging Face Hub.")
    report_to: ReportTo = report_to_field()

    def validate(self, prefix: str) -> None:
        validate_sections(self, prefix)
        _check(len(self.train_data) > 0, prefix + "train_data", "must list at least one preference source")
        for i, source in enumerate(self.train_data):
            source.validate(f"{prefix}train_data[{i}].")
        _check(self.beta > 0 and self.safety_beta > 0, prefix + "beta", "beta and safety_beta must be > 0")
        _check(0.0 <= self.ches_drop_fraction < 1.0, prefix + "ches_drop_fraction", "must be in [0, 1)")
        _check(self.max_length > 8, prefix + "max_length", "must be > 8")


def preference_rows(records: list[PreferenceRecord], preference: str, spec: RefusalTokens | None = None) -> list[dict]:
    """TRL's conversational preference rows: ``prompt`` (messages), ``chosen``, ``rejected`` (assistant turns);
    with ``spec`` (a refusal-token model) each answer opens with its control token, as the model's own do."""
    rows = []
    for record in records:
        chosen = record.better_response_id if preference == "better" else record.safer_response_id
        prompt = prompt_messages(record.prompt)
        answers = [{"prompt": prompt, "completion": [{"role": "assistant", "content": record.response(index)}]}
                   for index in (chosen, 1 - chosen)]
        if spec is not None:
            mark_with(spec, answers, [{}, {}], [record.source] * 2)
        rows.append({"prompt": prompt, "chosen": answers[0]["completion"], "rejected": answers[1]["completion"]})
    return rows


def dpo_step(config: DPOStageConfig, model, tokenizer, records: list[PreferenceRecord], step: str,
             writer: RunWriter) -> tuple[object, dict]:
    """One DPO run from ``model`` (its own reference); returns the trained (merged) model and the step's metrics."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    preference = PREFERENCE[step]
    kept = labelled(records, preference)
    if config.ches_drop_fraction:
        kept = drop_highest_ches(model.eval(), tokenizer, kept, preference, config.ches_drop_fraction,
                                 config.max_length)
    folder = Path(config.output_dir) / f"checkpoints-{step}"
    args = DPOConfig(**trainer_arguments(config.train, str(folder)), max_length=config.max_length,
                     beta=config.beta if step == "helpfulness" else config.safety_beta)
    trainer = DPOTrainer(model=apply_lora(model.train(), config.model.lora, "CAUSAL_LM"), args=args,
                         train_dataset=Dataset.from_list(preference_rows(kept, preference, spec_of(config.model.name_or_path))),
                         processing_class=tokenizer, callbacks=[log_callback(writer, dpo_step=step)])
    if len(trainer.train_dataset) < len(kept):  # TRL drops pairs whose answers max_length cuts away entirely
        print(f"[saferlhf dpo] {step}: {len(kept) - len(trainer.train_dataset)} of {len(kept)} pairs left out by "
              f"TRL (answers truncated away at max_length={config.max_length})", flush=True)
    result = trainer.train()
    last = {}
    for entry in trainer.state.log_history:
        last.update(entry)
    trained = trainer.model.merge_and_unload() if config.model.lora.enabled else trainer.model
    metrics = {"pairs": len(trainer.train_dataset), "dropped_by_ches": len(records) - len(kept),
               "dropped_as_too_long": len(kept) - len(trainer.train_dataset), "train_loss": result.training_loss,
               "steps": result.global_step, "beta": args.beta,
               **{key: last[key] for key in ("rewards/accuracies", "rewards/margins") if key in last}}
    return trained, metrics


def run(config: DPOStageConfig) -> dict:
    output_dir = Path(config.output_dir)
    writer = RunWriter(output_dir, tracker=open_tracker(config.report_to, output_dir, "dpo", to_dict(config)))
    writer.write_config(to_dict(config))
    records = [record for source in config.train_data for record in load_records(source)]
    for step in STEPS[config.objective]:  # fail on missing labels before any training
        labelled(records, PREFERENCE[step])
    tokenizer = load_tokenizer(config.model.name_or_path, config.model.trust_remote_code)
    model = causal_lm_for(config.model)
    metrics = {"objective": config.objective}
    for step in STEPS[config.objective]:
        model, metrics[step] = dpo_step(config, model, tokenizer, records, step, writer)
    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    copy_spec(config.model.name_or_path, output_dir)
    metrics.update(publish(output_dir, "dpo", config.hub, base_model=config.model.name_or_path,
                           data=[s.path for s in config.train_data], metrics=metrics, config=to_dict(config)))
    writer.write_metrics(metrics)
    writer.finish()
    return metrics
