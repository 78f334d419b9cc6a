"""The embedded s1 model's traces (posttrain.embedded.s1) and budget forcing's default wiring to it."""

from __future__ import annotations

import random

import pytest

from posttrain import RunContext
from posttrain.embedded import s1
from posttrain.embedded.reasoning import DEFAULT_REASONING_TASK as task
from posttrain.embedded.reasoning import wrong_trace
from posttrain.hf import model_source
from posttrain_plugins.budget_forcing import S1_MODEL, Config, embedded_model, forcing_action


def test_recheck_writes_digits_and_carry_per_column():
    # 347+285: the aligned problem, then 7+5=12 (carry 1), 4+8+1=13 (carry 1), 3+2+1=6
    assert s1.recheck((347, 285), 3) == ["347+285:", "7+5=12;", "4+8+1=13;", "3+2+1=6;"]
    # short operands are aligned with leading zeros: 74+570 -> 074+570, 4+0, 7+7, 0+5+1
    assert s1.recheck((74, 570), 3) == ["074+570:", "4+0=4;", "7+7=14;", "0+5+1=6;"]
    # a wrong column carries on coherently: 7+5 written as 2 drops the carry of the next column
    assert s1.recheck((347, 285), 3, {0: -10})[1:] == ["7+5=2;", "4+8=12;", "3+2+1=6;"]


def test_answer_is_read_off_the_last_pass():
    assert s1.answer_of_pass(["347+285:", "7+5=12;", "4+8+1=13;", "3+2+1=6;"]) == "632"
    assert s1.answer_of_pass(["12;", "13;", "6;"]) == "632"
    assert s1.answer_of_pass(s1.recheck((999, 1), 3)) == "1000"  # the final carry leads
    assert s1.answer_of_pass(s1.recheck((10, 20), 3)) == "30"  # no leading zero


def test_s1_trace_and_thinking_steps():
    assert s1.s1_trace(["12;", "13;", "6;"], (347, 285)) == "12;13;6;Wait347+285:7+5=12;4+8+1=13;3+2+1=6;#632"
    # a wrong first attempt: the re-check and the answer are the correct ones
    assert s1.s1_trace(["12;", "14;", "6;"], (347, 285)).endswith("Wait347+285:7+5=12;4+8+1=13;3+2+1=6;#632")
    assert s1.thinking_steps("12;13;6;#632") == ["12;", "13;", "6;"]
    assert s1.thinking_steps("12;13") == ["12;"]  # an unfinished step is dropped
    assert s1.thinking_steps("#632") == []


def test_s1_mixture_is_training_split_with_the_recheck_as_completion():
    problems = task.prompts(2000, 0, "train")
    rng = random.Random(0)
    own = ["".join(wrong_trace(tuple(r["numbers"]), 3, rng)) for r in problems]  # stand-in own outputs
    records = s1.s1_examples(problems, own, seed=0)
    assert records == s1.s1_examples(problems, own, seed=0)  # deterministic for a seed
    shares = {k: sum(r["kind"] == k for r in records) / len(records) for k in s1.S1_MIX}
    for kind, share in s1.S1_MIX.items():
        assert abs(shares[kind] - share) < 0.04, kind
    for record, problem in zip(records, problems, strict=True):
        nums = tuple(problem["numbers"])
        if record["kind"] == "plain":
            assert record == {"prompt": task.prompt(nums), "completion": task.solution(nums), "kind": "plain"}
            continue
        # first attempt + Wait in the prompt (no loss there); the completion is the correct re-check
        assert record["prompt"].startswith(task.prompt(nums)) and record["prompt"].endswith("Wait")
        assert record["completion"] == "".join(s1.recheck(nums, 3)) + "#" + task.answer(nums)
        assert record["prompt"].count("Wait") == (2 if record["kind"] == "twice" else 1)
    own_record = next(r for r, p in zip(records, own, strict=True) if r["kind"] == "own")
    assert own_record["prompt"].endswith(";Wait")


def test_s1_mixture_refuses_heldout_problems():
    heldout = task.prompts(3, 0, "test")
    with pytest.raises(ValueError, match="held-out"):
        s1.s1_examples(heldout, ["12;#1"] * 3, seed=0)
    with pytest.raises(ValueError, match="own completions"):
        s1.s1_examples(task.prompts(3, 0, "train"), [], seed=0)


def test_budget_forcing_defaults_to_the_s1_model_with_one_forced_wait(tmp_path, monkeypatch):
    cfg = Config()
    assert (cfg.task, cfg.min_thinking_tokens, cfg.max_thinking_tokens, cfg.continuation, cfg.eval_examples) == (
        "reasoning",
        12,
        64,
        "Wait",
        1000,
    )
    assert embedded_model(cfg, RunContext(tmp_path)).model == S1_MODEL
    assert embedded_model(cfg, RunContext(tmp_path, model="my/model")).model == "my/model"
    assert embedded_model(cfg, RunContext(tmp_path, dataset="d.jsonl")).model is None
    assert forcing_action(9, True, 0, Config(min_thinking_tokens=0)) == "answer"
    monkeypatch.setattr(s1, "s1_model_dir", lambda seed=0, console=None: tmp_path / "s1")
    assert model_source(RunContext(tmp_path, model=S1_MODEL)) == str(tmp_path / "s1")
    # the documented extension setting: the first pass (8-9 thinking tokens) is forced to re-check,
    # the re-check (~41 tokens with the first pass) is let through under the cap
    ext = Config(min_thinking_tokens=12, max_thinking_tokens=64)
    assert forcing_action(9, True, 0, ext) == "wait"
    assert forcing_action(41, True, 1, ext) == "answer"
    assert len("12;13;6;" + "".join(s1.recheck((347, 285), 3))) < ext.max_thinking_tokens
