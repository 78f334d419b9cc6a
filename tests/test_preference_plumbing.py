"""The offline preference trainers on the embedded model, up to their first training step: RPO's
NLL term (dpo's default, optional in ipo / cdpo / rdpo / mdpo), the per-pair outcomes behind the
held-out ``preference_accuracy`` (paired statistics), and the frozen reference copy being freed
before training."""

from __future__ import annotations

import gc
import importlib
import json
import weakref
from pathlib import Path

import pytest
import torch

from posttrain import outcomes
from posttrain.interface import RunContext
from posttrain.registry import load
from posttrain.runs.runner import execute, prepare
from posttrain.training.trainer import TrainerCallback, observe


class Stop(Exception):
    """Raised by the observer once the test has what it needs."""


def plugin_module(name: str):
    return importlib.import_module(load(name).run.__module__)


class FirstMicroBatch(TrainerCallback):
    """Calls ``inspect(model, loss, metrics)`` on the first micro-batch, before its backward pass."""

    def __init__(self, inspect) -> None:
        self.inspect, self.out = inspect, None

    def on_micro_batch(self, trainer, loss, metrics) -> None:
        self.out = self.inspect(trainer.model, loss, metrics)
        raise Stop


def until_training(name: str, out: Path, inspect, **values):
    """Run plugin ``name`` with its smoke settings up to its first training step and return
    ``inspect(model, loss, metrics)`` of that step's first micro-batch."""
    observer = FirstMicroBatch(inspect)
    prepared = prepare(name, output_dir=out, smoke=True, device="cpu", extra=values)
    with observe(observer), pytest.raises(Stop):
        prepared.plugin.run(prepared.config, prepared.ctx)
    return observer.out


def first_step(model, loss, metrics):
    return loss.item(), metrics


# --- RPO's NLL term ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dpo", "ipo", "mdpo"])
def test_rpo_alpha_adds_exactly_alpha_times_the_chosen_nll(name, tmp_path):
    plain, plain_metrics = until_training(name, tmp_path / "a", first_step, rpo_alpha=0.0)
    rpo, metrics = until_training(name, tmp_path / "b", first_step, rpo_alpha=0.5)
    assert "nll_loss" not in plain_metrics and metrics["nll_loss"] > 0
    assert rpo == pytest.approx(plain + 0.5 * metrics["nll_loss"], rel=1e-5)


def test_dpo_defaults_to_rpo_and_the_pairwise_losses_to_their_papers():
    assert plugin_module("dpo").Config().rpo_alpha == 1.0
    for name in ("ipo", "cdpo", "rdpo", "mdpo"):
        assert plugin_module(name).Config().rpo_alpha == 0.0, name


# --- the frozen reference copy ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dpo", "ipo", "mdpo", "step-dpo", "kto"])
def test_frozen_reference_copy_is_freed_before_training(name, tmp_path, monkeypatch):
    """Every offline preference trainer computes its reference log-probs before training (kto's
    KL pairs too: the seed fixes each step's batch), so the frozen copy is gone while a training
    step runs and training holds one model. The next test shows that the check sees a live copy."""
    assert run_first_step_tracking_copies(name, tmp_path, monkeypatch) == [False]


def test_the_copy_check_sees_a_copy_that_is_kept(tmp_path, monkeypatch):
    """The check above, with kto's reference pass made to keep its copy: it reports it alive."""
    import posttrain.hf as hf

    kept = []
    original = hf.frozen_reference

    def keeping(policy):
        kept.append(original(policy))
        return kept[-1]

    monkeypatch.setattr(hf, "frozen_reference", keeping)
    monkeypatch.setattr(plugin_module("kto"), "frozen_reference", keeping)
    assert run_first_step_tracking_copies("kto", tmp_path, monkeypatch) == [True]


