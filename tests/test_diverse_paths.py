"""The embedded diverse-paths model's traces (hand-worked, 347+285=632), its data mixture, and the
self-consistency plugin's default wiring to it."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from posttrain import RunContext
from posttrain.embedded.diverse import (
    DIVERSE_MODEL,
    MAX_NEW_TOKENS,
    PATH_MIX,
    PATHS,
    column_trace,
    diverse_examples,
    error_overlap,
    explicit_trace,
    path_of,
    path_solution,
    path_steps,
    pick_path,
)
from posttrain.embedded.reasoning import DEFAULT_REASONING_TASK, extract_answer
from posttrain_plugins.self_consistency import Config, embedded_model


def test_each_path_of_347_plus_285():
    assert column_trace((347, 285)) == ["12;", "13;", "6;", "#632"]
    assert explicit_trace((347, 285)) == ["7+5=12;", "4+8+1=13;", "3+2+1=6;", "#632"]
    assert explicit_trace((347, 285), swap=True) == ["5+7=12;", "8+4+1=13;", "2+3+1=6;", "#632"]
    assert path_solution((347, 285), "c") == "c12;13;6;#632"
    assert path_solution((347, 285), "x") == "x7+5=12;4+8+1=13;3+2+1=6;#632"
    assert path_solution((347, 285), "s") == "s5+7=12;8+4+1=13;2+3+1=6;#632"


def test_short_operands_and_a_fourth_digit():
    # 47+5: the columns are padded with zeros, as in the reasoning task's scratchpad
    assert explicit_trace((47, 5)) == ["7+5=12;", "4+0+1=5;", "0+0=0;", "#52"]
    assert path_solution((999, 999), "x") == "x9+9=18;9+9+1=19;9+9+1=19;#1998"
    assert len(path_solution((999, 999), "x")) <= MAX_NEW_TOKENS


def test_every_path_ends_in_the_right_answer():
    rng = random.Random(0)
    for _ in range(200):
        nums = (rng.randrange(1000), rng.randrange(1000))
        for p in PATHS:
            assert extract_answer(path_solution(nums, p)) == str(sum(nums))
            assert path_of(path_solution(nums, p)) == p
    assert path_of("12;13;6;#632") is None and path_of("l5;62;632;#632") is None  # "l" is not trained
    with pytest.raises(ValueError, match="unknown path"):
        path_steps((1, 2), "q")


def test_mixture_is_uniform_over_paths_and_training_split_only():
    assert PATHS == ("c", "x", "s") and PATH_MIX == {p: 1 / 3 for p in PATHS}
    records = diverse_examples(4000, seed=0)
    counts = Counter(r["path"] for r in records)
    assert set(counts) == set(PATHS)
    assert all(abs(c / 4000 - 1 / 3) < 0.03 for c in counts.values()), counts
    for r in records[:500]:
        a, b = map(int, r["prompt"][:-1].split("+"))
        assert not DEFAULT_REASONING_TASK.is_heldout((a, b))
        assert r["completion"] == path_solution((a, b), r["path"])
    assert diverse_examples(50, seed=0) == records[:50]  # deterministic for a seed
    assert pick_path(random.Random(1), {"x": 1.0, "c": 0.0}) == "x"


def test_error_overlap_hand_worked():
    # c wrong on 2 of 4, x on 2 of 4, both on 1: 0.25 / (0.5 * 0.5) = 1.0 (independent)
    assert error_overlap({"c": [True, True, False, False], "x": [True, False, True, False]}) == {"c/x": 1.0}
    # the same mistakes: 0.5 / 0.25 = 2.0
    assert error_overlap({"c": [True, True, False, False], "x": [True, True, False, False]}) == {"c/x": 2.0}


def test_self_consistency_defaults_to_the_diverse_model(tmp_path: Path):
    ctx = RunContext(output_dir=tmp_path)
    cfg, got = embedded_model(Config(), ctx)
    assert got.model == DIVERSE_MODEL and cfg.max_new_tokens == MAX_NEW_TOKENS
    assert (cfg.n, cfg.temperature, cfg.top_k) == (40, 0.7, 40)  # Wang 2022's sampling stays
    # your own model, the addition task, or an explicit max_new_tokens are left alone
    assert embedded_model(Config(), RunContext(output_dir=tmp_path, model="gpt2"))[1].model == "gpt2"
    assert embedded_model(Config(task="addition"), ctx)[1].model is None
    assert embedded_model(Config(max_new_tokens=16), ctx)[0].max_new_tokens == 16


@pytest.mark.slow
def test_the_built_model_learnt_every_path_with_nearly_independent_errors():
    """The premise of self-consistency on the built model (its base.json, measured after training)."""
    import json

    from posttrain.embedded.diverse import diverse_model_dir

    info = json.loads((diverse_model_dir() / "base.json").read_text())
    assert set(info["path_accuracy"]) == set(PATHS) and min(info["path_accuracy"].values()) > 0.3
    assert max(info["error_overlap"].values()) < 1.5  # 1 = independent; one way of thinking would be far above
    assert min(info["greedy_path_share"].values()) > 0.1  # greedy decoding takes every path on some problems
