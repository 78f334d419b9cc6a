"""The RL recipes' plain loops: a resumed group-RL run repeats the uninterrupted one, a run ends
after exactly max_steps optimizer steps when they do not fill the last rollout, and the round-based
plugins handle a round with nothing to learn from without zero-loss steps."""

import importlib
import json
from pathlib import Path

import pytest

from posttrain.errors import UserError
from posttrain.registry import load
from posttrain.runs.runner import execute, prepare
from posttrain.training.trainer import TrainerCallback, observe

# 16 completions per rollout, 8 per optimizer step: 2 steps per rollout, so step 2 starts rollout 1.
GRPO = {"max_steps": 4, "batch_size": 8, "save_every": 2, "log_every": 1}


class Crash(Exception):
    pass


class CrashAfter(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step(self, trainer, step, metrics) -> None:
        if step == self.step:
            raise Crash


class Steps(TrainerCallback):
    def __init__(self) -> None:
        self.steps: list[int] = []
        self.micro_batches = 0

    def on_micro_batch(self, trainer, loss, metrics) -> None:
        self.micro_batches += 1

    def on_step(self, trainer, step, metrics) -> None:
        self.steps.append(step)


def run(name: str, out: Path, *observers: TrainerCallback, resume: bool = False, **values):
    prepared = prepare(name, output_dir=out, smoke=True, device="cpu", extra=values, resume=resume)
    with observe(*observers):
        return execute(prepared, progress=False)


def logged(out: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: {k: v for k, v in r.items() if "second" not in k} for r in rows if "loss" in r}


def test_a_resumed_grpo_run_repeats_the_uninterrupted_one(tmp_path):
    run("grpo", tmp_path / "straight", **GRPO)
    with pytest.raises(Crash):
        run("grpo", tmp_path / "b", CrashAfter(3), **GRPO)  # checkpoint at step 2, crash after step 3
    steps = Steps()
    run("grpo", tmp_path / "b", steps, resume=True, **GRPO)
    assert steps.steps == [3, 4]
    straight, resumed = logged(tmp_path / "straight"), logged(tmp_path / "b")
    assert resumed[3] == straight[3] and resumed[4] == straight[4]
    summary = [json.loads((tmp_path / d / "summary.json").read_text()) for d in ("straight", "b")]
    assert summary[0]["after"] == summary[1]["after"]


def test_group_recipe_trains_on_the_rows_batch_semantics_locates(tmp_path, monkeypatch):
    """2 policy epochs x 2 mini-batches x 2 micro-batches per rollout; 5 steps end inside rollout 1."""
    import posttrain.rl.group as group
    from posttrain.rl.rollout import BatchSemantics

    seen = []
    logprobs = group.completion_logprobs

    def recording(policy, rollout, rows, temperature):
        seen.append((rollout, rows))
        return logprobs(policy, rollout, rows, temperature)

    monkeypatch.setattr(group, "completion_logprobs", recording)
    values = {"max_steps": 5, "batch_size": 4, "grad_accum": 2, "policy_epochs": 2}
    run("grpo", tmp_path, **values)
    semantics = BatchSemantics(4, 4, 4, 2, 2)
    expected = [semantics.locate(step, micro) for step in range(5) for micro in range(2)]
    rollouts = list(dict.fromkeys(id(rollout) for rollout, _ in seen))
    assert [(rollouts.index(id(r)), rows) for r, rows in seen] == [(i, rows) for i, _, rows in expected]


def test_max_steps_may_end_inside_a_rollout(tmp_path):
    steps = Steps()
    run("ppo", tmp_path, steps, max_steps=3, prompts_per_step=8, batch_size=4, policy_epochs=2, grad_accum=2)
    # 8 completions, 4 per micro-batch x 2 = one step per epoch, 2 per rollout: rollout 1 is cut after one step
    assert steps.steps == [1, 2, 3] and steps.micro_batches == 6


def _empty_round(module, empty: set[int], monkeypatch):
    collect = module.Sampler.collect

    def collect_or_nothing(self, round_index):
        data, stats = collect(self, round_index)
        return ([] if round_index in empty else data), stats

    monkeypatch.setattr(module.Sampler, "collect", collect_or_nothing)


def test_rejection_sampling_trains_on_the_last_round_when_a_round_accepts_nothing(tmp_path, monkeypatch, capsys):
    module = importlib.import_module(load("rejection-sampling-ft").run.__module__)
    _empty_round(module, {1}, monkeypatch)
    steps = Steps()
    run("rejection-sampling-ft", tmp_path, steps)
    assert steps.steps == [1, 2]
    assert "round 2: no sample accepted; training on the last round's" in capsys.readouterr().err


def test_rejection_sampling_stops_when_nothing_was_ever_accepted(tmp_path, monkeypatch):
    module = importlib.import_module(load("rejection-sampling-ft").run.__module__)
    _empty_round(module, {0}, monkeypatch)
    with pytest.raises(UserError, match="round 1: the verifier accepted none of the .* nothing to fine-tune on"):
        run("rejection-sampling-ft", tmp_path)


def test_online_dpo_has_no_max_steps_option(tmp_path):
    with pytest.raises(UserError, match="max_steps: not an option of online-dpo: the run takes rounds"):
        prepare("online-dpo", output_dir=tmp_path, sets=["max_steps=5"], device="cpu")


def _no_pairs_on_call(module, call: int, monkeypatch):
    """best_worst_pairs finds no pair on its ``call``-th call (1: the held-out pairs, 2: round 1, ...)."""
    pairs, calls = module.best_worst_pairs, []

    def pairs_or_none(rewards):
        calls.append(1)
        found = pairs(rewards)
        return found[:0] if len(calls) == call else found

    monkeypatch.setattr(module, "best_worst_pairs", pairs_or_none)


def test_online_dpo_trains_on_the_last_pairs_when_a_round_ties(tmp_path, monkeypatch, capsys):
    module = importlib.import_module(load("online-dpo").run.__module__)
    _no_pairs_on_call(module, 3, monkeypatch)
    steps = Steps()
    run("online-dpo", tmp_path, steps)
    assert steps.steps == [1, 2]
    assert "round 2: every prompt's samples tied; training on the last pairs" in capsys.readouterr().err


def test_online_dpo_stops_when_no_round_gave_a_pair(tmp_path, monkeypatch):
    module = importlib.import_module(load("online-dpo").run.__module__)
    _no_pairs_on_call(module, 2, monkeypatch)
    with pytest.raises(UserError, match="round 1: every prompt's 2 samples got the same score"):
        run("online-dpo", tmp_path)
