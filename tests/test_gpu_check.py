"""tools/gpu_check.py (issue #18 item 5): its CPU-only parts, and --dry-run, which needs no CUDA.

The steps themselves need a GPU; ``--cpu-rehearsal`` runs them on a CPU with a tiny model (a slow
test below) to check the plumbing, and measures nothing.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "gpu_check.py"

_spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
assert _spec and _spec.loader
gc = importlib.util.module_from_spec(_spec)
sys.modules["gpu_check"] = gc  # dataclasses look their module up there
_spec.loader.exec_module(gc)

QWEN25_05B_PARAMS = 494_032_768  # Qwen2.5-0.5B with tied embeddings


def test_dry_run_prints_the_plan_and_exits_0():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run"], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for step in ("pytest-gpu", "smoke", "throughput", "qlora"):
        assert step in proc.stdout
    assert "torch" in proc.stdout and "pydantic" in proc.stdout and "dry run" in proc.stdout


def test_unknown_step_is_one_line_and_exit_2(capsys):
    assert gc.main(["--only", "smoke,warp", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --only: unknown step warp; the steps are pytest-gpu, smoke, throughput, qlora"]


def test_missing_package_fails_the_dry_run_unless_the_wheels_hold_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(gc.REQUIRED, "no-such-pkg", "no_such_pkg")
    assert gc.main(["--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "missing packages: no-such-pkg" in err and "--wheels DIR" in err
    (tmp_path / "no_such_pkg-1.0-py3-none-any.whl").write_bytes(b"")
    assert gc.main(["--dry-run", "--wheels", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"--no-index --find-links {tmp_path} no-such-pkg" in out
    assert gc.main(["--dry-run", "--wheels", str(tmp_path / "nowhere")]) == 2


def test_mfu_by_hand():
    # 6 x 494,032,768 x 50,000 tokens/s = 1.482098304e14 FLOP/s = 148.2 TFLOP/s
    assert gc.training_flops(QWEN25_05B_PARAMS, 50_000) == pytest.approx(1.482098304e14)
    assert gc.mfu(QWEN25_05B_PARAMS, 50_000, 989.0) == pytest.approx(148.2098304 / 989)  # 14.99%
    run = gc.with_mfu({"tokens_per_second": 50_000}, QWEN25_05B_PARAMS, 989.0)
    assert run["achieved_tflops"] == pytest.approx(148.2098304)
    assert run["mfu"] == pytest.approx(0.14986, abs=1e-5)
    assert run["share_of_practical_ceiling"] == pytest.approx(148.2098304 / 790)  # 18.76%
    assert "mfu" not in gc.with_mfu({"tokens_per_second": 1.0}, 10, None)
    assert "share_of_practical_ceiling" not in gc.with_mfu({"tokens_per_second": 1.0}, 10, 756.0)


def test_peaks_by_device_name():
    assert gc.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert gc.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gc.peak_tflops("NVIDIA H200") == 989.0
    assert gc.peak_tflops("NVIDIA A100-SXM4-80GB") is None


def test_record_writer(tmp_path):
    env = {"date": "2026-12-06", "gpu": "NVIDIA H100 80GB HBM3", "versions": {"torch": "2.13.0"}, "commit": "abc"}
    path = gc.write_record(tmp_path / "gpu", gc.record("smoke", "ok", 12.345, "60 of 60 plugins passed", {"n": 1}, env))
    assert path == tmp_path / "gpu" / "smoke.json"
    rec = json.loads(path.read_text())
    assert rec["step"] == "smoke" and rec["status"] == "ok" and rec["seconds"] == 12.3
    assert rec["date"] == "2026-12-06" and rec["gpu"].startswith("NVIDIA H100") and rec["device"] == "cuda"
    assert rec["versions"] == {"torch": "2.13.0"} and rec["result"] == {"n": 1}


def test_plan_wheels_and_pip_command(tmp_path):
    assert [s.name for s in gc.plan(["qlora", "smoke"])] == ["smoke", "qlora"]
    assert sum(s.cap for s in gc.plan()) <= gc.BUDGET
    for name in ("pydantic_core-2.27.1-cp312-cp312-manylinux_2_17_x86_64.whl", "trl-1.16.0-py3-none-any.whl"):
        (tmp_path / name).write_bytes(b"")
    wheels = gc.wheel_names(tmp_path)
    assert wheels == {"pydantic-core", "trl"}
    assert gc.to_install(["pydantic"], ["trl", "bitsandbytes"], wheels) == ["pydantic", "trl"]
    cmd = gc.pip_command(tmp_path, ["pydantic"])
    assert cmd[1:] == ["-m", "pip", "install", "--no-index", "--find-links", str(tmp_path), "pydantic"]


def test_entry_points_for_an_uninstalled_tree(tmp_path):
    pyproject = (REPO / "pyproject.toml").read_text()
    table = gc.entry_points_table(pyproject)
    assert table["sft"] == "posttrain_plugins.sft:plugin" and table["mdpo"] == "posttrain_plugins.mdpo:plugin"
    gc.write_metadata(tmp_path, pyproject)
    (dist,) = importlib.metadata.distributions(path=[str(tmp_path)])
    assert dist.metadata["Name"] == "posttrain-catalog"
    found = {ep.name: ep.value for ep in dist.entry_points if ep.group == "posttrain.plugins"}
    assert found == table and len(found) > 50


def test_output_parsing():
    assert gc.result_line('noise\nRESULT {"a": 1}\nRESULT {"a": 2}\nmore') == {"a": 2}
    assert gc.result_line("no result") is None
    assert gc.pytest_summary("...\n==== 3 passed, 1 skipped in 4.10s ====\n") == "3 passed, 1 skipped in 4.10s"
    status, detail, result = gc.smoke_result(
        [{"plugin": "sft", "ok": True}, {"plugin": "qlora", "ok": False, "detail": "error: needs bitsandbytes"}]
    )
    assert status == "failed" and detail == "1 of 2 plugins passed; failed: qlora"
    assert result["failed"] == {"qlora": "error: needs bitsandbytes"}
    assert gc.gpu_test_files(REPO / "tests") == [REPO / "tests" / "test_gpu.py"]


@pytest.mark.slow
@pytest.mark.extended
def test_cpu_rehearsal_writes_every_step_report(tmp_path):
    """The steps on a CPU with a tiny model of the same vocabulary (about 90 s on 2 busy cores)."""
    out = tmp_path / "gpu"
    cmd = [sys.executable, str(SCRIPT), "--cpu-rehearsal", "--only", "pytest-gpu,throughput,qlora", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert set(records) == {"pytest-gpu", "throughput", "qlora"}
    assert all(r["device"] == "cpu" and r["date"] and r["versions"]["torch"] for r in records.values())
    runs = records["throughput"]["result"]["runs"]
    sides = {"ours", "trl"} if importlib.util.find_spec("trl") else {"ours"}
    assert {(r["method"], r["side"]) for r in runs} == {(m, s) for m in ("sft", "dpo", "grpo") for s in sides}
    assert all(r["tokens_per_second"] > 0 and r["steps_measured"] >= 5 for r in runs)
    if importlib.util.find_spec("bitsandbytes") is None:
        assert records["qlora"]["status"] == "skipped" and "bitsandbytes" in records["qlora"]["detail"]
