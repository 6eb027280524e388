"""``saferlhf launch [accelerate options] COMMAND [args]``: any stage on many processes / GPUs, as TRL's CLI does.

It runs ``accelerate launch [accelerate options] -m saferlhf.cli COMMAND [args]`` (Accelerate's own launcher,
through this Python: ``python -m accelerate.commands.launch``), so every option of ``accelerate launch``
works as it is (``--num_processes``, ``--config_file configs/accelerate/ddp_8gpu.yaml``, ``--mixed_precision``,
multi-node flags)::

    saferlhf launch --num_processes 2 train-policy --config configs/policy-ppo-lag-cpu.yaml
    saferlhf launch --config_file configs/accelerate/deepspeed_zero3_8gpu.yaml train-cost --config ...

The accelerate options are the arguments before the first saferlhf command name; what follows is the
command's own ``--config`` / ``key=value`` arguments (docs/scaling.md, docs/tracking.md).
"""

from __future__ import annotations

import subprocess
import sys

USAGE = "usage: saferlhf launch [accelerate launch options] COMMAND [--config FILE] [key=value ...]"


def accelerate_command(argv: list[str], commands) -> list[str]:
    """The ``accelerate launch`` command line for ``saferlhf launch`` arguments ``argv``."""
    position = next((i for i, token in enumerate(argv) if token in commands), None)
    if position is None:
        raise ValueError(f"{USAGE}\nno saferlhf command in {' '.join(argv) or '(nothing)'}; one of: "
                         f"{', '.join(c for c in commands if c != 'launch')}")
    if argv[position] in ("launch", "multi-seed"):
        raise ValueError(f"saferlhf launch {argv[position]}: launch a stage itself (multi-seed runs its stages in "
                         "one process group; launch it with python -m saferlhf.cli under accelerate launch)")
    options, command = argv[:position], argv[position:]
    if any(not token.startswith("-") and (i == 0 or not options[i - 1].startswith("-"))
           for i, token in enumerate(options)):
        raise ValueError(f"{USAGE}\nthe arguments before the command ({' '.join(options)}) must be accelerate "
                         "launch options (--name value)")
    return [sys.executable, "-m", "accelerate.commands.launch", *options, "-m", "saferlhf.cli", *command]


def main(argv: list[str], commands) -> int:
    """Run the stage under ``accelerate launch``; its exit status is this command's."""
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[0] + "\n\n" + USAGE)
        return 0
    try:
        command = accelerate_command(argv, commands)
    except ValueError as error:
        print(f"saferlhf launch: error: {error}", file=sys.stderr)
        return 2
    print("[saferlhf launch] " + " ".join(command[1:]), flush=True)
    return subprocess.run(command, check=False).returncode
