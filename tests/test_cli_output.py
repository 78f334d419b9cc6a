"""Output people and scripts read (issue #19 items 5 and 6): --format table|json|csv, plain rows
when piped, help with flags as flags and a method's own Config fields, report commands that run,
and a run's plot of curves plus before -> after bars."""

import csv
import io
import json
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", [["list"], ["papers"], ["plugins"]])
def test_json_and_csv_hold_the_same_rows(cli, command):
    code, out = cli(*command, "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert rows and isinstance(rows, list) and all(isinstance(r, dict) for r in rows)
    code, out = cli(*command, "--format", "csv")
    assert code == 0
    table = list(csv.DictReader(io.StringIO(out)))
    assert len(table) == len(rows) and list(table[0]) == list(rows[0])
    assert [r[list(r)[0]] for r in table] == [r[list(r)[0]] for r in rows]


def test_list_json_keeps_types(cli):
    code, out = cli("list", "--format", "json")
    rows = {r["id"]: r for r in json.loads(out)}
    assert rows["dpo"]["plugin"] == "dpo" and rows["dpo"]["family"] == "preference-optimization"
    assert any(r["plugin"] is None and r["status"] == "catalogued" for r in rows.values())
    code, out = cli("papers", "--format", "json")
    assert all(isinstance(r["methods"], list) for r in json.loads(out))


def test_piped_table_is_plain_and_never_cuts_an_id(cli):
    code, out = cli("list")
    assert code == 0 and "…" not in out and "┃" not in out and "│" not in out
    lines = out.splitlines()
    assert lines[0].split() == ["id", "name", "branch", "family", "status", "plugin"]
    ids = [ln.split()[0] for ln in lines[1:]]
    code, rows = cli("list", "--format", "json")
    assert sorted(ids) == sorted(r["id"] for r in json.loads(rows))
    code, out = cli("papers")
    assert "…" not in out and out.strip().endswith("papers")


def test_show_formats(cli):
    code, out = cli("show", "dpo", "--format", "json")
    record = json.loads(out)
    assert record["id"] == "dpo" and record["papers"][0]["link"].endswith("2305.18290")
    assert {"option": "beta", "type": "float"}.items() <= next(
        f for f in record["config"] if f["option"] == "beta"
    ).items()
    trl = next(f for f in record["frameworks"] if f["framework"] == "TRL")
    assert trl["version"] == "1.16.0" and any(flag.startswith("loss_type=") for flag in trl["flags"])
    code, out = cli("show", "dpo", "--format", "csv")
    fields = {r["option"]: r for r in csv.DictReader(io.StringIO(out))}
    assert fields["beta"]["default"] == "0.1" and "KL" in fields["beta"]["description"]
    code, out = cli("show", "gptq", "--format", "json")
    assert code == 0 and json.loads(out)["config"] is None


def test_unknown_format_is_one_line_error(cli):
    code, out = cli("list", "--format", "xml")
    assert code == 2 and out == "error: --format xml: expected one of table, json, csv"


def test_list_json_through_json_tool_without_torch(python):
    """The issue's check, as a shell pipeline; and the formats keep `catalog list` free of torch."""
    res = subprocess.run(
        f"{shlex.quote(python)} -m posttrain list --format json | {shlex.quote(python)} -m json.tool",
        shell=True,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0 and '"id": "dpo"' in res.stdout, res.stderr
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from posttrain.cli.main import app\n"
        "for args in (['list', '--format', 'json'], ['show', 'dpo', '--format', 'csv'], ['run', 'dpo', '--help']):\n"
        "    res = CliRunner().invoke(app, args)\n"
        "    assert res.exit_code == 0, res.output\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([python, "-c", code], check=True)


def test_help_shows_flags_as_flags_on_whole_lines(cli):
    code, out = cli("run", "--help")
    assert code == 0 and "<bool>" not in out
    flag_lines = [ln for ln in out.splitlines() if ln.strip().startswith(("--resume", "--trust-remote-code"))]
    assert len(flag_lines) == 2 and all(ln.split()[1][0].isupper() for ln in flag_lines)  # help text, no value
    # The docstring's second paragraph is one line when piped: no break mid-sentence.
    assert any("one run per value, then sweep.json" in ln for ln in out.splitlines())
    assert "`catalog run ID --help` also lists" in out


def test_run_id_help_lists_the_methods_config(cli):
    code, out = cli("run", "dpo", "--help")
    assert code == 0 and "Config of dpo" in out
    beta = next(ln for ln in out.splitlines() if ln.strip().startswith("beta "))
    assert "default: 0.1" in beta and "KL" in beta
    code, out = cli("run", "--seed", "3", "GRPO", "-h")
    assert code == 0 and "Config of grpo" in out
    code, out = cli("run", "dpoo", "--help")
    assert code == 2 and "did you mean dpo" in out


def test_run_help_of_a_plugin_file(cli, tmp_path):
    plugin = tmp_path / "mine.py"
    plugin.write_text(
        "from pydantic import BaseModel, Field\n\nclass Config(BaseModel):\n"
        "    temperature: float = Field(0.7, description='Sampling temperature.')\n"
    )
    code, out = cli("run", str(plugin), "--help")
    assert code == 0 and "temperature" in out and "default: 0.7" in out


def test_run_command_is_a_catalog_run_line():
    from posttrain.runs.runner import run_command

    assert run_command("dpo") == "catalog run dpo"
    assert (
        run_command("dpo", sets=["beta=0.2", "max_steps=3"], seed=1, model="Qwen/Qwen2.5-0.5B", dtype="bf16")
        == "catalog run dpo --model Qwen/Qwen2.5-0.5B --set beta=0.2 --set max_steps=3 --seed 1 --dtype bf16"
    )
    assert run_command("./my dpo.py") == "catalog run './my dpo.py'"


def test_every_report_command_parses_as_catalog_run():
    import typer

    from posttrain.cli.main import app
    from posttrain.registry import discover

    run = typer.main.get_command(app).commands["run"]
    plugins = set(discover())
    for path in sorted((ROOT / "reports" / "runs").glob("*.json")):
        words = shlex.split(json.loads(path.read_text(encoding="utf-8"))["command"])
        assert words[:2] == ["catalog", "run"], f"{path.name}: {words}"
        ctx = run.make_context("run", words[2:])
        assert ctx.params["method"] in plugins, f"{path.name}: {ctx.params['method']}"


def test_plot_shows_curves_and_before_after_bars_only(tmp_path):
    from posttrain.runs.tracking import held_out_rates, plot_metrics, training_curves

    rows = [
        {"step": 0, "train_pairs": 4800, "trainable_share": 1.0},
        {"step": 10, "loss": 0.9, "learning_rate": 1e-4},
        {"step": 20, "loss": 0.7, "learning_rate": 5e-5},
        {"step": 20, "eval/exact_match": 0.8},
    ]
    assert list(training_curves(rows)) == ["learning_rate", "loss"]
    before = {"exact_match": 0.78, "preference_accuracy": 0.5, "reward_margin": 0.0, "loss": 1.3}
    after = {"exact_match": 0.86, "preference_accuracy": 0.67, "reward_margin": 0.1, "loss": 0.9}
    paired = {"exact_match": {}, "preference_accuracy": {}}
    assert held_out_rates(before, after, paired) == {"exact_match": (0.78, 0.86), "preference_accuracy": (0.5, 0.67)}
    assert list(held_out_rates(before, after)) == ["exact_match", "preference_accuracy", "reward_margin"]
    path = plot_metrics(rows, tmp_path / "plot.png", "dpo", before, after, paired)
    assert path is not None and path.stat().st_size > 0
    assert plot_metrics(rows[:1], tmp_path / "none.png") is None
