"""Catalog entries that are another plugin run with some Config values (``run_as``: high-entropy-token-rl,
clip-cov and tis-mis are token-level options of grpo). ``catalog validate`` checks their keys against the
plugin's Config without importing it, ``catalog run ID`` applies the values under any --set, the
method page says which command it is, and a smoke run logs the entry's metrics."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from posttrain.catalog.load import load_catalog, validate
from posttrain.catalog.schema import MethodEntry
from posttrain.cli.main import plugin_config_fields
from posttrain.registry import discover
from posttrain.runs.runner import execute, prepare

REPO = Path(__file__).resolve().parents[1]
OPTIONS = {  # entry -> what it sets on grpo
    "high-entropy-token-rl": {"top_entropy_fraction": 0.2},
    "clip-cov": {"clip_cov_fraction": 0.02},
    "tis-mis": {"sampler_correction": "tis"},
}


@pytest.fixture(scope="module")
def cat():
    return load_catalog(REPO / "catalog")


def test_the_option_entries_run_as_grpo(cat):
    found = {mid: e.run_as.set for mid, e in cat.methods.items() if e.run_as is not None}
    assert found == OPTIONS
    assert all(cat.methods[mid].plugin == "grpo" for mid in OPTIONS)


@pytest.mark.parametrize("mid", sorted(OPTIONS))
def test_run_as_values_are_valid_for_the_plugin_config(cat, mid):
    entry = cat.methods[mid]
    fields = plugin_config_fields(discover(), entry.plugin)
    assert fields and set(entry.run_as.set) <= fields  # read from the source, as catalog validate does
    spec = discover()[entry.plugin]
    module, _, attr = spec.target.partition(":")
    plugin = getattr(importlib.import_module(module), attr)
    config = plugin.config.model_validate(entry.run_as.set)
    assert all(getattr(config, k) == v for k, v in entry.run_as.set.items())


def test_validate_names_an_unknown_run_as_field(tmp_path):
    root = tmp_path / "catalog"
    shutil.copytree(REPO / "catalog", root)
    path = root / "methods" / "clip-cov.yaml"
    path.write_text(path.read_text().replace("{clip_cov_fraction: 0.02}", "{clip_cov_fracton: 0.02}"))
    specs = discover()
    _, problems = validate(root, None, lambda plugin: plugin_config_fields(specs, plugin))
    mine = [str(p) for p in problems if p.file.endswith("/clip-cov.yaml")]
    assert len(mine) == 1 and "run_as.set.clip_cov_fracton" in mine[0], mine
    assert "'clip_cov_fracton' is not a Config field of plugin 'grpo'" in mine[0]


def test_validate_names_a_missing_report(tmp_path):
    root = tmp_path / "repo" / "catalog"
    shutil.copytree(REPO / "catalog", root)
    (root.parent / "reports" / "runs").mkdir(parents=True)  # a checkout without that report
    _, problems = validate(root, None)
    # the entry's practitioner claims cite the same report: their problem is the validator's other check
    mine = [str(p) for p in problems if p.file.endswith("/high-entropy-token-rl.yaml") and "run_as" in str(p)]
    assert len(mine) == 1 and "run_as.report" in mine[0] and "grpo-top-entropy.json does not exist" in mine[0]


def test_run_as_needs_a_plugin_and_field_names():
    base = yaml_entry()
    with pytest.raises(ValidationError, match="run_as needs plugin"):
        MethodEntry.model_validate({**base, "plugin": None, "status": "catalogued"})
    with pytest.raises(ValidationError, match="not Config field names"):
        MethodEntry.model_validate({**base, "run_as": {"set": {"Bad-Key": 1}}})
    assert MethodEntry.model_validate(base).run_as.set == {"top_entropy_fraction": 0.2}


def yaml_entry() -> dict:
    import yaml

    data = yaml.safe_load((REPO / "catalog" / "methods" / "high-entropy-token-rl.yaml").read_text())
    data["papers"] = [{"title": "A Paper", "year": 2025, "arxiv": "2506.01939"}]
    data.pop("objective_source")
    return data


def test_catalog_run_of_the_entry_sets_its_values_under_any_set(tmp_path):
    prepared = prepare("high-entropy-token-rl", output_dir=tmp_path / "a", smoke=True, device="cpu")
    assert prepared.config.top_entropy_fraction == 0.2 and prepared.plugin.id == "grpo"
    assert prepared.command.startswith("catalog run high-entropy-token-rl")
    overridden = prepare(
        "high-entropy-token-rl", sets=["top_entropy_fraction=0.5"], output_dir=tmp_path / "b", smoke=True, device="cpu"
    )
    assert overridden.config.top_entropy_fraction == 0.5
    plain = prepare("grpo", output_dir=tmp_path / "c", smoke=True, device="cpu")
    assert plain.config.top_entropy_fraction == 1.0


@pytest.mark.parametrize("mid", sorted(OPTIONS))
def test_a_smoke_run_of_the_entry_logs_its_metrics(cat, mid, tmp_path):
    execute(prepare(mid, output_dir=tmp_path, smoke=True, device="cpu"), progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = set().union(*rows)
    assert {m.name for m in cat.methods[mid].metrics} <= logged
