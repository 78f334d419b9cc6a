"""The learning tests' assertions (tests/learning.py) on hand-made paired results."""

import learning
import pytest

from posttrain import stats


def _metrics(fixed: int, broken: int, n: int = 100, right_before: int = 50, metric: str = "exact_match") -> dict:
    """A run's metrics whose held-out ``metric`` has these fixed/broken counts on ``n`` problems."""
    both = right_before - broken
    before = [1] * right_before + [0] * (n - right_before)
    after = [1] * both + [0] * broken + [1] * fixed + [0] * (n - right_before - fixed)
    test = stats.paired_binary(before, after)
    return {"before": {metric: test["before"]}, "after": {metric: test["after"]}, "paired": {metric: test}}


def test_gain_passes_and_its_failure_shows_the_paired_numbers():
    learning.assert_gain(_metrics(10, 0), "exact_match")  # p = 2 * 0.5**10 = 0.002
    with pytest.raises(AssertionError, match=r"\+2\.0 points .* 3 fixed / 1 broken, p = 0\.62: no significant change"):
        learning.assert_gain(_metrics(3, 1), "exact_match")
    with pytest.raises(AssertionError, match="expected a gain"):
        learning.assert_gain(_metrics(0, 10), "exact_match")


def test_no_harm_fails_only_on_a_significant_fall():
    learning.assert_no_harm(_metrics(1, 3))  # -2 points, p = 0.62
    learning.assert_no_harm(_metrics(10, 0))
    with pytest.raises(
        AssertionError, match=r"-10\.0 points .* 0 fixed / 10 broken, p = 0\.002: harm; a significant harm"
    ):
        learning.assert_no_harm(_metrics(0, 10))


def test_a_metric_without_outcomes_or_a_mismatched_pair_is_named():
    with pytest.raises(AssertionError, match=r"no paired test of held-out 'accuracy'.*\['exact_match'\]"):
        learning.assert_gain(_metrics(10, 0), "accuracy")
    wrong = _metrics(10, 0)
    wrong["after"]["exact_match"] = 0.9  # the summary's after is not the paired evaluation's
    with pytest.raises(AssertionError, match="the summary says 0.5 -> 0.9"):
        learning.assert_gain(wrong, "exact_match")


def test_pooled_gain_needs_every_seed_up_and_a_pooled_p():
    # 4/1 per seed is not significant alone (p = 0.375) but 12/3 pooled is (p = 0.035)
    assert learning.assert_pooled_gain([_metrics(4, 1)] * 3, "exact_match")["p"] < 0.05
    with pytest.raises(AssertionError, match=r"run 2: -1\.0 points"):  # one seed fell: no claim
        learning.assert_pooled_gain([_metrics(10, 0), _metrics(10, 0), _metrics(1, 2)], "exact_match")
    with pytest.raises(AssertionError, match=r"6 fixed / 3 broken, pooled p = 0.51"):
        learning.assert_pooled_gain([_metrics(2, 1)] * 3, "exact_match")
    learning.assert_pooled_no_harm([_metrics(1, 2)] * 3)  # 3 / 6: p = 0.51
    with pytest.raises(AssertionError, match="a significant harm"):
        learning.assert_pooled_no_harm([_metrics(0, 4)] * 3)


def test_ci_params_mark_the_rest_extended():
    params = learning.ci_params(["a", "b", pytest.param("c", marks=pytest.mark.xfail)], ci=["a"])
    assert [p.values for p in params] == [("a",), ("b",), ("c",)]
    assert [[m.name for m in p.marks] for p in params] == [[], ["extended"], ["xfail", "extended"]]


def test_paired_between_any_two_recorded_evaluations(monkeypatch):
    """A prompt method's untrained prompt (``initial``) against its trained one, from the run's log."""
    from posttrain import outcomes

    problems = [f"{i}+1=" for i in range(20)]

    def fake_run(name, out, seed=0, sets=()):  # what execute does: the plugin runs inside recording()
        with outcomes.recording():
            outcomes.record("exact_match", problems, [1] * 10 + [0] * 10)  # initial prompt: 0.5
            outcomes.record("exact_match", problems, [1] * 19 + [0])  # bare base: 0.95
            outcomes.record("exact_match", problems, [1] * 20)  # trained prompt: 1.0
        return {"before": {"exact_match": 0.95}, "initial": {"exact_match": 0.5}, "after": {"exact_match": 1.0}}

    monkeypatch.setattr(learning, "run", fake_run)
    metrics, log = learning.run_keeping_outcomes("prompt-tuning", None)
    assert outcomes.recording.__module__ == "posttrain.outcomes"  # put back
    assert len(log.evaluations) == 3
    test = learning.assert_gain(
        learning.paired_between(log, "exact_match", metrics["initial"], metrics["after"]), "exact_match"
    )
    assert (test["before"], test["after"], test["fixed"], test["broken"]) == (0.5, 1.0, 10, 0)
    with pytest.raises(AssertionError, match="1 fixed / 0 broken, p = 1"):
        learning.assert_gain(
            learning.paired_between(log, "exact_match", metrics["before"], metrics["after"]), "exact_match"
        )
