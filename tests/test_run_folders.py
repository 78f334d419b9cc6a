"""Run folders are owned and never clobbered (#23 item 2): run.json records the method and a config
hash, a lock guards a running folder, reuse needs --resume or --overwrite, a resume checks method
and options, a failed start leaves nothing, and metrics.jsonl is only ever appended to."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from posttrain.errors import UserError
from posttrain.runs.runfolder import LOCK_FILE, RunFolder
from posttrain.runs.runner import execute, prepare
from posttrain.runs.tracking import MetricsLogger

FAST = {"max_steps": 2, "save_every": 1, "log_every": 1, "train_examples": 16, "eval_examples": 4, "batch_size": 4}


def _run(out: Path, method: str = "sft", **options):
    sets = [f"{k}={v}" for k, v in {**FAST, **options.pop("sets", {})}.items()]
    return execute(prepare(method, output_dir=out, device="cpu", sets=sets, **options), progress=False)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished 2-step sft run (copied by each test that changes it)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    _run(out)
    return out


@pytest.fixture
def run_copy(finished, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out


def _fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_run_folder_records_its_owner_and_releases_its_lock(finished):
    owner = json.loads((finished / "run.json").read_text())
    assert owner["method"] == "sft" and owner["status"] == "finished" and len(owner["config_hash"]) == 16
    assert not (finished / LOCK_FILE).exists()


def test_a_finished_run_is_not_overwritten_without_an_option(run_copy):
    before = _fingerprint(run_copy)
    with pytest.raises(UserError, match=r"already holds a run of sft \(finished\); continue it with --resume"):
        prepare("sft", output_dir=run_copy, device="cpu")
    assert _fingerprint(run_copy) == before


def test_overwrite_replaces_the_run_and_its_old_checkpoints(run_copy):
    (run_copy / "checkpoints" / "step-0000099").mkdir()  # a checkpoint a later --resume must not find
    (run_copy / "notes.txt").write_text("mine")
    _run(run_copy, overwrite=True, sets={"max_steps": 1})
    assert sorted(p.name for p in (run_copy / "checkpoints").iterdir()) == ["step-0000001"]
    assert (run_copy / "notes.txt").read_text() == "mine"  # --overwrite removes run artifacts only


def test_a_foreign_folder_is_refused(tmp_path):
    folder = tmp_path / "saved-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(UserError, match="is not empty and holds no run; choose a new or empty folder"):
        prepare("sft", output_dir=folder, device="cpu")
    assert [p.name for p in folder.iterdir()] == ["config.json"]


def test_resume_refuses_a_run_of_another_method(run_copy):
    with pytest.raises(UserError, match=r"holds a run of sft, not dpo"):
        prepare("dpo", output_dir=run_copy, device="cpu", resume=True)


def test_resume_names_the_options_that_changed(run_copy):
    sets = [f"{k}={v}" for k, v in {**FAST, "learning_rate": 0.002}.items()]
    with pytest.raises(UserError, match=r"options changed since .*: learning_rate 0.001 -> 0.002; pass --force-resume"):
        prepare("sft", output_dir=run_copy, device="cpu", resume=True, sets=sets)
    with pytest.raises(UserError, match=r"options changed .*dataset 'embedded' -> "):
        prepare("sft", output_dir=run_copy, device="cpu", resume=True, sets=sets[:-1], dataset=str(run_copy))


def test_resume_refuses_max_steps_below_the_checkpoint_even_when_forced(run_copy):
    sets = [f"{k}={v}" for k, v in {**FAST, "max_steps": 1}.items()]
    with pytest.raises(UserError, match=r"max_steps 1 is below the checkpoint's step 2"):
        prepare("sft", output_dir=run_copy, device="cpu", resume=True, force_resume=True, sets=sets)


def test_force_resume_accepts_changed_options(run_copy):
    rows = len((run_copy / "metrics.jsonl").read_text().splitlines())
    result = _run(run_copy, force_resume=True, sets={"max_steps": 3})
    assert result.metrics["steps"] == 3
    text = (run_copy / "metrics.jsonl").read_text()
    assert len(text.splitlines()) > rows and '"resumed_from_step": 2' in text


def test_resume_without_output_dir_never_takes_a_saved_model_folder(tmp_path, monkeypatch, finished):
    monkeypatch.chdir(tmp_path)
    base = Path("runs") / "sft"
    shutil.copytree(finished, base / "20260101-000000")
    shutil.copytree(finished / "model", base / "zz-saved-model")  # sorts last, holds no run
    prepared = prepare("sft", device="cpu", resume=True, sets=[f"{k}={v}" for k, v in FAST.items()])
    assert prepared.ctx.output_dir == base / "20260101-000000"


def test_a_failed_resume_leaves_metrics_intact(run_copy):
    for ckpt in (run_copy / "checkpoints").glob("step-*"):
        (ckpt / "state.pt").write_bytes(b"junk")
    before = _fingerprint(run_copy)
    with pytest.raises(UserError, match="--resume: no valid checkpoint in"):
        prepare("sft", output_dir=run_copy, device="cpu", resume=True, sets=[f"{k}={v}" for k, v in FAST.items()])
    assert _fingerprint(run_copy) == before


def test_a_dataset_path_pointing_at_a_run_deletes_nothing(run_copy, tmp_path):
    before = _fingerprint(run_copy)
    with pytest.raises(UserError, match="already holds a run of sft"):
        prepare("sft", output_dir=run_copy, dataset=str(run_copy / "metrics.jsonl"), device="cpu")
    with pytest.raises(UserError, match=r"lies inside --output-dir .*which --overwrite would replace"):
        prepare("sft", output_dir=run_copy, dataset=str(run_copy / "metrics.jsonl"), device="cpu", overwrite=True)
    with pytest.raises(UserError, match="expected train.jsonl"):
        _run(tmp_path / "new", dataset=str(run_copy))
    assert _fingerprint(run_copy) == before


def test_a_failed_start_leaves_nothing(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": oops}\n')
    out = tmp_path / "runs" / "sft" / "one"
    with pytest.raises(UserError, match="invalid JSON"):
        _run(out, dataset=str(bad))
    assert not (tmp_path / "runs").exists()


def test_a_second_run_on_a_folder_in_use_is_refused(tmp_path):
    out = tmp_path / "busy"
    holder = RunFolder(out, "sft", "sft", {"method": "sft"})
    holder.open(overwrite=False)
    try:
        with pytest.raises(UserError, match=r"another run \(pid \d+\) is writing to this folder"):
            prepare("sft", output_dir=out, device="cpu", overwrite=True)
        with pytest.raises(UserError, match=r"another run \(pid \d+\) is writing to this folder"):
            RunFolder(out, "sft", "sft", {"method": "sft"}).open(overwrite=True)
    finally:
        holder.close(failed=False)
    assert not (out / LOCK_FILE).exists()


def test_metrics_are_only_appended_and_read_as_one_history(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 0.9}\n{"step": 3, "loss": 0.8}\n{"step": 4, "lo')
    original = path.read_text()
    logger = MetricsLogger(tmp_path, resume_step=2)  # resumed from the checkpoint at step 2
    logger.log(3, {"loss": 0.7})
    assert path.read_text().startswith(original)
    assert logger.rows() == [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.9}, {"step": 3, "loss": 0.7}]


def test_resume_and_overwrite_together_are_refused(tmp_path):
    with pytest.raises(UserError, match="--resume and --overwrite: pass one of them"):
        prepare("sft", output_dir=tmp_path, device="cpu", resume=True, overwrite=True)


def test_a_failed_start_in_an_existing_empty_folder_leaves_it_empty(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    with pytest.raises(UserError, match="does not exist"):
        _run(out, dataset=str(tmp_path / "missing.jsonl"))
    assert list(out.iterdir()) == []
