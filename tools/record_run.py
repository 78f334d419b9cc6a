"""Run a method with its defaults (or the given --set values) and commit its summary as the report
the documentation site shows on the method's page: ``reports/runs/<id>.json``.

    python tools/record_run.py dpo
    python tools/record_run.py grpo --seeds 0,1,2          # methods that sample: 3 seeds
    python tools/record_run.py best-of-n --set n=16 --name best-of-n-16

Reports are recorded with one torch thread (runs repeat bit for bit for a seed and thread count).
With several seeds the report is seed 0's summary plus ``seeds`` (each seed's before, after and
paired tests) and ``pooled`` (per metric: mean ± sd of the paired difference over seeds and the
pooled sign test, ``posttrain.stats.pool_seeds``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from posttrain import stats  # noqa: E402
from posttrain.runs.runner import execute, prepare  # noqa: E402

REPORTS = Path(__file__).resolve().parent.parent / "reports" / "runs"


def run_once(method: str, sets: list[str], seed: int, keep: Path | None) -> dict:
    import torch

    torch.set_num_threads(1)
    out = keep or Path(tempfile.mkdtemp(prefix=f"record-{method}-"))
    prepared = prepare(method, sets=sets, output_dir=out, seed=seed, device="cpu")
    execute(prepared, progress=False)
    summary = json.loads((out / "summary.json").read_text())
    summary["artifacts"] = {k: Path(v).name for k, v in summary.get("artifacts", {}).items()}
    # summary["command"] is the runner's `catalog run ID [--set ...] [--seed N]` line.
    if keep is None:
        shutil.rmtree(out, ignore_errors=True)
    return summary


def combine(summaries: list[dict]) -> dict:
    """Seed 0's summary, each seed's paired results, and the pooled test per metric."""
    report = dict(summaries[0])
    if len(summaries) == 1:
        return report
    report["seeds"] = [
        {"seed": s["seed"], "before": s.get("before"), "after": s.get("after"), "paired": s.get("paired", {})}
        for s in summaries
    ]
    metrics = set.intersection(*(set(s.get("paired", {})) for s in summaries))
    report["pooled"] = {m: stats.pool_seeds([s["paired"][m] for s in summaries]) for m in sorted(metrics)}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("method")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE config override")
    parser.add_argument("--seeds", default="0", help="comma list of seeds (methods that sample: 0,1,2)")
    parser.add_argument("--name", help="report file name (default: the method id)")
    parser.add_argument("--keep", type=Path, help="keep the run folder here (seed<N>/ inside it with several seeds)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    summaries = []
    for seed in seeds:
        keep = args.keep / f"seed{seed}" if args.keep and len(seeds) > 1 else args.keep
        summary = run_once(args.method, args.sets, seed, keep)
        for metric, test in summary.get("paired", {}).items():
            print(f"{args.method} seed {seed} {metric}: {stats.describe(test)}", flush=True)
        summaries.append(summary)
    report = combine(summaries)
    for metric, test in report.get("pooled", {}).items():
        print(f"{args.method} pooled {metric}: {stats.describe(test)}", flush=True)
    REPORTS.mkdir(parents=True, exist_ok=True)
    target = REPORTS / f"{args.name or args.method}.json"
    target.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