def run_first_step_tracking_copies(name: str, tmp_path, monkeypatch) -> list[bool]:
    """Run plugin ``name`` to its first training step, which runs (forward and backward), and
    return, for each frozen reference copy made, whether it is still alive during that step."""
    import posttrain.hf as hf

    copies = []
    original = hf.frozen_reference

    def tracked(policy):
        ref = original(policy)
        copies.append(weakref.ref(ref))
        return ref

    monkeypatch.setattr(hf, "frozen_reference", tracked)
    module = plugin_module(name)
    if hasattr(module, "frozen_reference"):
        monkeypatch.setattr(module, "frozen_reference", tracked)

    def alive_during_a_step(model, loss, metrics):
        loss.backward()
        gc.collect()
        return [c() is not None for c in copies]

    return until_training(name, tmp_path, alive_during_a_step)


# --- per-pair outcomes of preference_accuracy -----------------------------------------------------


@pytest.fixture(scope="module")
def embedded():
    from posttrain.hf import load_policy

    ctx = RunContext(output_dir=Path("."), device="cpu")
    policy, tokenizer = load_policy(ctx)
    return ctx, policy, tokenizer


def offsets(n: int) -> torch.Tensor:
    """Random reference offsets, zero for every third pair (exact ties: both rewards 0)."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, generator=g) * (torch.arange(n) % 3 != 0)


def recorded(log: outcomes.OutcomeLog) -> outcomes.Evaluation:
    (evaluation,) = [e for e in log.evaluations if e.metric == "preference_accuracy"]
    assert evaluation.kind == outcomes.SCORE
    assert {0.0, 0.5, 1.0} == set(evaluation.values)  # chosen higher, tie, rejected higher all occur
    return evaluation


def test_dpo_evaluation_records_one_outcome_per_heldout_pair(embedded):
    from posttrain.training.preference import PairLogps, dataset_logps, evaluate_pairs, implicit_rewards, load_pairs

    ctx, policy, tokenizer = embedded
    dpo = plugin_module("dpo")
    cfg = dpo.Config(**{**load("dpo").smoke, "eval_examples": 24})
    data = load_pairs(ctx, cfg, tokenizer)
    own = dataset_logps(policy, data.heldout, data.pad_id, "cpu")
    shift = offsets(len(data.heldout))
    ref = PairLogps(own.chosen + shift, own.rejected - shift, own.chosen_tokens, own.rejected_tokens)
    with outcomes.recording() as log:  # dpo's held-out evaluation: train_with_reference's
        metrics = evaluate_pairs(policy, tokenizer, data, implicit_rewards(cfg.beta), ref, cfg)
    evaluation = recorded(log)
    assert evaluation.problems == tuple(r["prompt"] for r in data.heldout_records)
    assert evaluation.mean == pytest.approx(metrics["preference_accuracy"], abs=1e-6)


def test_kto_evaluation_records_one_outcome_per_heldout_pair(embedded):
    ctx, policy, tokenizer = embedded
    kto = plugin_module("kto")
    cfg = kto.Config(**{**load("kto").smoke, "eval_examples": 24})
    _, held_records, pairs, _ = kto.kto_records(ctx, cfg)
    held = [kto.tokenize_prompt_completion(r, tokenizer, cfg.max_length) for r in held_records]
    labels = torch.tensor([r["label"] for r in held_records])
    own = kto.all_logps(policy, held, tokenizer.pad_token_id, "cpu")
    shift = offsets(len(pairs)).repeat_interleave(2) * torch.where(labels, 1.0, -1.0)
    with outcomes.recording() as log:
        metrics = kto.evaluate(policy, tokenizer, held, held_records, labels, own + shift, pairs, cfg, True)
    evaluation = recorded(log)
    assert evaluation.problems == tuple(r["prompt"] for r in pairs)
    assert evaluation.mean == pytest.approx(metrics["preference_accuracy"], abs=1e-6)


def test_dpo_run_pairs_preference_accuracy_before_and_after(tmp_path):
    execute(prepare("dpo", output_dir=tmp_path, smoke=True, device="cpu"), progress=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {"preference_accuracy", "exact_match"} <= set(summary["paired"])
    rows = [json.loads(x) for x in (tmp_path / "outcomes.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["metric"] == "preference_accuracy"]
    assert len(rows) == load("dpo").smoke["eval_examples"]
    for when in ("before", "after"):
        mean = sum(r[when] for r in rows) / len(rows)
        assert mean == pytest.approx(summary[when]["preference_accuracy"], abs=1e-6)
