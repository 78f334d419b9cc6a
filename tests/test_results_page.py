"""The documentation people read first (issue #19 item 1): the site's *Results by family* tables are
generated from the committed reports and current; README.md is short, its two commands are the
ones that work (the CPU wheel index named, the CUDA build beside it), its family table names real
runnable methods; CONTRIBUTING's CI commands are what .ci/run runs."""

import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest

from posttrain import stats
from posttrain.runs import reports

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CPU_INDEX = "--index-url https://download.pytorch.org/whl/cpu"


def _tool():
    spec = importlib.util.spec_from_file_location("results_table", ROOT / "tools" / "results_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_page_tables_match_the_reports():
    tool = _tool()
    text = tool.PAGE.read_text(encoding="utf-8")
    assert tool.PAGE == ROOT / "site" / "docs" / "results-by-family.md"
    assert len(tool.BLOCK.findall(text)) >= 5, f"{tool.PAGE.name} has lost its generated results tables"
    assert tool.regenerate(text) == text, (
        f"{tool.PAGE.name}: results tables are stale: run python tools/results_table.py"
    )


def test_rows_show_the_pooled_test_for_seeded_reports(tmp_path):
    seeds = [stats.paired_counts(30, 10, 500), stats.paired_counts(25, 12, 500), stats.paired_counts(28, 9, 500)]
    paired = {"n": 500, "before": 0.8, "after": 0.84} | seeds[0]
    report = {"method": "demo", "command": "catalog run demo", "paired": {"exact_match": paired}}
    report["pooled"] = {"exact_match": stats.pool_seeds(seeds)}
    (tmp_path / "demo.json").write_text(json.dumps(report))
    table = reports.results_markdown(["demo"], tmp_path)
    assert "| `catalog run demo` | exact_match | 0.800 → 0.840 | 83 / 31 |" in table
    assert "(sd, 3 seeds)" in table and "**gain**" in table
    (tmp_path / "old.json").write_text('{"method": "old", "before": {}, "after": {}}')
    with pytest.raises(ValueError, match="old.json: no paired test"):
        reports.results_markdown(["old"], tmp_path)


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def test_readme_is_short_and_starts_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    install, run = _bash_blocks(text)[:2]
    assert CPU_INDEX in install and "pip install torch==2.13.0 " in install and "pip install -e '.[train]'" in install
    assert run.strip() == "catalog run dpo"
    start = text.split("## Start", 1)[1].split("\n## ", 1)[0]
    assert "CPU-only" in start and "CUDA" in start and "pip install torch==2.13.0`" in start
    assert "<!-- results:" not in text, "results tables live on the site's Results by family page"


def test_readme_family_table_names_runnable_methods_of_that_family(cli):
    code, out = cli("list", "--runnable", "--format", "json")
    family_of = {r["id"]: r["family"] for r in json.loads(out)}
    rows = re.findall(r"families/([\w-]+)/index\.html\) \| ([^\n]*) \|\n", README.read_text(encoding="utf-8"))
    assert len(rows) >= 15
    for family, cell in rows:
        named = re.findall(r"`([\w-]+)`", cell.split("catalogued:")[0])
        wrong = [m for m in named if family_of.get(m) != family]
        assert not wrong, f"README: {family} row names {wrong}, which are not runnable methods of {family}"


def test_contributing_lists_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    section = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8").split("## What CI runs", 1)[1]
    commands = [ln.split("#")[0].strip() for ln in _bash_blocks(section)[0].splitlines() if ln.strip()]
    ci_lines = [ln.strip() for ln in ci.splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(commands) >= 5
    for command in commands:
        assert any(shlex.split(command) == shlex.split(ln) for ln in ci_lines), f"{command!r} is not in .ci/run"
