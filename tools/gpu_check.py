"""A prepared GPU check (issue #18 item 5): four timed steps on one CUDA GPU, offline, each written
as JSON to reports/gpu/<step>.json. Sized for 8 minutes on one H100 (not yet run on one): a time
budget (--budget, 465 s for the steps) bounds the whole, and a step that no longer fits is recorded
as skipped.

    python tools/gpu_check.py --dry-run              # the plan and the package check; no CUDA needed
    python tools/gpu_check.py                        # every step
    python tools/gpu_check.py --wheels wheels/       # first install the missing packages from local wheels
    python tools/gpu_check.py --only throughput,qlora

Steps:
1. pytest-gpu: ``python -m pytest -m gpu`` over the test files that mark tests ``gpu``.
2. smoke: ``catalog smoke --device cuda`` over every built-in plugin; also writes
   reports/smoke-gpu.json, the GPU column of the site's status matrix.
3. throughput: bf16 SFT, DPO and GRPO steps on a random-initialised model of Qwen2.5-0.5B's shape
   (tools/gpu_bench.py builds it from a config, no download): tokens/s, MFU and peak memory, for
   this project's plugins and, when TRL imports, for TRL's trainers on the same model and data.
4. qlora: the qlora plugin for 2 steps on that model, when bitsandbytes imports.

MFU = 6 x parameters x training tokens/s (forward and backward of a dense model) / peak. The peak is
the spec sheet's dense bf16 tensor-core rate (989 TFLOP/s for an H100 SXM or an H200); about 790
TFLOP/s measured on large bf16 matmuls is the practical ceiling, and the share of that is given too.

Packages: the check needs those in REQUIRED (the project's own dependencies and pytest) and uses
those in OPTIONAL when they import. On a machine without internet, put wheels of the missing ones
and of their dependencies in a folder (made elsewhere with ``pip download -d wheels NAME...``) and
pass ``--wheels DIR``: they are installed with ``pip install --no-index --find-links DIR``. The
project itself runs from this tree (PYTHONPATH=src:plugins); when posttrain-catalog is not
installed, its plugins' entry points are read from pyproject.toml into a metadata folder that
only the check's own processes see.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "reports" / "gpu"
BENCH = ROOT / "tools" / "gpu_bench.py"
BUDGET = 465.0  # seconds for all the steps together; the package check and start-up come on top

# distribution -> import name
REQUIRED = {
    "torch": "torch",
    "transformers": "transformers",
    "peft": "peft",
    "tokenizers": "tokenizers",
    "matplotlib": "matplotlib",
    "pydantic": "pydantic",
    "pyyaml": "yaml",
    "typer": "typer",
    "rich": "rich",
    "requests": "requests",
    "pytest": "pytest",
}
OPTIONAL = {"trl": "trl", "datasets": "datasets", "bitsandbytes": "bitsandbytes"}


@dataclass(frozen=True)
class Step:
    name: str
    cap: float  # seconds at most
    what: str


STEPS = (
    Step("pytest-gpu", 45, "python -m pytest -m gpu over the test files that mark tests gpu"),
    Step("smoke", 165, "catalog smoke --device cuda over every plugin (also writes reports/smoke-gpu.json)"),
    Step(
        "throughput",
        215,
        "bf16 SFT, DPO, GRPO steps on a random Qwen2.5-0.5B-shaped model: ours, and TRL's if it imports",
    ),
    Step("qlora", 40, "the qlora plugin for 2 steps on that model, if bitsandbytes imports"),
)
METHODS = ("sft", "dpo", "grpo")
MEASURED_STEPS = {"sft": 10, "dpo": 10, "grpo": 5, "qlora": 1}  # after each method's warmup steps

# Dense bf16 tensor-core peaks from NVIDIA's spec sheets (TFLOP/s, without sparsity), matched on the
# device name in this order; PRACTICAL_TFLOPS is what large bf16 matmuls reach on the 989 parts.
PEAKS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0))
PRACTICAL_TFLOPS = 790.0


# --- pure parts (tests/test_gpu_check.py) -----------------------------------------------------------


def training_flops(params: int, tokens: float) -> float:
    """6 N T: a dense model's forward (2 N per token) and backward (4 N per token)."""
    return 6.0 * params * tokens


def mfu(params: int, tokens_per_second: float, peak_tflops: float) -> float:
    """Model FLOPs utilisation: achieved training FLOP/s over the peak."""
    return training_flops(params, tokens_per_second) / (peak_tflops * 1e12)


