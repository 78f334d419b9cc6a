"""TTRL (posttrain_plugins.ttrl): the majority vote and its rewards with hand-worked groups, ties,
unreadable answers, the label accuracy, the leak guard (training never sees an answer), and runs on
the embedded task and on a prompt-only dataset."""

from __future__ import annotations

import json

import pytest
import torch

from posttrain.evaluation import reference_of
from posttrain.rl.group import group_advantages
from posttrain.runs.runner import execute, prepare
from posttrain_plugins import ttrl

TINY = ["max_steps=2", "prompts_per_step=4", "num_generations=4", "batch_size=16", "log_every=1"]


# --- the vote --------------------------------------------------------------------------------------


def test_majority_answer_hand_worked():
    assert ttrl.majority_answer(["5", "7", "5", "5"]) == "5"
    assert ttrl.majority_answer(["3"]) == "3"


def test_tie_goes_to_the_answer_sampled_first():
    assert ttrl.majority_answer(["7", "5", "5", "7", None]) == "7"
    assert ttrl.majority_answer(["5", "7", "7", "5"]) == "5"


def test_all_different_answers_reward_only_the_first():
    assert ttrl.majority_answer(["1", "2", "3", "4"]) == "1"
    assert ttrl.majority_vote_rewards([["1", "2", "3", "4"]]).tolist() == [[1.0, 0.0, 0.0, 0.0]]


def test_unreadable_answers_never_win():
    assert ttrl.majority_answer([None, None, None, "4"]) == "4"
    assert ttrl.majority_answer([None, None]) is None
    rewards = ttrl.majority_vote_rewards([[None, None, None], [None, "2", None]])
    assert rewards.tolist() == [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]


def test_vote_rewards_shape_and_values():
    rewards = ttrl.majority_vote_rewards([["5", "5", "7", None], ["9", "8", "8", "8"]])
    assert rewards.shape == (2, 4) and rewards.dtype == torch.float32
    assert rewards.tolist() == [[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 1.0]]
    # a unanimous group carries no signal: GRPO's advantages are zero
    unanimous = ttrl.majority_vote_rewards([["4", "4", "4"]])
    assert torch.allclose(group_advantages(unanimous), torch.zeros(1, 3))


def test_answer_readers_and_normalisation():
    text = "082 then 7 # 15"
    assert ttrl.read_answers([text], "first-integer") == ["82"]
    assert ttrl.read_answers([text], "last-integer") == ["15"]
    assert ttrl.read_answers(["c12;#0632"], "after-mark") == ["632"]
    assert ttrl.read_answers(["no digits", "-07", "000"], "first-integer") == [None, "-7", "0"]
    assert ttrl.read_answers([" Paris ", "it is 042", ""], "answer-of") == ["Paris", "42", None]
    assert ttrl.label_accuracy(["Paris", "0"], ["Paris ", "000"]) == 1.0


def test_label_accuracy():
    # prompt 1 right, prompt 2 wrong, prompt 3 had no readable answer, prompt 4 has no reference
    assert ttrl.label_accuracy(["105", "12", None, "3"], ["105", "13", "7", None]) == pytest.approx(1 / 3)
    assert ttrl.label_accuracy(["082"[1:]], ["082"]) == 1.0
    assert ttrl.label_accuracy(["1", "2"], [None, None]) is None


# --- the leak guard --------------------------------------------------------------------------------


def test_unlabeled_keeps_the_prompt_only():
    record = {"prompt": "2+3=", "answer": "5", "completion": "5", "solution": "5", "_line": 4}
    stripped = ttrl.unlabeled(record)
    assert stripped == {"prompt": "2+3=", "_line": 4}
    assert reference_of(stripped) is None
    assert record["answer"] == "5"  # the original is left for the logged label accuracy


def spy_on_training_rollouts(monkeypatch) -> list:
    """Wrap the plugin's make_rollout: record the records of every prompt batch it samples, as the
    sampler (and any reward) sees them."""
    seen: list = []
    real = ttrl.vote_rollout

    def spying(*args):
        make_rollout = real(*args)

        def wrapped(prompts_for, sample):
            def recording(prompts):
                seen.extend(prompts)
                return sample(prompts)

            return make_rollout(prompts_for, recording)

        return wrapped

    monkeypatch.setattr(ttrl, "vote_rollout", spying)
    return seen


def test_training_never_sees_an_answer_on_the_embedded_task(tmp_path, monkeypatch):
    seen = spy_on_training_rollouts(monkeypatch)
    result = execute(prepare("ttrl", sets=TINY, output_dir=tmp_path, device="cpu"), progress=False)
    assert seen and all(reference_of(r) is None for r in seen)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert len(steps) == 2 and all(r["loss"] == r["loss"] for r in steps)
    # the embedded task has answers: the vote's label accuracy is logged, the held-out set is scored
    assert all(0.0 <= r["ttrl/label_accuracy"] <= 1.0 for r in steps)
    assert all(r["reward"] == r["rewards/majority-vote"] for r in steps)
    assert result.metrics["after"]["exact_match"] is not None


