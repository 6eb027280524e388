"""The shipped Accelerate config files load with Accelerate's own loader and launch what they promise.

``accelerate launch`` is run up to the point where it would start processes: its argument check
(``_validate_launch_command``) and the environment its launcher hands to each process. Nothing is
started, so the GPU files are checked on this CPU machine too (the CPU file is run for real by
``test_multiprocess.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DistributedType
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "accelerate"

# file -> (distributed type, processes, machines, launcher, environment each process gets)
EXPECTED = {
    "single_gpu.yaml": (DistributedType.NO, 1, 1, "simple", {}),
    "cpu_2proc.yaml": (DistributedType.MULTI_GPU, 2, 1, "torchrun", {"ACCELERATE_MIXED_PRECISION": "no"}),
    "ddp_8gpu.yaml": (DistributedType.MULTI_GPU, 8, 1, "torchrun", {"ACCELERATE_MIXED_PRECISION": "bf16"}),
    "fsdp_8gpu.yaml": (DistributedType.FSDP, 8, 1, "torchrun",
                       {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_SHARDING_STRATEGY": "FULL_SHARD",
                        "FSDP_TRANSFORMER_CLS_TO_WRAP": "LlamaDecoderLayer",
                        "FSDP_STATE_DICT_TYPE": "FULL_STATE_DICT"}),
    "deepspeed_zero3_8gpu.yaml": (DistributedType.DEEPSPEED, 8, 1, "deepspeed",
                                  {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3",
                                   "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE": "none",
                                   "ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL": "true"}),
    "deepspeed_zero3_offload_8gpu.yaml": (DistributedType.DEEPSPEED, 8, 1, "deepspeed",
                                          {"ACCELERATE_DEEPSPEED_ZERO_STAGE": "3",
                                           "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE": "cpu",
                                           "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE": "cpu"}),
    "multi_node.yaml": (DistributedType.MULTI_GPU, 16, 2, "torchrun", {"ACCELERATE_MIXED_PRECISION": "bf16"}),
}


def test_every_shipped_file_is_checked():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_file_loads_and_launches_as_promised(name):
    distributed_type, processes, machines, launcher, environment = EXPECTED[name]
    config = load_config_from_file(str(CONFIGS / name))  # raises on an unknown key
    assert (config.distributed_type, config.num_processes, config.num_machines) == (distributed_type, processes,
                                                                                     machines)
    args = launch_command_parser().parse_args(["--config_file", str(CONFIGS / name), "-m", "saferlhf.cli",
                                               "train-policy"])
    args, defaults, _ = _validate_launch_command(args)
    if launcher == "deepspeed":
        assert args.use_deepspeed
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)  # as launch_command does
        command, env = prepare_deepspeed_cmd_env(args)  # command is None on one machine: torchrun starts them
        assert command is None and int(args.nproc_per_node) == processes
    elif launcher == "torchrun":
        assert args.multi_gpu or args.use_fsdp
        env = prepare_multi_gpu_env(args)
        assert int(args.nproc_per_node) * machines == processes
        assert getattr(args, "nnodes", "1") in ("1", str(machines), machines)
    else:
        assert not (args.multi_gpu or args.use_fsdp or args.use_deepspeed) and args.num_processes == 1
        env = {}
    for key, value in environment.items():
        assert env.get(key) == value, (name, key, env.get(key))
