"""Multi-process training on torch.distributed: DDP or FSDP2, launched by ``torchrun``.

    torchrun --nproc_per_node 2 -m posttrain run sft --set parallel=ddp      # or parallel=fsdp

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR; ``setup`` turns them into a process
group (gloo on CPU, nccl on CUDA) and a per-rank device. With one process nothing here is active
and training is bit-identical to a run without torchrun.

How a plugin is distributed without changing it:
- data: ``posttrain.data.batch_indices`` returns this rank's share of the global batch, so
  ``batch_size`` is the global batch (split evenly over the ranks);
- model: ``train.train_loop`` wraps the plugin's model for the loop only. DDP: the model's own
  ``forward`` is routed through the DDP wrapper (the plugin keeps calling the object it holds),
  and restored after the loop, so evaluation and generation use the plain module. FSDP2:
  ``fully_shard`` on each transformer block and the root, in place;
- metrics are averaged over ranks; only rank 0 writes files (metrics, checkpoints, summary, model).

Only ``rank_and_world`` is torch-free (``posttrain.data`` calls it); the rest imports torch lazily.
"""

from __future__ import annotations

import functools
import os
import sys
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from typing import Any

from posttrain.errors import UserError

TEARDOWN_BARRIER_S = 30  # how long a rank waits at exit for its peers' last collectives