def peak_tflops(gpu_name: str) -> float | None:
    return next((tflops for key, tflops in PEAKS if key.lower() in gpu_name.lower()), None)


def with_mfu(run: dict[str, Any], params: int, peak: float | None) -> dict[str, Any]:
    """A measured run with its training FLOP/s and, when the peak is known, its MFU."""
    achieved = training_flops(params, run["tokens_per_second"]) / 1e12
    out = {**run, "achieved_tflops": achieved}
    if peak is not None:
        out["mfu"] = achieved / peak
        if peak == 989.0:
            out["share_of_practical_ceiling"] = achieved / PRACTICAL_TFLOPS
    return out


def plan(only: list[str] | None = None) -> list[Step]:
    """The steps to run, in order; ``only`` names a subset."""
    names = [s.name for s in STEPS]
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise ValueError(f"--only: unknown step {', '.join(unknown)}; the steps are {', '.join(names)}")
    return [s for s in STEPS if not only or s.name in only]


def installed(table: dict[str, str]) -> dict[str, str | None]:
    """distribution -> its version when its module is found, else None (nothing is imported)."""
    found: dict[str, str | None] = {}
    for dist, module in table.items():
        if importlib.util.find_spec(module) is None:
            found[dist] = None
            continue
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "found"
    return found


def wheel_names(folder: Path) -> set[str]:
    """Normalised distribution names of the wheels in a folder."""
    return {normalise(p.name.split("-")[0]) for p in folder.glob("*.whl")}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def to_install(missing_required: list[str], missing_optional: list[str], wheels: set[str]) -> list[str]:
    """Every missing required package (pip names the ones the folder lacks), and the missing optional
    ones the folder has a wheel for."""
    return missing_required + [d for d in missing_optional if normalise(d) in wheels]


def pip_command(folder: Path, names: list[str]) -> list[str]:
    return [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(folder), *names]


def entry_points_table(pyproject: str) -> dict[str, str]:
    """The plugins' entry points declared in pyproject.toml: name -> "module:attribute"."""
    block = re.search(r'^\[project\.entry-points\."posttrain\.plugins"\]\n(.*?)(?=^\[|\Z)', pyproject, re.M | re.S)
    if block is None:
        return {}
    return dict(re.findall(r'^([\w.-]+)\s*=\s*"([^"]+)"', block.group(1), re.M))


def write_metadata(folder: Path, pyproject: str) -> Path:
    """A posttrain-catalog .dist-info holding only the entry points, for an uninstalled tree."""
    version = re.search(r'^version\s*=\s*"([^"]+)"', pyproject, re.M)
    info = folder / f"posttrain_catalog-{version.group(1) if version else '0'}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: posttrain-catalog\nVersion: {version.group(1) if version else '0'}\n"
    )
    lines = [f"{name} = {target}" for name, target in entry_points_table(pyproject).items()]
    (info / "entry_points.txt").write_text("[posttrain.plugins]\n" + "\n".join(lines) + "\n")
    return info


def record(step: str, status: str, seconds: float, detail: str, result: dict, env: dict) -> dict[str, Any]:
    """One step's report: what ran where, how long, and its result."""
    return {
        "step": step,
        "status": status,  # ok | failed | skipped
        "detail": detail,
        "seconds": round(seconds, 1),
        "date": env.get("date"),
        "gpu": env.get("gpu"),
        "device": env.get("device", "cuda"),  # "cpu" for a --cpu-rehearsal, which measures nothing
        "versions": env.get("versions", {}),
        "commit": env.get("commit"),
        "result": result,
    }


