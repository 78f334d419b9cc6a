"""Faults: SIGKILL then --resume is bit-identical, SIGINT/SIGTERM save a checkpoint, corrupt or partial
checkpoints are named and never loaded, NaN/inf stops with the last good checkpoint intact, and an
unwritable or too-full output directory is a clear error before the first step."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from posttrain.data import batch_indices
from posttrain.errors import UserError
from posttrain.interface import RunContext
from posttrain.runs.tracking import MetricsLogger
from posttrain.training.trainer import LoopSettings, latest_checkpoint, load_checkpoint, train_loop

HELPER = Path(__file__).parent / "helpers" / "tiny_distributed.py"


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def _run(out: Path, resume=False, on_step=None, max_steps=20, save_every=5):
    model = _model()
    data = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
    target = data.sum(-1, keepdim=True)
    calls = []

    def loss_fn(step, micro):
        calls.append(step)
        idx = batch_indices(64, 8, step, seed=0)
        loss = torch.nn.functional.mse_loss(model(data[idx]), target[idx])
        return (on_step(step, loss) if on_step else loss), {}

    ctx = RunContext(output_dir=out, resume=resume)
    ctx.metrics = MetricsLogger(out, resume_step=None)
    settings = LoopSettings(max_steps=max_steps, learning_rate=0.05, warmup_steps=2, save_every=save_every, log_every=1)
    train_loop(model, ctx, settings, loss_fn)
    return model, calls


# --- signals --------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_a_checkpoint_and_resume_finishes_identically(tmp_path, sig):
    straight, _ = _run(tmp_path / "straight")

    def send_at_7(step, loss):
        if step == 6:
            os.kill(os.getpid(), sig)
        return loss

    with pytest.raises(UserError, match=f"stopped by signal {int(sig)} after step 7; checkpoint .*step-0000007"):
        _run(tmp_path / "b", on_step=send_at_7)
    assert latest_checkpoint(tmp_path / "b" / "checkpoints").name == "step-0000007"
    resumed, calls = _run(tmp_path / "b", resume=True)
    assert calls[0] == 7
    for p, q in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.slow
def test_sigterm_to_a_running_process_saves_a_checkpoint(tmp_path):
    proc = subprocess.Popen([sys.executable, str(HELPER), str(tmp_path), "--sleep", "0.05"], stderr=subprocess.PIPE)
    _wait_for(lambda: (tmp_path / "checkpoints" / "step-0000004").is_dir(), proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and b"stopped by signal 15" in err
    found = latest_checkpoint(tmp_path / "checkpoints")
    assert found is not None and int(found.name.split("-")[1]) >= 4


def _wait_for(condition, proc):
    """Poll until ``condition`` holds; the run ending first fails (a hang is pytest-timeout's)."""
    while not condition():
        assert proc.poll() is None, "the run ended before the fault was injected"
        time.sleep(0.01)


# --- SIGKILL in the middle, then --resume ---------------------------------------------------------


def _helper():
    import importlib.util

    spec = importlib.util.spec_from_file_location("tiny_distributed", HELPER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    """The killed run is a separate process; the straight and the resumed runs happen in this one."""
    helper = _helper()
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(HELPER), str(killed), "--sleep", "0.05"])
    straight = tmp_path / "straight"
    helper.train(straight)
    _wait_for(lambda: (killed / "checkpoints" / "step-0000008").is_dir(), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "weights.pt").exists()  # really killed in the middle
    helper.train(killed, resume=True)
    a, b = torch.load(straight / "weights.pt"), torch.load(killed / "weights.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(straight) == _losses(killed)


def _losses(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


# --- corrupt and partial checkpoints --------------------------------------------------------------


def _checkpoints(tmp_path) -> list[Path]:
    _run(tmp_path)
    return sorted((tmp_path / "checkpoints").glob("step-*"))


@pytest.mark.parametrize(
    "damage, word",
    [
        (lambda c: (c / "state.pt").write_bytes((c / "state.pt").read_bytes()[:100]), "corrupt"),  # truncated
        (lambda c: (c / "manifest.json").unlink(), "incomplete"),  # partial: no manifest
        (lambda c: (c / "manifest.json").write_text("{not json"), "incomplete"),
        (lambda c: (c / "state.pt").unlink(), "incomplete"),
    ],
)
def test_a_damaged_checkpoint_is_named_and_not_loaded(tmp_path, damage, word):
    older, newest = _checkpoints(tmp_path)
    damage(newest)
    warnings = []
    assert latest_checkpoint(tmp_path / "checkpoints", warn=warnings.append) == older
    assert str(newest) in warnings[0] and word in warnings[0]


def test_resume_with_only_damaged_checkpoints_is_a_clear_error(tmp_path, capsys):
    for ckpt in _checkpoints(tmp_path):
        (ckpt / "state.pt").write_bytes(b"junk")
    with pytest.raises(UserError, match="--resume: no valid checkpoint in"):
        _run(tmp_path, resume=True)
    assert "corrupt" in capsys.readouterr().out


def test_a_leftover_temporary_folder_is_ignored(tmp_path):
    older, newest = _checkpoints(tmp_path)
    (tmp_path / "checkpoints" / ".tmp-step-0000099").mkdir()
    assert latest_checkpoint(tmp_path / "checkpoints") == newest


def test_a_killed_write_leaves_metrics_readable(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 0.5}\n{"step": 3, "lo')
    logger = MetricsLogger(tmp_path, resume_step=2)
    assert logger.rows() == [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}]


# --- NaN / inf ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, bad):
    def poison_step_8(step, loss):
        return loss * bad if step == 7 else loss

    with pytest.raises(UserError, match=rf"loss is {bad} at step 8; stopped. Last good checkpoint: .*step-0000005"):
        _run(tmp_path, on_step=poison_step_8)
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert ckpts == ["step-0000005"]
    model = _model()
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    assert load_checkpoint(tmp_path / "checkpoints" / "step-0000005", model, opt, sched) == 5
    assert all(torch.isfinite(p).all() for p in model.parameters())


# --- disk -----------------------------------------------------------------------------------------


def test_unwritable_output_directory_fails_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    calls = []
    with pytest.raises(UserError, match="not writable"):
        train_loop(
            torch.nn.Linear(2, 1),
            RunContext(output_dir=blocker / "run"),
            LoopSettings(max_steps=2, learning_rate=0.1),
            lambda s, m: calls.append(s),
        )
    assert calls == []


def test_unwritable_output_directory_fails_before_the_model_loads(tmp_path):
    from posttrain.runs.runner import prepare

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(UserError, match=r"--output-dir .*: not writable"):
        prepare("sft", output_dir=blocker / "run", device="cpu")


def test_too_little_free_space_fails_before_training(tmp_path, monkeypatch):
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=1000))
    calls = []
    model = torch.nn.Linear(100, 100)  # 10,100 parameters: ~121 kB per checkpoint
    with pytest.raises(UserError, match=r"0\.0 MB free, but checkpoints and the model need about 0\.[45] MB"):
        train_loop(
            model,
            RunContext(output_dir=tmp_path),
            LoopSettings(max_steps=2, learning_rate=0.1),
            lambda s, m: calls.append(s),
        )
    assert calls == []


