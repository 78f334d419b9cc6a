"""The `code-tests` reward: model-written code run against the record's tests in posttrain.scoring.sandbox
(stdin/stdout pairs or assert strings), usable by every RL plugin through `rewards=[code-tests]`."""

import json
import os
from pathlib import Path

import pytest

from posttrain.errors import UserError
from posttrain.scoring.rewards import RewardOptions, build_reward, combined_reward
from posttrain.scoring.sandbox import code_execution_reward, run_untrusted

DATASET = Path(__file__).parent / "fixtures" / "code_tests.jsonl"
SUM_TESTS = [{"input": "2 3", "output": "5"}, {"input": "10 -4", "output": "6"}]
ADD_TESTS = ["assert add(2, 3) == 5", "assert add(-1, 1) == 0"]
SUM_CODE = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
ADD_CODE = "Here it is:\n```python\ndef add(a, b):\n    return a + b\n```"


def test_correct_code_scores_one():
    reward = build_reward("code-tests:10", RewardOptions())
    records = [{"tests": SUM_TESTS}, {"tests": ADD_TESTS}]
    assert reward(["p", "p"], [SUM_CODE, ADD_CODE], records) == [1.0, 1.0]


def test_wrong_code_scores_zero():
    reward = build_reward("code-tests:10", RewardOptions())
    wrong_sum = "```python\na, b = map(int, input().split())\nprint(a - b)\n```"
    wrong_add = "```python\ndef add(a, b):\n    return a * b\n```"
    not_python = "the answer is add"
    records = [{"tests": SUM_TESTS}, {"tests": ADD_TESTS}, {"tests": ADD_TESTS}]
    assert reward(["p"] * 3, [wrong_sum, wrong_add, not_python], records) == [0.0, 0.0, 0.0]


def test_partly_correct_code_scores_the_share_passed():
    half = "```python\ndef add(a, b):\n    return 5\n```"
    assert code_execution_reward(half, {"tests": ADD_TESTS}, timeout=10) == 0.5


def test_a_timeout_scores_zero():
    slow = "```python\nimport time\ntime.sleep(30)\nprint(5)\n```"
    assert build_reward("code-tests:1")(["p"], [slow], [{"tests": SUM_TESTS[:1]}]) == [0.0]


def test_an_infinite_loop_is_killed():
    result = run_untrusted("import os\nprint(os.getpid(), flush=True)\nwhile True:\n    pass\n", timeout=1.0)
    assert result.timed_out and result.returncode is None and result.seconds < 10
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left spinning
        os.kill(int(result.stdout.split()[0]), 0)
    looping = "```python\nwhile True:\n    pass\n```"
    assert build_reward("code-tests:1")(["p"], [looping], [{"tests": ADD_TESTS[:1]}]) == [0.0]


def test_combined_with_other_rewards_and_logged_by_name():
    reward = combined_reward(["code-tests:10", "length-penalty"], [1.0, 0.5], RewardOptions(length_budget=1000))
    totals, parts = reward(["p"], [ADD_CODE], [{"tests": ADD_TESTS}])
    assert totals == [1.0] and parts == {"code-tests": [1.0], "length-penalty": [0.0]}


def test_bad_records_and_options_are_one_line_errors():
    reward = build_reward("code-tests")
    with pytest.raises(UserError, match="record 3 has no 'tests'"):
        reward(["p"], ["x"], [{"_line": 3, "answer": "5"}])
    with pytest.raises(UserError, match="is not a test"):
        reward(["p"], ["x"], [{"tests": [{"input": "1"}]}])
    with pytest.raises(UserError, match="expected a timeout in seconds"):
        build_reward("code-tests:soon")
    with pytest.raises(UserError, match="must be positive"):
        build_reward("code-tests:0")


def test_the_fixture_dataset_is_solvable():
    """Each record of the smoke dataset has tests a reference solution passes (so rewards can reach 1)."""
    solutions = [
        SUM_CODE,
        ADD_CODE,
        "print(input()[::-1])",
        "def square(n):\n    return n * n",
        "print(int(input()) * 2)",
        "def is_even(n):\n    return n % 2 == 0",
        "print(max(map(int, input().split())))",
        "def first(xs):\n    return xs[0]",
    ]
    records = [json.loads(line) for line in DATASET.read_text().splitlines()]
    assert build_reward("code-tests:10")(["p"] * len(records), solutions, records) == [1.0] * len(records)


@pytest.mark.smoke
def test_grpo_smoke_run_with_the_code_tests_reward(tmp_path):
    from posttrain.runs.runner import execute, prepare

    prepared = prepare(
        "grpo", dataset=str(DATASET), sets=["rewards=[code-tests]"], output_dir=tmp_path, smoke=True, device="cpu"
    )
    execute(prepared, progress=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("rewards/code-tests" in row for row in logged)
    assert 0.0 <= summary["after"]["reward"] <= 1.0
