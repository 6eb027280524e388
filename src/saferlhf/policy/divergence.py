"""Stopping a policy run that diverged: a loss, the actor's weights or its logits became NaN or infinite.

Every process checks its own numbers; the flags are summed over processes so that all of them stop
together, before the step counts (no checkpoint is written and nothing more is sampled), keeping the
last good checkpoint (docs/reliability.md).
"""

from __future__ import annotations

from typing import Callable

import torch

from saferlhf.policy.rollout import Rollout, answer_logits
from saferlhf.training.distributed import full_parameters


class NonFiniteLossError(FloatingPointError):
    """A loss, the actor's weights or its logits became NaN or infinite; the run stops and the last good
    checkpoint is kept."""


def raise_if_flagged(accelerator, flags: dict[str, bool], when: str, cause: str | Callable[[], str], step: int,
                     output_dir: str) -> None:
    """Raise :class:`NonFiniteLossError` on every process if any process flagged a quantity in ``flags``."""
    counts = torch.tensor([float(v) for v in flags.values()], device=accelerator.device)
    if accelerator.num_processes > 1:
        counts = accelerator.reduce(counts, "sum")
    bad = [name for name, count in zip(flags, counts.tolist()) if count > 0]
    if bad:
        reason = cause if isinstance(cause, str) else cause()
        raise NonFiniteLossError(
            f"policy step {step}: {', '.join(bad)} {'is' if len(bad) == 1 else 'are'} not "
            f"finite (NaN or inf) {when}; {reason}. The run stops here, before writing a checkpoint or sampling; "
            f"the last good checkpoint in {output_dir}/checkpoints is kept (resume from it with a "
            f"lower learning rate, or fix the scorer).")


def non_finite_inputs(inputs: dict[str, torch.Tensor | None]) -> str:
    """Which of a step's inputs (rewards, costs, log-probabilities, advantages) hold NaN or inf."""
    sources = [name for name, t in inputs.items() if t is not None and not bool(torch.isfinite(t).all())]
    return f"non-finite inputs on this process: {', '.join(sources) or 'none (the model itself diverged)'}"


@torch.no_grad()
def check_actor(accelerator, actor_model, rollout: Rollout, batch_size: int, step: int, output_dir: str) -> None:
    """After the update, before the step counts (so before a checkpoint and the next sampling): the actor's
    trainable weights and its logits on the step's first micro-batch must be finite. A loss can still be
    finite in the step that blows the weights up (``learning_rate=1e10``)."""
    part = rollout.select(range(min(len(rollout), batch_size)))
    with full_parameters(accelerator, actor_model) as actor, accelerator.autocast():
        actor.eval()
        logits = answer_logits(actor, part)
        actor.train()
        weights = all(bool(torch.isfinite(p).all()) for p in actor.parameters() if p.requires_grad)
    raise_if_flagged(accelerator, {"the actor's weights": not weights,
                                   "the actor's logits": not bool(torch.isfinite(logits).all())},
                     "after the update", "the policy diverged (learning rate too high?)", step, output_dir)
