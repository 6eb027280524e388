"""``saferlhf launch`` for real: two CPU processes (configs/accelerate/cpu_2proc.yaml) train a tiny reward model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .test_multiprocess import CPU_CONFIG, free_port, write_pairs


def test_saferlhf_launch_trains_on_two_processes(tmp_path):
    data, out = write_pairs(tmp_path / "pairs.jsonl", count=24), tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("ACCELERATE_USE_CPU", None)
    command = [sys.executable, "-m", "saferlhf.cli", "launch", "--config_file", str(CPU_CONFIG),
               "--main_process_port", str(free_port()), "train-reward", f"data.train=[{data}]",
               "model.name_or_path=tiny-bert", f"output_dir={out}", "data.max_length=32", "train.batch_size=2",
               "train.max_steps=2", "normalization_samples=4", "train.num_threads=1", "report_to=tensorboard"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[saferlhf launch]" in result.stdout and "-m saferlhf.cli train-reward" in result.stdout
    assert json.loads((out / "metrics.json").read_text())["train_steps"] == 2
    assert len(list((out / "tensorboard").rglob("events.out.tfevents.*"))) >= 1  # the main process's tracker
