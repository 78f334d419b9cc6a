"""Shared by the benchmark scripts: print a report's summary and write the report as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def print_and_write(report: dict[str, Any], out: Path | None) -> None:
    """Print ``report["summary"]``; write the whole report to ``out`` (folders made) when given."""
    print(json.dumps(report["summary"], indent=2))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out}")
