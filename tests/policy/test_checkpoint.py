"""Checkpoint files: round trip of weights, optimiser, scheduler and RNG; atomicity rules."""

import json
import random

import numpy as np
import torch
from accelerate import Accelerator

from saferlhf.policy.checkpoint import (STATE_FILE, checkpoint_dir, latest_checkpoint, load_checkpoint,
                                        remove_stale_tmp, save_checkpoint)


def _setup(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    model[0].weight.requires_grad_(False)  # a frozen weight (as the base model under LoRA) is not saved
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    return model, optimizer, scheduler


def test_round_trip_restores_training_state_and_rng(tmp_path):
    accelerator = Accelerator(cpu=True)
    model, optimizer, scheduler = _setup(0)
    model(torch.ones(2, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    save_checkpoint(accelerator, tmp_path, 7, {"actor": model}, {"actor": optimizer}, {"actor": scheduler},
                    {"data_position": 112, "multiplier": {"log_lambda": 0.25}})
    expected_draws = (random.random(), np.random.rand(), torch.rand(1))
    folder = checkpoint_dir(tmp_path, 7)
    assert sorted(p.name for p in folder.iterdir()) == ["actor.safetensors", "optimizers.pt", "rng_state_0.pt",
                                                        "schedulers.pt", STATE_FILE]

    restored, restored_optimizer, restored_scheduler = _setup(1)
    state = load_checkpoint(accelerator, folder, {"actor": restored}, {"actor": restored_optimizer},
                            {"actor": restored_scheduler})
    assert state["step"] == 7 and state["data_position"] == 112 and state["multiplier"] == {"log_lambda": 0.25}
    for (name, saved), (_, loaded) in zip(model.named_parameters(), restored.named_parameters()):
        if saved.requires_grad:
            assert torch.equal(saved, loaded), name
    assert not torch.equal(model[0].weight, restored[0].weight)  # frozen: rebuilt from the config, not saved
    assert restored_scheduler.get_last_lr() == scheduler.get_last_lr() == [0.05]
    assert restored_optimizer.state_dict()["state"][0]["step"] == 1
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected_draws


def test_latest_checkpoint_ignores_incomplete_folders_and_keeps_the_newest(tmp_path):
    accelerator = Accelerator(cpu=True)
    model, optimizer, scheduler = _setup(0)
    args = ({"actor": model}, {"actor": optimizer}, {"actor": scheduler}, {})
    for step in (1, 2, 3):
        save_checkpoint(accelerator, tmp_path, step, *args, keep=2)
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["step-000002", "step-000003"]
    (root / "step-000009.tmp").mkdir()  # a save killed before its rename
    (root / "step-000010").mkdir()  # a folder without trainer_state.json is not a checkpoint
    assert latest_checkpoint(tmp_path).name == "step-000003"
    assert json.loads((latest_checkpoint(tmp_path) / STATE_FILE).read_text())["step"] == 3
    assert remove_stale_tmp(tmp_path) == 1 and not (root / "step-000009.tmp").exists()
    assert latest_checkpoint(tmp_path / "nothing-here") is None
