"""The committed reports reproduce bit for bit: sft, dpo, kto, grpo, ppo, beam-search (one per family:
supervised, pairwise and unpaired preference, group RL, actor-critic RL, test-time search) and dora,
orpo, best-of-n, run with their defaults at seed 0 on CPU with one torch thread, exactly as
``tools/record_run.py`` records them, give the committed ``before``, ``after``, ``paired`` and ``steps``
of ``reports/runs/<id>.json`` (wall-clock values left out).

Slow: ``OMP_NUM_THREADS=1 python -m pytest -m slow tests/test_reproduce_reports.py`` took 1 min 45 s
(2026-12-07, one process, 9 passed) on the 2-core development machine with other jobs running (load
average about 4); 11 min 42 s the same day under heavier load (load average 8-11). ppo and sft take the longest.
A failure means the code, the embedded models or the numeric libraries changed what a run computes;
when the change is meant, re-record the report (the failure message gives the command) and check the
numbers quoted from it (``tests/test_number_sources.py``, ``tools/results_table.py``).
"""

import json
import shlex
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports" / "runs"
PLUGINS = ["sft", "dpo", "kto", "grpo", "ppo", "beam-search", "dora", "orpo", "best-of-n"]
COMPARED = ("before", "after", "paired", "steps")
# Wall-clock values never reproduce: `seconds` inside before/after (test-time methods), and at the top
# level `seconds`, `train_seconds`, `generate_seconds`, `generate_share`, `date` (not compared anyway).
TIMING = ("second", "generate_share", "date")


def is_timing(key: str) -> bool:
    return any(word in key for word in TIMING)


def flat(value, path: str) -> dict:
    """``{"after/exact_match": 0.8, "paired/exact_match/fixed": 40, "steps": 200}``, wall-clock keys left out."""
    if not isinstance(value, dict):
        return {path: value}
    out = {}
    for key, inner in value.items():
        if not is_timing(key):
            out.update(flat(inner, f"{path}/{key}"))
    return out


def record_command(report: dict, plugin: str) -> str:
    """The tools/record_run.py line that re-records this report with the seeds it has."""
    seeds = ",".join(str(s["seed"]) for s in report.get("seeds", [])) or "0"
    return f"OMP_NUM_THREADS=1 python tools/record_run.py {plugin} --seeds {seeds}"


def differences(report: dict, fresh: dict) -> list[str]:
    """One line per differing value: `after/exact_match: committed X, fresh run Y`."""
    want = {k: v for section in COMPARED for k, v in flat(report.get(section), section).items()}
    got = {k: v for section in COMPARED for k, v in flat(fresh.get(section), section).items()}
    return [
        f"{key}: committed {want.get(key, 'nothing')}, fresh run {got.get(key, 'nothing')}"
        for key in sorted(set(want) | set(got))
        if want.get(key, "nothing") != got.get(key, "nothing")
    ]


def run_seed_zero(plugin: str) -> dict:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from record_run import run_once
    finally:
        sys.path.remove(str(ROOT / "tools"))
    return json.loads(json.dumps(run_once(plugin, [], 0, None)))  # as the report file holds it


@pytest.mark.parametrize("plugin", PLUGINS)
def test_default_run_reproduces_the_committed_report(plugin):
    report = json.loads((REPORTS / f"{plugin}.json").read_text())
    options = shlex.split(report["command"])[3:]
    assert not options, f"reports/runs/{plugin}.json was recorded with options {options}: not the defaults"
    assert (report["seed"], report["device"], report["model"], report["dataset"]) == (0, "cpu", "embedded", "embedded")

    lines = differences(report, run_seed_zero(plugin))

    assert not lines, (
        f"reports/runs/{plugin}.json does not reproduce (seed 0, one torch thread):\n  "
        + "\n  ".join(lines)
        + f"\nIf the change is meant, re-record it: {record_command(report, plugin)}"
        + "\nand update the numbers quoted from it (tests/test_number_sources.py, python tools/results_table.py)."
    )
