"""README.md's results tables are generated from the committed reports and must be current."""

import importlib.util
from pathlib import Path

import pytest

from posttrain import reports, stats

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("results_table", ROOT / "tools" / "results_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_tables_match_the_reports():
    tool = _tool()
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert tool.BLOCK.search(text), "README.md has no generated results table"
    assert tool.regenerate(text) == text, "README.md results tables are stale: run python tools/results_table.py"


def test_rows_show_the_pooled_test_for_seeded_reports(tmp_path):
    seeds = [stats.paired_counts(30, 10, 500), stats.paired_counts(25, 12, 500), stats.paired_counts(28, 9, 500)]
    paired = {"n": 500, "before": 0.8, "after": 0.84} | seeds[0]
    report = {"method": "demo", "command": "catalog run demo", "paired": {"exact_match": paired}}
    report["pooled"] = {"exact_match": stats.pool_seeds(seeds)}
    (tmp_path / "demo.json").write_text(__import__("json").dumps(report))
    table = reports.results_markdown(["demo"], tmp_path)
    assert "| `catalog run demo` | exact_match | 0.800 → 0.840 | 83 / 31 |" in table
    assert "(sd, 3 seeds)" in table and "**gain**" in table
    (tmp_path / "old.json").write_text('{"method": "old", "before": {}, "after": {}}')
    with pytest.raises(ValueError, match="old.json: no paired test"):
        reports.results_markdown(["old"], tmp_path)
