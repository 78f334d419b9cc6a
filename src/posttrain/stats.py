"""Paired statistics for learning claims: the one place this maths lives (no torch).

A claim that a method improves a model compares the same held-out problems before and after, one
problem at a time (``../shared/reference/evidence.md``):

- fixed ``b`` (wrong before, right after) and broken ``c`` (right before, wrong after);
- the paired difference ``d = (b - c) / N`` (= accuracy after - accuracy before) and its standard
  error ``sqrt(b + c - (b - c)^2 / N) / N``;
- the exact two-sided sign (McNemar) test on the ``b + c`` discordant problems.

A gain counts when ``d > 0`` and ``p < 0.05``; a harm when ``d < 0`` and ``p < 0.05``. Methods that
sample run several seeds: :func:`pool_seeds` gives the mean and sample standard deviation of ``d``
and the pooled test (``b`` and ``c`` summed over seeds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

ALPHA = 0.05


def sign_test_p(fixed: int, broken: int) -> float:
    """Exact two-sided sign test: ``min(1, 2 * P(X <= min(b, c)))`` with ``X ~ Binomial(b + c, 1/2)``.

    b = 10, c = 0 -> 2 * 0.5**10 = 0.001953; b = c -> 1; no discordant problems -> 1.
    """
    n = fixed + broken
    if n == 0:
        return 1.0
    k = min(fixed, broken)
    # log-space sum keeps large n (thousands of problems) exact enough and free of overflow
    log_terms = [
        math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) - n * math.log(2) for j in range(k + 1)
    ]
    top = max(log_terms)
    tail = math.exp(top) * sum(math.exp(t - top) for t in log_terms)
    return min(1.0, 2.0 * tail)


def verdict(difference: float, p: float, alpha: float = ALPHA) -> str:
    """``gain`` / ``harm`` when significant at ``alpha`` in that direction, else ``no significant change``."""
    if p < alpha and difference > 0:
        return "gain"
    if p < alpha and difference < 0:
        return "harm"
    return "no significant change"


def paired_counts(fixed: int, broken: int, n: int) -> dict[str, Any]:
    """The paired numbers from fixed/broken counts on ``n`` problems.

    b = 39, c = 24, n = 500 -> difference +0.030, se 0.0158, p 0.077 (no significant change).
    """
    n = max(n, 1)
    diff = (fixed - broken) / n
    se = math.sqrt(max(fixed + broken - (fixed - broken) ** 2 / n, 0.0)) / n
    p = sign_test_p(fixed, broken)
    return {
        "fixed": fixed,
        "broken": broken,
        "difference": round(diff, 6),
        "se": round(se, 6),
        "p": float(f"{p:.4g}"),
        "verdict": verdict(diff, p),
    }


def paired_binary(before: Sequence[bool | int], after: Sequence[bool | int]) -> dict[str, Any]:
    """Before/after correctness of the same problems, in the same order -> the paired numbers."""
    if len(before) != len(after):
        raise ValueError(f"paired outcomes need the same problems: {len(before)} before, {len(after)} after")
    fixed = sum(1 for b, a in zip(before, after, strict=True) if a and not b)
    broken = sum(1 for b, a in zip(before, after, strict=True) if b and not a)
    n = len(before)
    out = {"n": n, "before": _mean(before), "after": _mean(after)}
    return out | paired_counts(fixed, broken, n)


def paired_scores(before: Sequence[float], after: Sequence[float]) -> dict[str, Any]:
    """A per-problem score (reward, log-prob): the mean paired difference, its standard error
    (sd of the differences / sqrt(N)) and a sign test on the signs of the nonzero differences
    (``fixed`` = problems whose score rose, ``broken`` = fell)."""
    if len(before) != len(after):
        raise ValueError(f"paired scores need the same problems: {len(before)} before, {len(after)} after")
    diffs = [a - b for b, a in zip(before, after, strict=True)]
    n = len(diffs)
    mean = sum(diffs) / n if n else 0.0
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1)) if n > 1 else 0.0
    rose = sum(1 for d in diffs if d > 0)
    fell = sum(1 for d in diffs if d < 0)
    p = sign_test_p(rose, fell)
    return {
        "n": n,
        "before": _mean(before),
        "after": _mean(after),
        "fixed": rose,
        "broken": fell,
        "difference": round(mean, 6),
        "se": round(sd / math.sqrt(n), 6) if n else 0.0,
        "p": float(f"{p:.4g}"),
        "verdict": verdict(mean, p),
    }


def pool_seeds(per_seed: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Several seeds' paired results (from :func:`paired_binary`) -> mean and sample sd of the
    difference, and the pooled sign test (fixed and broken summed over seeds). The claim holds
    (``verdict`` gain) only when every seed's difference is positive and the pooled p < 0.05."""
    diffs = [r["difference"] for r in per_seed]
    k = len(diffs)
    mean = sum(diffs) / k
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (k - 1)) if k > 1 else 0.0
    fixed = sum(r["fixed"] for r in per_seed)
    broken = sum(r["broken"] for r in per_seed)
    p = sign_test_p(fixed, broken)
    pooled = verdict(mean, p)
    if pooled == "gain" and not all(d > 0 for d in diffs):
        pooled = "no significant change"
    if pooled == "harm" and not all(d < 0 for d in diffs):
        pooled = "no significant change"
    return {
        "seeds": k,
        "difference_mean": round(mean, 6),
        "difference_sd": round(sd, 6),
        "fixed": fixed,
        "broken": broken,
        "p": float(f"{p:.4g}"),
        "verdict": pooled,
    }


def describe(result: dict[str, Any]) -> str:
    """One line: ``+3.0 points (SE 1.6), 39 fixed / 24 broken, p = 0.077: no significant change``."""
    if "difference_mean" in result:
        return (
            f"{100 * result['difference_mean']:+.1f} ± {100 * result['difference_sd']:.1f} points over "
            f"{result['seeds']} seeds, {result['fixed']} fixed / {result['broken']} broken, "
            f"pooled p = {result['p']:.2g}: {result['verdict']}"
        )
    return (
        f"{100 * result['difference']:+.1f} points (SE {100 * result['se']:.1f}), {result['fixed']} fixed / "
        f"{result['broken']} broken, p = {result['p']:.2g}: {result['verdict']}"
    )


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(float(v) for v in values) / len(values), 6) if values else None
