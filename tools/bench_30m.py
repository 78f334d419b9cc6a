"""Compute-bound CPU benchmark: SFT, DPO and GRPO with this project's plugins against TRL's trainers
on a ~30M-parameter Qwen2 at sequence length 256, with the accounting the tiny-model benchmarks
lacked (issue #18 item 4).

    OMP_NUM_THREADS=1 python tools/bench_30m.py --repeats 5          # ~30-40 min on one free core
    python tools/bench_30m.py --page-only                            # rebuild the page section

Every run is a fresh subprocess of ``tools/gpu_bench.py run --shape 30m`` (the same model, data,
batch, sequence lengths, optimizer (AdamW, constant learning rate 1e-5, clipping at 1.0) and fp32
precision on both sides; the same instruments, see that file). Per method and repeat the sides
run back to back and their order alternates between repeats (A B, B A, ...), so a change in
machine load hits both; the ratio of each such pair is reported, with its spread over repeats.

- Primary measure: process CPU time (user + system) per optimizer step, single-threaded
  (``OMP_NUM_THREADS=1``, recorded per run); wall time per step and the load average are
  recorded too, but the machine is shared and wall time is noisy.
- Memory: the peak RSS of the run's process minus its RSS after the side's imports (torch,
  transformers, and TRL + datasets or our runner), so the import footprints do not count.
- DPO: TRL in its precomputed-reference mode (``precompute_ref_log_probs=True``), as ours.
- GRPO: ours also with ``POSTTRAIN_FAST_FORWARD=0`` (transformers' forward in our sampler and
  training forward: no hand-written forward, no prompt shared across a group in the training
  forward), so the share of the gain that comes from those is visible.

Writes ``reports/benchmarks/<method>-vs-trl-30m.json`` (date, versions, machine, config, every
run) and the ``bench:30m`` section of ``site/docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpu_bench import SHAPES, SIZES  # tools/ is on sys.path when this script runs

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "tools" / "gpu_bench.py"
REPORTS = ROOT / "reports" / "benchmarks"
PAGE = ROOT / "site" / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:30m -->", "<!-- /bench:30m -->"
METHODS = ("sft", "dpo", "grpo")
# Side name -> (gpu_bench --side, extra environment). "ours-plain" is the fast-path ablation.
SIDES = {"ours": ("ours", {}), "trl": ("trl", {}), "ours-plain": ("ours", {"POSTTRAIN_FAST_FORWARD": "0"})}
SIDES_OF = {"sft": ("ours", "trl"), "dpo": ("ours", "trl"), "grpo": ("ours", "trl", "ours-plain")}
THREADS = "1"


def report_path(method: str) -> Path:
    return REPORTS / f"{method}-vs-trl-30m.json"


# --- running ----------------------------------------------------------------------------------------


def one_run(method: str, side: str, work: Path, steps: int, profile: bool = False) -> dict:
    bench_side, extra_env = SIDES[side]
    cmd = [sys.executable, str(BENCH), "run", "--method", method, "--side", bench_side, "--work", str(work)]
    cmd += ["--shape", "30m", "--steps", str(steps), "--device", "cpu"] + (["--profile-step"] if profile else [])
    if method == "dpo" and side == "trl":
        cmd.append("--trl-precompute-ref")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": THREADS,
        "MKL_NUM_THREADS": THREADS,
        "TOKENIZERS_PARALLELISM": "false",
        "TQDM_DISABLE": "1",
        **extra_env,
    }
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"{method} {side} failed (exit {proc.returncode})")
    return {**json.loads(line[len("RESULT ") :]), "side": side}


def order_for(method: str, repeat: int) -> list[str]:
    """The sides of a method in run order: as listed on even repeats, reversed on odd ones."""
    sides = list(SIDES_OF[method])
    return sides if repeat % 2 == 0 else sides[::-1]


def build(work: Path, steps: int) -> int:
    out = subprocess.run(
        [sys.executable, str(BENCH), "build", "--out", str(work), "--shape", "30m", "--steps", str(steps)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])["parameters"]


# --- summarising ------------------------------------------------------------------------------------


def spread(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def side_summary(runs: list[dict]) -> dict:
    return {
        "runs": len(runs),
        "step_cpu_ms_median": 1000 * statistics.median(r["step_cpu_seconds_mean"] for r in runs),
        "step_wall_ms_median": 1000 * statistics.median(r["step_seconds_median"] for r in runs),
        "training_tokens_per_step": statistics.median(r["tokens"] / r["steps_measured"] for r in runs),
        "generated_tokens_per_step": statistics.median(r["generated_tokens_per_step"] for r in runs),
        "peak_rss_mb_median": 1024 * statistics.median(r["peak_rss_gib"] for r in runs),
        "peak_rss_net_mb_median": 1024 * statistics.median(r["peak_rss_net_gib"] for r in runs),
    }


def step_tokens(method: str, run: dict) -> float:
    """The work of one step: trained tokens (SFT, DPO: equal on both sides by construction) or
    generated tokens (GRPO: sampled, so the sides' counts differ a little when a completion ends early)."""
    return run["generated_tokens_per_step"] if method == "grpo" else run["tokens"] / run["steps_measured"]


def pair_ratios(method: str, runs: list[dict], ours: str, other: str) -> dict:
    """Per repeat: throughput of ``ours`` over ``other`` in tokens per CPU-second (above 1: ours is
    faster), the same per step and in wall time, and ours' net peak RSS over the other's (below 1:
    ours uses less)."""
    by = {(r["repeat"], r["side"]): r for r in runs}
    repeats = sorted({r["repeat"] for r in runs if (r["repeat"], ours) in by and (r["repeat"], other) in by})

    def ratio(k, key: str, per_token: bool) -> float:
        a, b = by[k, ours], by[k, other]
        scale = step_tokens(method, a) / step_tokens(method, b) if per_token else 1.0
        return scale * b[key] / a[key]

    cpu = [ratio(k, "step_cpu_seconds_mean", True) for k in repeats]
    cpu_step = [ratio(k, "step_cpu_seconds_mean", False) for k in repeats]
    wall = [ratio(k, "step_seconds_median", True) for k in repeats]
    rss = [by[k, ours]["peak_rss_net_gib"] / by[k, other]["peak_rss_net_gib"] for k in repeats]
    return {
        "pairs": len(repeats),
        "cpu_throughput_ratio": spread(cpu),
        "cpu_step_time_ratio": spread(cpu_step),
        "wall_throughput_ratio": spread(wall),
        "peak_rss_net_ratio": spread(rss),
        "cpu_throughput_ratio_per_pair": cpu,
    }


def summarize(method: str, runs: list[dict]) -> dict:
    out = {side: side_summary([r for r in runs if r["side"] == side]) for side in SIDES_OF[method]}
    out["ours_vs_trl"] = pair_ratios(method, runs, "ours", "trl")
    if "ours-plain" in SIDES_OF[method]:
        out["ours_plain_vs_trl"] = pair_ratios(method, runs, "ours-plain", "trl")
        out["ours_vs_ours_plain"] = pair_ratios(method, runs, "ours", "ours-plain")
    return out


def versions() -> dict:
    import torch
    import transformers
    import trl

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "python": platform.python_version(),
    }


