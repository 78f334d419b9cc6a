"""A tiny regression trained through posttrain.training.trainer.train_loop, for the distributed tests.

    torchrun --nproc_per_node 2 tests/helpers/tiny_distributed.py OUT_DIR [ddp|fsdp] [--resume] [--nan-at N] [--sleep S]

The global batch (16) is split over the ranks by posttrain.data.batch_indices; rank 0 writes
metrics.jsonl, checkpoints and weights.pt (the final full weights).
"""

import sys
import time
from pathlib import Path

import torch

from posttrain import distributed
from posttrain.data import batch_indices
from posttrain.interface import RunContext
from posttrain.runs.runner import _resume_step
from posttrain.runs.tracking import MetricsLogger
from posttrain.training.trainer import LoopSettings, train_loop


def main() -> None:
    argv = sys.argv
    train(
        Path(argv[1]),
        mode=argv[2] if len(argv) > 2 and not argv[2].startswith("--") else "auto",
        resume="--resume" in argv,
        nan_at=int(argv[argv.index("--nan-at") + 1]) if "--nan-at" in argv else None,
        sleep=float(argv[argv.index("--sleep") + 1]) if "--sleep" in argv else 0.0,
    )


def train(out: Path, mode: str = "auto", resume: bool = False, nan_at: int | None = None, sleep: float = 0.0):
    """Train; returns the final full weights (also written to OUT/weights.pt by rank 0)."""
    device = distributed.setup("cpu")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    data = torch.randn(256, 6, generator=torch.Generator().manual_seed(1))
    target = (data[:, :3].sum(-1, keepdim=True) - data[:, 3:].prod(-1, keepdim=True)).tanh()

    def loss_fn(step, micro):
        time.sleep(sleep)
        idx = batch_indices(256, 16, step * 2 + micro, seed=0)
        loss = torch.nn.functional.mse_loss(model(data[idx]), target[idx])
        if nan_at is not None and step + 1 == nan_at and distributed.rank_and_world()[0] == 0:
            loss = loss * float("nan")  # one rank only: every rank must still stop
        return loss, {"tokens": len(idx)}

    ctx = RunContext(output_dir=out, device=device, resume=resume)
    if distributed.is_main():
        ctx.metrics = MetricsLogger(out, resume_step=_resume_step(out) if resume else None)
    settings = LoopSettings(
        max_steps=12, learning_rate=0.02, warmup_steps=2, grad_accum=2, save_every=4, log_every=1, parallel=mode
    )
    train_loop(model, ctx, settings, loss_fn)
    weights = distributed.full_model_state(model)
    if distributed.is_main():
        torch.save(weights, out / "weights.pt")
    return weights


if __name__ == "__main__":
    main()
