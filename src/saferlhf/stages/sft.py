"""``saferlhf sft``: supervised fine-tuning on (prompt, response) data with the chat template.

A thin wrapper around TRL's ``SFTTrainer`` (no copied trainer): rows become TRL's conversational
prompt/completion format, so the loss covers the response tokens only (``completion_only_loss``)
and the prompt is rendered with the model's chat template. Full fine-tuning or LoRA (peft).
Later stages use it for the PTX data.

``refusal_tokens=single`` (or ``per-category``) trains refusal tokens (Jain et al. 2024,
:mod:`saferlhf.controls.tokens`): each answer starts with ``[refuse]`` or ``[respond]`` (a row's
``refusal`` column says which, else the rule detector), the tokens are added to the tokenizer with
trained embedding rows (under LoRA the new rows only, at their own ``refusal_tokens_learning_rate``)
and ``refusal_tokens.json`` is saved beside the model for ``saferlhf evaluate``'s
refusal-token control; ``control_token_train_accuracy`` in metrics.json is the share of training rows
whose own control token is the model's first choice.

``past_tense_refusals=N`` adds N rows that rewrite harmful prompts (``past_tense_prompts``, by default
the built-in harmful training prompts) into the past tense with a refusal as the answer: the defence of
Andriushchenko & Flammarion 2024 (:func:`saferlhf.evaluation.reformulate.past_tense_refusal_rows`). Its
cost in over-refusal is measured with ``saferlhf evaluate`` (docs/probing.md), not assumed.

``derta.harmful_prefix`` / ``derta.rto`` train Decoupled Refusal Training (Yuan et al. 2024,
:mod:`saferlhf.training.derta`) on rows that carry a ``harmful_response`` beside the refusal in ``response``.

Input rows (jsonl / json / csv / parquet files or dataset ids, read by :mod:`saferlhf.data.readers`): ``prompt`` + ``response`` (or
``completion``) columns, or a ``messages`` column holding a whole conversation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from saferlhf.config import DataSource, HubConfig, ModelConfig, TrainConfig, _check, doc, to_dict, validate_sections
from saferlhf.controls.gate import PromptSet
from saferlhf.controls.tokens import copy_spec
from saferlhf.data.readers import read_rows
from saferlhf.models.loading import causal_lm_for, load_tokenizer
from saferlhf.models.model_card import publish
from saferlhf.runio import RunWriter
from saferlhf.training.derta import DeRTaConfig, derta_examples, harmful_answer
from saferlhf.training.distributed import is_main_process, use_cpu_process_group_if_no_gpu
from saferlhf.training.setup import trainer_arguments
from saferlhf.training.tracking import ReportTo, log_callback, open_tracker, report_to_field


@dataclass
class SFTStageConfig:
    model: ModelConfig = doc(ModelConfig(), "Causal LM to fine-tune.")
    train_data: list[DataSource] = doc([], "Files with prompt/response (or messages) rows.")
    eval_data: list[DataSource] = doc([], "Optional evaluation files (same columns).")
    train: TrainConfig = doc(TrainConfig(epochs=1.0, batch_size=8), "Optimisation.")
    max_length: int = doc(512, "Maximum tokens per example (longer ones are truncated).")
    output_dir: str = doc("runs/sft", "Folder for the model, metrics.json and log.jsonl.")
    hub: HubConfig = doc(HubConfig(), "Push the saved model (and its model card) to the Hugging Face Hub.")
    resume: bool = doc(False, "Continue from the last checkpoint in output_dir.")
    refusal_tokens: Literal["none", "single", "per-category"] = doc(
        "none", "Prepend [refuse] / [respond] to every answer (per-category: [refuse:<category>]), Jain et al. 2024.")
    refusal_tokens_learning_rate: float = doc(
        5e-3, "Under LoRA: learning rate of the new token rows (the old rows stay frozen); at a LoRA learning "
              "rate a short run leaves them unlearnt (docs/controls.md). Full fine-tuning: train.learning_rate.")
    report_to: ReportTo = report_to_field()

    past_tense_refusals: int = doc(0, "Add N past-tense rewrites of harmful prompts answered with refusals "
                                      "(Andriushchenko & Flammarion 2024's defence; 0 = none).")
    past_tense_prompts: list[PromptSet] = doc([PromptSet(split="train", labels=["harmful"])],
                                              "Harmful prompts the past-tense refusals are written from.")
    derta: DeRTaConfig = doc(DeRTaConfig(), "Decoupled Refusal Training on rows with a 'harmful_response' "
                                            "(Yuan et al. 2024).")

    def validate(self, prefix: str) -> None:
        validate_sections(self, prefix)
        _check(self.past_tense_refusals >= 0, prefix + "past_tense_refusals", "must be >= 0")
        _check(self.refusal_tokens_learning_rate > 0, prefix + "refusal_tokens_learning_rate", "must be > 0")
        for i, prompt_set in enumerate(self.past_tense_prompts):
            prompt_set.validate(f"{prefix}past_tense_prompts[{i}].")
        _check(len(self.train_data) > 0, prefix + "train_data", "must list at least one file")
        for i, source in enumerate(self.train_data + self.eval_data):
            source.validate(f"{prefix}train_data[{i}].")


def to_conversation(row: dict, where: str) -> dict:
    """One row -> TRL conversational prompt/completion; errors name the file and row."""
    if row.get("messages"):
        messages = row["messages"]
        if messages[-1].get("role") != "assistant":
            raise ValueError(f"{where}: 'messages' must end with an assistant turn")
        return {"prompt": messages[:-1], "completion": [messages[-1]]}
    response = row.get("response", row.get("completion"))
    if not isinstance(row.get("prompt"), str) or not isinstance(response, str) or not response.strip():
        raise ValueError(f"{where}: needs a string 'prompt' and a non-empty 'response' (or 'completion'); "
                         f"found columns {sorted(row)}")
    return {"prompt": [{"role": "user", "content": row["prompt"]}],
            "completion": [{"role": "assistant", "content": response}]}


def past_tense_rows(config: SFTStageConfig) -> list[dict]:
    """The ``past_tense_refusals`` rows of the config (harmful prompts of ``past_tense_prompts`` only)."""
    if not config.past_tense_refusals:
        return []
    from saferlhf.controls.gate import read_prompt_set
    from saferlhf.evaluation.reformulate import past_tense_refusal_rows

    seeds = [row for prompt_set in config.past_tense_prompts for row in read_prompt_set(prompt_set)
             if row["label"] == "harmful"]
    return past_tense_refusal_rows(seeds, config.past_tense_refusals)


def load_sft_dataset(sources: list[DataSource], refusal_tokens: str = "none", extra_rows: list[dict] | None = None,
                     with_harmful: bool = False):
    """``(dataset, RefusalTokens or None)``: the conversations (plus ``extra_rows``, e.g. past-tense refusals),
    answers marked when ``refusal_tokens`` is not none; ``with_harmful`` adds each row's ``harmful_response``
    (None where absent) for DeRTa."""
    from datasets import Dataset

    conversations, raw_rows, locations = [], [], []
    for i, row in enumerate(extra_rows or []):
        conversations.append(to_conversation(row, f"{row.get('source', 'extra')}:{i}"))
        raw_rows.append(row)
        locations.append(f"{row.get('source', 'extra')}:{i}")
    for source in sources:
        for raw in read_rows(source.path, source.split, source.limit):
            if raw.error:
                raise ValueError(f"{raw.location}: {raw.error}")
            conversations.append(to_conversation(raw.row, raw.location))
            raw_rows.append(raw.row)
            locations.append(raw.location)
    spec = None
    if refusal_tokens != "none":
        from saferlhf.controls.tokens import mark_answers

        spec = mark_answers(conversations, raw_rows, locations, refusal_tokens)
    if with_harmful:
        for conversation, row, where in zip(conversations, raw_rows, locations):
            conversation["harmful_response"] = harmful_answer(row, where)
    return Dataset.from_list(conversations), spec


def run(config: SFTStageConfig) -> dict:
    from trl import SFTConfig, SFTTrainer

    output_dir = Path(config.output_dir)
    use_cpu_process_group_if_no_gpu()  # under accelerate launch without GPUs: one gloo group, not N lone runs
    tracker = open_tracker(config.report_to, output_dir, "sft", to_dict(config), enabled=is_main_process())
    writer = RunWriter(output_dir, enabled=is_main_process(), resume=config.resume, tracker=tracker)
    writer.write_config(to_dict(config))
    tokenizer = load_tokenizer(config.model.name_or_path, config.model.trust_remote_code)
    model = causal_lm_for(config.model)
    extra = past_tense_rows(config)
    train_dataset, tokens = load_sft_dataset(config.train_data, config.refusal_tokens, extra, config.derta.enabled)
    marked = train_dataset
    eval_dataset, eval_tokens = (load_sft_dataset(config.eval_data, config.refusal_tokens) if config.eval_data
                                 else (None, None))
    if eval_tokens is not None and not set(eval_tokens.tokens) <= set(tokens.tokens):
        raise ValueError(f"eval_data needs refusal tokens the training data lacks: "
                         f"{sorted(set(eval_tokens.tokens) - set(tokens.tokens))}")
    if tokens is not None:
        from saferlhf.controls.tokens import add_control_tokens, train_only_new_rows

        first_new_row = min(add_control_tokens(model, tokenizer, tokens, config.train.seed))
    derta_counts = {}
    if config.derta.enabled:
        from datasets import Dataset

        rows = train_dataset.to_list()
        examples, derta_counts = derta_examples(rows, [row["harmful_response"] for row in rows], tokenizer,
                                                config.derta, config.train.seed, config.max_length)
        from saferlhf.refusal.patterns import detect_refusal

        derta_counts["derta_responses_not_detected_as_refusals"] = sum(  # a mislabelled row trains the wrong target
            bool(row["harmful_response"]) and not detect_refusal(row["completion"][0]["content"]).is_refusal
            for row in rows)
        train_dataset = Dataset.from_list(examples)
    lora = config.model.lora
    peft_config = None
    if lora.enabled:
        from peft import LoraConfig

        peft_config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                 target_modules=lora.target_modules if lora.target_modules == "all-linear"
                                 else lora.target_modules.split(","), task_type="CAUSAL_LM")
    args = SFTConfig(**trainer_arguments(config.train, str(output_dir / "checkpoints"), eval_dataset is not None),
                     max_length=config.max_length, completion_only_loss=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=tokenizer, peft_config=peft_config, callbacks=[log_callback(writer)])
    restore_old_rows = None
    if tokens is not None and peft_config:  # full fine-tuning trains every row at train.learning_rate
        from saferlhf.controls.tokens import new_rows_learning_rate

        restore_old_rows = train_only_new_rows(trainer.model, first_new_row)
        new_rows_learning_rate(trainer, config.refusal_tokens_learning_rate)
    has_checkpoint = any((output_dir / "checkpoints").glob("checkpoint-*"))
    result = trainer.train(resume_from_checkpoint=bool(config.resume and has_checkpoint))
    if restore_old_rows is not None:
        restore_old_rows()
    metrics = {"train_loss": result.training_loss, "train_steps": result.global_step,
               "num_train_examples": len(train_dataset), "past_tense_refusals": len(extra), **derta_counts,
               **result.metrics}
    if eval_dataset is not None:
        metrics.update(trainer.evaluate())
    if tokens is not None:
        from saferlhf.controls.tokens import control_token_accuracy

        metrics["control_token_train_accuracy"] = control_token_accuracy(trainer.model.eval(), tokenizer,
                                                                         marked.to_list(), tokens)
    if peft_config is None:
        trainer.save_model(str(output_dir))  # every process (ZeRO-3 / FSDP gather); the main process writes
    elif trainer.is_world_process_zero():
        trainer.model.merge_and_unload().save_pretrained(output_dir, safe_serialization=True)
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(output_dir)
        if tokens is not None:
            tokens.save(output_dir)
        else:  # further SFT of a refusal-token model keeps its tokens
            copy_spec(config.model.name_or_path, output_dir)
        metrics.update(publish(output_dir, "sft", config.hub, base_model=config.model.name_or_path,
                               data=[s.path for s in config.train_data], metrics=metrics, config=to_dict(config)))
    writer.write_metrics(metrics)
    writer.finish()
    return metrics


