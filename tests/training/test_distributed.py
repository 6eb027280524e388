"""The multi-process helpers: CPU process group without GPUs, the process-count check, main process."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from saferlhf.training import distributed
from saferlhf.training.distributed import (broadcast_from_main, check_process_group, full_parameters, gather_from_all,
                                           is_main_process, launched_world_size, use_cpu_process_group_if_no_gpu)


@pytest.fixture
def launcher_env(monkeypatch):
    for name in (*distributed.RANK_VARIABLES, *distributed.WORLD_SIZE_VARIABLES, "ACCELERATE_USE_CPU"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_cpu_group_only_for_a_multi_process_launch_without_gpu(launcher_env):
    launcher_env.setattr(distributed, "has_accelerator_device", lambda: False)
    assert launched_world_size() == 1 and not use_cpu_process_group_if_no_gpu()
    assert "ACCELERATE_USE_CPU" not in distributed.os.environ
    launcher_env.setenv("WORLD_SIZE", "2")
    assert use_cpu_process_group_if_no_gpu() and distributed.os.environ["ACCELERATE_USE_CPU"] == "true"
    launcher_env.delenv("ACCELERATE_USE_CPU")
    launcher_env.setattr(distributed, "has_accelerator_device", lambda: True)  # GPUs: NCCL, leave it to Accelerate
    assert not use_cpu_process_group_if_no_gpu() and "ACCELERATE_USE_CPU" not in distributed.os.environ


def test_a_process_that_would_train_alone_is_an_error(launcher_env):
    alone = SimpleNamespace(num_processes=1, distributed_type="NO")
    check_process_group(alone)  # no launcher: fine
    launcher_env.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="started 2 processes .* set up 1"):
        check_process_group(alone)
    check_process_group(SimpleNamespace(num_processes=2, distributed_type="MULTI_CPU"))


def test_main_process_from_the_launcher_environment(launcher_env):
    assert is_main_process()
    launcher_env.setenv("RANK", "1")
    assert not is_main_process()
    launcher_env.setenv("RANK", "0")
    assert is_main_process()


def test_single_process_helpers_are_identities():
    accelerator = SimpleNamespace(num_processes=1, unwrap_model=lambda m: m,
                                  state=SimpleNamespace(deepspeed_plugin=None))
    assert broadcast_from_main(accelerator, {"a": 1}) == {"a": 1}
    assert gather_from_all(accelerator, [1.0]) == [[1.0]]
    model = torch.nn.Linear(2, 2)
    with full_parameters(accelerator, model) as full:
        assert full is model  # no ZeRO-3: nothing to gather
