"""Regenerate the results tables of the site's *Results by family* page (site/docs/results-by-family.md)
from the committed reports (reports/runs/*.json).

A table sits between ``<!-- results: ID ID ... -->`` and ``<!-- /results -->``; this rewrites its
rows from the reports of those methods. ``--check`` only says whether the page is current (exit 1
when not); tests/test_results_page.py runs the same check.

    python tools/results_table.py            # rewrite the page
    python tools/results_table.py --check
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from posttrain.runs.reports import results_markdown

PAGE = Path(__file__).resolve().parent.parent / "site" / "docs" / "results-by-family.md"
BLOCK = re.compile(r"(<!-- results: ([^>]*?) -->\n)(.*?)(<!-- /results -->)", re.S)


def regenerate(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + results_markdown(m.group(2).split()) + m.group(4), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the page is not current")
    args = parser.parse_args(argv)
    text = PAGE.read_text(encoding="utf-8")
    try:
        new = regenerate(text)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if new != text:
            print(f"{PAGE.name}: results tables are stale: run python tools/results_table.py")
            return 1
        return 0
    PAGE.write_text(new, encoding="utf-8")
    print(f"rewrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
