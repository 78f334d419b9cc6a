"""Budget sweeps of the test-time methods: ``catalog run best-of-n --set n=1,4,16,64`` runs the
method once per value of one budget field (a config field marked ``json_schema_extra={"sweep":
True}``, ``posttrain.inference.recipe.SWEEP``) and writes ``sweep.json`` and ``sweep.png``: accuracy
against generated tokens per problem, greedy decoding as a reference point.

This module plans and reports a sweep (``find_sweep``, ``write_sweep``, ``plot_sweeps``); the runs
themselves are ``posttrain.runs.runner.run_sweep``'s, so nothing here imports the runner or torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from posttrain.errors import UserError


def sweepable_fields(config_cls: type[BaseModel]) -> list[str]:
    return [
        name
        for name, f in config_cls.model_fields.items()
        if isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get("sweep")
    ]


def find_sweep(config_cls: type[BaseModel], sets: Sequence[str]) -> tuple[str, list[str], list[str]] | None:
    """(field, values, other --set items) when one --set gives a comma list for a sweepable field."""
    found = None
    rest = []
    for item in sets:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if sep and "," in raw and key in config_cls.model_fields:
            if key not in sweepable_fields(config_cls):  # a plain comma value of a non-budget field
                rest.append(item)
                continue
            if found is not None:
                raise UserError(f"--set {item}: only one field can be swept at a time (already sweeping {found[0]})")
            values = [v.strip() for v in raw.split(",") if v.strip()]
            if not values:
                raise UserError(f"--set {item}: expected a comma list of values")
            found = (key, values)
            continue
        rest.append(item)
    return (found[0], found[1], rest) if found else None


def write_sweep(
    method: str, field_name: str, points: list[dict[str, Any]], greedy: dict[str, Any] | None, ctx, root: Path
) -> dict[str, Any]:
    """The sweep's report (``points``: the budget value and the `after` metrics of each run; ``greedy``:
    the `before` metrics; ``ctx``: the runs' RunContext, for the data and model) as sweep.json and
    sweep.png in ``root``."""
    sweep = {
        "method": method,
        "field": field_name,
        "points": points,
        "greedy": greedy,
        "data": ctx.dataset or "embedded",
        "model": ctx.model or "embedded",
    }
    (root / "sweep.json").write_text(json.dumps(sweep, indent=2, default=str) + "\n")
    plot_sweeps([sweep], root / "sweep.png", title=f"{method}: accuracy against compute")
    return sweep


def plot_sweeps(
    sweeps: Sequence[dict[str, Any]], path: Path, title: str = "", x_key: str = "generated_tokens_per_problem"
) -> Path:
    """Accuracy against compute: one line per sweep (method), greedy decoding as a reference point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    greedy_drawn = False
    for sweep in sweeps:
        pts = [p for p in sweep["points"] if p.get("accuracy") is not None]
        xs = [max(p[x_key], 1e-9) for p in pts]
        ys = [p["accuracy"] for p in pts]
        line = ax.plot(xs, ys, marker="o", label=f"{sweep['method']} ({sweep['field']})")[0]
        for x, y, p in zip(xs, ys, pts, strict=True):
            ax.annotate(
                str(p["value"]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=line.get_color()
            )
        g = sweep.get("greedy")
        if g and g.get("accuracy") is not None and not greedy_drawn:
            ax.scatter([g[x_key]], [g["accuracy"]], marker="*", s=120, color="black", zorder=5, label="greedy")
            greedy_drawn = True
    ax.set_xscale("log", base=2)
    ax.set_xlabel(x_key.replace("_", " "))
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