def write_record(folder: Path, rec: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{rec['step']}.json"
    path.write_text(json.dumps(rec, indent=2) + "\n", encoding="utf-8")
    return path


def result_line(output: str) -> dict[str, Any] | None:
    """The JSON of a child's last ``RESULT {...}`` line."""
    lines = [ln for ln in output.splitlines() if ln.startswith("RESULT ")]
    return json.loads(lines[-1][len("RESULT ") :]) if lines else None


def shown(path: Path) -> str:
    """A path relative to the repository when it is inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def gpu_test_files(tests: Path) -> list[Path]:
    return sorted(p for p in tests.glob("test_*.py") if "pytest.mark.gpu" in p.read_text(encoding="utf-8"))


def pytest_summary(output: str) -> str:
    """pytest's closing line ("3 passed in 4.1s"), without the ===."""
    found = [ln.strip("= ") for ln in output.splitlines() if re.search(r"\d+ (passed|failed|skipped|error)", ln)]
    return found[-1] if found else (output.strip().splitlines() or ["no output"])[-1]


def smoke_result(report: list[dict[str, Any]]) -> tuple[str, str, dict[str, Any]]:
    failed = {r["plugin"]: r.get("detail", "") for r in report if not r.get("ok")}
    status = "ok" if report and not failed else "failed"
    detail = f"{len(report) - len(failed)} of {len(report)} plugins passed" + (
        f"; failed: {', '.join(failed)}" if failed else ""
    )
    return status, detail, {"plugins": len(report), "passed": len(report) - len(failed), "failed": failed}


# --- the machine ------------------------------------------------------------------------------------


class Clock:
    def __init__(self, budget: float) -> None:
        self.deadline = time.monotonic() + budget

    def left(self) -> float:
        return self.deadline - time.monotonic()


def child_env(metadata: Path | None) -> dict[str, str]:
    paths = [str(ROOT / "src"), str(ROOT / "plugins"), *([str(metadata)] if metadata else [])]
    old = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(paths + ([old] if old else [])),
        "POSTTRAIN_BUILTIN_ONLY": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "TQDM_DISABLE": "1",
        "HF_HUB_OFFLINE": "1",  # everything is local: never wait on a network that is not there
        "HF_DATASETS_OFFLINE": "1",
    }


def run_child(cmd: list[str], timeout: float, env: dict[str, str], shown: str = "") -> tuple[int | None, str]:
    """(exit status or None on timeout, stdout + stderr)."""
    print("  $ " + (shown or " ".join(str(c) for c in cmd)), flush=True)
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(timeout, 1))
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return None, out + f"\n(timed out after {timeout:.0f} s)"
    return proc.returncode, proc.stdout + proc.stderr


def import_probe(names: list[str], env: dict[str, str]) -> dict[str, str]:
    """Import each module in a fresh process: name -> version, or the one-line reason it fails."""
    code = (
        "import importlib, json, sys\nout = {}\nfor n in sys.argv[1:]:\n    try:\n"
        "        m = importlib.import_module(n); out[n] = 'ok ' + str(getattr(m, '__version__', ''))\n"
        "    except Exception as e:\n        out[n] = 'error ' + (type(e).__name__ + ': ' + str(e)).splitlines()[0]\n"
        "print('RESULT ' + json.dumps(out))"
    )
    rc, output = run_child([sys.executable, "-c", code, *names], 120, env, shown="python -c <import check>")
    return result_line(output) or {n: f"error {output.strip()[-200:]}" for n in names}