def test_disk_full_while_saving_is_a_clear_error_and_keeps_earlier_checkpoints(tmp_path, monkeypatch):
    real_save = torch.save
    saves = []

    def full_disk(obj, path, *a, **k):
        saves.append(path)
        if len(saves) == 2:
            raise OSError(28, "No space left on device")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(UserError, match=r"could not write checkpoint .*step-0000010: No space left on device; earlier"):
        _run(tmp_path)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-0000005"]
    assert latest_checkpoint(tmp_path / "checkpoints").name == "step-0000005"


# --- the same through the CLI: catalog run sft, kill -9, --resume ---------------------------------

CLI_SETS = ["max_steps=60", "save_every=5", "log_every=1", "batch_size=8", "train_examples=128", "eval_examples=16"]


def _cli(out: Path, *extra: str, wait: bool = True):
    args = [sys.executable, "-m", "posttrain", "run", "sft", "--device", "cpu", "--output-dir", str(out)]
    args += [a for s in CLI_SETS for a in ("--set", s)] + list(extra)
    env = {**os.environ, "POSTTRAIN_BUILTIN_ONLY": "1", "OMP_NUM_THREADS": "1"}
    if wait:
        return subprocess.run(args, check=True, capture_output=True, env=env, timeout=900)
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


@pytest.mark.slow
def test_cli_run_killed_and_resumed_equals_an_uninterrupted_run(tmp_path):
    from safetensors.torch import load_file

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    _cli(straight)
    proc = _cli(killed, wait=False)
    _wait_for(lambda: (killed / "checkpoints" / "step-0000010").is_dir(), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists()
    _cli(killed, "--resume")
    a = load_file(straight / "model" / "model.safetensors")
    b = load_file(killed / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def rows(out):  # the file as one history: rows the killed run logged after its checkpoint are replaced
        return [{k: v for k, v in row.items() if k != "tokens_per_second"} for row in MetricsLogger(out).rows()]

    assert rows(straight) == rows(killed)
    s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (straight, killed))
    assert s1["after"] == s2["after"]
