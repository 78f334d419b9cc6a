"""The CLI as a user types it: fast read-only commands, and one-line errors for bad input."""

import json
import subprocess

import pytest


def test_list_and_show_never_import_torch(python):
    code = (
        "import sys\n"
        "from posttrain.cli.main import app\n"
        "from typer.testing import CliRunner\n"
        "r = CliRunner()\n"
        "for args in (['list'], ['show', 'dpo'], ['validate'], ['plugins']):\n"
        "    res = r.invoke(app, args)\n"
        "    assert res.exit_code == 0, res.output\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([python, "-c", code], check=True)


def test_catalog_list_command_never_imports_torch(python):
    """`catalog list` through the module entry point (what the console script runs): no torch, which
    is what keeps it fast (no wall-clock bound: a loaded machine would fail one)."""
    code = (
        "import runpy, sys\n"
        "sys.argv = ['catalog', 'list']\n"
        "try:\n"
        "    runpy.run_module('posttrain', run_name='__main__')\n"
        "except SystemExit as stop:\n"
        "    assert not stop.code, stop.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([python, "-c", code], check=True, capture_output=True)


def test_list_filters(cli):
    code, out = cli("list", "--family", "preference-optimization")
    assert code == 0 and "dpo" in out and "sft" not in out
    code, out = cli("list", "--runnable")
    assert code == 0 and "lora" in out
    code, out = cli("list", "--family", "prefrence-optimization")
    assert code == 2 and "did you mean preference-optimization" in out


def test_show_prints_paper_objective_and_config_table(cli):
    code, out = cli("show", "DPO")
    assert code == 0
    assert "2305.18290" in out and "log" in out
    assert "beta" in out and "0.1" in out and "β" in out


def test_show_prints_practice_and_other_frameworks(cli):
    code, out = cli("show", "grpo")
    assert code == 0
    assert "Use it when" in out and "Avoid it when" in out
    assert "Run it elsewhere" in out and 'TRL 1.16.0 (trl.GRPOTrainer): loss_type="grpo"' in out
    assert "algorithm.adv_estimator=grpo" in out  # verl's Hydra overrides
    code, out = cli("show", "gptq")  # catalogued, no framework map: neither section
    assert code == 0 and "Run it elsewhere" not in out


def test_show_unknown_suggests(cli):
    code, out = cli("show", "dpoo")
    assert code == 2 and "did you mean dpo" in out


def test_schema_writes_json_schema(cli, tmp_path):
    code, _ = cli("schema", "--output", str(tmp_path))
    assert code == 0
    schema = json.loads((tmp_path / "method.schema.json").read_text())
    assert schema["additionalProperties"] is False and "objective" in schema["properties"]


def test_plugins_lists_distribution(cli):
    code, out = cli("plugins")
    assert code == 0 and "posttrain-catalog" in out and "posttrain_plugins.dpo:plugin" in out


def _run(python, *args, cwd=None):
    return subprocess.run([python, "-m", "posttrain", "run", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["dpoo"], "unknown method 'dpoo'; did you mean dpo"),
        (["dpo", "--set", "bta=0.2"], "--set bta: unknown option for dpo; did you mean beta"),
        (["dpo", "--set", "beta=abc"], "--set beta: Input should be a valid number"),
        (["dpo", "--set", "beta"], "--set beta: expected key=value"),
        (["sft", "--model", "./no-such-model"], "--model ./no-such-model: folder does not exist"),
        (["sft", "--model", "embedded:reasoning-big"], "--model embedded:reasoning-big: no such embedded model"),
        (["sft", "--dataset", "./missing.jsonl"], "dataset file missing.jsonl does not exist"),
    ],
)
def test_bad_input_is_one_line_error(python, tmp_path, args, expected):
    res = _run(python, *args, "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert res.returncode == 2
    assert expected in res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert len(res.stderr.strip().splitlines()) == 1


def test_malformed_jsonl_names_the_line(python, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "1+1=", "completion": "2"}\n{"prompt": oops}\n')
    res = _run(python, "sft", "--dataset", str(data), "--output-dir", str(tmp_path / "o"))
    assert res.returncode == 2 and f"{data}:2: invalid JSON" in res.stderr and "Traceback" not in res.stderr


def test_missing_columns_are_named(python, tmp_path):
    data = tmp_path / "p.jsonl"
    data.write_text('{"prompt": "1+1=", "chosen": "2"}\n')
    res = _run(python, "dpo", "--dataset", str(data), "--output-dir", str(tmp_path / "o"))
    assert res.returncode == 2
    assert f"{data}:1: missing columns: expected prompt+chosen+rejected, found prompt, chosen" in res.stderr


def test_config_file_and_unwritable_output(python, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("beta: [1, 2]\n")
    res = _run(python, "dpo", "--config", str(cfg), "--output-dir", str(tmp_path / "o"))
    assert res.returncode == 2 and f"--config {cfg}: beta" in res.stderr
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = _run(python, "dpo", "--output-dir", str(blocker / "sub"))
    assert res.returncode == 2 and "not writable" in res.stderr


def test_python_dash_m_entry_point(python):
    res = subprocess.run([python, "-m", "posttrain", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "run" in res.stdout


def test_no_generic_top_level_names_importable(python, tmp_path):
    code = "import importlib.util as u; print([n for n in ('plugins', 'tools', 'catalog') if u.find_spec(n)])"
    res = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert res.stdout.strip() == "[]"
