"""Test-time scaling sweeps: record one method's budget sweep, and chart several methods together.

    python tools/tts_chart.py record best-of-n n=1,4,16,64     # -> reports/tts/best-of-n.json (+ .png)
    python tools/tts_chart.py chart                            # every reports/tts/*.json on one chart
    python tools/tts_chart.py chart runs/a/sweep.json runs/b/sweep.json -o compare.png

``record`` runs ``catalog run METHOD --set FIELD=V1,V2,...`` on CPU (embedded task unless --set
options say otherwise) and keeps its ``sweep.json``; ``chart`` draws accuracy against generated
tokens per problem for each sweep (greedy decoding as a star) and, for the committed reports,
rewrites the table in site/docs/test-time-scaling.md and the chart the page shows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "reports" / "tts"
PAGE = ROOT / "site" / "docs" / "test-time-scaling.md"
PAGE_CHART = ROOT / "site" / "docs" / "assets" / "images" / "test-time-scaling.png"
BEGIN, END = "<!-- tts:table -->", "<!-- /tts:table -->"
DEFAULTS_BEGIN, DEFAULTS_END = "<!-- tts:defaults -->", "<!-- /tts:defaults -->"


def record(method: str, sweep: str, sets: list[str], seed: int) -> Path:
    from posttrain.runs.runner import run_sweep

    field, _, raw = sweep.partition("=")
    values = [v for v in raw.split(",") if v]
    out = Path(tempfile.mkdtemp(prefix=f"tts-{method}-"))
    result = run_sweep(method, field, values, sets, out, console=None, device="cpu", seed=seed)
    result["command"] = f"catalog run {method} --set {sweep}" + "".join(f" --set {s}" for s in sets)
    REPORTS.mkdir(parents=True, exist_ok=True)
    target = REPORTS / f"{method}.json"
    target.write_text(json.dumps(result, indent=2, default=str) + "\n")
    plot_panels([result], REPORTS / f"{method}.png", title=f"{method}: accuracy against compute")
    keep_default_run(method, field, out, sets)
    shutil.rmtree(out, ignore_errors=True)
    print(f"wrote {target}")
    return target


def keep_default_run(method: str, field: str, out: Path, sets: list[str]) -> None:
    """The sweep point at the method's default value is also its method-page report
    (reports/runs/<id>.json, as tools/record_run.py writes it), so it is not run twice."""
    from posttrain.runs.runner import resolve_plugin

    if sets:
        return
    default = resolve_plugin(method)[1].config.model_fields[field].default
    summary_path = out / f"{field}={default}" / "summary.json"
    if not summary_path.is_file():
        return
    summary = json.loads(summary_path.read_text())
    summary["command"] = f"catalog run {method}"
    summary["artifacts"] = {k: Path(v).name for k, v in summary.get("artifacts", {}).items()}
    runs = ROOT / "reports" / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    (runs / f"{method}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {runs / f'{method}.json'} (the default {field}={default})")


def table(sweeps: list[dict]) -> str:
    lines = [
        "| method | budget | accuracy | greedy accuracy | generated tokens / problem | forward passes | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in sweeps:
        greedy = (s.get("greedy") or {}).get("accuracy")
        for p in s["points"]:
            acc = p.get("accuracy")
            lines.append(
                f"| `{s['method']}` | {s['field']}={p['value']} | "
                f"{'-' if acc is None else f'{acc:.3f}'} | {'-' if greedy is None else f'{greedy:.3f}'} | "
                f"{p['generated_tokens_per_problem']:.1f} | {p['forward_passes']} | {p['seconds']:.1f} |"
            )
    return "\n".join(lines)


def defaults_table() -> str:
    """Every inference method's run at its defaults (reports/runs/<id>.json, from record_run)."""
    lines = [
        "| method | baseline (`before`) | accuracy | generated tokens / problem | forward passes | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for path in sorted((ROOT / "reports" / "runs").glob("*.json")):
        run = json.loads(path.read_text())
        after, before = run.get("after") or {}, run.get("before") or {}
        if "generated_tokens_per_problem" not in after:
            continue  # a trainer's report
        lines.append(
            f"| `{run['method']}` | {before.get('accuracy', 0):.3f} | {after['accuracy']:.3f} | "
            f"{after['generated_tokens_per_problem']:.1f} | {after['forward_passes']} | {after['seconds']:.1f} |"
        )
    return "\n".join(lines)


def fill(text: str, begin: str, end: str, body: str) -> str:
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def base_of(sweep: dict) -> tuple:
    """What a sweep's greedy point depends on: its model, its data and the greedy accuracy itself (the
    embedded methods decode with different embedded models, so "model: embedded" alone does not tell)."""
    greedy = (sweep.get("greedy") or {}).get("accuracy")
    return (str(sweep.get("model")), str(sweep.get("data")), None if greedy is None else round(greedy, 3))


def plot_panels(
    sweeps: list[dict], path: Path, x_key: str = "generated_tokens_per_problem", title: str | None = None
) -> Path:
    """Accuracy against compute with one panel per base model (each with its own greedy star), the
    legend under each panel, drawn at twice the usual resolution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple, list[dict]] = {}
    for sweep in sweeps:
        groups.setdefault(base_of(sweep), []).append(sweep)
    cols = min(2, len(groups))
    rows = -(-len(groups) // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(6.2 * cols, 5.2 * rows), squeeze=False)
    for ax, ((model, data, greedy_acc), members) in zip(grid.flat, groups.items(), strict=False):
        for sweep in members:
            pts = [p for p in sweep["points"] if p.get("accuracy") is not None]
            xs = [max(p[x_key], 1e-9) for p in pts]
            ys = [p["accuracy"] for p in pts]
            line = ax.plot(xs, ys, marker="o", label=f"{sweep['method']} ({sweep['field']})")[0]
            for x, y, p in zip(xs, ys, pts, strict=True):
                ax.annotate(
                    str(p["value"]),
                    (x, y),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=7,
                    color=line.get_color(),
                )
        greedy = members[0].get("greedy") or {}
        if greedy.get("accuracy") is not None:
            ax.scatter(
                [greedy[x_key]],
                [greedy["accuracy"]],
                marker="*",
                s=140,
                color="black",
                zorder=5,
                label="greedy decoding",
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel(x_key.replace("_", " "), fontsize=9)
        ax.set_ylabel("accuracy", fontsize=9)
        ax.grid(alpha=0.3)
        ax.set_title(f"greedy accuracy {greedy_acc} (model {model}, data {data})", fontsize=9)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    for ax in list(grid.flat)[len(groups) :]:
        ax.set_visible(False)
    fig.suptitle(title or "Test-time scaling on the embedded task: accuracy against compute", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=220)
    plt.close(fig)
    return path


def chart(files: list[Path], output: Path | None) -> None:
    committed = not files
    files = files or sorted(REPORTS.glob("*.json"))
    sweeps = [json.loads(f.read_text()) for f in files]
    if not sweeps:
        raise SystemExit("no sweep files")
    target = output or REPORTS / "chart.png"
    plot_panels(sweeps, target)
    print(f"wrote {target}")
    if committed and PAGE.is_file():
        PAGE_CHART.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, PAGE_CHART)
        text = fill(PAGE.read_text(), BEGIN, END, table(sweeps))
        if DEFAULTS_BEGIN in text:
            text = fill(text, DEFAULTS_BEGIN, DEFAULTS_END, defaults_table())
        PAGE.write_text(text)
        print(f"updated {PAGE}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run a sweep and keep it under reports/tts/")
    rec.add_argument("method")
    rec.add_argument("sweep", help="FIELD=V1,V2,...")
    rec.add_argument("--set", dest="sets", action="append", default=[])
    rec.add_argument("--seed", type=int, default=0)
    ch = sub.add_parser("chart", help="several sweeps on one chart")
    ch.add_argument("files", nargs="*", type=Path)
    ch.add_argument("-o", "--output", type=Path)
    args = parser.parse_args(argv)
    if args.command == "record":
        record(args.method, args.sweep, args.sets, args.seed)
    else:
        chart(args.files, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
