"""Rejection-sampling fine-tuning: the RFT (distinct correct) and RAFT (top-1 by reward) selection
rules on hand-worked groups, bad input, and a slow learning run on the embedded task."""

import pytest
import torch

from posttrain_plugins.rejection_sampling_ft import select_top1, select_verified


def test_select_verified_keeps_distinct_correct():
    completions = [["42", "42", " 42", "41"], ["7", "8", "9", "10"], ["5", "6", "5", "6"]]
    accepted = [[True, True, True, False], [False, False, False, False], [True, True, True, True]]
    # " 42" dedupes with "42" (whitespace-trimmed); prompt 1 has nothing accepted
    assert select_verified(completions, accepted, dedupe=True) == [(0, 0), (2, 0), (2, 1)]
    assert select_verified(completions, accepted, dedupe=False) == [
        (0, 0),
        (0, 1),
        (0, 2),
        (2, 0),
        (2, 1),
        (2, 2),
        (2, 3),
    ]


def test_select_verified_limits():
    assert select_verified([], [], dedupe=True) == []
    assert select_verified([["a", "b"]], [[False, False]]) == []
    with pytest.raises(ValueError):
        select_verified([["a", "b"]], [[True]])


def test_select_top1():
    rewards = torch.tensor([[0.1, 2.0, -1.0], [3.0, 3.0, 0.0], [-5.0, -4.0, -6.0]])
    assert select_top1(rewards).tolist() == [1, 0, 1]  # ties go to the first sample


def test_max_steps_is_refused(tmp_path):
    from posttrain.errors import UserError
    from posttrain.registry import load
    from posttrain.runs.runner import prepare

    with pytest.raises(
        UserError, match="max_steps: not an option of rejection-sampling-ft: .*set rounds and steps_per_round"
    ):
        prepare("rejection-sampling-ft", output_dir=tmp_path, sets=["max_steps=5"], device="cpu")
    assert "max_steps" not in load("rejection-sampling-ft").config.model_fields  # not shown as an option


def test_prompts_without_answer_need_a_reward_model(tmp_path):
    from posttrain.errors import UserError
    from posttrain.runs.runner import execute, prepare

    data = tmp_path / "p.jsonl"
    data.write_text('{"prompt": "hi"}\n{"prompt": "there"}\n')
    prepared = prepare(
        "rejection-sampling-ft", output_dir=tmp_path / "out", dataset=str(data), smoke=True, device="cpu"
    )
    with pytest.raises(UserError, match="no `answer`"):
        execute(prepared, progress=False)


@pytest.mark.slow
@pytest.mark.extended  # 3 seeds x 47 s (reports/runs/rejection-sampling-ft.json)
@pytest.mark.timeout(3600)
def test_rejection_sampling_ft_raises_exact_match(tmp_path):
    """The accepted samples depend on the sampling seed: 3 seeds, every seed's held-out exact match
    up and the pooled paired test significant."""
    from learning import assert_pooled_gain, run_seeds

    assert_pooled_gain(run_seeds("rejection-sampling-ft", tmp_path), "exact_match")


def test_reward_model_as_judge_keeps_top1_per_prompt(tmp_path, tiny_classifier):
    """RAFT mode: with --set reward_model, exactly one sample per prompt is kept each round."""
    import json

    from posttrain.runs.runner import execute, prepare

    rm = tiny_classifier(tmp_path / "rm")
    sets = [f"reward_model={rm}"]
    prepared = prepare("rejection-sampling-ft", output_dir=tmp_path / "out", sets=sets, smoke=True, device="cpu")
    execute(prepared, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    kept = [r["samples/accepted"] for r in rows if "samples/accepted" in r]
    assert kept == [prepared.config.prompts_per_round] * prepared.config.rounds
