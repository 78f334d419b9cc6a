"""`catalog run grpo|dr-grpo|dapo|gspo` with no options learn on the embedded task: the held-out
greedy exact match and the held-out sampled reward both rise (real runs; 1-2 minutes each on 2
CPU cores). Run with: python -m pytest -m slow tests/test_grpo_learning.py"""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("method", ["grpo", "dr-grpo", "dapo", "gspo"])
def test_raises_reward_and_exact_match(method, tmp_path):
    out = tmp_path / method
    res = subprocess.run(
        [sys.executable, "-m", "posttrain", "run", method, "--output-dir", str(out), "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["after"]["exact_match"] > s["before"]["exact_match"] + 0.02
    assert s["after"]["reward"] > s["before"]["reward"] + 0.02
    assert s["seconds"] < 180 * 3, "3 minutes on an idle 2-core machine; x3 headroom for a shared one"
