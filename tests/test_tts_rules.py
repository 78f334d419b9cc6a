"""Selection and search rules of the test-time scaling plugins, with hand-worked numbers."""

import math

import pytest

from posttrain.answers import answer_of
from posttrain_plugins.best_of_n import best_of_n, kl_bound
from posttrain_plugins.confidence_sampling import (
    confidence_weighted_vote,
    most_confident,
    needs_expansion,
    trace_confidence,
)
from posttrain_plugins.self_consistency import majority_vote, vote_share, weighted_majority_vote

# --- self-consistency --------------------------------------------------------------------------------


def test_majority_vote_counts():
    assert majority_vote(["5", "3", "5", "7", "5"]) == "5"


def test_majority_vote_tie_goes_to_first_seen():
    assert majority_vote(["3", "5", "5", "3"]) == "3"
    assert majority_vote(["5", "3", "3", "5"]) == "5"


def test_majority_vote_single_sample_is_that_sample():
    assert majority_vote(["42"]) == "42"


def test_weighted_vote_can_overrule_the_majority():
    # "3": 0.9; "5": 0.3 + 0.4 = 0.7
    assert weighted_majority_vote(["3", "5", "5"], [0.9, 0.3, 0.4]) == "3"
    assert weighted_majority_vote(["3", "5", "5"], [0.5, 0.3, 0.4]) == "5"


def test_weighted_vote_with_equal_weights_is_majority_vote():
    answers = ["1", "2", "2", "3", "1", "2"]
    assert weighted_majority_vote(answers, [1.0] * len(answers)) == majority_vote(answers)
    assert weighted_majority_vote(["3", "5", "5", "3"], [0.25] * 4) == "3"  # tie -> first seen


def test_answer_of_takes_the_last_integer_and_strips_leading_zeros():
    assert answer_of("carry 1, so 7+8=15\nanswer 015") == "15"
    assert answer_of("82") == "82"
    assert answer_of("0") == "0"
    assert answer_of("no number") == "no number"


def test_vote_share():
    assert vote_share(["5", "5", "3", "5"], "5") == 0.75


# --- best-of-n -----------------------------------------------------------------------------------------


def test_best_of_n_picks_the_argmax_and_the_earliest_on_ties():
    assert best_of_n([0.1, 0.7, 0.7, 0.2]) == 1
    assert best_of_n([-3.0, -1.0, -2.0]) == 1
    assert best_of_n([5.0]) == 0


def test_best_of_n_kl_bound():
    assert kl_bound(1) == 0.0
    assert kl_bound(16) == pytest.approx(math.log(16) - 15 / 16)
    assert kl_bound(4) == pytest.approx(1.3863 - 0.75, abs=1e-4)


# --- confidence sampling ---------------------------------------------------------------------------------


def test_trace_confidence_is_the_least_likely_token():
    assert trace_confidence([math.log(0.9), math.log(0.5), math.log(0.99)]) == pytest.approx(0.5)
    assert trace_confidence([]) == 1.0


def test_needs_expansion_limits():
    assert not needs_expansion(0.3, 0.0)  # threshold 0: never expand (greedy decoding)
    assert needs_expansion(0.999, 1.0)  # threshold 1: expand unless fully certain
    assert not needs_expansion(1.0, 1.0)
    assert needs_expansion(0.5, 0.9) and not needs_expansion(0.95, 0.9)


def test_confidence_weighted_vote_and_most_confident():
    assert confidence_weighted_vote(["3", "5", "5"], [0.9, 0.3, 0.4]) == "3"
    assert confidence_weighted_vote(["3", "5", "5"], [0.5, 0.3, 0.4]) == "5"
    assert most_confident([0.2, 0.8, 0.8]) == 1
