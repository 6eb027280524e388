"""Benchmark: reward-model training throughput (pairs/s), saferlhf vs TRL's ``RewardTrainer``.

Same backbone, same pairs (rendered to the same texts), same maximum length, batch size, learning
rate and precision (fp32), on the CPU, in the same process one after the other. Writes
``bench/results/reward_training.json`` with both figures and their ratio.

    python bench/reward_training.py            # defaults: minilm-l6, 320 hh-rlhf pairs, batch 16, 256 tokens

Only pairs whose two texts fit in the maximum length are used: TRL drops longer pairs while
saferlhf truncates the prompt, so only such pairs give both trainers the same tokens. Dropout is
off in both (TRL's default ``disable_dropout``, saferlhf's default ``disable_dropout``).
Settings that differ on purpose, recorded in the JSON: TRL's default gradient checkpointing is
turned off (saferlhf does not recompute activations either, so both do the same arithmetic);
saferlhf groups pairs of similar length into a batch (its default), TRL samples at random (its
default ``train_sampling_strategy``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from saferlhf.data.templates import render_prompt
from saferlhf.models.loading import load_tokenizer

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "hh-rlhf" / "harmless-base"


def load_pairs(path: Path, count: int, seed: int, backbone: str, max_length: int):
    from saferlhf.config import DataSource
    from saferlhf.data.loading import load_records
    from saferlhf.data.split import split_records
    from saferlhf.data.validation import validate_records

    records, _ = validate_records(load_records(DataSource(path=str(path), format="hh-rlhf-harmless", split="test")),
                                  need="harmlessness")
    train, _ = split_records(records, 0.2, seed)
    # Keep pairs whose both texts fit in max_length: TRL drops longer pairs while saferlhf truncates
    # the prompt, so only pairs that fit give both trainers exactly the same tokens.
    tokenizer = load_tokenizer(backbone)
    fitting = [r for r in train if all(len(tokenizer(t)["input_ids"]) <= max_length for t in rendered_pair(tokenizer, r))]
    return fitting[:count]


def rendered_pair(tokenizer, record) -> tuple[str, str]:
    """(chosen, rejected) texts as TRL receives them: the rendered prompt followed by each answer."""
    prompt = render_prompt(tokenizer, record.prompt)
    safer = record.safer_response_id
    return prompt + " " + record.response(safer), prompt + " " + record.response(1 - safer)


def run_saferlhf(records, args, workdir: Path) -> dict:
    from saferlhf.config import DataConfig, DataSource, ModelConfig, TrainConfig
    from saferlhf.stages.score_training import ScoreStageConfig, train_score_model

    data_file = workdir / "pairs.jsonl"
    # hh-rlhf's chosen/rejected pairs serve as preference pairs for both trainers (TRL reads them the same way)
    rows = [{**r.to_dict(), "better_response_id": r.safer_response_id} for r in records]
    data_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = ScoreStageConfig(
        model=ModelConfig(name_or_path=args.backbone),
        data=DataConfig(train=[DataSource(path=str(data_file), format="decoupled")], eval_fraction=0.0,
                        max_length=args.max_length),
        train=TrainConfig(epochs=1, batch_size=args.batch_size, learning_rate=args.learning_rate,
                          precision="fp32", logging_steps=1000, warmup_ratio=0.0),
        output_dir=str(workdir / "saferlhf"), normalization_samples=1,
    )
    metrics = train_score_model(config, "reward")
    return {"pairs": metrics["num_train_pairs"], "seconds": metrics["train_seconds"],
            "pairs_per_s": metrics["train_pairs_per_s"]}


def run_trl(records, args, workdir: Path) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    from saferlhf.models import builtin

    tokenizer = load_tokenizer(args.backbone)
    rows = [dict(zip(("chosen", "rejected"), rendered_pair(tokenizer, record))) for record in records]
    model = AutoModelForSequenceClassification.from_pretrained(builtin.resolve(args.backbone), num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    config = RewardConfig(
        output_dir=str(workdir / "trl"), per_device_train_batch_size=args.batch_size, num_train_epochs=1,
        learning_rate=args.learning_rate, max_length=args.max_length, use_cpu=True, bf16=False, fp16=False,
        gradient_checkpointing=False, report_to="none", save_strategy="no", logging_steps=1000,
        disable_tqdm=False, seed=0,
    )
    trainer = RewardTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    trained = len(trainer.train_dataset)  # after TRL's own length filter (none should be dropped)
    return {"pairs": trained, "seconds": seconds, "pairs_per_s": trained / seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--backbone", default="minilm-l6")
    parser.add_argument("--pairs", type=int, default=320)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=3e-5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "reward_training.json")
    args = parser.parse_args()
    if not args.data.exists():
        print(f"skipped: benchmark data {args.data} is absent (needs ../shared/data/hh-rlhf)", file=sys.stderr)
        return 0
    torch.set_num_threads(args.threads)
    records = load_pairs(args.data, args.pairs, seed=42, backbone=args.backbone, max_length=args.max_length)
    with tempfile.TemporaryDirectory() as tmp:
        trl = run_trl(records, args, Path(tmp))
        ours = run_saferlhf(records, args, Path(tmp))
    result = {
        "benchmark": "reward-model training throughput",
        "backbone": args.backbone, "pairs": len(records), "batch_size": args.batch_size,
        "max_length": args.max_length, "precision": "fp32", "device": "cpu", "threads": args.threads,
        "project_pairs_per_s": ours["pairs_per_s"], "trl_pairs_per_s": trl["pairs_per_s"],
        "ratio_vs_trl": ours["pairs_per_s"] / trl["pairs_per_s"],
        "project_pairs": ours["pairs"], "trl_pairs": trl["pairs"],
        "project_seconds": ours["seconds"], "trl_seconds": trl["seconds"],
        "notes": {"trl_gradient_checkpointing": False, "project_group_by_length": True,
                  "trl_train_sampling_strategy": "random (default)"},
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