def machine() -> dict:
    model = next(
        (x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in x),
        platform.processor() or platform.machine(),
    )
    return {"cpu": model, "cpu_count": os.cpu_count(), "shared": "2 cores shared with other engineers' jobs"}


# --- the page section -------------------------------------------------------------------------------

SIDE_LABEL = {
    "ours": "ours",
    "ours-plain": "ours, `POSTTRAIN_FAST_FORWARD=0`",
    "trl": "TRL 1.16",
}


def ratio_text(r: dict) -> str:
    return f"{r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f})"


def method_rows(method: str, report: dict) -> list[str]:
    s = report["summary"]
    rows = []
    for side in SIDES_OF[method]:
        vs = s["ours_vs_trl"] if side == "ours" else s.get("ours_plain_vs_trl") if side == "ours-plain" else None
        label = "TRL 1.16, `precompute_ref_log_probs=True`" if method == "dpo" and side == "trl" else None
        tokens = s[side]["generated_tokens_per_step" if method == "grpo" else "training_tokens_per_step"]
        rows.append(
            f"| {method.upper()} | {label or SIDE_LABEL[side]} | {tokens:.0f} | {s[side]['step_cpu_ms_median']:.0f} | "
            f"{s[side]['step_wall_ms_median']:.0f} | {s[side]['peak_rss_net_mb_median']:.0f} | "
            f"{ratio_text(vs['cpu_throughput_ratio']) if vs else '1 (baseline)'} | "
            f"{ratio_text(vs['peak_rss_net_ratio']) if vs else '1 (baseline)'} |"
        )
    return rows


