"""``catalog compare A B C ...``: run several methods on the same task and budget and tabulate what
each costs and gains: held-out exact match before/after, trainable parameters (count and share),
peak memory (the resident-set high-water mark of each run, so each runs in its own subprocess) and
wall time. Writes ``compare.md``, ``compare.json`` and ``compare.png`` into the output folder and
each run's folder beside them. Nothing here imports torch (the runs do, in their subprocesses).

    catalog compare sft lora dora ia3 prompt-tuning --output-dir reports/compare
    catalog compare dpo ipo --set max_steps=100 --model ./my-model --dataset prefs.jsonl
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from posttrain.errors import UserError

# --- one run (in a subprocess) ------------------------------------------------------------------


def run_one(argv: list[str]) -> int:
    """Child process: run one method, then record its peak RSS next to its summary."""
    parser = argparse.ArgumentParser(prog="posttrain.runs.compare")
    parser.add_argument("method")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--model")
    parser.add_argument("--dataset")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from posttrain.runs.runner import execute, prepare

    try:
        prepared = prepare(
            args.method,
            model=args.model,
            dataset=args.dataset,
            sets=args.sets,
            output_dir=args.output_dir,
            device=args.device,
            seed=args.seed,
        )
        execute(prepared, progress=False)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    (args.output_dir / "peak_memory.json").write_text(json.dumps({"peak_rss_mb": round(peak_mb, 1)}) + "\n")
    return 0


# --- the comparison ------------------------------------------------------------------------------


def child_command(method: str, out: Path, sets: list[str], model, dataset, device: str, seed: int) -> list[str]:
    cmd = [sys.executable, "-m", "posttrain.runs.compare", method, "--output-dir", str(out), "--device", device]
    cmd += ["--seed", str(seed)]
    for item in sets:
        cmd += ["--set", item]
    if model:
        cmd += ["--model", model]
    if dataset:
        cmd += ["--dataset", dataset]
    return cmd


def row_of(method: str, out: Path, wall: float) -> dict[str, Any]:
    summary = json.loads((out / "summary.json").read_text())
    peak = json.loads((out / "peak_memory.json").read_text())["peak_rss_mb"]
    before, after = summary.get("before", {}), summary.get("after", {})
    return {
        "method": method,
        "exact_match_before": before.get("exact_match"),
        "exact_match_after": after.get("exact_match"),
        "heldout_loss_after": after.get("loss"),
        "trainable_parameters": summary.get("trainable_parameters"),
        "trainable_share": summary.get("trainable_share"),
        "peak_rss_mb": peak,
        "wall_seconds": round(wall, 1),
        "train_seconds": summary.get("train_seconds"),
    }


def compare(
    methods: list[str],
    output_dir: Path,
    sets: list[str] | None = None,
    model: str | None = None,
    dataset: str | None = None,
    device: str = "cpu",
    seed: int = 0,
    console=None,
) -> list[dict[str, Any]]:
    if len(methods) < 1:
        raise UserError("compare: name at least one method")
    output_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for method in methods:
        out = output_dir / method
        if console is not None:
            console.print(f"compare: running {method} -> {out}")
        t0 = time.perf_counter()
        proc = subprocess.run(
            child_command(method, out, sets or [], model, dataset, device, seed), capture_output=True, text=True
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise UserError(f"compare: {method} failed: {last} (run `catalog run {method}` to see it all)")
        rows.append(row_of(method, out, wall))
    meta = {
        "methods": methods,
        "sets": sets or [],
        "model": model or "embedded",
        "dataset": dataset or "embedded",
        "device": device,
        "seed": seed,
        "date": dt.date.today().isoformat(),
        "command": "catalog compare " + " ".join(methods) + "".join(f" --set {s}" for s in sets or []),
    }
    (output_dir / "compare.json").write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    (output_dir / "compare.md").write_text(markdown_table(rows, meta))
    plot(rows, output_dir / "compare.png")
    return rows


def _fmt(value: Any, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def markdown_table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"Command: `{meta['command']}` (model {meta['model']}, data {meta['dataset']}, {meta['device']}, "
        f"seed {meta['seed']}, {meta['date']}).",
        "",
        "| method | exact match before | exact match after | trainable parameters | trainable share "
        "| peak RSS (MB) | wall time (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {_fmt(r['exact_match_before'], '{:.3f}')} | {_fmt(r['exact_match_after'], '{:.3f}')} "
            f"| {_fmt(r['trainable_parameters'], '{:,}')} | {_fmt(r['trainable_share'], '{:.2%}')} "
            f"| {_fmt(r['peak_rss_mb'], '{:.0f}')} | {_fmt(r['wall_seconds'], '{:.1f}')} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["method"] for r in rows]
    panels = [
        ("held-out exact match (after)", [r["exact_match_after"] or 0 for r in rows], False),
        ("trainable parameters (log)", [r["trainable_parameters"] or 0 for r in rows], True),
        ("peak RSS (MB)", [r["peak_rss_mb"] for r in rows], False),
        ("wall time (s)", [r["wall_seconds"] for r in rows], False),
    ]
    # 2 x 2 panels drawn at twice the usual resolution, so the chart stays readable at page width.
    fig, grid = plt.subplots(2, 2, figsize=(9, 6.4))
    axes = list(grid.flat)
    for ax, (title, values, log) in zip(axes, panels, strict=True):
        ax.bar(names, values, color="#4c72b0", label="after" if ax is axes[0] else None)
        ax.set_title(title, fontsize=10)
        if log:
            ax.set_yscale("log")
        ax.tick_params(axis="x", rotation=30, labelsize=8)
    befores = [r["exact_match_before"] for r in rows]
    if any(b is not None for b in befores):
        axes[0].scatter(names, [b or 0 for b in befores], color="#dd8452", zorder=3, label="before")
    # the legend sits outside the panels, so it never covers a bar
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncol=2, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=220)
    plt.close(fig)
    return path


# --- CLI ----------------------------------------------------------------------------------------


def register(app) -> None:
    @app.command("compare")
    def compare_command(
        methods: Annotated[list[str], typer.Argument(help="Method ids to run on the same task and budget.")],
        set_: Annotated[
            list[str] | None, typer.Option("--set", help="Config override key=value applied to every method.")
        ] = None,
        output_dir: Annotated[
            Path | None, typer.Option("--output-dir", help="Folder for the table, plot and runs.")
        ] = None,
        model: Annotated[str | None, typer.Option(help="HF model id or local folder (default: embedded).")] = None,
        dataset: Annotated[str | None, typer.Option(help="Local JSONL or hub dataset (default: embedded).")] = None,
        device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
        seed: Annotated[int, typer.Option(help="Random seed of every run.")] = 0,
    ) -> None:
        """Run methods on the same task and budget; write a table (markdown + JSON) and a plot of held-out
        exact match, trainable parameters, peak memory and wall time."""
        from rich.console import Console

        console = Console(soft_wrap=True)
        out = output_dir or Path("runs") / "compare" / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        compare(methods, out, set_ or [], model, dataset, device, seed, console=console)
        console.print((out / "compare.md").read_text(), markup=False, highlight=False)
        console.print(f"table: {out / 'compare.md'}, {out / 'compare.json'}; plot: {out / 'compare.png'}")


if __name__ == "__main__":
    sys.exit(run_one(sys.argv[1:]))
