"""The shared training loop: AdamW, warmup + schedule, gradient accumulation, clipping, bf16
autocast on CUDA, a rich progress bar, metrics, atomic checkpoints and --resume.

The loop knows nothing about the method: the plugin passes ``loss_fn(step, micro_step)`` that
builds its batch and returns ``(loss, metrics)``. Batches must be a pure function of the step
(see ``posttrain.data.batch_indices``) so a resumed run repeats the uninterrupted one exactly.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from posttrain.console import announce, warn
from posttrain.errors import UserError
from posttrain.files import file_sha256
from posttrain.interface import RunContext
from posttrain.logit_chunks import set_logit_chunk_size

LossFn = Callable[[int, int], tuple[torch.Tensor, dict[str, Any]]]


@dataclass
class LoopSettings:
    max_steps: int
    learning_rate: float
    warmup_steps: int = 0
    schedule: str = "cosine"  # cosine | linear | constant
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_accum: int = 1
    max_grad_norm: float | None = 1.0
    log_every: int = 10
    save_every: int = 100
    keep_checkpoints: int = 2
    parallel: str = "auto"  # auto | none | ddp | fsdp (see posttrain.distributed)


@dataclass
class LoopResult:
    step: int
    seconds: float
    last: dict[str, Any] = field(default_factory=dict)
    resumed_from: int | None = None


# Consecutive steps with an exactly zero gradient before the loop warns, and (when no step has had a
# gradient yet) stops: a run with nothing to learn from (no loss tokens, no reward variance) must
# not go on reporting loss 0.
NO_SIGNAL_WARN_STEPS = 5
NO_SIGNAL_STOP_STEPS = 20


@dataclass
class SignalWatch:
    """Counts the steps in a row whose gradient norm is exactly 0. From the first step on, that is a
    run with nothing to learn from: a warning, then a UserError. After steps with a gradient, it is a
    loss that saturated (a hinge met its margin) or rewards that stopped varying: a warning only."""

    warn_after: int = NO_SIGNAL_WARN_STEPS
    stop_after: int = NO_SIGNAL_STOP_STEPS
    zero_steps: int = 0
    had_signal: bool = False

    def update(self, step: int, grad_norm: float, metrics: dict[str, Any], main: bool = True) -> None:
        if grad_norm != 0.0:
            self.zero_steps, self.had_signal = 0, True
            return
        self.zero_steps += 1
        if self.zero_steps == self.warn_after and main:
            then = (
                "the weights no longer change (a saturated loss?)"
                if self.had_signal
                else f"the run stops if this lasts {self.stop_after} steps"
            )
            warn(
                f"the gradient has been exactly zero for {self.zero_steps} steps in a row (up to step {step}): "
                f"{no_signal_cause(metrics)}; {then}"
            )
        if self.zero_steps >= self.stop_after and not self.had_signal:
            raise UserError(
                f"stopped at step {step}: the gradient was exactly zero at every step so far, nothing to learn "
                f"from: {no_signal_cause(metrics)}"
            )


def no_signal_cause(metrics: dict[str, Any]) -> str:
    if metrics.get("reward_std") == 0.0:
        return (
            "no reward variance (every sample of each prompt got the same reward; check the reward function "
            "and that some answers can be right)"
        )
    return "no loss tokens (e.g. conversations with no assistant turn) or a loss that does not depend on the weights"


def lr_factor(step: int, settings: LoopSettings) -> float:
    """Multiplier of the peak learning rate at ``step`` (linear warmup, then the schedule)."""
    if settings.warmup_steps and step < settings.warmup_steps:
        return (step + 1) / settings.warmup_steps
    span = max(1, settings.max_steps - settings.warmup_steps)
    progress = min(1.0, (step - settings.warmup_steps) / span)
    if settings.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if settings.schedule == "linear":
        return 1.0 - progress
    return 1.0


# --- checkpoints --------------------------------------------------------------------------------


def _trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(
    ckpt_dir: Path,
    step: int,
    model,
    optimizer,
    scheduler,
    keep: int,
    *,
    model_state: dict | None = None,
    optimizer_state: dict | None = None,
) -> Path:
    """Write to a temporary folder, then rename: a checkpoint folder is complete or absent.

    ``model_state`` / ``optimizer_state`` replace the local state dicts (FSDP passes the gathered
    full ones). A failed write (disk full, permissions) removes the temporary folder and raises a
    UserError; the earlier checkpoints stay as they were.
    """
    final = ckpt_dir / f"step-{step:07d}"
    tmp = ckpt_dir / f".tmp-step-{step:07d}"
    state = {
        "step": step,
        "model": model_state if model_state is not None else _trainable_state(model),
        "optimizer": optimizer_state if optimizer_state is not None else optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        },
    }
    try:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        torch.save(state, tmp / "state.pt")
        (tmp / "manifest.json").write_text(json.dumps({"step": step, "sha256": file_sha256(tmp / "state.pt")}))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(
            f"could not write checkpoint {final}: {exc.strerror or exc}; earlier checkpoints are intact"
        ) from None
    for old in sorted(ckpt_dir.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(ckpt_dir: Path, warn: Callable[[str], None] = print) -> Path | None:
    """The newest checkpoint whose manifest and hash check out; corrupt ones are named and skipped."""
    for path in sorted(ckpt_dir.glob("step-*"), reverse=True):
        try:
            manifest = json.loads((path / "manifest.json").read_text())
            if file_sha256(path / "state.pt") == manifest["sha256"]:
                return path
            warn(f"checkpoint {path} is corrupt (hash mismatch); not loading it")
        except (OSError, ValueError, KeyError):
            warn(f"checkpoint {path} is incomplete or unreadable; not loading it")
    return None


def load_checkpoint(path: Path, model, optimizer, scheduler, fsdp: bool = False) -> int:
    """Restore model, optimizer, scheduler and RNG. ``weights_only``: a checkpoint cannot run code."""
    try:
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling raises many types; the checkpoint was hash-checked already
        raise UserError(f"checkpoint {path} could not be read ({type(exc).__name__}); not loading it") from None
    missing = set(state["model"]) - {n for n, _ in model.named_parameters()}
    if missing:
        raise UserError(f"checkpoint {path} does not match this model (unknown parameters, e.g. {sorted(missing)[0]})")
    if fsdp:
        from posttrain.distributed import load_full_state

        load_full_state(model, optimizer, state["model"], state["optimizer"])
    else:
        model.load_state_dict(state["model"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    if state["rng"].get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return int(state["step"])


# --- the Trainer ---------------------------------------------------------------------------------


class _StopRequest:
    """SIGINT/SIGTERM set a flag; the Trainer saves a checkpoint at the end of the step and stops."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        with contextlib.suppress(ValueError):  # not in the main thread: no handlers
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signal = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class TrainerCallback:
    """Observes a run without changing it; every method is optional. Tests use these instead of
    replacing the loop: ``on_micro_batch`` sees each micro-batch's loss before its backward pass."""

    def on_start(self, trainer: Trainer) -> None: ...
    def on_micro_batch(self, trainer: Trainer, loss: torch.Tensor, metrics: dict[str, Any]) -> None: ...
    def on_optimizer_step(self, trainer: Trainer, step: int) -> None: ...  # after AdamW, gradients still there
    def on_step(self, trainer: Trainer, step: int, metrics: dict[str, Any]) -> None: ...
    def on_end(self, trainer: Trainer) -> None: ...


