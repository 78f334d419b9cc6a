"""Test-time methods beat greedy decoding of the same model on the same held-out problems: with its
defaults, each method's accuracy against the greedy baseline (``before``) is a significant paired
gain. Methods that sample run 3 seeds (every seed's difference > 0, pooled sign test p < 0.05);
greedy ones one. Slow: ``python -m pytest -m slow tests/test_inference_learning.py``; the committed
reports are reports/runs/<id>.json (their seconds are the costs quoted below)."""

import pytest
from learning import assert_gain, assert_pooled_gain, ci_params, run, run_seeds

# Sampled steps, continuations or answers: seed-dependent.
SAMPLING = [
    "best-of-n",
    "beam-search",
    "compute-optimal",
    "confidence-sampling",
    "dvts",
    "graph-of-thoughts",
    "mcts",
    "particle-filtering",
    "self-consistency",
    "self-refine",
    "speculative-rejection",
    "tree-of-thoughts",
]
# Greedy decoding throughout: one run is the result.
GREEDY = [
    "budget-forcing",
    "self-polish",
    "cot",
    "zero-shot-cot",
]
# .ci/run's slow selection (the rest is marked extended), seconds per run: self-refine 1.7,
# graph-of-thoughts 3.8, compute-optimal 9.2, best-of-n 11.3 (x3 seeds), budget-forcing 4.7.
CI = {"self-refine", "graph-of-thoughts", "compute-optimal", "best-of-n", "budget-forcing"}


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("name", ci_params(SAMPLING, CI))
def test_sampling_method_beats_greedy_over_seeds(name, tmp_path):
    assert_pooled_gain(run_seeds(name, tmp_path), "accuracy")


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name", ci_params(GREEDY, CI))
def test_greedy_method_beats_its_baseline(name, tmp_path):
    assert_gain(run(name, tmp_path), "accuracy")
