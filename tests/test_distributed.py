"""Distributed training on CPU with the gloo backend: 2 ranks give the 1-rank loss curve.

Default suite: the sharding rules, and a 2-process DDP run (torchrun) of a small regression
against the same run in one process. Slow (``python -m pytest -m slow tests/test_distributed.py``):
FSDP2, a NaN on one rank, and every registered trainer plugin (sft, lora, dpo, ...) under
``torchrun --nproc_per_node 2 -m posttrain run``, compared with a 1-process run of the same
global batch.
"""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from learning import ci_params

from posttrain import distributed
from posttrain.errors import UserError

HELPER = Path(__file__).parent / "helpers" / "tiny_distributed.py"
REPO = Path(__file__).resolve().parents[1]
LOSS_RTOL = 1e-5  # the regression: same global mean, only float summation order differs
TOKEN_MEAN_RTOL = 0.1  # plugins whose loss is a mean over the batch's tokens (see below)


# A rank can abort while gloo's threads shut down at process exit ("terminate called without an
# active exception", SIGABRT): seen in about 1 of 4 CI runs on a loaded 2-core machine, after
# training, in the fsdp and the resume test. That one signature is retried once, on the run
# folder as it was before the attempt (a resume needs its checkpoint back); any other failure fails.
TEARDOWN_ABORT = "terminate called without an active exception"


