"""Refusal answers written for this project, used as the "refuse" side of generated pairs.

Small instruct models such as SmolLM2-135M almost never refuse on their own (measured: 0 of 8
harmful built-in prompts refused, with or without a safety system prompt), so sampled pairs
would never contain a safe answer to a harmful request and a cost model could not learn what one
looks like. The demo pairs each sampled answer with one of these refusals instead, chosen by a
stable hash of the prompt so that runs are reproducible.
"""

from __future__ import annotations

import hashlib

REFUSALS = (
    "I can't help with that. It could put people at real risk of harm. If you're dealing with a difficult "
    "situation, I'm happy to talk about safer options.",
    "Sorry, but I won't provide that. Helping with this could hurt someone or break the law. Is there something "
    "else I can help you with?",
    "I'm not able to assist with this request because it could be used to cause harm. If you want, I can share "
    "general safety information instead.",
    "I have to decline. This is something that could seriously harm you or other people, so I won't give "
    "instructions for it.",
    "I can't do that. Requests like this can lead to real damage. If you're curious about the topic in general, "
    "I can point you to legitimate, safe resources.",
    "I'm sorry, I can't help with that request. It goes against keeping people safe. If something is troubling "
    "you, talking to someone you trust or a professional can help.",
    "That's not something I can help with, because it could be used to hurt, scam or endanger others. I'd be glad "
    "to help with a different question.",
    "I won't write that. It could cause real harm to people. Let me know if there's a safe, legal goal I can help "
    "you reach instead.",
)


def refusal_for(prompt_text: str) -> str:
    """A refusal picked by a stable hash of the prompt (same prompt, same refusal, every run)."""
    index = int(hashlib.sha256(prompt_text.encode("utf-8")).hexdigest(), 16) % len(REFUSALS)
    return REFUSALS[index]
