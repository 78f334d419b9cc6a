"""Plugins are found through entry points, lazily, for built-ins and third parties alike."""

import os
import subprocess
import sys

import pytest

from posttrain import Plugin
from posttrain.cli.configinfo import config_fields
from posttrain.errors import UserError
from posttrain.registry import discover, load


def test_builtins_are_discovered_without_importing_them():
    specs = discover()
    assert {"sft", "dpo", "lora"} <= set(specs)
    assert all(s.distribution == "posttrain-catalog" for s in specs.values())


def test_load_checks_type_and_id():
    plugin = load("dpo")
    assert isinstance(plugin, Plugin) and plugin.id == "dpo"
    with pytest.raises(UserError, match="did you mean"):
        load("dp")


@pytest.mark.parametrize("name", sorted(discover()))
def test_static_config_table_matches_the_pydantic_model(name):
    """`catalog show` reads Config without importing torch; it must agree with the real model."""
    plugin = load(name)
    static = {f.name: (f.default, f.description) for f in config_fields(discover()[name].target)}
    real = {k: (v.default, v.description or "") for k, v in plugin.config.model_fields.items()}
    assert static == real


@pytest.mark.parametrize("name", sorted(discover()))
def test_smoke_overrides_are_valid_config(name):
    plugin = load(name)
    cfg = plugin.config.model_validate(dict(plugin.smoke))
    if plugin.kind == "trainer" and "max_steps" in plugin.config.model_fields:
        # inference plugins have no optimizer steps (their smoke shrinks the problem set); online-dpo's
        # are rounds x steps_per_round
        assert cfg.max_steps <= 2


def test_third_party_plugin_is_discovered(tmp_path, repo):
    """Install the example distribution into a folder and see it through the same door."""
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(repo / "tests" / "fixtures" / "example_plugin"),
        ],
        check=True,
        capture_output=True,
    )
    # Wide enough that the table does not wrap names (long plugin targets squeeze the columns at 80).
    env = {**os.environ, "PYTHONPATH": str(target), "POSTTRAIN_BUILTIN_ONLY": "", "COLUMNS": "200"}
    out = subprocess.run(
        [sys.executable, "-m", "posttrain", "plugins"], env=env, capture_output=True, text=True, check=True
    )
    assert "example-echo" in out.stdout and "posttrain-example-plugin" in out.stdout
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "posttrain",
            "run",
            "example-echo",
            "--set",
            "word=hi",
            "--output-dir",
            str(tmp_path / "out"),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert '"echo": "hi"' in (tmp_path / "out" / "summary.json").read_text()
    # The allow-list hides it again.
    env["POSTTRAIN_PLUGINS"] = "sft,dpo"
    out = subprocess.run(
        [sys.executable, "-m", "posttrain", "plugins"], env=env, capture_output=True, text=True, check=True
    )
    assert "example-echo" not in out.stdout and "dpo" in out.stdout