def page_section(reports: dict[str, dict]) -> str:
    first = next(iter(reports.values()))
    cfg = first["config"]
    sizes = cfg["sizes"]
    loads = [x for r in reports.values() for run in r["runs"] for x in run["load_average"][:1]]
    lines = [
        f"A Qwen2 of {cfg['parameters'] / 1e6:.1f}M parameters (hidden {cfg['shape']['hidden_size']}, "
        f"{cfg['shape']['num_hidden_layers']} layers, {cfg['shape']['num_attention_heads']} query / "
        f"{cfg['shape']['num_key_value_heads']} KV heads, MLP {cfg['shape']['intermediate_size']}, vocabulary "
        f"{cfg['shape']['vocab_size']:,}), random weights, fp32, sequence length 256: SFT {sizes['sft']['batch']} "
        f"sequences per step, DPO {sizes['dpo']['batch']} pairs, GRPO {sizes['grpo']['prompts']} prompts x "
        f"{sizes['grpo']['generations']} completions of {sizes['grpo']['completion']} tokens. "
        f"{cfg['measured_steps']} measured steps after {cfg['warmup_steps']} warmup step per run, "
        f"{cfg['repeats']} repeats, each run a fresh process with `OMP_NUM_THREADS={cfg['threads']}`, "
        f"the sides of a method back to back, their order alternating between repeats. {first['machine']['cpu']}, "
        f"{first['machine']['shared']} (1-minute load average {min(loads):.1f}-{max(loads):.1f} at the ends of the runs"
        f"); torch {first['versions']['torch']}, transformers {first['versions']['transformers']}, "
        f"TRL {first['versions']['trl']}; {first['date']}.",
        "",
        "| method | side | tokens / step | CPU ms / step | wall ms / step | peak RSS net of imports (MB) | "
        "throughput vs TRL, tokens per CPU-second: median (min-max) | peak RSS net vs TRL: median (min-max) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, report in reports.items():
        lines += method_rows(method, report)
    lines += [
        "",
        "Ratios are taken per pair of runs (same repeat) and summarised over the pairs: throughput is "
        "ours in tokens per CPU-second over TRL's (above 1: ours is faster), memory is ours over TRL's "
        "(below 1: ours uses less). Medians per side are over the repeats. Tokens per step: trained "
        "tokens (non-pad tokens into the model with gradients on; the same on both sides) for SFT and DPO, "
        "generated tokens for GRPO (sampled: a completion that draws EOS early makes a side's count a little "
        "lower, which the per-token ratio accounts for). "
        "Sources: " + ", ".join(f"`reports/benchmarks/{m}-vs-trl-30m.json`" for m in reports) + ".",
        "",
        *goal_lines(reports),
        *ablation_lines(reports),
        *profile_lines(),
    ]
    return "\n".join(lines)


GOAL_RATIO = 1.3  # issue #18: throughput >= 1.3x TRL's at <= TRL's peak memory, at this size


def goal_lines(reports: dict[str, dict]) -> list[str]:
    out = [
        f"Goal of issue #18 at this size, throughput at least {GOAL_RATIO}x TRL's at no more than its peak memory (medians):"
    ]
    for method, report in reports.items():
        vs = report["summary"]["ours_vs_trl"]
        speed, memory = vs["cpu_throughput_ratio"]["median"], vs["peak_rss_net_ratio"]["median"]
        met = speed >= GOAL_RATIO and memory <= 1
        out.append(
            f"- {method.upper()}: {'met' if met else 'not met'} ({speed:.2f}x the throughput at {memory:.2f}x the memory)."
        )
    return [*out, ""]


def ablation_lines(reports: dict[str, dict]) -> list[str]:
    grpo = reports.get("grpo")
    if grpo is None or "ours_vs_ours_plain" not in grpo["summary"]:
        return []
    fast = grpo["summary"]["ours_vs_ours_plain"]["cpu_throughput_ratio"]
    plain = grpo["summary"]["ours_plain_vs_trl"]["cpu_throughput_ratio"]
    return [
        "GRPO fast-path ablation: with `POSTTRAIN_FAST_FORWARD=0` our side uses transformers' forward for "
        "sampling and for the training forward (the native sampler still prefills each prompt once for its "
        f"group). Against TRL it then reaches {ratio_text(plain)}; the hand-written forward, with each prompt "
        f"run once per group in the training forward, is worth {ratio_text(fast)} in generated tokens per CPU-second "
        "(ours with it over ours without, per pair).",
        "",
    ]


def profile_lines() -> list[str]:
    path = REPORTS / "profile-30m.json"
    if not path.is_file():
        return []
    report = json.loads(path.read_text())
    steps = report["steps"]
    parts = [
        f"{name.split('/')[0].upper()} {name.split('/')[1].replace('trl', 'TRL')} {step['matmul_share']:.0%} (+{step['attention_kernel_share']:.0%} attention kernels)"
        for name, step in steps.items()
    ]
    ceilings = [
        f"{name.split('/')[0].upper()} {1 / (step['matmul_share'] + step['attention_kernel_share']):.2f}x"
        for name, step in steps.items()
        if name.endswith("/trl")
    ]
    return [
        "Where a step's time goes (one profiled step per method and side, self time by op under "
        "`torch.profiler`, `reports/benchmarks/profile-30m.json`): dense matrix products take "
        + "; ".join(parts)
        + ". Both sides run nearly the same products on the same model and tokens (our DPO skips the LM head "
        "on prompt positions), so they bound the gain: a trainer that spent no time outside these kernels "
        "would be about 1 / (TRL's share of them) as fast as TRL: "
        + ", ".join(ceilings)
        + ". The rest is elementwise work (norms, activations, softmax, the optimizer's update) and dispatch.",
        "",
    ]


def update_page(reports: dict[str, dict]) -> None:
    text = PAGE.read_text(encoding="utf-8")
    if BEGIN not in text:
        raise SystemExit(f"{PAGE}: no {BEGIN} marker")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    PAGE.write_text(f"{head}{BEGIN}\n{page_section(reports)}\n{END}{tail}", encoding="utf-8")


def committed_reports() -> dict[str, dict]:
    return {m: json.loads(report_path(m).read_text()) for m in METHODS if report_path(m).is_file()}


# --- driver -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="measured optimizer steps per run, after 1 warmup step")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of sft, dpo, grpo")
    parser.add_argument("--page-only", action="store_true", help="rebuild the page section from the committed reports")
    parser.add_argument("--profile", action="store_true", help="profile one step of each side instead (op shares)")
    parser.add_argument(
        "--repeat-offset", type=int, default=0, help="number of the first repeat (a second instance's own numbers)"
    )
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="DIR",
        help="combine the <method>-vs-trl-30m.json reports in these folders (instances run side by side) into reports/",
    )
    args = parser.parse_args(argv)
    if args.profile:
        profile_steps([m for m in args.methods.split(",") if m in METHODS], argv)
        return 0
    if args.merge:
        merge(args.merge)
        update_page(committed_reports())
        return 0
    if not args.page_only:
        methods = [m for m in args.methods.split(",") if m]
        unknown = sorted(set(methods) - set(METHODS))
        if unknown:
            parser.error(f"--methods: unknown {', '.join(unknown)} (expected a subset of {', '.join(METHODS)})")
        measure(methods, args, argv)
    update_page(committed_reports())
    print(f"updated {PAGE.relative_to(ROOT)}")
    return 0