_OBSERVERS: list[TrainerCallback] = []


@contextlib.contextmanager
def observe(*callbacks: TrainerCallback):
    """Attach ``callbacks`` to every Trainer made inside the block (how tests watch a plugin's run)."""
    _OBSERVERS.extend(callbacks)
    try:
        yield
    finally:
        for callback in callbacks:
            _OBSERVERS.remove(callback)


class Trainer:
    """The optimiser side of a run; the recipe keeps the loop. Use it as a context manager:

        with Trainer(model, ctx, settings, "dpo on pairs.jsonl") as trainer:
            for step in trainer.steps():                   # or any plain loops of the recipe's own
                for micro in range(settings.grad_accum):
                    with trainer.micro_batch():
                        loss, metrics = compute_loss(...)
                        trainer.step(loss, metrics)        # backward; the optimizer steps every grad_accum calls

    ``step`` does accumulation, the NaN guard, clipping, AdamW and the schedule, logging (metrics
    averaged over micro-batches, then over ranks), periodic atomic checkpoints, and a checkpoint then
    a clean stop on SIGINT/SIGTERM. Entering resumes from the newest valid checkpoint under
    ``--resume`` (``start_step`` says where); leaving after ``max_steps`` optimizer steps writes the
    final checkpoint. A recipe with its own loops skips the first ``start_step`` optimizer steps, so a
    resumed run repeats the uninterrupted one exactly when its batches depend only on the step.
    """

    def __init__(
        self, model, ctx: RunContext, settings: LoopSettings, description: str = "training", callbacks=()
    ) -> None:
        self.model, self.ctx, self.settings, self.description = model, ctx, settings, description
        self.callbacks = [*callbacks, *_OBSERVERS]
        self.ckpt_dir = ctx.output_dir / "checkpoints"
        self.start_step = 0
        self.done = 0  # optimizer steps completed, the resumed ones included
        self.last: dict[str, Any] = {}
        self.result: LoopResult | None = None
        self._resumed_from: int | None = None
        self._micro = 0
        self._loss_total = 0.0
        self._metrics: dict[str, Any] = {}
        self._window_tokens, self._window_t = 0, 0.0
        self._watch = SignalWatch()
        self._stop: _StopRequest | None = None

    # -- entering and leaving --

    def __enter__(self) -> Trainer:
        from posttrain import distributed

        mode = distributed.resolve_parallel(self.settings.parallel)
        if not any(p.requires_grad for p in self.model.parameters()):
            raise UserError("the model has no trainable parameters")
        if self.ctx.logit_chunk_size:  # models a plugin loads itself too
            set_logit_chunk_size(self.model, self.ctx.logit_chunk_size)
        if distributed.is_main():
            check_disk(self.ckpt_dir, self.model, self.settings.keep_checkpoints)
        self.wrapped = distributed.wrap(self.model, mode, self.ctx.device)
        self.mode = self.wrapped.mode
        announce(
            f"{self.description}: {self.settings.max_steps} steps at learning rate {self.settings.learning_rate:g}"
        )
        try:
            self._prepare()
        except BaseException:
            if self._stop is not None:
                self._stop.__exit__()
            self.wrapped.unwrap()
            raise
        return self

    def _prepare(self) -> None:
        from posttrain import distributed

        settings = self.settings
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.params, lr=settings.learning_rate, betas=settings.betas, weight_decay=settings.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, settings))
        if self.ctx.resume:
            found = latest_checkpoint(self.ckpt_dir, warn=print if distributed.is_main() else lambda _: None)
            if found is None:
                raise UserError(f"--resume: no valid checkpoint in {self.ckpt_dir}")
            self.start_step = self._resumed_from = load_checkpoint(
                found, self.model, self.optimizer, self.scheduler, fsdp=self.mode == "fsdp"
            )
        self.done = self.start_step
        on_cuda = self.ctx.device.startswith("cuda")
        self._autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if on_cuda else contextlib.nullcontext
        self._no_autocast = (lambda: torch.autocast("cuda", enabled=False)) if on_cuda else contextlib.nullcontext
        self.model.train()
        self._t0 = self._window_t = time.perf_counter()
        remaining = range(self.start_step, settings.max_steps)
        ticks = (
            self.ctx.progress(remaining, total=len(remaining), description=self.description)
            if self.ctx.progress
            else remaining
        )
        self._ticks = iter(ticks)
        next(self._ticks, None)  # a progress bar advances when asked for its next item
        self._stop = _StopRequest().__enter__()
        for callback in self.callbacks:
            callback.on_start(self)

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            assert self._stop is not None
            self._stop.__exit__()
            if exc_type is None:
                self._conclude()
            elif self.mode == "ddp" and exc_type is RuntimeError and "finished reduction" in str(exc):
                raise UserError(
                    "parallel=ddp: some trainable parameters received no gradient in a step; make every trainable "
                    "parameter part of the loss or use parallel=fsdp"
                ) from None
        finally:
            self.wrapped.unwrap()
        return False

    def _conclude(self) -> None:
        if self.done != self.settings.max_steps:  # a recipe's loops must add up to max_steps
            raise RuntimeError(f"the recipe ran {self.done} of {self.settings.max_steps} optimizer steps")
        self._checkpoint(self.settings.max_steps)
        self.model.eval()
        seconds = time.perf_counter() - self._t0
        self.result = LoopResult(self.settings.max_steps, seconds, self.last, self._resumed_from)
        for callback in self.callbacks:
            callback.on_end(self)

    # -- the recipe's calls --

    def steps(self) -> range:
        """The optimizer steps still to run (all of them, or those after the resumed checkpoint)."""
        return range(self.start_step, self.settings.max_steps)

    @contextlib.contextmanager
    def micro_batch(self):
        """Around one micro-batch's forward and ``step``: bf16 autocast on CUDA, and no gradient
        all-reduce (DDP) until the last micro-batch of the optimizer step."""
        with self.wrapped.no_sync(self._micro < self.settings.grad_accum - 1), self._autocast():
            yield

    def step(self, loss: torch.Tensor, metrics: dict[str, Any] | None = None) -> bool:
        """Backward one micro-batch's loss; after ``grad_accum`` of them, one optimizer step.
        Returns whether the optimizer stepped. ``metrics["tokens"]`` feeds tokens_per_second."""
        from posttrain import distributed

        if self.done >= self.settings.max_steps:
            raise RuntimeError(f"step() called after the last of {self.settings.max_steps} optimizer steps")
        metrics = dict(metrics or {})
        for callback in self.callbacks:
            callback.on_micro_batch(self, loss, metrics)
        bad = not torch.isfinite(loss)
        if distributed.any_rank(bad) if self.mode != "none" else bad:
            good = latest_checkpoint(self.ckpt_dir, warn=lambda _: None)
            raise UserError(
                f"loss is {loss.item()} at step {self.done + 1}; stopped. Last good checkpoint: {good or 'none'} "
                "(lower the learning rate or check the data)"
            )
        accum = self.settings.grad_accum
        with self._no_autocast():
            (loss / accum).backward()
        self._loss_total += loss.item() / accum
        self._window_tokens += int(metrics.pop("tokens", 0))
        for k, v in metrics.items():
            self._metrics[k] = self._metrics.get(k, 0.0) + float(v) / accum
        self._micro += 1
        if self._micro < accum:
            return False
        self._optimizer_step()
        return True

    # -- one optimizer step --

    def _optimizer_step(self) -> None:
        from posttrain import distributed

        settings = self.settings
        norm = torch.nn.utils.clip_grad_norm_(self.params, settings.max_grad_norm or float("inf"))
        self._watch.update(self.done + 1, _norm_value(norm), self._metrics, main=distributed.is_main())
        self.optimizer.step()
        for callback in self.callbacks:
            callback.on_optimizer_step(self, self.done)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.done += 1
        done, total, metrics = self.done, self._loss_total, self._metrics
        self._micro, self._loss_total, self._metrics = 0, 0.0, {}
        if done % settings.log_every == 0 or done == settings.max_steps:
            self._log(done, total, metrics, norm)
        for callback in self.callbacks:
            callback.on_step(self, done, metrics)
        if settings.save_every and done % settings.save_every == 0 and done < settings.max_steps:
            self._checkpoint(done)
        signum = self._stop.signal if self._stop is not None else None
        if distributed.any_rank(signum is not None) if self.mode != "none" else signum is not None:
            path = self._checkpoint(done)
            raise UserError(
                f"stopped by signal {signum or 'on another rank'} after step {done}; checkpoint {path}; "
                "continue with --resume"
            )
        next(self._ticks, None)

    def _log(self, done: int, total: float, metrics: dict[str, Any], norm) -> None:
        from posttrain import distributed

        elapsed = time.perf_counter() - self._window_t
        if hasattr(norm, "full_tensor"):  # FSDP: a DTensor
            norm = norm.full_tensor()
        last = {"loss": total, **metrics, "grad_norm": float(norm), "learning_rate": self.scheduler.get_last_lr()[0]}
        if self.mode != "none":
            last.update(distributed.mean_over_ranks({"loss": total, **metrics}))
            self._window_tokens = int(distributed.sum_over_ranks(self._window_tokens))
            total = last["loss"]
        if self._window_tokens:
            last["tokens_per_second"] = self._window_tokens / max(elapsed, 1e-9)
        self.ctx.log(done, last)
        if self.ctx.progress is not None:
            self.ctx.progress.info = f"loss {total:.4f}"  # type: ignore[attr-defined]
        self.last = last
        self._window_tokens, self._window_t = 0, time.perf_counter()

    def _checkpoint(self, step: int) -> Path:
        return _save(
            self.ckpt_dir, step, self.model, self.optimizer, self.scheduler, self.settings.keep_checkpoints, self.mode
        )


