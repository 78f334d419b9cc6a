"""The embedded process reward model: its training data (exact step labels of hand-worked traces,
training-split problems only), the dense per-token labels, the scorer plumbing (step splitting,
last/min/product aggregation, ROC AUC), and a slow check that the cached PRM tells correct from
wrong solutions of held-out problems."""

import math

import pytest

from posttrain.embedded.prm import PRM_TRAIN_PROBLEMS, auc, encode_example, prm_examples, trace_record
from posttrain.embedded.reasoning import DEFAULT_REASONING_TASK as task
from posttrain.embedded.reasoning import first_error, wrong_trace
from posttrain.embedded.tokenizer import build_tokenizer
from posttrain.scoring.scorers import aggregate_steps, split_attempt


def _a_train_problem():
    nums = (347, 285)
    assert not task.is_heldout(nums)
    return nums


def test_labels_of_a_hand_worked_trace():
    nums = _a_train_problem()  # 347+285: 7+5=12, 4+8+1=13, 3+2+1=6, answer 632
    assert trace_record(nums, ["12;", "13;", "6;", "#632"], "x")["labels"] == [True, True, True, True]
    # the tens column forgets the carry (12 -> 4+8=12 instead of 13): it and every later step are wrong
    assert trace_record(nums, ["12;", "12;", "6;", "#622"], "x")["labels"] == [True, False, False, False]
    # a wrong answer after correct steps: only the answer step is wrong
    assert trace_record(nums, ["12;", "13;", "6;", "#633"], "x")["labels"] == [True, True, True, False]
    # an unfinished trace is labelled step by step
    assert trace_record(nums, ["12;", "13;"], "x")["labels"] == [True, True]


def test_examples_per_problem_correct_wrong_and_sampled():
    nums = _a_train_problem()
    problems = [{"numbers": list(nums)}]
    rows = prm_examples(problems, [["12;13;6;#632", "12;14;7;#742", ""]], seed=0)
    assert [r["source"] for r in rows] == ["correct", "wrong", "sampled", "sampled"]  # "" has no step
    assert rows[0]["steps"] == ["12;", "13;", "6;", "#632"] and all(rows[0]["labels"])
    k = first_error(nums, rows[1]["steps"])
    assert k is not None and rows[1]["labels"] == [i < k for i in range(len(rows[1]["steps"]))]
    assert rows[3]["labels"] == [True, False, False, False]
    assert all(r["prompt"] == "347+285=" for r in rows)


def test_no_heldout_problem_in_the_training_set():
    heldout = next((a, b) for a in range(100, 1000) for b in range(100, 1000) if task.is_heldout((a, b)))
    with pytest.raises(ValueError, match="held-out"):
        prm_examples([{"numbers": list(heldout)}], [[]], seed=0)
    # the problems the PRM is trained on: none is held out (the split is a hash of the operands)
    train = task.prompts(PRM_TRAIN_PROBLEMS, 0, "train")
    assert not any(task.is_heldout(tuple(r["numbers"])) for r in train)
    assert prm_examples(train[:50], [[] for _ in range(50)], seed=0)  # accepted


def test_dense_token_labels_and_lm_targets():
    tok = build_tokenizer()
    nums = _a_train_problem()
    enc = encode_example(tok, trace_record(nums, ["12;", "14;"], "x"))
    prompt_len = len(tok("347+285=")["input_ids"])  # <bos> + 8 bytes
    assert enc["input_ids"][prompt_len:] == tok("12;14;", add_special_tokens=False)["input_ids"]
    # per token of "12;14;": prefix of "12;13;6;#632"? and at each step end the step label
    assert enc["dense"][prompt_len:] == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    assert enc["dense"][:prompt_len] == [-100.0] * prompt_len
    assert enc["ends"] == [prompt_len + 2, prompt_len + 5] and enc["labels"] == [1.0, 0.0]
    # next-token targets only for the correct step "12;" (the target of position t is token t + 1)
    targets = enc["lm_targets"]
    assert targets[prompt_len - 1 : prompt_len + 2] == enc["input_ids"][prompt_len : prompt_len + 3]
    assert targets[prompt_len + 2 :] == [-100] * 4
    # a fully correct trace also learns to stop (EOS)
    full = encode_example(tok, trace_record(nums, task.steps(nums), "x"))
    assert full["input_ids"][-1] == tok.eos_token_id and full["lm_targets"][-2] == tok.eos_token_id


