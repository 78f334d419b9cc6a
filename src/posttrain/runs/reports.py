"""Committed run reports (``reports/runs/<id>.json``) as result rows and markdown tables (no torch).

The site's *Results by family* tables are generated from the reports by ``tools/results_table.py`` and a
test checks they are current, so every number it shows has its report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from posttrain import stats
from posttrain.runs.runner import headline_metric

REPORTS_DIR = Path(__file__).resolve().parents[3] / "reports" / "runs"
TARGETS = ("preference_accuracy", "reward", "pairwise_accuracy", "solution_accuracy", "step_accuracy")


def load_report(method: str, root: Path = REPORTS_DIR) -> dict[str, Any]:
    return json.loads((root / f"{method}.json").read_text(encoding="utf-8"))


def result_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per paired metric worth showing (the headline, then a target metric), each with
    seed 0's paired test and, for seeded reports, the pooled test over seeds."""
    paired = report.get("paired") or {}
    pooled = report.get("pooled") or {}
    headline = headline_metric(paired)
    shown = ([headline] if headline else []) + [m for m in TARGETS if m in paired and m != headline]
    return [
        {"method": report["method"], "command": report.get("command", ""), "metric": m, "paired": paired[m]}
        | ({"pooled": pooled[m]} if m in pooled else {})
        for m in shown
    ]


def _points(x: float) -> str:
    return f"{100 * x:+.1f}"


def markdown_row(row: dict[str, Any]) -> str:
    p = row["paired"]
    before, after = p["before"], p["after"]
    if "pooled" in row:
        pool = row["pooled"]
        change = f"{_points(pool['difference_mean'])} ± {100 * pool['difference_sd']:.1f} (sd, {pool['seeds']} seeds)"
        counts, pval, verdict = f"{pool['fixed']} / {pool['broken']}", pool["p"], pool["verdict"]
    else:
        change = f"{_points(p['difference'])} ± {100 * p['se']:.1f} (SE)"
        counts, pval, verdict = f"{p['fixed']} / {p['broken']}", p["p"], p["verdict"]
    mark = {"gain": "**gain**", "harm": "**harm**"}.get(verdict, verdict)
    return (
        f"| `{row['command']}` | {row['metric']} | {before:.3f} → {after:.3f} | {counts} | {change} | "
        f"{pval:.2g} | {mark} |"
    )


HEADER = (
    "| command | held-out metric | before → after (seed 0) | fixed / broken | change, points | p | verdict |\n"
    "|---|---|---|---|---|---|---|"
)


def results_markdown(methods: list[str], root: Path = REPORTS_DIR) -> str:
    """The table of those reports' rows; a report without a paired test is an error, not a gap."""
    rows = []
    for method in methods:
        found = result_rows(load_report(method, root))
        if not found:
            raise ValueError(f"{root / (method + '.json')}: no paired test (re-record it with tools/record_run.py)")
        rows += [markdown_row(r) for r in found]
    return HEADER + "\n" + "\n".join(rows) + "\n"


def describe_report(report: dict[str, Any], metric: str) -> str:
    """One line for a report's metric: the pooled test when seeded, else seed 0's."""
    if metric in (report.get("pooled") or {}):
        return stats.describe(report["pooled"][metric])
    return stats.describe(report["paired"][metric])