def test_prompt_only_dataset_trains(tmp_path, monkeypatch):
    data = tmp_path / "questions.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{a}+{b}="}) + "\n" for a in range(10, 18) for b in range(20, 25)))
    seen = spy_on_training_rollouts(monkeypatch)
    run_dir = tmp_path / "run"
    result = execute(prepare("ttrl", sets=TINY, dataset=str(data), output_dir=run_dir, device="cpu"), progress=False)
    assert seen
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r for r in rows if "loss" in r] and not any("ttrl/label_accuracy" in r for r in rows)
    # nothing to check the held-out prompts against: no exact match, no sampled reward
    assert result.metrics["before"] == {"exact_match": None, "reward": None}
    assert result.metrics["after"] == {"exact_match": None, "reward": None}


def test_a_larger_vote_samples_extra_voters_and_trains_on_g(tmp_path, monkeypatch):
    seen = spy_on_training_rollouts(monkeypatch)
    sets = [*TINY, "num_votes=10", "max_steps=1"]
    execute(prepare("ttrl", sets=sets, output_dir=tmp_path, device="cpu"), progress=False)
    assert len(seen) == 4 * 3  # 4 prompts sampled 3 times (4 + 4 + 2 of 4 votes each), answers never shown
    assert all(reference_of(r) is None for r in seen)


def test_num_votes_below_the_group_size_is_a_clear_error(tmp_path):
    from posttrain.errors import UserError

    with pytest.raises(UserError, match="num_votes 2: must be at least num_generations"):
        execute(prepare("ttrl", sets=[*TINY, "num_votes=2"], output_dir=tmp_path, device="cpu"), progress=False)


def test_extra_voters_decide_the_label_of_the_trained_group():
    """Trained group [3, 5, 5, 3] alone ties (3 first); with the extra voters [5, 5, 7, 3] the label is 5,
    so the trained completions get [0, 1, 1, 0]. The label is the true answer for prompt 1."""
    from types import SimpleNamespace

    batches = iter([["3", "5", "5", "3"], ["5", "5", "7", "3"]])

    def sample(prompts):
        texts = next(batches)
        return SimpleNamespace(
            texts=texts, num_generations=4, timings={"generate": 1.0}, input_ids=torch.zeros(4, 1), stats={}
        )

    make_rollout = ttrl.vote_rollout("first-integer", 8)
    rollout = make_rollout(lambda round_: [{"prompt": "2+3=", "answer": "5"}], sample)
    assert rollout.rewards.tolist() == [0.0, 1.0, 1.0, 0.0]
    assert rollout.stats["ttrl/label_accuracy"] == 1.0
    assert rollout.timings["generate"] == 2.0
    without_extra = ttrl.majority_vote_rewards([["3", "5", "5", "3"]])
    assert without_extra.tolist() == [[1.0, 0.0, 0.0, 1.0]]


def oracle_rollout(reader, num_votes):
    """vote_rollout with the true answer as the label instead of the vote (the test's oracle)."""

    def make_rollout(prompts_for, sample):
        records = prompts_for(0)
        rollout = sample([ttrl.unlabeled(r) for r in records])
        answers = ttrl.group_answers(ttrl.read_answers(rollout.texts, reader), rollout.num_generations)
        labels = [ttrl.normalised(reference_of(r)) for r in records]
        rollout.rewards = ttrl.agreement_rewards(answers, labels).reshape(-1)
        rollout.reward_components = {"exact-match": rollout.rewards}
        return rollout

    return make_rollout


def test_with_the_true_answer_as_label_it_is_grpo(tmp_path, monkeypatch):
    """TTRL = GRPO + the vote: with an oracle label the run logs grpo's numbers exactly (a default
    run this way reproduces reports/runs/grpo.json's seed 0 before and after)."""
    grpo = execute(prepare("grpo", sets=TINY, output_dir=tmp_path / "grpo", device="cpu"), progress=False)
    monkeypatch.setattr(ttrl, "vote_rollout", oracle_rollout)
    oracle = execute(prepare("ttrl", sets=TINY, output_dir=tmp_path / "ttrl", device="cpu"), progress=False)

    def steps(run):
        rows = [json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [{k: r[k] for k in ("loss", "reward", "kl", "grad_norm")} for r in rows if "loss" in r]

    assert steps("ttrl") == steps("grpo")
    assert oracle.metrics["after"] == grpo.metrics["after"]
