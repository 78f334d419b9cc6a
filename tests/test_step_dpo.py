"""Step-DPO: locating the first wrong step and rectifying it (the paper's pair pipeline) on
hand-made traces, and a slow learning run on the embedded reasoning task."""

import pytest

from posttrain_plugins.step_dpo import first_wrong_step, step_pair


def test_first_wrong_step():
    assert first_wrong_step([True, True, False, False]) == 2
    assert first_wrong_step([False]) == 0
    assert first_wrong_step([True, True]) is None
    assert first_wrong_step([]) is None


def test_step_pair_takes_the_first_rectifying_candidate():
    right = {"12;", "13;"}

    def is_right(steps):
        return all(s in right for s in steps)

    # the wrong step itself and other wrong candidates are skipped; the first right one is chosen
    assert step_pair(["12;"], "14;", ["14;", "11;", "13;", "13;"], is_right) == ("13;", "14;")
    assert step_pair(["12;"], "14;", ["14;", "", "15;"], is_right) is None
    assert step_pair([], "11;", ["12;"], is_right) == ("12;", "11;")


@pytest.mark.slow
def test_step_dpo_raises_step_preference_accuracy(tmp_path):
    from posttrain.runner import execute, prepare

    result = execute(prepare("step-dpo", output_dir=tmp_path, device="cpu", seed=0), progress=False)
    before, after = result.metrics["before"], result.metrics["after"]
    assert before["step_preference_accuracy"] == 0.5
    assert after["step_preference_accuracy"] >= 0.65, result.metrics
