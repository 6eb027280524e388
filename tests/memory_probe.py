"""Peak memory of one policy step, measured in a fresh process (run by tests/test_memory.py).

    python tests/memory_probe.py '["algorithm=ppo-lag", "actor.name_or_path=tiny-llama", ...]'

Prints one JSON line: the resident set before the models are loaded (``baseline``, imports done),
the high-water mark after one ``PolicyTrainer.step()`` (``peak``, Linux ``VmHWM``), the rollout's
prompt width and the step time. ``reward`` and ``cost`` below stand in for score models (no weights).
"""

from __future__ import annotations

import json
import sys


def reward(prompts: list, responses: list[str]) -> list[float]:
    return [len(response) / 100 for response in responses]


def cost(prompts: list, responses: list[str]) -> list[float]:
    return [0.1 for _ in responses]


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    raise KeyError(field)


def main(overrides: list[str]) -> dict:
    import torch  # noqa: F401  imports are not part of the measured growth
    import transformers  # noqa: F401

    from saferlhf.config import load_config
    from saferlhf.policy.config import PolicyStageConfig
    from saferlhf.policy.rollout import encode_prompts
    from saferlhf.policy.trainer import PolicyTrainer
    from saferlhf.training.setup import make_accelerator

    config = load_config(PolicyStageConfig, overrides=overrides)
    accelerator = make_accelerator(config.train)
    baseline = _status_bytes("VmRSS")
    trainer = PolicyTrainer(config, accelerator)
    answer = config.rollout.max_new_tokens or config.data.max_length // 2
    prompt_width = encode_prompts(trainer.tokenizer, trainer.prompts_for_step(0),
                                  max(1, config.data.max_length - answer))[0].size(1)
    metrics = trainer.step()
    return {"baseline": baseline, "peak": _status_bytes("VmHWM"), "prompt_width": prompt_width,
            "response_length": metrics["response_length"], "step_seconds": metrics["time/step"]}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))), flush=True)
