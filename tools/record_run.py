"""Run a method with its defaults (or the given --set values) and commit its summary as the report
the documentation site shows on the method's page: ``reports/runs/<id>.json``.

    python tools/record_run.py dpo
    python tools/record_run.py best-of-n --set n=16
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from posttrain.runner import execute, prepare

REPORTS = Path(__file__).resolve().parent.parent / "reports" / "runs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("method")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE config override")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="keep the run folder here instead of a temporary one")
    args = parser.parse_args(argv)
    out = args.keep or Path(tempfile.mkdtemp(prefix=f"record-{args.method}-"))
    prepared = prepare(args.method, sets=args.sets, output_dir=out, seed=args.seed, device="cpu")
    execute(prepared, progress=True)
    summary = json.loads((out / "summary.json").read_text())
    summary["artifacts"] = {k: Path(v).name for k, v in summary.get("artifacts", {}).items()}
    REPORTS.mkdir(parents=True, exist_ok=True)
    target = REPORTS / f"{args.method}.json"
    target.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {target}")
    if args.keep is None:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
