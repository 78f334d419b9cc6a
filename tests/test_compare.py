"""catalog compare: the table from run folders, and (slow) a real comparison in subprocesses."""

import json

import pytest

from posttrain.runs.compare import child_command, markdown_table, row_of


def _fake_run(folder, before, after, trainable, share, peak):
    folder.mkdir(parents=True)
    summary = {
        "before": {"exact_match": before},
        "after": {"exact_match": after, "loss": 0.1},
        "trainable_parameters": trainable,
        "trainable_share": share,
        "train_seconds": 3.0,
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "peak_memory.json").write_text(json.dumps({"peak_rss_mb": peak}))


def test_rows_and_markdown_table(tmp_path):
    _fake_run(tmp_path / "sft", 0.64, 0.95, 148288, 1.0, 512.4)
    _fake_run(tmp_path / "ia3", 0.64, 0.70, 768, 0.0052, 480.0)
    rows = [row_of("sft", tmp_path / "sft", 12.34), row_of("ia3", tmp_path / "ia3", 10.0)]
    assert rows[0]["exact_match_after"] == 0.95 and rows[0]["wall_seconds"] == 12.3
    table = markdown_table(
        rows,
        {
            "command": "catalog compare sft ia3",
            "model": "embedded",
            "dataset": "embedded",
            "device": "cpu",
            "seed": 0,
            "date": "2026-01-01",
        },
    )
    assert "| sft | 0.640 | 0.950 | 148,288 | 100.00% | 512 | 12.3 |" in table
    assert "| ia3 | 0.640 | 0.700 | 768 | 0.52% | 480 | 10.0 |" in table


def test_child_command_passes_sets_to_every_run(tmp_path):
    cmd = child_command("lora", tmp_path, ["max_steps=2", "lr=1"], None, "d.jsonl", "cpu", 3)
    assert cmd[1:4] == ["-m", "posttrain.runs.compare", "lora"]
    assert cmd.count("--set") == 2 and "d.jsonl" in cmd and cmd[cmd.index("--seed") + 1] == "3"


@pytest.mark.slow
def test_compare_runs_methods_in_subprocesses(tmp_path, cli):
    sets = ["--set", "max_steps=2", "--set", "train_examples=64", "--set", "eval_examples=16", "--set", "batch_size=8"]
    code, out = cli("compare", "sft", "ia3", "--output-dir", str(tmp_path), "--device", "cpu", *sets)
    assert code == 0, out
    data = json.loads((tmp_path / "compare.json").read_text())
    assert [r["method"] for r in data["rows"]] == ["sft", "ia3"]
    sft, ia3 = data["rows"]
    assert ia3["trainable_parameters"] < sft["trainable_parameters"] and sft["peak_rss_mb"] > 50
    assert (tmp_path / "compare.png").stat().st_size > 1000 and (tmp_path / "compare.md").is_file()


def test_compare_reports_a_failing_method(tmp_path, cli):
    code, out = cli("compare", "no-such-method", "--output-dir", str(tmp_path), "--device", "cpu")
    assert code == 2 and "no-such-method" in out
