"""`catalog run sft` and `catalog run dpo` with no options learn on the embedded task (real runs,
real held-out evaluation; about a minute together on 2 CPU cores)."""

import json
import subprocess
import sys


def _run(method, tmp_path):
    out = tmp_path / method
    res = subprocess.run(
        [sys.executable, "-m", "posttrain", "run", method, "--output-dir", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads((out / "summary.json").read_text())


def test_sft_raises_exact_match(tmp_path):
    s = _run("sft", tmp_path)
    assert s["after"]["exact_match"] > s["before"]["exact_match"] + 0.1
    assert s["after"]["loss"] < s["before"]["loss"]
    assert s["seconds"] < 120


def test_dpo_raises_preference_accuracy_and_reports_exact_match(tmp_path):
    s = _run("dpo", tmp_path)
    assert s["before"]["preference_accuracy"] == 0.5  # policy = reference: every margin is 0
    assert s["after"]["preference_accuracy"] > 0.6
    assert s["after"]["reward_margin"] > 0
    assert 0 <= s["before"]["exact_match"] <= 1 and 0 <= s["after"]["exact_match"] <= 1
    assert s["seconds"] < 120