def profile_steps(methods: list[str], argv: list[str] | None) -> None:
    """One run per method and side with its first measured step profiled: where a step's CPU time goes."""
    work = Path(tempfile.mkdtemp(prefix="bench-30m-profile-"))
    parameters = build(work, 2)
    out = {
        "benchmark": "one profiled optimizer step per method and side, ~30M-parameter Qwen2, CPU, one thread",
        "command": "OMP_NUM_THREADS=1 python tools/bench_30m.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "versions": versions(),
        "machine": machine(),
        "parameters": parameters,
        "note": "self CPU time by aten op under torch.profiler (the profiler's own cost included); shares of the step",
        "steps": {},
    }
    for method in methods:
        for side in SIDES_OF[method]:
            result = one_run(method, side, work, 1, profile=True)
            out["steps"][f"{method}/{side}"] = result["profile"]
            print(f"{method:4s} {side:10s} matmul share {result['profile']['matmul_share']:.0%}", flush=True)
    REPORTS.mkdir(parents=True, exist_ok=True)
    target = REPORTS / "profile-30m.json"
    target.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {target.relative_to(ROOT)}")


def measure(methods: list[str], args, argv: list[str] | None) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-30m-"))
    parameters = build(work, args.steps + 1)
    print(f"built a {parameters / 1e6:.1f}M-parameter Qwen2 in {work}", flush=True)
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for repeat in range(args.repeat_offset, args.repeat_offset + args.repeats):
        for method in methods:
            for side in order_for(method, repeat):
                result = {**one_run(method, side, work, args.steps), "repeat": repeat}
                runs[method].append(result)
                print(
                    f"repeat {repeat} {method:4s} {side:10s} {1000 * result['step_cpu_seconds_mean']:7.0f} CPU ms/step "
                    f"{1000 * result['step_seconds_median']:7.0f} wall ms/step  net RSS "
                    f"{1024 * result['peak_rss_net_gib']:6.0f} MB  load {result['load_average'][0]:.1f}",
                    flush=True,
                )
        write_reports(runs, parameters, started, args, argv)  # after every repeat: a stopped run keeps its data


