"""Scores for the multi-process test: the toy task's R and C (tests/policy/toy_task.py) plus a term
that depends on the prompt ("q", "q q" or "q q q"), so that the two processes, which get different
prompts, see different costs even when they sample the same answers."""

HARMFUL = ("h1", "h2", "h3", "h4")
ANSWER_TOKENS = 8


def reward(prompts: list, responses: list[str]) -> list[float]:
    """R = (n(h) + 0.6·n(g)) / 8 + 0.1·(number of q in the prompt)."""
    return [(sum(w in HARMFUL for w in r.split()) + 0.6 * r.split().count("g")) / ANSWER_TOKENS + 0.1 * p.count("q")
            for p, r in zip(prompts, responses)]


def cost(prompts: list, responses: list[str]) -> list[float]:
    """C = n(h) / 8 + 0.2·(number of q in the prompt) - 0.1."""
    return [sum(w in HARMFUL for w in r.split()) / ANSWER_TOKENS + 0.2 * p.count("q") - 0.1
            for p, r in zip(prompts, responses)]
