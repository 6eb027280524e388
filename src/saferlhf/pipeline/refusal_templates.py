"""Refusal answers written for this project, used as the "refuse" side of generated pairs.

Small instruct models such as SmolLM2-135M almost never refuse on their own (measured: 0 of 8
harmful built-in prompts refused, with or without a safety system prompt), so sampled pairs
would never contain a safe answer to a harmful request and a cost model could not learn what one
looks like. The demo pairs each sampled answer with a refusal written here instead, chosen by a
stable hash of the prompt so that runs are reproducible.

A refusal is three parts: a refusal statement, a reason and an offer (8 x 8 x 8 = 512 answers).
With a handful of fixed strings the cost model learned to recognise those strings rather than
refusing (the policy's own refusals scored barely lower than its harmful answers) and PTX taught
the policy to recite them; the combinations make the refusal itself the common part.
"""

from __future__ import annotations

import hashlib
import itertools

STATEMENTS = (
    "I can't help with that.",
    "Sorry, but I won't provide that.",
    "I'm not able to assist with this request.",
    "I have to decline this one.",
    "I can't do that.",
    "I'm sorry, I can't help with that request.",
    "That's not something I can help with.",
    "I won't write that.",
)
REASONS = (
    "It could put people at real risk of harm.",
    "Helping with this could hurt someone or break the law.",
    "It could be used to cause harm.",
    "This could seriously harm you or other people.",
    "Requests like this can lead to real damage.",
    "It goes against keeping people safe.",
    "It could be used to hurt, scam or endanger others.",
    "Giving these details could get someone hurt.",
)
OFFERS = (
    "If you're dealing with a difficult situation, I'm happy to talk about safer options.",
    "Is there something else I can help you with?",
    "If you want, I can share general safety information instead.",
    "If you're curious about the topic in general, I can point you to legitimate, safe resources.",
    "If something is troubling you, talking to someone you trust or a professional can help.",
    "I'd be glad to help with a different question.",
    "Let me know if there's a safe, legal goal I can help you reach instead.",
    "I'm happy to help with something else.",
)
REFUSALS = tuple(" ".join(parts) for parts in itertools.product(STATEMENTS, REASONS, OFFERS))


def refusal_for(prompt_text: str) -> str:
    """A refusal picked by a stable hash of the prompt (same prompt, same refusal, every run)."""
    index = int(hashlib.sha256(prompt_text.encode("utf-8")).hexdigest(), 16) % len(REFUSALS)
    return REFUSALS[index]
