"""Few-shot pages (posttrain.embedded.fewshot): the corpus that gives the embedded model in-context learning."""

from __future__ import annotations

import pytest

from posttrain.embedded import fewshot
from posttrain.embedded.reasoning import DEFAULT_REASONING_TASK, is_correct


def test_direct_answer_keeps_the_answer_mark():
    assert fewshot.direct_answer("12;13;6;#632") == "#632"
    assert fewshot.direct_answer("632") == "632"


def test_worked_page():
    shots = [{"prompt": "1+2=", "completion": "3;#3"}]
    assert fewshot.page(shots, {"prompt": "4+5=", "completion": "9;#9"}, direct=False) == {
        "prompt": "1+2=3;#3\n4+5=",
        "completion": "9;#9",
    }


def test_direct_page_asks_for_the_answer_after_the_mark():
    shots = [{"prompt": "1+2=", "completion": "3;#3"}, {"prompt": "5+5=", "completion": "10;#10"}]
    assert fewshot.page(shots, {"prompt": "4+5=", "completion": "9;#9"}, direct=True) == {
        "prompt": "1+2=#3\n5+5=#10\n4+5=#",
        "completion": "9",
    }


def test_zero_shot_pages_are_plain_problems():
    assert fewshot.page([], {"prompt": "4+5=", "completion": "9;#9"}, direct=False)["prompt"] == "4+5="


def test_pages_mix_formats_and_shot_counts_from_the_training_split_only():
    pages = fewshot.pages(400, seed=0)
    assert len(pages) == 400
    direct = [p for p in pages if p["prompt"].endswith("#")]
    assert 0.4 < len(direct) / len(pages) < 0.6
    shots = {p["prompt"].count("\n") for p in pages}
    assert shots == set(range(fewshot.MAX_SHOTS + 1))
    test_prompts = {r["prompt"] for r in DEFAULT_REASONING_TASK.prompts(500, 1000, "test")}
    for p in pages:
        lines = p["prompt"].split("\n")
        assert not any(line.split("=")[0] + "=" in test_prompts for line in lines)
    worked = [p for p in pages if not p["prompt"].endswith("#")]
    assert all(
        is_correct(p["completion"], str(sum(map(int, p["prompt"].split("\n")[-1][:-1].split("+"))))) for p in worked
    )


@pytest.mark.slow
def test_fewshot_model_reads_the_format_off_the_exemplars():
    """Chain-of-thought exemplars beat answer-only exemplars on the same held-out problems (Wei et al.
    2022's finding): a significant paired gain, 4 exemplars, 200 problems."""
    from learning import assert_gain
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from posttrain import stats

    folder = fewshot.fewshot_model_dir()
    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    direct = fewshot.fewshot_outcomes(model, tokenizer, 4, direct=True, n=200, seed=0)
    worked = fewshot.fewshot_outcomes(model, tokenizer, 4, direct=False, n=200, seed=0)
    test = stats.paired_binary(direct, worked)  # the base.json check: direct 8.5%, worked 29.5%
    assert_gain({"before": {}, "after": {}, "paired": {"accuracy": test}}, "accuracy")
