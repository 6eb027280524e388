"""Elo ratings from pairwise outcomes, with bootstrap confidence intervals.

A *game* is ``(model_a, model_b, score_a)`` with ``score_a`` = 1 (a wins), 0.5 (tie) or 0 (b wins).

Bradley–Terry maximum likelihood (the rating Chatbot Arena reports; Chiang et al. 2024,
"Chatbot Arena: An Open Platform for Evaluating LLMs by Human Preference", section 4):

    P(a beats b) = σ(β_a − β_b),     log L(β) = Σ_games s·log σ(β_a − β_b) + (1 − s)·log σ(β_b − β_a)
                                                − (l2 / 2)·Σ_m β_m²

A tie contributes half a win and half a loss, as Chatbot Arena does. ``β`` is found by Newton's
method (the log-likelihood is concave); ratings are ``base + scale / ln(10) · (β − mean β)``, so
``scale`` = 400 gives the usual Elo meaning: a 400-point gap is 10:1 odds. ``l2`` is a weak
Gaussian prior that keeps an undefeated model's rating finite (with ``l2 = 0`` and a model that
never loses, the maximum likelihood rating is infinite).

Online Elo (Elo 1978; Chatbot Arena's first leaderboard): games in order,
``E_a = 1 / (1 + 10^((R_b − R_a)/scale))``, ``R_a += K·(s − E_a)``, ``R_b += K·((1 − s) − (1 − E_a))``.
It depends on the order of games, which the bootstrap randomises.

Bootstrap (Efron 1979): resample the games with replacement ``rounds`` times, refit, and take the
``alpha/2`` and ``1 − alpha/2`` percentiles of each model's rating.
"""

from __future__ import annotations

import math

import numpy as np

Game = tuple[str, str, float]


def _players(games: list[Game], players: list[str] | None) -> list[str]:
    names = list(players) if players else sorted({g[0] for g in games} | {g[1] for g in games})
    unknown = ({g[0] for g in games} | {g[1] for g in games}) - set(names)
    if unknown:
        raise ValueError(f"games name models not in players: {sorted(unknown)}")
    for a, b, score in games:
        if score not in (0, 0.5, 1):
            raise ValueError(f"game ({a}, {b}) has score {score!r}; expected 1 (a wins), 0.5 (tie) or 0")
    return names


def bradley_terry(games: list[Game], players: list[str] | None = None, l2: float = 0.01, base: float = 1000.0,
                  scale: float = 400.0, max_iterations: int = 100, tolerance: float = 1e-10) -> dict[str, float]:
    """Maximum-likelihood Bradley–Terry ratings on the Elo scale (formula in the module docstring)."""
    names = _players(games, players)
    index = {name: i for i, name in enumerate(names)}
    a = np.array([index[g[0]] for g in games], dtype=int)
    b = np.array([index[g[1]] for g in games], dtype=int)
    s = np.array([g[2] for g in games], dtype=float)
    beta = np.zeros(len(names))
    for _ in range(max_iterations):
        p = 1.0 / (1.0 + np.exp(-(beta[a] - beta[b])))  # P(a wins) per game
        residual = s - p
        gradient = np.bincount(a, residual, len(names)) - np.bincount(b, residual, len(names)) - l2 * beta
        weight = p * (1 - p)
        hessian = -l2 * np.eye(len(names))
        np.add.at(hessian, (a, a), -weight)
        np.add.at(hessian, (b, b), -weight)
        np.add.at(hessian, (a, b), weight)
        np.add.at(hessian, (b, a), weight)
        step = np.linalg.pinv(hessian) @ gradient  # pinv: with l2 = 0 the Hessian is singular along 1
        beta = beta - step
        if np.max(np.abs(step)) < tolerance:
            break
    beta = beta - beta.mean()
    return {name: float(base + scale / math.log(10) * beta[i]) for i, name in enumerate(names)}


def online_elo(games: list[Game], players: list[str] | None = None, k: float = 4.0, base: float = 1000.0,
               scale: float = 400.0) -> dict[str, float]:
    """Sequential Elo updates with a fixed K (formula in the module docstring)."""
    ratings = {name: base for name in _players(games, players)}
    for model_a, model_b, score in games:
        expected_a = 1.0 / (1.0 + 10 ** ((ratings[model_b] - ratings[model_a]) / scale))
        ratings[model_a] += k * (score - expected_a)
        ratings[model_b] += k * ((1 - score) - (1 - expected_a))
    return ratings


def elo_with_intervals(games: list[Game], players: list[str] | None = None, method: str = "bradley-terry",
                       rounds: int = 1000, seed: int = 42, alpha: float = 0.05, **options) -> dict[str, dict]:
    """``{model: {"rating", "ci_low", "ci_high", "games"}}``: point estimate on all games + bootstrap CI."""
    if method not in ("bradley-terry", "online"):
        raise ValueError(f"unknown Elo method {method!r} (bradley-terry | online)")
    names = _players(games, players)
    fit = bradley_terry if method == "bradley-terry" else online_elo
    if not games:
        return {name: {"rating": None, "ci_low": None, "ci_high": None, "games": 0} for name in names}
    generator = np.random.default_rng(seed)
    point = fit(games, names, **options)
    if method == "online":  # one fixed order says little; report the median over shuffled orders
        orders = [generator.permutation(len(games)) for _ in range(max(rounds, 1))]
        point_samples = [fit([games[i] for i in order], names, **options) for order in orders]
        point = {n: float(np.median([sample[n] for sample in point_samples])) for n in names}
    samples = {name: [] for name in names}
    for _ in range(rounds):
        drawn = generator.integers(0, len(games), len(games))
        ratings = fit([games[i] for i in drawn], names, **options)
        for name in names:
            samples[name].append(ratings[name])
    counts = {name: sum(name in (g[0], g[1]) for g in games) for name in names}
    out = {}
    for name in names:
        low, high = (np.quantile(samples[name], [alpha / 2, 1 - alpha / 2]) if rounds else (None, None))
        out[name] = {"rating": point[name], "ci_low": None if low is None else float(low),
                     "ci_high": None if high is None else float(high), "games": counts[name]}
    return out