def test_split_attempt_and_aggregates():
    assert split_attempt("12;13;6;#632", ";") == ["12;", "13;", "6;", "#632"]
    assert split_attempt("12;1", ";") == ["12;", "1"]
    assert split_attempt("", ";") == []
    assert aggregate_steps([0.9, 0.5, 0.8]) == 0.8  # last step: Snell 2024
    assert aggregate_steps([0.9, 0.5, 0.8], "min") == 0.5
    assert aggregate_steps([0.9, 0.5, 0.8], "prod") == pytest.approx(0.36)
    assert aggregate_steps([]) == 0.0
    with pytest.raises(ValueError):
        aggregate_steps([0.1], "mean")


def test_auc_hand_worked():
    assert auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert auc([0.5], [0.5]) == 0.5
    assert auc([0.9, 0.3], [0.5]) == 0.5
    assert math.isnan(auc([], [0.1]))


@pytest.mark.slow
def test_cached_prm_discriminates_correct_from_wrong_heldout_solutions():
    import random

    from posttrain import stats
    from posttrain.embedded.prm import prm_model_dir
    from posttrain.scoring.scorers import load_prm, score_step_lists

    model, tok = load_prm(prm_model_dir())
    rng = random.Random(7)
    problems = task.prompts(100, 4321, "test")
    prompts, steps = [], []
    for r in problems:
        nums = tuple(r["numbers"])
        assert task.is_heldout(nums)
        prompts += [r["prompt"], r["prompt"]]
        steps += [task.steps(nums), wrong_trace(nums, task.digits, rng)]
    probs = score_step_lists(model, tok, prompts, steps)
    correct, wrong = [p[-1] for p in probs[0::2]], [p[-1] for p in probs[1::2]]
    # Paired per problem: the correct solution scored above its wrong twin (measured 90 of 100,
    # seed 7), against below it; a sign test of the two counts.
    above = sum(c > w for c, w in zip(correct, wrong, strict=True))
    below = sum(c < w for c, w in zip(correct, wrong, strict=True))
    assert above > below and stats.sign_test_p(above, below) < stats.ALPHA, (above, below)
    # The frozen artifact's documented discrimination (prm.json; deterministic on these problems).
    assert auc(correct, wrong) >= 0.93  # measured 0.956


def test_the_embedded_prm_is_the_default_only_on_the_embedded_reasoning_task(tmp_path):
    from posttrain.inference.recipe import REASONING_MODEL, StepSearchConfig, embedded_prm_applies
    from posttrain.interface import RunContext

    cfg = StepSearchConfig()
    assert cfg.scorer == "auto"
    assert embedded_prm_applies(cfg, RunContext(tmp_path))
    assert embedded_prm_applies(cfg, RunContext(tmp_path, model=REASONING_MODEL))
    # a user's model or data: never silently another model's PRM (auto stays likelihood)
    assert not embedded_prm_applies(cfg, RunContext(tmp_path, model="./my-model"))
    assert not embedded_prm_applies(cfg, RunContext(tmp_path, dataset="problems.jsonl"))
    assert not embedded_prm_applies(StepSearchConfig(task="addition"), RunContext(tmp_path))


def test_user_model_keeps_the_likelihood_scorer(tmp_path):
    from posttrain.inference.recipe import StepSearchConfig, attempt_scorer
    from posttrain.interface import RunContext

    ctx = RunContext(tmp_path, model="./my-model", dataset="problems.jsonl")
    _, name = attempt_scorer(StepSearchConfig(), ctx, model=None, tokenizer=None)
    assert name == "likelihood"
