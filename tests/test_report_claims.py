"""What the catalog says about a method agrees with its committed report (pure text, fast).

- A `stable` entry's default run shows a significant gain in its headline metric (the pooled test
  over seeds when the report has seeds) and no significant harm to any metric.
- A default run that significantly harms a metric is stated plainly: the entry is not `stable`
  and its status note names the report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from posttrain.runs.runner import headline_metric

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports" / "runs"
ALL_ENTRIES = [
    yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted((ROOT / "catalog" / "methods").glob("*.yaml"))
]
# a plugin's own entry; entries that run a plugin with other Config values (run_as) claim their own report
ENTRIES = {entry["plugin"]: entry for entry in ALL_ENTRIES if entry.get("plugin") and not entry.get("run_as")}
RUN_AS = {
    ROOT / entry["run_as"]["report"]: entry
    for entry in ALL_ENTRIES
    if entry.get("run_as") and entry["run_as"].get("report")
}
DEFAULT_REPORTS = sorted(p for p in REPORTS.glob("*.json") if p.stem in ENTRIES) + sorted(RUN_AS)


def verdicts(report: dict) -> dict[str, str]:
    """Per paired metric, the verdict that decides the claim: pooled over seeds when seeded."""
    pooled = report.get("pooled") or {}
    return {m: (pooled.get(m) or test)["verdict"] for m, test in (report.get("paired") or {}).items()}


@pytest.mark.parametrize("path", DEFAULT_REPORTS, ids=lambda p: p.stem)
def test_entry_status_agrees_with_the_default_run(path: Path):
    report = json.loads(path.read_text(encoding="utf-8"))
    entry = RUN_AS.get(path) or ENTRIES[path.stem]
    found = verdicts(report)
    harmed = sorted(m for m, v in found.items() if v == "harm")
    if entry["status"] == "stable":
        main = headline_metric(report.get("paired") or {})
        assert main is not None, f"{path.name}: a stable entry needs a report with a paired test"
        assert found[main] == "gain", f"{entry['id']} is stable but its default run shows {found[main]} in {main}"
        assert not harmed, f"{entry['id']} is stable but its default run harms {harmed}"
    if harmed:
        note = entry.get("status_note") or ""
        assert f"reports/runs/{path.name}" in note, (
            f"{entry['id']}: its default run harms {harmed}; the status note must say so and name reports/runs/{path.name}"
        )
