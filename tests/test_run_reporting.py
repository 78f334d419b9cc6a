"""What a run reports: per-problem outcomes, the paired test in summary.json and the end-of-run
table, phase lines and progress that show in a piped log."""

import json
import subprocess
import sys

from rich.console import Console

from posttrain.console import announce, announcing
from posttrain.runs.runner import execute, prepare, print_summary
from posttrain.runs.tracking import line_progress


def test_trainer_summary_has_the_paired_exact_match_test(tmp_path):
    sets = ["max_steps=2", "eval_examples=40", "train_examples=64"]
    result = execute(prepare("sft", sets=sets, output_dir=tmp_path, device="cpu"), progress=False)
    paired = result.metrics["paired"]["exact_match"]
    assert paired["n"] == 40 and paired["before"] == result.metrics["before"]["exact_match"]
    assert paired["after"] == result.metrics["after"]["exact_match"]
    assert {"fixed", "broken", "difference", "se", "p", "verdict"} <= set(paired)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["paired"] == result.metrics["paired"]
    rows = [json.loads(line) for line in (tmp_path / "outcomes.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and {r["metric"] for r in rows} == {"exact_match"}
    assert sum(r["after"] > r["before"] for r in rows) == paired["fixed"]


def test_inference_summary_pairs_the_method_with_greedy(tmp_path):
    result = execute(prepare("best-of-n", output_dir=tmp_path, device="cpu", smoke=True), progress=False)
    paired = result.metrics["paired"]["accuracy"]
    assert paired["before"] == result.metrics["before"]["accuracy"]
    assert paired["after"] == result.metrics["after"]["accuracy"]


def _summary(fixed, broken, n=500):
    from posttrain import stats

    before, after = 0.7, 0.7 + (fixed - broken) / n
    test = {"n": n, "before": before, "after": after} | stats.paired_counts(fixed, broken, n)
    return {
        "method": "demo",
        "seconds": 1.0,
        "before": {"exact_match": before},
        "after": {"exact_match": after},
        "paired": {"exact_match": test},
        "artifacts": {},
    }


def _printed(summary) -> str:
    console = Console(record=True, width=160)
    print_summary(console, summary)
    return console.export_text()


def test_end_of_run_table_says_plainly_when_the_headline_falls():
    text = _printed(_summary(37, 88))
    assert "37 / 88" in text and "harm" in text
    assert "exact_match fell significantly" in text and "Likely cause" in text
    assert "within noise" in _printed(_summary(20, 24))
    gain = _printed(_summary(60, 20))
    assert "gain" in gain and "fell" not in gain


def test_line_progress_and_phase_lines_for_pipes():
    console = Console(record=True, width=120, force_terminal=False)
    progress = line_progress(console)
    assert list(progress(range(20), total=20, description="train")) == list(range(20))
    lines = console.export_text().splitlines()
    assert len(lines) == 10 and lines[-1].startswith("train: 20/20 (100%)")
    with announcing(console):
        announce("loading model")
    assert "] loading model" in console.export_text()
    announce("outside a run: silent")  # no console: nothing happens


def test_piped_run_prints_its_phases(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "posttrain", "run", "sft", "--output-dir", str(out)]
    cmd += ["--set", "max_steps=10", "--set", "eval_examples=20", "--set", "train_examples=64"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "loading model embedded base" in res.stdout
    assert "held-out exact_match:" in res.stdout
    assert "10/10 (100%)" in res.stdout  # the training loop's progress, as plain lines
    assert "Δ ± SE" in res.stdout
