"""Regenerate the results tables of README.md from the committed reports (reports/runs/*.json).

A table sits between ``<!-- results: ID ID ... -->`` and ``<!-- /results -->``; this rewrites its
rows from the reports of those methods. ``--check`` only says whether README.md is current (exit 1
when not); tests/test_number_sources.py runs the same check.

    python tools/results_table.py            # rewrite README.md
    python tools/results_table.py --check
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from posttrain.reports import results_markdown

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"(<!-- results: ([^>]*?) -->\n)(.*?)(<!-- /results -->)", re.S)


def regenerate(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + results_markdown(m.group(2).split()) + m.group(4), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when README.md is not current")
    args = parser.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    try:
        new = regenerate(text)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if new != text:
            print("README.md results tables are stale: run python tools/results_table.py")
            return 1
        return 0
    README.write_text(new, encoding="utf-8")
    print(f"rewrote {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