PARALLEL_MODES = ("auto", "none", "ddp", "fsdp")


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of an initialised process group, else (0, 1). Never imports torch."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def is_distributed() -> bool:
    return rank_and_world()[1] > 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one process that writes files."""
    return rank_and_world()[0] == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str) -> str:
    """Initialise the process group from torchrun's environment; return this rank's device.

    Without torchrun (WORLD_SIZE unset or 1) this does nothing and returns ``device``.
    """
    if not launched_by_torchrun():
        return device
    import torch
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        if local_rank >= torch.cuda.device_count():
            raise UserError(
                f"torchrun: LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s) here "
                "(lower --nproc_per_node)"
            )
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        try:
            dist.init_process_group(backend=backend)
        except (RuntimeError, ValueError) as exc:
            raise UserError(
                f"torchrun: could not join the process group ({backend}): {str(exc).splitlines()[0]}"
            ) from None
        import atexit

        atexit.register(teardown)
    return device


def teardown() -> None:
    """Leave the process group at exit, on success and on failure alike.

    With gloo, a rank that destroys its group while a collective is still in flight (a DDP
    gradient all-reduce when a NaN stopped the step, or the peer's last message) can abort the
    process at exit ("terminate called without an active exception", SIGABRT): about 1 run in 8
    of a stopped 2-rank run on CPU. A barrier first waits for every rank's pending work; it is
    bounded, so a rank whose peer has died still exits.
    """
    import torch.distributed as dist

    if not dist.is_initialized():
        return
    if dist.get_backend() == "gloo":
        try:
            dist.monitored_barrier(timeout=timedelta(seconds=TEARDOWN_BARRIER_S))
        except RuntimeError:
            pass  # a peer has gone: nothing is left to wait for
    dist.destroy_process_group()


def same_on_all_ranks(value: Any) -> Any:
    """Rank 0's value everywhere (e.g. a timestamped run folder that could differ by a second)."""
    if not is_distributed():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if is_distributed():
        import torch.distributed as dist

        dist.barrier()


def resolve_parallel(parallel: str) -> str:
    """The mode to use in this process: none, ddp or fsdp."""
    if parallel not in PARALLEL_MODES:
        raise UserError(f"--set parallel={parallel}: expected one of {', '.join(PARALLEL_MODES)}")
    world = rank_and_world()[1]
    if world == 1:
        return "none"
    if parallel == "none":
        raise UserError(
            f"--set parallel=none under torchrun with {world} processes would train {world} separate copies; "
            "use parallel=ddp or parallel=fsdp (or run without torchrun)"
        )
    return "ddp" if parallel == "auto" else parallel


def check_divisible(batch_size: int, what: str = "batch_size") -> None:
    world = rank_and_world()[1]
    if batch_size % world:
        raise UserError(
            f"--set {what}={batch_size}: the global batch must split evenly over {world} ranks "
            f"(use a multiple of {world})"
        )


def shard(indices: list[int]) -> list[int]:
    """This rank's contiguous share of a global batch (the whole batch in a single process)."""
    rank, world = rank_and_world()
    if world == 1:
        return indices
    check_divisible(len(indices))
    per = len(indices) // world
    return indices[rank * per : (rank + 1) * per]


# --- reductions ---------------------------------------------------------------------------------


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Average each metric over the ranks (keys sorted so every rank sends the same vector)."""
    if not is_distributed() or not values:
        return values
    import torch
    import torch.distributed as dist

    keys = sorted(values)
    vec = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(vec, op=dist.ReduceOp.SUM)
    vec /= dist.get_world_size()
    return dict(zip(keys, vec.tolist(), strict=True))


def sum_over_ranks(value: float) -> float:
    if not is_distributed():
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([float(value)], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item())


def any_rank(flag: bool) -> bool:
    """True when the flag is set on at least one rank (all ranks take the same branch after)."""
    if not is_distributed():
        return flag
    return sum_over_ranks(1.0 if flag else 0.0) > 0


def _comm_device() -> str:
    import torch.distributed as dist

    return f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if dist.get_backend() == "nccl" else "cpu"


# --- wrapping the model for the training loop ---------------------------------------------------


class Wrapped:
    """The model as the training loop sees it: how to skip gradient sync, and how to undo the wrap."""

    def __init__(self, model, mode: str, ddp: Any = None, restore: Any = None):
        self.model = model
        self.mode = mode
        self.ddp = ddp
        self._restore = restore

    def no_sync(self, skip: bool):
        """Skip the gradient all-reduce on accumulation micro-steps (DDP); a no-op otherwise."""
        if skip and self.ddp is not None:
            return self.ddp.no_sync()
        if skip and self.mode == "fsdp":
            return _fsdp_no_sync(self.model)
        return nullcontext()

    def unwrap(self) -> None:
        if self._restore is not None:
            self._restore()
            self._restore = None


@contextmanager
def _fsdp_no_sync(model):
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def wrap(model, mode: str, device: str) -> Wrapped:
    if mode == "ddp":
        return _wrap_ddp(model, device)
    if mode == "fsdp":
        return _wrap_fsdp(model, device)
    return Wrapped(model, "none")


def _wrap_ddp(model, device: str) -> Wrapped:
    """DDP around the plugin's model, entered through the model's own ``forward``.

    Plugins call the object they hold (``model(...)``) inside ``loss_fn``; routing that object's
    forward through the DDP wrapper gives DDP's gradient hooks, bucketing and no_sync without a
    plugin change. DDP calls the module again, so a re-entrancy flag sends that inner call to the
    original forward. Buffers are not re-broadcast each step (rotary tables are equal everywhere).
    """
    from torch.nn.parallel import DistributedDataParallel

    ids = [int(device.split(":")[1])] if device.startswith("cuda:") else None
    ddp = DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)
    had_own = "forward" in vars(model)
    original = model.forward
    inside = [False]

    @functools.wraps(original)  # generate() inspects forward's signature
    def forward(*args, **kwargs):
        if inside[0]:
            return original(*args, **kwargs)
        inside[0] = True
        try:
            return ddp(*args, **kwargs)
        finally:
            inside[0] = False

    model.forward = forward

    def restore() -> None:
        if had_own:
            model.forward = original
        else:
            del model.forward

    return Wrapped(model, "ddp", ddp=ddp, restore=restore)


def _wrap_fsdp(model, device: str) -> Wrapped:
    """FSDP2: shard each transformer block (the model's ``_no_split_modules``) and then the root."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cuda" if device.startswith("cuda") else "cpu", (rank_and_world()[1],))
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    block_names = set(getattr(base, "_no_split_modules", None) or [])
    blocks = [m for m in model.modules() if type(m).__name__ in block_names and m is not model]
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return Wrapped(model, "fsdp")


# --- full (unsharded) state for checkpoints and saving (FSDP) -----------------------------------


def _full_options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True, **kw)


def full_states(model, optimizer) -> dict:
    """Gathered trainable weights and optimizer state (a collective; full on rank 0, empty elsewhere).

    The keys are parameter names, so the checkpoint does not depend on the number of ranks.
    """
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    weights = get_model_state_dict(model, options=_full_options())
    return {
        "model_state": {k: v for k, v in weights.items() if k in trainable},
        "optimizer_state": get_optimizer_state_dict(model, optimizer, options=_full_options()),
    }


def load_full_state(model, optimizer, weights: dict, optim_state: dict) -> None:
    """Every rank read the same checkpoint file; each keeps its own shard."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    set_model_state_dict(model, weights, options=_full_options(strict=False))
    set_optimizer_state_dict(model, optimizer, optim_state, options=_full_options())


def save_sharded_model(model, tokenizer, path) -> None:
    """save_pretrained of an FSDP model: gather the full weights, rank 0 writes (via a temp folder)."""
    import shutil

    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    weights = get_model_state_dict(model, options=_full_options())
    if is_main():
        tmp = path.with_name(f".tmp-{path.name}")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, state_dict=weights)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)


def is_fsdp(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def full_model_state(model, trainable_only: bool = True) -> dict:
    """Full CPU copies of the (trainable) weights; gathers DTensor shards (a collective under FSDP)."""
    state = {}
    for name, p in model.named_parameters():
        if trainable_only and not p.requires_grad:
            continue
        t = p.detach()
        if hasattr(t, "full_tensor"):
            t = t.full_tensor()
        state[name] = t.cpu().clone()
    return state
