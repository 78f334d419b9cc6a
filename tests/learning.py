"""The learning tests' assertions: a claim is a significant paired difference on held-out problems.

``catalog run`` (``posttrain.runs.runner.execute``) returns, for every metric whose per-problem outcomes
were recorded (``posttrain.outcomes``), ``metrics["paired"][metric]``: the same held-out problems
before and after, fixed / broken counts, the difference, its standard error and the sign-test p
(``posttrain.stats``; ../shared/reference/evidence.md). A gain counts when d > 0 and p < 0.05; a
harm when d < 0 and p < 0.05. Methods that sample (RL, online, test-time) run :data:`SEEDS` and
pool them: every seed's d > 0 and the pooled p < 0.05.

Imported by the test modules as ``learning`` (``conftest.py`` puts this folder on ``sys.path``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from posttrain import stats

SEEDS = (0, 1, 2)  # evidence.md: methods that sample run 3 seeds


def paired(metrics: dict[str, Any], metric: str) -> dict[str, Any]:
    """The run's paired test of ``metric``; fails when none was recorded, or when it does not compare
    the summary's own before and after values (a wrongly paired evaluation)."""
    table = metrics.get("paired") or {}
    test = table.get(metric)
    assert test is not None, (
        f"no paired test of held-out {metric!r}: its per-problem outcomes were not recorded "
        f"(paired metrics of this run: {sorted(table) or 'none'})"
    )
    for side in ("before", "after"):
        value = (metrics.get(side) or {}).get(metric)
        if isinstance(value, int | float) and test.get(side) is not None:
            assert abs(test[side] - value) < 1e-5, (
                f"the paired test of {metric} compares {test['before']} -> {test['after']}, "
                f"the summary says {(metrics.get('before') or {}).get(metric)} -> "
                f"{(metrics.get('after') or {}).get(metric)}"
            )
    return test


def is_gain(test: dict[str, Any]) -> bool:
    return test["difference"] > 0 and test["p"] < stats.ALPHA


def is_harm(test: dict[str, Any]) -> bool:
    return test["difference"] < 0 and test["p"] < stats.ALPHA


def assert_gain(metrics: dict[str, Any], metric: str) -> dict[str, Any]:
    """Held-out ``metric`` rose significantly (d > 0, p < 0.05)."""
    test = paired(metrics, metric)
    assert is_gain(test), f"held-out {metric}: {stats.describe(test)}; expected a gain (d > 0, p < {stats.ALPHA})"
    return test


def assert_no_harm(metrics: dict[str, Any], metric: str = "exact_match") -> dict[str, Any]:
    """Held-out ``metric`` did not fall significantly (not d < 0 with p < 0.05)."""
    test = paired(metrics, metric)
    assert not is_harm(test), f"held-out {metric}: {stats.describe(test)}; a significant harm"
    return test


def pooled(runs: Sequence[dict[str, Any]], metric: str) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """(each seed's paired test, the pooled test, a one-line account of both for messages)."""
    per_seed = [paired(m, metric) for m in runs]
    pool = stats.pool_seeds(per_seed)
    detail = "; ".join(f"run {i}: {stats.describe(t)}" for i, t in enumerate(per_seed))
    return per_seed, pool, f"held-out {metric}: {stats.describe(pool)} [{detail}]"


def assert_pooled_gain(runs: Sequence[dict[str, Any]], metric: str) -> dict[str, Any]:
    """Several seeds of a method that samples: every seed's d > 0 and the pooled p < 0.05."""
    assert len(runs) >= 2, "a pooled claim needs several seeds"
    per_seed, pool, account = pooled(runs, metric)
    ok = all(t["difference"] > 0 for t in per_seed) and pool["p"] < stats.ALPHA
    assert ok, f"{account}; expected every seed's d > 0 and pooled p < {stats.ALPHA}"
    return pool


def assert_pooled_correctness_gain(runs: Sequence[dict[str, Any]]) -> None:
    """RL's target is correctness, measured two ways on the held-out prompts: the reward of one sampled
    answer (what the objective raises) and greedy exact match. One of them must show a pooled gain
    and neither a pooled harm."""
    accounts, gained = [], False
    for metric in ("reward", "exact_match"):
        per_seed, pool, account = pooled(runs, metric)
        assert not (pool["difference_mean"] < 0 and pool["p"] < stats.ALPHA), f"{account}; a significant harm"
        gained |= all(t["difference"] > 0 for t in per_seed) and pool["p"] < stats.ALPHA
        accounts.append(account)
    assert gained, f"{'; '.join(accounts)}; expected a pooled gain in reward or exact match"


def assert_pooled_no_harm(runs: Sequence[dict[str, Any]], metric: str = "exact_match") -> dict[str, Any]:
    """Several seeds: the mean difference is not negative with a pooled p < 0.05."""
    _, pool, account = pooled(runs, metric)
    assert not (pool["difference_mean"] < 0 and pool["p"] < stats.ALPHA), f"{account}; a significant harm"
    return pool


def run(name: str, out: Path, seed: int = 0, sets: Iterable[str] = ()) -> dict[str, Any]:
    """One run of ``name`` on CPU (its defaults, plus ``sets``): the result's metrics, paired block included."""
    from posttrain.runs.runner import execute, prepare

    prepared = prepare(name, output_dir=out, device="cpu", seed=seed, sets=list(sets))
    return execute(prepared, progress=False).metrics


def run_keeping_outcomes(name: str, out: Path, seed: int = 0, sets: Iterable[str] = ()) -> tuple[dict, Any]:
    """:func:`run`, and the run's ``posttrain.outcomes.OutcomeLog`` (every held-out evaluation it
    recorded, e.g. a prompt method's ``initial`` one, which the summary's paired block leaves out)."""
    from posttrain import outcomes

    real, kept = outcomes.recording, []

    @contextlib.contextmanager
    def keeping():
        with real() as log:
            kept.append(log)
            yield log

    outcomes.recording = keeping
    try:
        metrics = run(name, out, seed, sets)
    finally:
        outcomes.recording = real
    return metrics, kept[0]


def paired_between(log, metric: str, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Metrics whose paired block compares the recorded evaluations of ``metric`` with the values in
    ``before`` and ``after`` (``posttrain.outcomes.pair``: the first evaluation with the before value,
    the last with the after value), for :func:`assert_gain` and the others."""
    from posttrain import outcomes

    pairs = outcomes.pair(log, before, after)
    return {"before": before, "after": after, "paired": outcomes.paired_statistics(pairs)}


def run_seeds(name: str, tmp_path: Path, sets: Iterable[str] = (), seeds: Sequence[int] = SEEDS) -> list[dict]:
    sets = list(sets)
    return [run(name, tmp_path / f"seed{seed}", seed, sets) for seed in seeds]


def ci_params(names: Iterable[Any], ci: Iterable[str]) -> list:
    """Parametrize over ``names`` (strings or ``pytest.param``s of one value); those not in ``ci`` are
    marked ``extended`` (left out of .ci/run's slow selection ``-m "slow and not extended"``;
    ``-m slow`` runs them all)."""
    ci = set(ci)
    out = []
    for item in names:
        value, marks = (item, ()) if isinstance(item, str) else (item.values[0], tuple(item.marks))
        out.append(pytest.param(value, marks=marks if value in ci else (*marks, pytest.mark.extended)))
    return out