def train_loop(
    model, ctx: RunContext, settings: LoopSettings, loss_fn: LossFn, description: str = "training", callbacks=()
) -> LoopResult:
    """The recipe of single-phase methods, whose batch is a pure function of (step, micro-batch)."""
    with Trainer(model, ctx, settings, description, callbacks) as trainer:
        for step in trainer.steps():
            for micro in range(settings.grad_accum):
                with trainer.micro_batch():
                    loss, metrics = loss_fn(step, micro)
                    trainer.step(loss, metrics)
    assert trainer.result is not None
    return trainer.result


def _norm_value(norm) -> float:
    if hasattr(norm, "full_tensor"):  # FSDP: a DTensor
        norm = norm.full_tensor()
    return float(norm)


def _save(ckpt_dir: Path, step: int, model, optimizer, scheduler, keep: int, mode: str) -> Path:
    """One process writes: the single process, or rank 0 after gathering (FSDP); then all ranks meet."""
    from posttrain import distributed

    if mode == "none":
        return save_checkpoint(ckpt_dir, step, model, optimizer, scheduler, keep)
    states = distributed.full_states(model, optimizer) if mode == "fsdp" else {}
    if distributed.is_main():
        save_checkpoint(ckpt_dir, step, model, optimizer, scheduler, keep, **states)
    distributed.barrier()
    return ckpt_dir / f"step-{step:07d}"


