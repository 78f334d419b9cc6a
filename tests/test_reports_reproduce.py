"""The committed reports reproduce bit for bit: three quick methods (one PEFT trainer, one preference
trainer, one test-time method), run with their defaults, seed 0, on CPU with one thread (as
``tools/record_run.py`` recorded them), give exactly the held-out numbers of ``reports/runs/<id>.json``
and the same paired fixed / broken counts.

Slow (reports' seconds: dora 17, orpo 49, best-of-n 11): ``python -m pytest -m slow tests/test_reports_reproduce.py``.
A failure means the code, the embedded models or the numeric libraries changed what a run computes:
re-record the report (``python tools/record_run.py <id>``) when the change is meant.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPORTS = Path(__file__).resolve().parents[1] / "reports" / "runs"
PLUGINS = ["dora", "orpo", "best-of-n"]


def _timing(key: str) -> bool:
    return "second" in key  # wall-clock values (seconds, tokens_per_second) never reproduce


@pytest.mark.parametrize("plugin", PLUGINS)
def test_default_run_reproduces_the_committed_report(plugin, tmp_path):
    report = json.loads((REPORTS / f"{plugin}.json").read_text())
    options = [w for w in report["command"].split() if w not in ("catalog", "run", plugin)]
    assert not options, f"reports/runs/{plugin}.json was recorded with options {options}: not the defaults"
    assert (report["seed"], report["device"], report["model"], report["dataset"]) == (0, "cpu", "embedded", "embedded")

    out = tmp_path / plugin
    args = [
        sys.executable,
        "-m",
        "posttrain",
        "run",
        plugin,
        "--device",
        "cpu",
        "--seed",
        "0",
        "--output-dir",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "POSTTRAIN_BUILTIN_ONLY": "1"}
    res = subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads((out / "summary.json").read_text())

    for side in ("before", "after"):
        want = {k: v for k, v in report[side].items() if not _timing(k)}
        assert want, f"reports/runs/{plugin}.json has no {side} metrics"
        assert {k: got[side].get(k) for k in want} == want, side
    # Reports recorded before the paired statistics existed have no paired block: before/after only.
    for metric, test in (report.get("paired") or {}).items():
        assert metric in got["paired"], metric
        mine = got["paired"][metric]
        assert (mine["n"], mine["fixed"], mine["broken"]) == (test["n"], test["fixed"], test["broken"]), metric
