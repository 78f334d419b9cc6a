"""The embedded reasoning task: scratchpads, step labels, wrong traces and sub-skill prompts."""

import random

import pytest

from posttrain.embedded.reasoning import (
    DEFAULT_REASONING_TASK as task,
)
from posttrain.embedded.reasoning import (
    extract_answer,
    first_error,
    is_correct,
    noisy_problem,
    parse_problem,
    split_steps,
    step_labels,
    trace,
    wrong_trace,
)


def test_trace_worked_example():
    assert trace((347, 285), 3) == ["12;", "13;", "6;", "#632"]  # 7+5, 4+8+1, 3+2+1
    assert trace((999, 1), 3) == ["10;", "10;", "10;", "#1000"]
    assert trace((5, 3), 3) == ["8;", "0;", "0;", "#8"]


def test_wrong_trace_is_coherent_and_wrong():
    rng = random.Random(0)
    for _ in range(200):
        nums = (rng.randrange(1000), rng.randrange(1000))
        wrong = wrong_trace(nums, 3, rng)
        assert wrong != trace(nums, 3)
        k = first_error(nums, wrong)
        assert k is not None and k < 3  # the error is in a column step, not only in the answer
        assert extract_answer("".join(wrong)) != str(sum(nums))


def test_step_labels_stay_wrong_after_first_error():
    good = trace((347, 285), 3)
    bad = ["12;", "12;", "6;", "#622"]
    assert step_labels((347, 285), good) == [True] * 4
    assert step_labels((347, 285), bad) == [True, False, False, False]
    assert first_error((347, 285), good) is None
    assert first_error((347, 285), bad) == 1


def test_split_steps_handles_partial_text():
    assert split_steps("12;13;6;#632<eos>") == ["12;", "13;", "6;", "#632"]
    assert split_steps("12;1") == ["12;", "1"]
    assert split_steps("") == []


@pytest.mark.parametrize(
    ("text", "answer", "ok"),
    [("12;13;6;#632", "632", True), ("12;12;6;#622", "632", False), ("12;", "632", False), ("#0632", "632", True)],
)
def test_checker(text, answer, ok):
    assert is_correct(text, answer) is ok


def test_heldout_split_is_disjoint_and_stable():
    train = {tuple(r["numbers"]) for r in task.prompts(500, 0, "train")}
    test = {tuple(r["numbers"]) for r in task.prompts(500, 0, "test")}
    assert not train & test
    assert task.prompts(3, 0) == task.prompts(3, 0)


def test_sub_skill_examples_are_consistent():
    for r in task.verify_examples(100, 0):
        assert r["prompt"].startswith("V:") and r["completion"] in ("y", "n")
    labels = [r["completion"] for r in task.verify_examples(400, 0)]
    assert 0.3 < labels.count("y") / len(labels) < 0.7
    for r in task.refine_examples(20, 0):
        nums = parse_problem(r["prompt"][2:].split("=")[0] + "=")
        assert nums is not None and is_correct(r["completion"], str(sum(nums)))
    for r in task.step_pairs(20, 0):
        assert r["chosen"] != r["rejected"]
    rng = random.Random(0)
    for _ in range(50):
        nums = (rng.randrange(1000), rng.randrange(1000))
        noisy = noisy_problem(nums, rng)
        assert [int(x) for x in noisy.replace("=", "").split("+")] == list(nums)


def test_reasoning_records_kinds():
    from posttrain.embedded.reasoning import reasoning_records

    train, heldout, source = reasoning_records("step-preference", 5, 3, seed=0)
    assert len(train) == 5 and len(heldout) == 3 and source == "scratch2x3"
    with pytest.raises(ValueError, match="unknown reasoning data kind"):
        reasoning_records("nope", 1, 1, 0)


def test_explicit_columns_by_hand():
    from posttrain.embedded.reasoning import explicit_columns

    assert explicit_columns((347, 285), 3) == ["7+5=12;", "4+8+1=13;", "3+2+1=6;"]
    # a wrong middle column (a dropped carry's worth, -10): the next column carries on from it
    assert explicit_columns((347, 285), 3, {1: -10}) == ["7+5=12;", "4+8+1=3;", "3+2=5;"]