def environment() -> dict[str, Any]:
    import peft
    import torch
    import transformers

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    }
    versions.update({d: v for d, v in installed(OPTIONAL).items() if v})
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {
        "date": dt.date.today().isoformat(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "versions": versions,
        "commit": commit.stdout.strip() or None,
    }


# --- steps -------------------------------------------------------------------------------------------


@dataclass
class Context:
    env: dict[str, str]  # the children's environment
    work: Path  # model and data
    imports: dict[str, str]  # optional module -> "ok VERSION" | "error REASON"
    peak: float | None
    out: Path = REPORTS
    device: str = "cuda"
    shape: str = "0.5b"  # tools/gpu_bench.py's SHAPES
    params: int | None = None
    built: bool = False


def step_pytest(ctx: Context, timeout: float) -> tuple[str, str, dict]:
    files = gpu_test_files(ROOT / "tests")
    if not files:
        return "skipped", "no test is marked gpu", {}
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", *map(str, files)]
    rc, output = run_child(cmd, timeout, ctx.env)
    summary = pytest_summary(output)
    result = {"files": [str(f.relative_to(ROOT)) for f in files], "summary": summary, "returncode": rc}
    return ("ok" if rc == 0 else "failed"), summary, result


def step_smoke(ctx: Context, timeout: float) -> tuple[str, str, dict]:
    report = ctx.out.parent / "smoke-gpu.json"  # reports/smoke-gpu.json by default
    cmd = [sys.executable, "-m", "posttrain", "smoke", "--device", ctx.device, "--report", str(report)]
    started = time.time()
    rc, output = run_child(cmd, timeout, ctx.env)
    if rc is None or not report.is_file() or report.stat().st_mtime < started:
        return "failed", output.strip().splitlines()[-1] if output.strip() else "no report", {"returncode": rc}
    status, detail, result = smoke_result(json.loads(report.read_text()))
    return status, detail, {**result, "report": shown(report)}


def build(ctx: Context, timeout: float) -> str | None:
    """Build the model and data once; None, or why it failed."""
    if ctx.built:
        return None
    steps = max(MEASURED_STEPS.values())
    cmd = [sys.executable, str(BENCH), "build", "--out", str(ctx.work), "--steps", str(steps), "--shape", ctx.shape]
    rc, output = run_child(cmd, timeout, ctx.env)
    found = result_line(output)
    if rc != 0 or found is None:
        return "building the model failed: " + (output.strip().splitlines() or ["no output"])[-1]
    ctx.params, ctx.built = found["parameters"], True
    return None


def measure(ctx: Context, method: str, side: str, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, str(BENCH), "run", "--method", method, "--side", side, "--work", str(ctx.work)]
    cmd += ["--steps", str(MEASURED_STEPS[method]), "--device", ctx.device, "--shape", ctx.shape]
    rc, output = run_child(cmd, timeout, ctx.env)
    found = result_line(output)
    if rc != 0 or found is None:
        tail = [ln for ln in output.strip().splitlines() if ln.strip()][-3:]
        return {"method": method, "side": side, "error": " | ".join(tail) or f"exit {rc}"}
    return found


def step_throughput(ctx: Context, timeout: float) -> tuple[str, str, dict]:
    clock = Clock(timeout)
    failed = build(ctx, clock.left())
    if failed:
        return "failed", failed, {}
    trl = ctx.imports.get("trl", "error not checked")
    sides = ["ours", "trl"] if trl.startswith("ok") else ["ours"]
    runs = []
    for method in METHODS:
        for side in sides:
            if clock.left() < 15:
                runs.append({"method": method, "side": side, "error": "skipped: the step's time ran out"})
                continue
            run = measure(ctx, method, side, clock.left())
            runs.append(run if "error" in run else with_mfu(run, ctx.params or 0, ctx.peak))
    bad = [f"{r['method']}/{r['side']}" for r in runs if "error" in r]
    result = {
        "model": "Qwen2.5-0.5B shape, random weights, bf16 (tools/gpu_bench.py)",
        "parameters": ctx.params,
        "peak_tflops": ctx.peak,
        "practical_ceiling_tflops": PRACTICAL_TFLOPS if ctx.peak == 989.0 else None,
        "flops": "6 x parameters x training tokens (non-pad tokens through the embedding with gradients on)",
        "trl": trl[3:].strip() if trl.startswith("ok") else f"TRL is absent: {trl[6:]}",
        "runs": runs,
    }
    detail = ", ".join(
        f"{r['method']}/{r['side']} {r['tokens_per_second']:,.0f} tok/s" for r in runs if "error" not in r
    )
    if not trl.startswith("ok"):
        detail += "; TRL is absent, so no comparison"
    return ("failed" if bad else "ok"), detail + (f"; failed: {', '.join(bad)}" if bad else ""), result


def step_qlora(ctx: Context, timeout: float) -> tuple[str, str, dict]:
    bnb = ctx.imports.get("bitsandbytes", "error not checked")
    if not bnb.startswith("ok"):
        return "skipped", f"bitsandbytes does not import: {bnb[6:]}", {}
    clock = Clock(timeout)
    failed = build(ctx, clock.left())
    if failed:
        return "failed", failed, {}
    run = measure(ctx, "qlora", "ours", clock.left())
    if "error" in run:
        return "failed", run["error"], run
    return "ok", f"{run['steps']} steps, peak {run.get('peak_memory_gib', 0):.1f} GiB", run


STEP_FUNCTIONS = {"pytest-gpu": step_pytest, "smoke": step_smoke, "throughput": step_throughput, "qlora": step_qlora}


# --- driver -----------------------------------------------------------------------------------------


def print_plan(steps: list[Step], required: dict, optional: dict, budget: float) -> None:
    print(f"GPU check: {len(steps)} steps, at most {budget:.0f} s; reports in {REPORTS.relative_to(ROOT)}/")
    for i, s in enumerate(steps, 1):
        print(f"  {i}. {s.name:11s} (at most {s.cap:.0f} s) {s.what}")
    print("packages:")
    for dist, version in {**required, **optional}.items():
        kind = "required" if dist in required else "optional"
        print(f"  {dist:13s} {kind:8s} {version or 'MISSING'}")
    try:
        print(f"  {'posttrain-catalog':13s} project  {importlib.metadata.version('posttrain-catalog')}")
    except importlib.metadata.PackageNotFoundError:
        print(f"  {'posttrain-catalog':13s} project  not installed: entry points from pyproject.toml")


def ensure_packages(wheels: Path | None) -> list[str]:
    """Install what is missing from ``wheels`` when given; the required packages still missing."""
    required, optional = installed(REQUIRED), installed(OPTIONAL)
    missing = [d for d, v in required.items() if v is None]
    if wheels is not None:
        names = to_install(missing, [d for d, v in optional.items() if v is None], wheel_names(wheels))
        if names:
            cmd = pip_command(wheels, names)
            print("  $ " + " ".join(cmd), flush=True)
            subprocess.run(cmd, check=False)
            importlib.invalidate_caches()
            missing = [d for d, v in installed(REQUIRED).items() if v is None]
    return missing


def metadata_folder(work: Path) -> Path | None:
    try:
        importlib.metadata.distribution("posttrain-catalog")
        return None
    except importlib.metadata.PackageNotFoundError:
        folder = work / "metadata"
        write_metadata(folder, (ROOT / "pyproject.toml").read_text(encoding="utf-8"))
        return folder


def dry_run(wheels: Path | None) -> int:
    """Exit status 0 when every required package is in place (or would be installed from ``wheels``)."""
    required, optional = installed(REQUIRED), installed(OPTIONAL)
    missing = [d for d, v in required.items() if v is None]
    if wheels is not None:
        names = to_install(missing, [d for d, v in optional.items() if v is None], wheel_names(wheels))
        print("would run: " + " ".join(pip_command(wheels, names)) if names else "nothing to install")
        missing = [d for d in missing if normalise(d) not in wheel_names(wheels)]
    if missing:
        print(f"error: missing packages: {', '.join(missing)} (pass --wheels DIR with their wheels)", file=sys.stderr)
        return 2
    print("dry run: the packages are in place; run without --dry-run on a CUDA machine")
    return 0


def run_steps(steps: list[Step], args) -> int:
    import torch

    if not torch.cuda.is_available() and not args.cpu_rehearsal:
        print("error: no CUDA device (torch.cuda.is_available() is False); --dry-run checks the plan", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        env = child_env(metadata_folder(work))
        info = environment()
        peak = args.peak_tflops or peak_tflops(info["gpu"] or "")
        ctx = Context(env=env, work=work, imports=import_probe(list(OPTIONAL.values()), env), peak=peak, out=args.out)
        if args.cpu_rehearsal:
            ctx.device, ctx.shape, ctx.peak = "cpu", "tiny", None
            info["device"] = "cpu"
        clock, failures = Clock(args.budget), 0
        for s in steps:
            timeout = min(s.cap, clock.left())
            t0 = time.perf_counter()
            print(f"[{s.name}] at most {timeout:.0f} s", flush=True)
            if timeout < 10:
                status, detail, result = "skipped", "the check's time budget ran out", {}
            else:
                status, detail, result = STEP_FUNCTIONS[s.name](ctx, timeout)
            rec = record(s.name, status, time.perf_counter() - t0, detail, result, info)
            path = write_record(args.out, rec)
            print(f"[{s.name}] {status} in {rec['seconds']} s: {detail}\n  -> {path}", flush=True)
            failures += status == "failed"
        return 1 if failures else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the plan and check the packages; no CUDA")
    parser.add_argument("--wheels", type=Path, help="install missing packages from the wheels in this folder")
    parser.add_argument("--only", help="comma-separated steps: " + ", ".join(s.name for s in STEPS))
    parser.add_argument(
        "--budget", type=float, default=BUDGET, help=f"seconds for all the steps (default {BUDGET:.0f})"
    )
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, for a GPU not in the table")
    parser.add_argument("--out", type=Path, default=REPORTS, help="where the step reports go")
    parser.add_argument(
        "--cpu-rehearsal",
        action="store_true",
        help="run the steps on the CPU with a tiny model of the same vocabulary: checks this script, measures nothing",
    )
    args = parser.parse_args(argv)
    try:
        steps = plan([s.strip() for s in args.only.split(",") if s.strip()] if args.only else None)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.wheels is not None and not args.wheels.is_dir():
        print(f"error: --wheels {args.wheels}: no such folder", file=sys.stderr)
        return 2
    print_plan(steps, installed(REQUIRED), installed(OPTIONAL), args.budget)
    if args.dry_run:
        return dry_run(args.wheels)
    lacking = ensure_packages(args.wheels)
    if lacking:
        print(f"error: missing packages: {', '.join(lacking)} (pass --wheels DIR with their wheels)", file=sys.stderr)
        return 2
    return run_steps(steps, args)


if __name__ == "__main__":
    sys.exit(main())
