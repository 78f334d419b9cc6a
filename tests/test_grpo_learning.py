"""`catalog run grpo|dr-grpo|dapo|gspo` with no options learn on the embedded task: over 3 sampling
seeds, every seed raises held-out greedy exact match and the pooled paired test is significant;
the held-out sampled reward (one sample per prompt) does not fall significantly. Real runs in
subprocesses (1-2 minutes each on 2 CPU cores, one thread).
Run with: python -m pytest -m slow tests/test_grpo_learning.py"""

import json
import subprocess
import sys

import pytest
from learning import SEEDS, assert_pooled_correctness_gain, ci_params

pytestmark = pytest.mark.slow

# .ci/run's slow selection (the rest is marked extended); reports' seconds per seed: grpo 43.
CI = {"grpo"}


def _run(method, out, seed):
    res = subprocess.run(  # OMP_NUM_THREADS=1 comes from conftest's slow-test fixture
        [sys.executable, "-m", "posttrain", "run", method, "--output-dir", str(out), "--device", "cpu"]
        + ["--seed", str(seed)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads((out / "summary.json").read_text())


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("method", ci_params(["grpo", "dr-grpo", "dapo", "gspo"], CI))
def test_raises_exact_match_over_seeds(method, tmp_path):
    runs = [_run(method, tmp_path / f"seed{seed}", seed) for seed in SEEDS]
    assert_pooled_correctness_gain(runs)
