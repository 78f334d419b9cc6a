"""The Trainer a recipe drives: plain loops equal the single-phase recipe (train_loop) bit for bit,
callbacks see every micro-batch and step, loops that miscount their steps fail loudly, and a plain
loop that skips ``start_step`` steps resumes exactly."""

from pathlib import Path

import pytest
import torch

from posttrain.data import batch_indices
from posttrain.interface import RunContext
from posttrain.training.trainer import LoopSettings, Trainer, TrainerCallback, observe, train_loop

DATA = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
TARGET = DATA.sum(-1, keepdim=True)


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def settings(**values) -> LoopSettings:
    base = {"max_steps": 12, "learning_rate": 0.05, "warmup_steps": 2, "grad_accum": 2, "save_every": 4, "log_every": 3}
    return LoopSettings(**{**base, **values})


def batch_loss(model, step: int, micro: int) -> torch.Tensor:
    idx = batch_indices(64, 8, step * 2 + micro, seed=0)
    return torch.nn.functional.mse_loss(model(DATA[idx]), TARGET[idx])


def rounds_loop(model, out: Path, resume: bool = False, crash_at: int | None = None) -> Trainer:
    """A two-phase recipe as plain loops: 4 rounds x 3 optimizer steps x 2 micro-batches."""
    with Trainer(model, RunContext(output_dir=out, resume=resume), settings()) as trainer:
        step = 0
        for _round in range(4):
            for _ in range(3):
                if step >= trainer.start_step:
                    if step == crash_at:
                        raise RuntimeError("simulated crash")
                    for micro in range(2):
                        with trainer.micro_batch():
                            trainer.step(batch_loss(model, step, micro), {"tokens": 8})
                step += 1
    return trainer


def test_plain_loops_equal_the_single_phase_recipe(tmp_path):
    by_recipe = tiny_model()
    train_loop(
        by_recipe, RunContext(output_dir=tmp_path / "a"), settings(), lambda s, m: (batch_loss(by_recipe, s, m), {})
    )
    by_loops = tiny_model()
    trainer = rounds_loop(by_loops, tmp_path / "b")
    assert trainer.result.step == 12 and trainer.done == 12
    for p, q in zip(by_recipe.parameters(), by_loops.parameters(), strict=True):
        assert torch.equal(p, q)


class Counter(TrainerCallback):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_start(self, trainer) -> None:
        self.calls.append(f"start {trainer.start_step}")

    def on_micro_batch(self, trainer, loss, metrics) -> None:
        self.calls.append("micro")

    def on_step(self, trainer, step, metrics) -> None:
        self.calls.append(f"step {step}")

    def on_end(self, trainer) -> None:
        self.calls.append("end")


def test_observers_see_every_micro_batch_and_step(tmp_path):
    counter = Counter()
    with observe(counter):
        rounds_loop(tiny_model(), tmp_path)
    assert counter.calls[0] == "start 0" and counter.calls[-1] == "end"
    assert counter.calls.count("micro") == 24
    assert [c for c in counter.calls if c.startswith("step")] == [f"step {i}" for i in range(1, 13)]
    rounds_loop(tiny_model(), tmp_path / "unobserved")  # observe() detached the counter
    assert counter.calls.count("micro") == 24


def test_a_loop_short_of_max_steps_fails(tmp_path):
    model = tiny_model()
    with pytest.raises(RuntimeError, match="ran 1 of 12"):
        with Trainer(model, RunContext(output_dir=tmp_path), settings(grad_accum=1)) as trainer:
            trainer.step(batch_loss(model, 0, 0))


def test_a_step_past_max_steps_fails(tmp_path):
    model = tiny_model()
    with pytest.raises(RuntimeError, match="after the last of 1"):
        with Trainer(model, RunContext(output_dir=tmp_path), settings(max_steps=1, grad_accum=1)) as trainer:
            trainer.step(batch_loss(model, 0, 0))
            trainer.step(batch_loss(model, 1, 0))


def test_a_plain_loop_resumes_bit_identical(tmp_path):
    straight = tiny_model()
    rounds_loop(straight, tmp_path / "a")
    crashed = tiny_model()
    with pytest.raises(RuntimeError, match="simulated crash"):
        rounds_loop(crashed, tmp_path / "b", crash_at=10)
    resumed = tiny_model()
    trainer = rounds_loop(resumed, tmp_path / "b", resume=True)
    assert trainer.start_step == 8 and trainer.result.resumed_from == 8
    for p, q in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)
