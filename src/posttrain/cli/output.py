"""Rows printed the way the reader needs them: ``--format table|json|csv`` (no torch).

``table`` is a rich table on a terminal; piped or redirected, it is plain aligned rows at full
width, so ``grep``, ``less`` and ``cut`` see every id whole. ``json`` keeps the values' types (lists
stay lists, a missing value is ``null``); ``csv`` joins list values with ``"; "``.
"""

from __future__ import annotations

import csv
import json
from typing import Any

from posttrain.errors import UserError

FORMATS = ("table", "json", "csv")
FORMAT_HELP = "table (plain rows when piped), json or csv."


def check_format(value: str) -> str:
    if value not in FORMATS:
        raise UserError(f"--format {value}: expected one of {', '.join(FORMATS)}")
    return value


def cell(value: Any) -> str:
    """A value as table or CSV text: None as '-', a list joined with '; ', one line."""
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return "; ".join(cell(v) for v in value)
    return " ".join(str(value).split())


def print_rows(console, columns: list[str], rows: list[dict[str, Any]], fmt: str) -> None:
    """Print ``rows`` (dicts keyed by ``columns``) in ``fmt``."""
    {"table": print_table, "json": print_json, "csv": print_csv}[fmt](console, columns, rows)


def print_table(console, columns: list[str], rows: list[dict[str, Any]]) -> None:
    if not console.is_terminal:
        print_plain(console, columns, rows)
        return
    from rich.table import Table

    table = Table()
    for i, name in enumerate(columns):
        # The first column is the key people copy into the next command: never cut or folded.
        widest = max((len(cell(r.get(name))) for r in rows), default=0) if i == 0 else None
        table.add_column(name, no_wrap=i == 0, min_width=widest)
    for r in rows:
        table.add_row(*(cell(r.get(name)) for name in columns))
    console.print(table, crop=False)


def print_plain(console, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """Aligned columns separated by two spaces, no box and no wrapping: one line per row."""
    texts = [columns] + [[cell(r.get(name)) for name in columns] for r in rows]
    widths = [max(len(t[i]) for t in texts) for i in range(len(columns))]
    for t in texts:
        line = "  ".join(text.ljust(width) for text, width in zip(t, widths, strict=True)).rstrip()
        console.out(line, highlight=False)


def print_json(console, columns: list[str], rows: list[dict[str, Any]]) -> None:
    console.out(json.dumps([{name: r.get(name) for name in columns} for r in rows], indent=2, default=str))


def print_csv(console, columns: list[str], rows: list[dict[str, Any]]) -> None:
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([[("" if r.get(name) is None else cell(r.get(name))) for name in columns] for r in rows])
    console.out(buffer.getvalue(), end="", highlight=False)
