"""Each offline preference plugin, run with its defaults on the embedded task, raises held-out
preference accuracy without collapsing greedy exact match (likelihood displacement).

Slow (about 1-2 minutes per plugin on 2 idle CPU cores): ``python -m pytest -m slow tests/test_preference_learning.py``.
The committed reports in ``reports/runs/<id>.json`` come from the same runs (``tools/record_run.py``).
"""

import pytest

from posttrain.runner import execute, prepare

PLUGINS = ["ipo", "cdpo", "hinge", "rdpo", "simpo", "cpo", "orpo", "kto", "mdpo"]


@pytest.mark.slow
@pytest.mark.parametrize("name", PLUGINS)
def test_preference_plugin_learns_with_defaults(name, tmp_path):
    result = execute(prepare(name, output_dir=tmp_path, device="cpu"), progress=False)
    before, after = result.metrics["before"], result.metrics["after"]
    # Reference-based rewards start at exactly 0 (accuracy 1/2); reference-free ones at the base
    # model's log-probability accuracy (0.92): either way a real gain is several points.
    assert after["preference_accuracy"] >= before["preference_accuracy"] + 0.04, (before, after)
    assert after["exact_match"] >= before["exact_match"] - 0.01, (before, after)
