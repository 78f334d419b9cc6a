"""Point at every ``TODO(scaffold)`` placeholder that `catalog new` wrote and a contribution left behind.

    python tools/check_placeholders.py                  # the whole checkout: catalog/, plugins/, tests/
    python tools/check_placeholders.py --format github  # as ::error annotations on the pull request

Exits 1 when a placeholder is found, printing ``file:line: text`` for each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MARKER = "TODO(scaffold)"
FOLDERS = ("catalog", "plugins", "tests")
SUFFIXES = (".py", ".yaml", ".yml")


def placeholders(repo: Path) -> list[tuple[str, int, str]]:
    """(file, line, text) of every placeholder line, files relative to ``repo``."""
    found = []
    for folder in FOLDERS:
        for path in sorted((repo / folder).rglob("*")):
            rel = path.relative_to(repo)
            if path.suffix not in SUFFIXES or not path.is_file():
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if MARKER in line:
                    found.append((rel.as_posix(), number, line.strip()))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=("text", "github"), default="text")
    parser.add_argument("--repo", type=Path, default=REPO)
    args = parser.parse_args(argv)
    found = placeholders(args.repo)
    for file, line, text in found:
        if args.format == "github":
            print(f"::error file={file},line={line},title=scaffold placeholder::replace this {MARKER}: {text[:200]}")
        else:
            print(f"{file}:{line}: {text}")
    if found:
        print(f"{len(found)} scaffold placeholder(s) left (written by `catalog new`)", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