def merge(folders: list[Path]) -> None:
    """One report per method from the reports of instances that ran side by side (each its own
    repeats, back to back within a repeat): all their runs, the summary recomputed over them."""
    for method in METHODS:
        parts = [json.loads((f / report_path(method).name).read_text()) for f in folders]
        parts = [part for part in parts if part["runs"]]
        runs = [r for part in parts for r in part["runs"]]
        if len({r["repeat"] for r in runs}) * len(SIDES_OF[method]) != len(runs):
            raise SystemExit(f"{method}: the instances' repeat numbers overlap (use --repeat-offset)")
        report = {
            **parts[0],
            "command": " ; ".join(part["command"] for part in parts) + " (instances side by side, then --merge)",
            "instances": len(parts),
            "started": min(part["started"] for part in parts),
            "date": max(part["date"] for part in parts),
            "summary": summarize(method, runs),
            "runs": sorted(runs, key=lambda r: (r["repeat"], r["side"])),
        }
        report["config"] = {**parts[0]["config"], "repeats": len({r["repeat"] for r in runs})}
        report_path(method).write_text(json.dumps(report, indent=2) + "\n")
        ratio = report["summary"]["ours_vs_trl"]["cpu_throughput_ratio"]
        print(f"{method}: {len(runs)} runs, ours/TRL CPU throughput {ratio_text(ratio)}")


def write_reports(runs: dict[str, list[dict]], parameters: int, started: str, args, argv: list[str] | None) -> None:
    repeats = len({r["repeat"] for method_runs in runs.values() for r in method_runs})
    for method in runs:
        report = {
            "benchmark": f"{method}: posttrain plugin vs TRL on a ~30M-parameter Qwen2, CPU, one thread",
            "command": "OMP_NUM_THREADS=1 python tools/bench_30m.py "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d"),
            "started": started,
            "versions": versions(),
            "machine": machine(),
            "config": {
                "model": "Qwen2 from config, random weights (tools/gpu_bench.py SHAPES['30m'])",
                "shape": SHAPES["30m"],
                "parameters": parameters,
                "sizes": SIZES["30m"],
                "precision": "fp32",
                "optimizer": "AdamW, constant learning rate 1e-5, no warmup, max grad norm 1.0, weight decay 0",
                "measured_steps": args.steps,
                "warmup_steps": SIZES["30m"][method]["warmup"],
                "repeats": repeats,
                "threads": int(THREADS),
                "sides": list(SIDES_OF[method]),
                "trl_dpo_precompute_ref_log_probs": True,
            },
            "summary": summarize(method, runs[method]),
            "runs": runs[method],
        }
        REPORTS.mkdir(parents=True, exist_ok=True)
        report_path(method).write_text(json.dumps(report, indent=2) + "\n")
        ratio = report["summary"]["ours_vs_trl"]["cpu_throughput_ratio"]
        print(f"{method}: ours/TRL CPU throughput {ratio_text(ratio)} -> {report_path(method).relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
