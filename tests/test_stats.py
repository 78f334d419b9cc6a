"""The paired statistics behind every learning claim, on hand-worked numbers
(../shared/reference/evidence.md), and the per-problem outcome log the runner pairs."""

import json
import math

import pytest

from posttrain import outcomes, stats


def test_sign_test_hand_worked():
    assert stats.sign_test_p(10, 0) == pytest.approx(2 * 0.5**10)  # 0.00195
    assert stats.sign_test_p(0, 10) == pytest.approx(0.001953125)
    assert stats.sign_test_p(0, 0) == 1.0  # no discordant problem
    assert stats.sign_test_p(5, 5) == 1.0  # capped at 1
    # n = 3, k = 1: 2 * (1 + 3) / 8 = 1.0; n = 4, k = 0: 2 / 16 = 0.125
    assert stats.sign_test_p(2, 1) == 1.0
    assert stats.sign_test_p(4, 0) == pytest.approx(0.125)


def test_sign_test_matches_the_binomial_sum_for_large_counts():
    fixed, broken = 219, 75
    n = fixed + broken
    exact = 2 * sum(math.comb(n, j) for j in range(broken + 1)) / 2**n
    assert stats.sign_test_p(fixed, broken) == pytest.approx(exact, rel=1e-9)
    assert stats.sign_test_p(3000, 2900) == pytest.approx(0.199, abs=0.01)  # no overflow at thousands


def test_paired_counts_hand_worked():
    # b = 39, c = 24, N = 500: d = +0.030, SE = sqrt(63 - 225/500) / 500 = 0.01582, p = 0.077
    r = stats.paired_counts(39, 24, 500)
    assert r["difference"] == pytest.approx(0.03)
    assert r["se"] == pytest.approx(math.sqrt(63 - 15**2 / 500) / 500, abs=1e-6)
    assert r["p"] == pytest.approx(0.077, abs=0.001)
    assert r["verdict"] == "no significant change"
    # b = 37, c = 88: d = -0.102, p = 6e-6: a significant harm
    r = stats.paired_counts(37, 88, 500)
    assert r["difference"] == pytest.approx(-0.102)
    assert r["p"] == pytest.approx(5.8e-6, rel=0.05)
    assert r["verdict"] == "harm"
    assert stats.paired_counts(10, 0, 100)["verdict"] == "gain"


def test_paired_binary_counts_fixed_and_broken():
    r = stats.paired_binary([False, False, True, True], [True, True, False, True])
    assert (r["n"], r["fixed"], r["broken"], r["difference"]) == (4, 2, 1, 0.25)
    assert r["se"] == pytest.approx(math.sqrt(3 - 1 / 4) / 4, abs=1e-6)  # = sqrt(11/64)
    assert (r["before"], r["after"]) == (0.5, 0.75)
    with pytest.raises(ValueError, match="same problems"):
        stats.paired_binary([True], [True, False])


def test_paired_scores_signs_and_standard_error():
    r = stats.paired_scores([0.0, 0.5, 1.0, 0.2], [1.0, 0.5, 0.0, 0.6])  # diffs +1, 0, -1, +0.4
    assert (r["fixed"], r["broken"]) == (2, 1)  # rose, fell; the tie is left out of the sign test
    assert r["difference"] == pytest.approx(0.1)
    diffs = [1.0, 0.0, -1.0, 0.4]
    sd = math.sqrt(sum((d - 0.1) ** 2 for d in diffs) / 3)
    assert r["se"] == pytest.approx(sd / 2, abs=1e-6)
    assert r["p"] == 1.0


def test_pool_seeds_needs_every_seed_positive():
    seeds = [stats.paired_counts(30, 10, 500), stats.paired_counts(25, 12, 500), stats.paired_counts(28, 9, 500)]
    pooled = stats.pool_seeds(seeds)
    assert (pooled["fixed"], pooled["broken"], pooled["seeds"]) == (83, 31, 3)
    assert pooled["difference_mean"] == pytest.approx((0.04 + 0.026 + 0.038) / 3, abs=1e-6)
    assert pooled["difference_sd"] == pytest.approx(0.007572, abs=1e-5)
    assert pooled["verdict"] == "gain"
    mixed = stats.pool_seeds(seeds[:2] + [stats.paired_counts(5, 9, 500)])
    assert mixed["p"] < 0.05 and mixed["verdict"] == "no significant change"  # one seed went down


def test_describe_reads_as_one_line():
    text = stats.describe(stats.paired_counts(39, 24, 500))
    assert text == "+3.0 points (SE 1.6), 39 fixed / 24 broken, p = 0.077: no significant change"
    pooled = stats.describe(stats.pool_seeds([stats.paired_counts(10, 0, 100)] * 3))
    assert "over 3 seeds" in pooled and "pooled p" in pooled


def test_outcomes_pair_the_evaluations_behind_before_and_after(tmp_path):
    problems = ["1+1=", "2+2=", "3+3="]
    with outcomes.recording() as log:
        outcomes.record("exact_match", problems, [False, True, False])  # before
        outcomes.record("exact_match", problems, [True, True, True])  # e.g. a teacher's evaluation
        outcomes.record("exact_match", problems, [True, True, False])  # after
        outcomes.record("accuracy", problems, [True, None, False])  # None: unknown, dropped
    outcomes.record("exact_match", problems, [True, True, True])  # outside a recording: ignored
    pairs = outcomes.pair(log, {"exact_match": 1 / 3}, {"exact_match": 2 / 3})
    assert set(pairs) == {"exact_match"}  # one accuracy evaluation: nothing to pair
    b, a = pairs["exact_match"]
    assert (b.values, a.values) == ([0.0, 1.0, 0.0], [1.0, 1.0, 0.0])
    result = outcomes.paired_statistics(pairs)["exact_match"]
    assert (result["fixed"], result["broken"]) == (1, 0)
    path = tmp_path / "outcomes.jsonl"
    outcomes.write_outcomes(path, pairs)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0] == {"metric": "exact_match", "problem": "1+1=", "before": 0.0, "after": 1.0}


def test_outcomes_never_pair_different_problem_sets():
    with outcomes.recording() as log:
        outcomes.record("exact_match", ["a", "b"], [0, 1])
        outcomes.record("exact_match", ["c", "d"], [1, 1])
    assert outcomes.pair(log, {"exact_match": 0.5}, {"exact_match": 1.0}) == {}