def _torchrun(*args: str, nproc: int = 2, check: bool = True, out: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "POSTTRAIN_BUILTIN_ONLY": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *args]
    before = _snapshot(out)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    if check and proc.returncode != 0 and out is not None and TEARDOWN_ABORT in proc.stderr:
        _restore(out, before)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    if before is not None:
        shutil.rmtree(before, ignore_errors=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"torchrun failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def _snapshot(out: Path | None) -> Path | None:
    """A copy of an existing run folder, to retry from; None when there is nothing to keep."""
    if out is None or not out.exists():
        return None
    copy = out.with_name(out.name + ".before-torchrun")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(out, copy)
    return copy


def _restore(out: Path, before: Path | None) -> None:
    shutil.rmtree(out, ignore_errors=True)
    if before is not None:
        shutil.copytree(before, out)


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _losses(out: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in _metrics(out) if "loss" in r}


def _helper():
    import importlib.util

    spec = importlib.util.spec_from_file_location("tiny_distributed", HELPER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def max_relative_gap(a: dict[int, float], b: dict[int, float]) -> float:
    assert a.keys() == b.keys()
    return max(abs(a[k] - b[k]) / max(abs(a[k]), 1e-12) for k in a)


# --- sharding rules (in-process) ------------------------------------------------------------------


def test_single_process_sees_no_distribution():
    assert distributed.rank_and_world() == (0, 1)
    assert distributed.resolve_parallel("auto") == "none"
    assert distributed.resolve_parallel("fsdp") == "none"  # one process: nothing to shard
    assert distributed.shard([5, 1, 7]) == [5, 1, 7]


def test_teardown_waits_for_the_peers_before_leaving_the_group(monkeypatch):
    """A gloo rank leaves only after a bounded barrier (an abort at exit otherwise: see teardown)."""
    import torch.distributed as dist

    calls = []
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_backend", lambda: "gloo")
    monkeypatch.setattr(dist, "monitored_barrier", lambda timeout: calls.append(("barrier", timeout.total_seconds())))
    monkeypatch.setattr(dist, "destroy_process_group", lambda: calls.append(("destroy", None)))
    distributed.teardown()
    assert calls == [("barrier", distributed.TEARDOWN_BARRIER_S), ("destroy", None)]

    def peer_gone(timeout):
        raise RuntimeError("Connection closed by peer")

    calls.clear()
    monkeypatch.setattr(dist, "monitored_barrier", peer_gone)
    distributed.teardown()  # a dead peer does not keep this rank from leaving
    assert calls == [("destroy", None)]


def test_global_batch_is_split_evenly_over_ranks(monkeypatch):
    from posttrain.data import batch_indices

    whole = batch_indices(100, 8, step=3, seed=2)
    parts = []
    for rank in range(4):
        monkeypatch.setattr(distributed, "rank_and_world", lambda r=rank: (r, 4))
        parts.append(batch_indices(100, 8, step=3, seed=2))
    assert [len(p) for p in parts] == [2, 2, 2, 2] and sum(parts, []) == whole
    monkeypatch.setattr(distributed, "rank_and_world", lambda: (0, 3))
    with pytest.raises(UserError, match="batch_size=8: the global batch must split evenly over 3 ranks"):
        batch_indices(100, 8, step=0, seed=0)


def test_parallel_none_under_several_processes_is_refused(monkeypatch):
    monkeypatch.setattr(distributed, "rank_and_world", lambda: (0, 2))
    assert distributed.resolve_parallel("auto") == "ddp"
    with pytest.raises(UserError, match="parallel=none under torchrun with 2 processes"):
        distributed.resolve_parallel("none")


def test_parallel_is_a_checked_config_field(cli):
    code, out = cli("run", "sft", "--set", "parallel=zero3", "--device", "cpu")
    assert code == 2 and "parallel" in out and "ddp" in out


# --- 2 ranks vs 1 rank, same global batch ---------------------------------------------------------


def _compare_tiny(tmp_path, mode: str) -> float:
    one = tmp_path / "one"
    weights_one = _helper().train(one)
    two = tmp_path / "two"
    _torchrun(str(HELPER), str(two), mode, out=two)
    gap = max_relative_gap(_losses(one), _losses(two))
    assert gap < LOSS_RTOL, gap
    weights_two = torch.load(two / "weights.pt")
    assert max((weights_one[k] - weights_two[k]).abs().max().item() for k in weights_one) < 1e-5
    assert len({r["step"] for r in _metrics(two)}) == len(_metrics(two))  # one writer: no duplicate rows
    print(f"{mode}: max relative loss gap 2 ranks vs 1 rank = {gap:.2e}")
    return gap


def test_ddp_two_ranks_match_one_rank(tmp_path):
    _compare_tiny(tmp_path, "ddp")


@pytest.mark.slow
def test_fsdp_two_ranks_match_one_rank(tmp_path):
    _compare_tiny(tmp_path, "fsdp")


@pytest.mark.slow
def test_ddp_resume_after_stop_matches_an_uninterrupted_run(tmp_path):
    straight = _helper().train(tmp_path / "straight")
    out = tmp_path / "run"
    proc = _torchrun(str(HELPER), str(out), "ddp", "--nan-at", "7", check=False)
    assert proc.returncode != 0 and "loss is nan at step 7" in proc.stderr
    assert "step-0000004" in proc.stderr  # the last good checkpoint is named ...
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-0000004"]  # ... and intact
    _torchrun(str(HELPER), str(out), "ddp", "--resume", out=out)
    resumed = torch.load(out / "weights.pt")
    assert max((straight[k] - resumed[k]).abs().max().item() for k in straight) < 1e-5


# --- every trainer plugin under torchrun ----------------------------------------------------------

PLUGIN_SETS = ["max_steps=4", "batch_size=8", "train_examples=64", "eval_examples=8", "log_every=1", "warmup_steps=1"]


def _trainer_plugins() -> list[str]:
    os.environ.setdefault("POSTTRAIN_BUILTIN_ONLY", "1")
    from posttrain.registry import discover, load

    # online-dpo and rejection-sampling-ft count their budget in rounds and reject max_steps
    rounds_based = {"online-dpo", "rejection-sampling-ft"}
    return [name for name in discover() if load(name).kind == "trainer" and name not in rounds_based]


def _samples(plugin: str) -> bool:
    """An online RL trainer: it trains on its own sampled rollouts (``RolloutConfig``)."""
    from posttrain.registry import load
    from posttrain.rl.rollout_config import RolloutConfig

    return issubclass(load(plugin).config, RolloutConfig)


def _run_cli(out: Path, plugin: str, nproc: int, extra: list[str]) -> None:
    sets = [a for s in PLUGIN_SETS + extra for a in ("--set", s)]
    args = ["-m", "posttrain", "run", plugin, "--device", "cpu", "--output-dir", str(out), *sets]
    if nproc == 1:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "POSTTRAIN_BUILTIN_ONLY": "1"}
        subprocess.run([sys.executable, *args], check=True, capture_output=True, env=env, cwd=REPO, timeout=900)
    else:
        _torchrun(*args, nproc=nproc, out=out)


# .ci/run's slow selection: one SFT, one preference and one RL trainer (about 20 s each); the others
# are marked extended (``-m slow`` runs them all).
TORCHRUN_CI = {"sft", "dpo", "grpo"}


@pytest.mark.slow
@pytest.mark.parametrize("plugin", ci_params(_trainer_plugins(), TORCHRUN_CI))
def test_trainer_plugin_under_torchrun_matches_one_process(tmp_path, plugin):
    one, two = tmp_path / "one", tmp_path / "two"
    _run_cli(one, plugin, 1, [])
    _run_cli(two, plugin, 2, ["parallel=ddp"])
    if _samples(plugin):
        # Each rank samples its own rollouts, so the two runs see different completions and their
        # losses are not comparable step by step: the same steps, finite losses, one model.
        losses_one, losses_two = _losses(one), _losses(two)
        assert losses_one.keys() == losses_two.keys()
        assert all(math.isfinite(v) for v in losses_two.values()), losses_two
        assert json.loads((two / "summary.json").read_text())["steps"] == 4 and (two / "model").is_dir()
        return
    gap = max_relative_gap(_losses(one), _losses(two))
    print(f"{plugin}: max relative loss gap 2 ranks (ddp) vs 1 = {gap:.2e}")
    # Per-rank means of a per-token loss are averaged, as DDP does: close, not identical, when the
    # ranks' token counts differ (sft, lora: a few % on 4-example shards); identical up to float
    # order for per-example means (dpo: ~1e-7).
    assert gap < TOKEN_MEAN_RTOL, gap
    summary = json.loads((two / "summary.json").read_text())
    assert summary["steps"] == 4 and (two / "model").is_dir()
    assert len({r["step"] for r in _metrics(two) if "loss" in r}) == 4


@pytest.mark.slow
def test_sft_under_fsdp_matches_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _run_cli(one, "sft", 1, [])
    _run_cli(two, "sft", 2, ["parallel=fsdp"])
    gap = max_relative_gap(_losses(one), _losses(two))
    print(f"sft: max relative loss gap 2 ranks (fsdp) vs 1 = {gap:.2e}")
    assert gap < TOKEN_MEAN_RTOL, gap
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(two / "model") is not None


def test_ddp_wrap_trains_generates_and_unwraps(tmp_path):
    """One-process gloo group: the plugin's own model object goes through DDP, generate() still
    works inside the loop (online RL), and after the loop the model is plain again."""
    import torch.distributed as dist

    from posttrain.embedded.model import build_model
    from posttrain.embedded.tokenizer import build_tokenizer

    tok = build_tokenizer()
    model = build_model(tok, seed=0)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        wrapped = distributed.wrap(model, "ddp", "cpu")
        ids = torch.tensor([tok("12+30=")["input_ids"]])
        model(input_ids=ids).logits.sum().backward()
        assert wrapped.ddp is not None and all(p.grad is not None for p in model.parameters())
        out = model.generate(
            input_ids=ids, max_new_tokens=3, min_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id
        )
        assert out.shape == (1, ids.shape[1] + 3)
        wrapped.unwrap()
        assert "forward" not in vars(model)
        assert type(model).__name__ == "LlamaForCausalLM"
    finally:
        dist.destroy_process_group()
