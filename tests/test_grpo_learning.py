"""`catalog run grpo|dr-grpo|dapo|gspo|lite-ppo|prime` with no options learn on the embedded task: over 3 sampling
seeds, every seed raises held-out greedy exact match and the pooled paired test is significant;
the held-out sampled reward (one sample per prompt) does not fall significantly. cispo, sapo and gmpo
do not at their defaults (reports/runs/cispo.json, sapo.json, gmpo.json; their entries say so), and
ttrl (rewarded by its own majority vote, not the answer) lowers it (reports/runs/ttrl.json): they
are strict xfails, so a change that makes them learn fails here until the entries are updated.
Real runs in subprocesses (1-2 minutes each on 2 CPU cores, one thread).
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
    if res.returncode != 0:  # not an AssertionError: a crash must not pass as an expected failure
        raise RuntimeError(res.stderr[-2000:])
    return json.loads((out / "summary.json").read_text())


# documented: no significant pooled gain at their defaults (catalog/methods/cispo.yaml, sapo.yaml, gmpo.yaml)
NO_GAIN_AT_DEFAULTS = pytest.mark.xfail(
    strict=True, raises=AssertionError, reason="no significant pooled gain at its defaults (its entry says so)"
)
# documented: the majority-vote pseudo-labels lower held-out exact match at its defaults (catalog/methods/ttrl.yaml)
PSEUDO_LABELS_HARM = pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="the vote's pseudo-labels lower held-out exact match at its defaults (reports/runs/ttrl.json)",
)
METHODS = [
    "grpo",
    "dr-grpo",
    "dapo",
    "gspo",
    "lite-ppo",  # reports/runs/lite-ppo.json: about 20 s per seed
    "prime",  # reports/runs/prime.json; its gain is also reached without process rewards (prime-outcome-only.json)
    *(pytest.param(m, marks=NO_GAIN_AT_DEFAULTS) for m in ("cispo", "sapo", "gmpo")),
    pytest.param("ttrl", marks=PSEUDO_LABELS_HARM),
]


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("method", ci_params(METHODS, CI))
def test_raises_exact_match_over_seeds(method, tmp_path):
    runs = [_run(method, tmp_path / f"seed{seed}", seed) for seed in SEEDS]
    assert_pooled_correctness_gain(runs)
