"""One-sided upper confidence bounds for the safety test (HC-RLHF, Chittepu et al. 2025, arXiv 2506.08266).

A model passes a safety test when, on n held-out answers that training never saw, an upper bound U
on the quantity holds with probability at least 1 - δ and U is below the threshold. Bounds:

- Student-t on a mean of x_1..x_n (HC-RLHF's choice; exact for normal x, asymptotically valid otherwise):

      U = x̄ + t_{1-δ, n-1} · s / √n          s = sample standard deviation (n - 1 in the denominator)

- Hoeffding on a mean of x_i in [a, b] (Hoeffding 1963; valid for any distribution on [a, b]):

      U = x̄ + (b - a) · √( ln(1/δ) / (2n) )

- Clopper-Pearson on a rate k/n (Clopper & Pearson 1934; exact for a binomial count):

      U = the p with P(Binomial(n, p) <= k) = δ   (U = 1 when k = n),  i.e. the Beta(k + 1, n - k)
      quantile 1 - δ

  and Hoeffding on a rate is the mean bound with [a, b] = [0, 1].

The Student-t and binomial distribution functions come from the regularised incomplete beta function
I_x(a, b), evaluated by its continued fraction (Numerical Recipes, 3rd ed., section 6.4); quantiles by
bisection. No SciPy needed.
"""

from __future__ import annotations

import math
from typing import Callable

BISECTION_STEPS = 200


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) = B(x; a, b) / B(a, b) for a, b > 0 and x in [0, 1]."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must be in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):  # the continued fraction converges fast here
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def _beta_continued_fraction(a: float, b: float, x: float, steps: int = 500, eps: float = 1e-15) -> float:
    """Modified Lentz evaluation of the continued fraction of I_x(a, b) (Numerical Recipes ``betacf``)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, steps + 1):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return result


def student_t_cdf(t: float, degrees_of_freedom: float) -> float:
    """P(T <= t) for Student's t: 1 - ½·I_{ν/(ν+t²)}(ν/2, ½) for t >= 0, by symmetry below."""
    tail = 0.5 * regularized_incomplete_beta(degrees_of_freedom / 2, 0.5,
                                             degrees_of_freedom / (degrees_of_freedom + t * t))
    return 1.0 - tail if t >= 0 else tail


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(Binomial(n, p) <= k) = I_{1-p}(n - k, k + 1)."""
    if k >= n:
        return 1.0
    return regularized_incomplete_beta(n - k, k + 1, 1.0 - p)


def _bisect(increasing: Callable[[float], float], target: float, low: float, high: float) -> float:
    """The x in [low, high] with increasing(x) = target."""
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        if increasing(middle) < target:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def student_t_quantile(probability: float, degrees_of_freedom: float) -> float:
    """t with P(T <= t) = probability."""
    if not 0.0 < probability < 1.0:
        raise ValueError(f"probability must be in (0, 1), got {probability}")
    high = 1.0
    while student_t_cdf(high, degrees_of_freedom) < probability:
        high *= 2
    return _bisect(lambda t: student_t_cdf(t, degrees_of_freedom), probability, -high, high)


def _check(values_count: int, delta: float) -> None:
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if values_count < 2:
        raise ValueError(f"a confidence bound needs at least 2 held-out samples, got {values_count}")


def student_t_upper_bound(values: list[float], delta: float) -> float:
    """x̄ + t_{1-δ, n-1}·s/√n (see the module docstring)."""
    _check(len(values), delta)
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean + student_t_quantile(1.0 - delta, n - 1) * std / math.sqrt(n)


def hoeffding_upper_bound(values: list[float], delta: float, low: float = 0.0, high: float = 1.0) -> float:
    """x̄ + (b - a)·√(ln(1/δ)/(2n)) for values in [a, b] = [low, high]."""
    _check(len(values), delta)
    outside = [v for v in values if not low <= v <= high]
    if outside:
        raise ValueError(f"Hoeffding's bound needs every value in [{low}, {high}]; {len(outside)} are not "
                         f"(first {outside[0]!r}): set the range the values can take")
    return sum(values) / len(values) + (high - low) * math.sqrt(math.log(1.0 / delta) / (2 * len(values)))


def clopper_pearson_upper_bound(hits: int, total: int, delta: float) -> float:
    """The p with P(Binomial(total, p) <= hits) = δ; 1 when hits = total."""
    _check(total, delta)
    if not 0 <= hits <= total:
        raise ValueError(f"hits must be in [0, {total}], got {hits}")
    if hits == total:
        return 1.0
    # binomial_cdf falls as p grows: bisect on its negative
    return _bisect(lambda p: -binomial_cdf(hits, total, p), -delta, hits / total, 1.0)


MEAN_BOUNDS = ("student-t", "hoeffding")
RATE_BOUNDS = ("clopper-pearson", "hoeffding")


def mean_upper_bound(values: list[float], delta: float, method: str, low: float = 0.0, high: float = 1.0) -> float:
    if method == "student-t":
        return student_t_upper_bound(values, delta)
    if method == "hoeffding":
        return hoeffding_upper_bound(values, delta, low, high)
    raise ValueError(f"unknown mean bound {method!r} (expected one of {MEAN_BOUNDS})")


def rate_upper_bound(hits: int, total: int, delta: float, method: str) -> float:
    if method == "clopper-pearson":
        return clopper_pearson_upper_bound(hits, total, delta)
    if method == "hoeffding":
        return hoeffding_upper_bound([1.0] * hits + [0.0] * (total - hits), delta)
    raise ValueError(f"unknown rate bound {method!r} (expected one of {RATE_BOUNDS})")
