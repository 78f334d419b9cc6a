"""Run outputs: metrics.jsonl (append-only, resumable), the PNG plot, summary.json, rich progress."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from posttrain.files import finite_json


class MetricsLogger:
    """Appends one JSON object per logged step to ``metrics.jsonl``; never truncates or removes it.

    A resumed run appends a marker row ``{"step": S, "resumed_from_step": S}`` and then the steps
    after its checkpoint S; ``rows()`` reads the file as the run's history: rows an interrupted run
    logged after S are replaced by the resumed run's.
    """

    def __init__(self, output_dir: Path, resume_step: int | None = None):
        self.path = output_dir / "metrics.jsonl"
        # On resume the rows up to the checkpoint are kept, so a resumed run does not log them twice.
        self.skip_upto = resume_step if resume_step is not None and self.path.exists() else None
        if self.skip_upto is not None:
            self._append({"step": self.skip_upto, RESUME_MARKER: self.skip_upto})

    def _append(self, row: Mapping[str, Any]) -> None:
        with self.path.open("a+", encoding="utf-8") as fh:
            if fh.tell() and not _ends_with_newline(self.path):  # a killed write left a partial line
                fh.write("\n")
            fh.write(json.dumps(finite_json(row)) + "\n")

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        if self.skip_upto is not None and step <= self.skip_upto:
            return
        self._append({"step": step, **{k: _plain(v) for k, v in metrics.items()}})

    def rows(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return history(_complete_rows(self.path))


RESUME_MARKER = "resumed_from_step"


def history(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of metrics.jsonl as one run: at each resume marker, rows logged after its step are dropped."""
    out: list[dict[str, Any]] = []
    for row in rows:
        if RESUME_MARKER in row:
            out = [r for r in out if r.get("step", 0) <= row[RESUME_MARKER]]
        else:
            out.append(row)
    return out


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def _complete_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for ln in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rows.append(json.loads(ln))
        except ValueError:
            continue
    return rows


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def training_curves(rows: list[dict[str, Any]]) -> dict[str, tuple[list[float], list[float]]]:
    """Numeric metrics logged at two steps or more, as (steps, values). A value logged once (data
    counts at step 0, the held-out evaluation at the last step) is not a curve."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for row in rows:
        for key, value in row.items():
            if key != "step" and isinstance(value, int | float) and not isinstance(value, bool):
                xs, ys = series.setdefault(key, ([], []))
                xs.append(row["step"])
                ys.append(value)
    return {key: xy for key, xy in sorted(series.items()) if len(xy[0]) >= 2}


def held_out_rates(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, paired: Iterable[str] = ()
) -> dict[str, tuple[float, float]]:
    """Held-out metrics measured before and after that are rates in [0, 1] and so share one axis: the
    ones with a paired per-problem test when the run has any (exact match, accuracy, preference
    accuracy), else every rate. Losses, margins and counts stay in summary.json."""

    def rate(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0

    before, after, paired = before or {}, after or {}, set(paired)
    shown = [k for k in after if rate(after[k]) and rate(before.get(k)) and (not paired or k in paired)]
    return {k: (float(before[k]), float(after[k])) for k in shown}


def plot_metrics(
    rows: list[dict[str, Any]],
    path: Path,
    title: str = "",
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    paired: Iterable[str] = (),
) -> Path | None:
    """The run at a glance: one panel per training curve, then one panel of the held-out metrics as
    before -> after bars. Returns the PNG path (None when there is nothing to draw)."""
    curves = training_curves(rows)
    rates = held_out_rates(before, after, paired)
    panels = len(curves) + (1 if rates else 0)
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, panels)
    rows_n = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 2.9 * rows_n), squeeze=False)
    flat = list(axes.flat)
    for ax, (key, (xs, ys)) in zip(flat, curves.items(), strict=False):
        draw_curve(ax, key, xs, ys)
    if rates:
        draw_before_after(flat[len(curves)], rates)
    for ax in flat[panels:]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def draw_curve(ax, key: str, xs: list[float], ys: list[float]) -> None:
    ax.plot(xs, ys, marker="o" if len(xs) < 20 else None, markersize=3, linewidth=1.2)
    ax.set_title(key, fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def draw_before_after(ax, rates: dict[str, tuple[float, float]]) -> None:
    """Grouped bars, before (grey) and after (blue) per held-out metric, each labelled with its value."""
    width = 0.38
    for i, (b, a) in enumerate(rates.values()):
        for offset, value, colour, label in ((-width / 2, b, "#9e9e9e", "before"), (width / 2, a, "#3f51b5", "after")):
            ax.bar(i + offset, value, width, color=colour, label=label if i == 0 else None)
            ax.text(i + offset, value + 0.02, f"{value:.3f}", ha="center", va="bottom", fontsize=6.5)
    ax.set_xticks(range(len(rates)), list(rates), rotation=20, ha="right", fontsize=7)
    ax.set_ylim(0, 1.12)
    ax.set_title("held-out: before → after", fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", ncols=2, frameon=False)


def rich_progress(console=None):
    """A progress function ``progress(iterable, total, description)``: a rich bar on a terminal;
    when the output is piped or redirected, a plain line about every 10% of the work (and at the
    end), so a log file shows the run moving."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if console is not None and not console.is_terminal:
        return line_progress(console)

    def progress(iterable: Iterable[Any], total: int | None = None, description: str = "") -> Iterator[Any]:
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
        ]
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task(description, total=total, info="")
            for item in iterable:
                yield item
                bar.update(task, advance=1, info=getattr(progress, "info", ""))

    return progress


def line_progress(console, lines: int = 10):
    """``progress(iterable, total, description)`` printing ``description: 30/150 (20%), 4.1 s, about
    16 s left`` about ``lines`` times: for logs and pipes, where a live bar cannot redraw."""

    def progress(iterable: Iterable[Any], total: int | None = None, description: str = "") -> Iterator[Any]:
        start = time.perf_counter()
        every = max(1, (total or 0) // lines) if total else 1
        done = 0
        for item in iterable:
            yield item
            done += 1
            if done % every == 0 or done == total:
                elapsed = time.perf_counter() - start
                share = f" ({100 * done / total:.0f}%)" if total else ""
                left = f", about {elapsed / done * (total - done):.0f} s left" if total and done < total else ""
                info = getattr(progress, "info", "")
                line = (
                    f"{description}: {done}/{total or '?'}{share}, {elapsed:.1f} s{left}{'  ' + info if info else ''}"
                )
                console.print(line, markup=False, highlight=False)
                console.file.flush()

    return progress