# --- before training: can the run folder take the checkpoints? ---------------------------------


def checkpoint_bytes(model) -> int:
    """Estimated size of one checkpoint: trainable weights and AdamW's two moments, in float32."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable * 4 * 3


def model_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def check_disk(ckpt_dir: Path, model, keep: int) -> None:
    """A clear error before the first step when the run folder is unwritable or too small.

    Needed: ``keep`` checkpoints plus the one being written, plus the saved model, plus 10% margin.
    """
    try:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        probe = ckpt_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"output directory {ckpt_dir.parent}: not writable ({exc.strerror or exc})") from None
    need = int(((keep + 1) * checkpoint_bytes(model) + model_bytes(model)) * 1.1)
    free = shutil.disk_usage(ckpt_dir).free
    if free < need:
        raise UserError(
            f"output directory {ckpt_dir.parent}: {free / 1e6:.1f} MB free, but checkpoints and the model need "
            f"about {need / 1e6:.1f} MB ({keep + 1} checkpoints of {checkpoint_bytes(model) / 1e6:.1f} MB "
            f"+ the model {model_bytes(model) / 1e6:.1f} MB); free space or pass another --output-dir"
        )


def loop_settings(cfg) -> LoopSettings:
    """LoopSettings from a plugin's TrainingConfig."""
    return LoopSettings(
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_steps,
        schedule=cfg.schedule,
        weight_decay=cfg.weight_decay,
        grad_accum=cfg.grad_accum,
        max_grad_norm=cfg.max_grad_norm,
        log_every=cfg.log_every,
        save_every=cfg.save_every,
        parallel=getattr(cfg, "parallel", "auto"),
    )


def finish(ctx: RunContext, model, tokenizer, loop: LoopResult, before: dict, after: dict, **extra: Any):
    """Log the held-out metrics, save the model (save_pretrained) and build the RunResult."""
    from posttrain import distributed
    from posttrain.hf import save_model
    from posttrain.interface import RunResult

    ctx.log(loop.step, {f"eval/{k}": v for k, v in after.items() if v is not None})
    path = ctx.output_dir / "model"
    if distributed.is_fsdp(model):
        distributed.save_sharded_model(model, tokenizer, path)
    elif distributed.is_main():
        save_model(model, tokenizer, path)
    distributed.barrier()
    metrics = {"before": before, "after": after, "train_seconds": round(loop.seconds, 2), "steps": loop.step, **extra}
    return RunResult(metrics=metrics, artifacts={"model": str(path)})
