"""The survey's Tables I and III as data (catalog/models/, catalog/benchmarks/; issue #21 item 4).

The shipped rows validate and link to methods and papers that exist; a bad row is one line naming
its file and field, with exit status 2; the site's pages show every row, escaped, and link back
from the method pages.
"""

from __future__ import annotations

import html
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from posttrain.catalog.load import load_catalog, validate

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(REPO / "catalog")


def test_shipped_rows_validate_and_cite_the_survey(catalog) -> None:
    _, problems = validate(REPO / "catalog")
    mine = [str(p) for p in problems if "/models/" in p.file or "/benchmarks/" in p.file]
    assert mine == []
    assert len(catalog.models) == len(list((REPO / "catalog" / "models").glob("*.yaml"))) >= 3
    assert len(catalog.benchmarks) == len(list((REPO / "catalog" / "benchmarks").glob("*.yaml"))) >= 20
    assert {m.survey.table for m in catalog.models.values()} == {"Table I"}
    assert {b.survey.table for b in catalog.benchmarks.values()} == {"Table III"}


def test_cross_links_resolve(catalog) -> None:
    for row in catalog.models.values():
        assert row.rl_methods, row.id
        assert set(row.rl_methods) <= set(catalog.methods), row.id
    for row in catalog.benchmarks.values():
        assert set(row.methods) <= set(catalog.methods), row.id
        if row.paper:
            assert row.paper in catalog.papers, row.id
    assert [m.id for m in catalog.models_trained_with("orpo")] == ["zephyr-141b-a39b"]
    assert {m.id for m in catalog.models_trained_with("rlhf")} == {"supernova", "zed"}


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    root = tmp_path / "catalog"
    shutil.copytree(REPO / "catalog", root)
    return root


def _write(path: Path, **changes) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def _cli_validate(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "posttrain", "validate", str(root)], capture_output=True, text=True, timeout=120
    )


def test_a_bad_row_is_one_line_naming_file_and_field_exit_2(copy: Path) -> None:
    _write(copy / "models" / "zed.yaml", parameters="lots")
    res = _cli_validate(copy)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    lines = [ln for ln in res.stdout.splitlines() if "zed.yaml" in ln]
    assert len(lines) == 1 and re.match(r"catalog/models/zed\.yaml:\d+: parameters: ", lines[0]), res.stdout


@pytest.mark.parametrize(
    ("sub", "file", "change", "expected"),
    [
        ("models", "zed.yaml", {"rl_methods": ["no-such-method"]}, "rl_methods.0: unknown method id 'no-such-method'"),
        ("models", "zed.yaml", {"colour": "red"}, "colour: unknown field"),
        (
            "models",
            "zed.yaml",
            {"survey": {"table": "Table 9", "where": "x", "membership": "survey-text"}},
            "survey.table",
        ),
        ("benchmarks", "gsm8k.yaml", {"paper": "no-such-paper"}, "paper: unknown paper id 'no-such-paper'"),
        ("benchmarks", "gsm8k.yaml", {"group": "vibes"}, "group: Input should be"),
        ("benchmarks", "mmlu.yaml", {"id": "not-mmlu"}, "id: 'not-mmlu' must equal the file name 'mmlu'"),
    ],
)
def test_each_kind_of_row_mistake_names_file_and_field(copy: Path, sub, file, change, expected) -> None:
    _write(copy / sub / file, **change)
    _, problems = validate(copy)
    mine = [str(p) for p in problems if p.file == f"catalog/{sub}/{file}"]
    assert len(mine) == 1 and expected in mine[0], mine


def test_a_catalog_without_the_table_folders_still_validates(copy: Path) -> None:
    shutil.rmtree(copy / "models")
    shutil.rmtree(copy / "benchmarks")
    cat, problems = validate(copy)
    assert [str(p) for p in problems] == [] and cat.models == {} and cat.benchmarks == {}


# --- the site pages ------------------------------------------------------------------------------

pytest.importorskip("material", reason="the site needs the docs extra: pip install -e '.[docs]'")
_spec = importlib.util.spec_from_file_location("sitebuild", Path(__file__).parent / "site_fixtures" / "sitebuild.py")
assert _spec and _spec.loader
sb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sb)


def _text(page: str) -> str:
    article = page[page.find("<article") : page.find("</article>")]
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", article)).split())


def test_pages_render_escaped_rows_and_link_both_ways(tmp_path: Path) -> None:
    cat = sb.fixture_catalog(tmp_path)
    (cat / "models").mkdir()
    (cat / "benchmarks").mkdir()
    source = {
        "where": "§2.2 *not emphasis* [not a link](https://example.org) | not a cell",
        "membership": "survey-text",
    }
    model = {
        "id": "demo-model",
        "name": "Demo_Model *x* a < b & c",
        "parameters": "141B-A39B",
        "rl_methods": ["demo-runnable"],
        "survey": {"table": "Table I", **source},
    }
    bench = {
        "id": "demo-bench",
        "name": "Demo Bench $x$",
        "group": "reasoning",
        "focus": "Things | with pipes",
        "arxiv": "2401.00001",
        "methods": ["demo-catalogued"],
        "survey": {"table": "Table III", **source},
    }
    (cat / "models" / "demo-model.yaml").write_text(yaml.safe_dump(model), encoding="utf-8")
    (cat / "benchmarks" / "demo-bench.yaml").write_text(yaml.safe_dump(bench), encoding="utf-8")
    out = sb.build_site(tmp_path / "build", catalog=cat, reports=sb.fixture_reports(tmp_path), plugins={})

    models = (out / "models.html").read_text(encoding="utf-8")
    text = _text(models)
    assert "Demo_Model *x* a < b & c" in text and "<em>x</em>" not in models
    assert "*not emphasis* [not a link](https://example.org) | not a cell" in text
    assert 'href="https://example.org"' not in models
    assert 'href="methods/demo-runnable.html"' in models
    datasets = (out / "datasets.html").read_text(encoding="utf-8")
    assert "Demo Bench $x$" in _text(datasets) and "Things | with pipes" in _text(datasets)
    assert 'href="https://arxiv.org/abs/2401.00001"' in datasets
    assert 'href="methods/demo-catalogued.html"' in datasets

    runnable = (out / "methods" / "demo-runnable.html").read_text(encoding="utf-8")
    assert "Models trained with it" in _text(runnable) and 'href="../models.html"' in runnable
    catalogued = (out / "methods" / "demo-catalogued.html").read_text(encoding="utf-8")
    assert "Datasets the survey ties to it" in _text(catalogued) and 'href="../datasets.html"' in catalogued


def test_nav_names_the_pages_apart_from_the_speed_benchmarks() -> None:
    from mkdocs.config import load_config

    hooks = sb.load_hooks()
    config = hooks.on_config(load_config(config_file=str(sb.CONFIG)))
    top = {name: value for item in config["nav"] for name, value in item.items()}
    assert top["RL-trained models"] == "models.md"
    assert top["Datasets and benchmarks"] == "datasets.md"
    assert top["Benchmarks"] == "benchmarks.md"
