"""Per-problem outcomes of a run's held-out evaluations, kept so its statistics can be recomputed.

Evaluation helpers (``evaluation.exact_match``, the inference methods' greedy baseline and result,
the RL reward evaluation) call :func:`record` with the problems they scored and one outcome each.
``catalog run`` opens a :func:`recording` around the plugin; afterwards :func:`pair` matches, for
each metric, the evaluation that produced the summary's ``before`` value with the one that produced
its ``after`` value on the same problems, and ``posttrain.stats`` turns them into fixed/broken
counts, the paired difference, its standard error and the sign-test p-value. No torch here.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posttrain import stats

BINARY = "binary"
SCORE = "score"


@dataclass
class Evaluation:
    metric: str
    kind: str  # BINARY (0/1 correctness) or SCORE (a per-problem number)
    problems: tuple[str, ...]
    values: list[float]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values) if self.values else 0.0


@dataclass
class OutcomeLog:
    evaluations: list[Evaluation] = field(default_factory=list)


_active: ContextVar[OutcomeLog | None] = ContextVar("posttrain_outcomes", default=None)


@contextlib.contextmanager
def recording() -> Iterator[OutcomeLog]:
    log = OutcomeLog()
    token = _active.set(log)
    try:
        yield log
    finally:
        _active.reset(token)


def record(metric: str, problems: Sequence[Any], values: Sequence[float | bool | None], kind: str = BINARY) -> None:
    """Keep one evaluation's per-problem outcomes (problems whose outcome is ``None`` are dropped)."""
    log = _active.get()
    if log is None:
        return
    kept = [(_key(p), float(v)) for p, v in zip(problems, values, strict=True) if v is not None]
    if kept:
        log.evaluations.append(Evaluation(metric, kind, tuple(k for k, _ in kept), [v for _, v in kept]))


def pair(log: OutcomeLog, before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Evaluation, Evaluation]]:
    """For each metric of the summary, (before evaluation, after evaluation) on the same problems:
    the first evaluation whose mean is the summary's ``before`` value and the last whose mean is its
    ``after`` value (so a teacher's or an intermediate stage's evaluation is never paired)."""
    out: dict[str, tuple[Evaluation, Evaluation]] = {}
    for metric in {e.metric for e in log.evaluations}:
        runs = [e for e in log.evaluations if e.metric == metric]
        first = _matching(runs, before.get(metric)) or runs[0]
        last = _matching(list(reversed(runs)), after.get(metric)) or runs[-1]
        if first is not last and first.problems == last.problems:
            out[metric] = (first, last)
    return out


def paired_statistics(pairs: dict[str, tuple[Evaluation, Evaluation]]) -> dict[str, dict[str, Any]]:
    return {
        metric: (stats.paired_binary if b.kind == BINARY else stats.paired_scores)(b.values, a.values)
        for metric, (b, a) in sorted(pairs.items())
    }


def write_outcomes(path: Path, pairs: dict[str, tuple[Evaluation, Evaluation]]) -> None:
    """``outcomes.jsonl``: one row per metric and problem with its outcome before and after."""
    with path.open("w", encoding="utf-8") as fh:
        for metric, (b, a) in sorted(pairs.items()):
            for problem, vb, va in zip(b.problems, b.values, a.values, strict=True):
                fh.write(json.dumps({"metric": metric, "problem": problem, "before": vb, "after": va}) + "\n")


def _matching(runs: list[Evaluation], value: Any) -> Evaluation | None:
    if not isinstance(value, int | float):
        return None
    return next((e for e in runs if abs(e.mean - float(value)) < 1e-6), None)


def _key(problem: Any) -> str:
    return problem if isinstance(problem, str) else json.dumps(problem, sort_keys=True, default=str)
