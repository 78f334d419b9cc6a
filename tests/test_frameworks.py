"""Per-framework flag maps (catalog/frameworks/; issue #21 item 3) and the implementation links.

The shipped maps validate; a bad map is one line naming its file and field, with exit status 2; a
flag said to hold the paper's value holds the entry's paper default; every TRL flag is a field of
its TRL config class (when TRL is installed); the site shows the flags on the method pages and the
coverage on frameworks.md; no implementation link points where a project moved away from.
"""

from __future__ import annotations

import copy
import dataclasses
import html
import importlib
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
FRAMEWORK_FILES = sorted((REPO / "catalog" / "frameworks").glob("*.yaml"))

# Repositories that moved, as (old prefix, where it lives now). Checked on 2026-12-07 against stored
# copies of the repositories (the search tool's find_files): verl moved from volcengine to
# verl-project and its recipes to verl-project/verl-recipe; bitsandbytes to bitsandbytes-foundation.
MOVED = [
    ("https://github.com/volcengine/verl", "https://github.com/verl-project/verl"),
    ("https://github.com/verl-project/verl/tree/main/recipe", "https://github.com/verl-project/verl-recipe/tree/main"),
    ("https://github.com/TimDettmers/bitsandbytes", "https://github.com/bitsandbytes-foundation/bitsandbytes"),
]


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(REPO / "catalog")


def test_shipped_maps_validate_and_cover_the_four_frameworks(catalog) -> None:
    _, problems = validate(REPO / "catalog")
    assert [str(p) for p in problems if "/frameworks/" in p.file] == []
    assert set(catalog.frameworks) == {"trl", "verl", "openrlhf", "llama-factory"}
    assert len(catalog.frameworks) == len(FRAMEWORK_FILES)
    assert {f.id for f in catalog.frameworks_of("grpo")} == {"trl", "verl", "openrlhf"}
    assert catalog.frameworks["trl"].methods["grpo"].flags["loss_type"] == "grpo"


def test_paper_values_equal_the_entries_defaults(catalog) -> None:
    checked = 0
    for framework in catalog.frameworks.values():
        for mid, recipe in framework.methods.items():
            for flag, key in recipe.paper_defaults.items():
                assert recipe.flags[flag] == catalog.methods[mid].defaults[key].value, (framework.id, mid, flag)
                checked += 1
    assert checked >= 50


@pytest.fixture
def catalog_copy(tmp_path: Path) -> Path:
    root = tmp_path / "catalog"
    shutil.copytree(REPO / "catalog", root)
    return root


def _edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def _add_unknown_method(data) -> None:
    data["methods"]["no-such-method"] = copy.deepcopy(data["methods"]["dpo"])  # no YAML aliases


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_add_unknown_method, "methods.no-such-method: unknown method id 'no-such-method'"),
        (lambda d: d["methods"]["grpo"].update(flagz={"beta": 0.1}), "methods.grpo.flagz: unknown field"),
        (lambda d: d.update(flag_style="morse"), "flag_style: Input should be"),
        (lambda d: d.update(checked="2026-13-01"), "checked: '2026-13-01' is not a valid date"),
        (lambda d: d.update(checked="2026-12"), "checked: '2026-12' is not a full date"),
        (lambda d: d["methods"]["grpo"].update(source="javascript:alert(1)"), "methods.grpo.source: String should"),
        (lambda d: d["methods"]["grpo"].update(flags={}), "methods.grpo.flags: Dictionary should have at least 1"),
        (
            lambda d: d["methods"]["grpo"]["flags"].update(beta=0.05),
            "methods.grpo.paper_defaults.beta: 0.05 differs from the entry's beta = 0.04",
        ),
        (
            lambda d: d["methods"]["grpo"]["paper_defaults"].update(top_k="beta"),
            "methods.grpo.paper_defaults.top_k: 'top_k' is not one of this method's flags",
        ),
        (
            lambda d: d["methods"]["grpo"]["paper_defaults"].update(beta="kl_weight"),
            "methods.grpo.paper_defaults.beta: method 'grpo' has no default 'kl_weight' in its entry",
        ),
    ],
)
def test_each_mistake_is_one_problem_naming_file_and_field(catalog_copy: Path, change, expected) -> None:
    _edit(catalog_copy / "frameworks" / "trl.yaml", change)
    _, problems = validate(catalog_copy)
    mine = [str(p) for p in problems if p.file == "catalog/frameworks/trl.yaml"]
    assert len(mine) == 1 and expected in mine[0], mine
    assert [str(p) for p in problems if p.file != "catalog/frameworks/trl.yaml"] == []


def test_the_problem_names_the_line_of_the_field(catalog_copy: Path) -> None:
    _edit(catalog_copy / "frameworks" / "trl.yaml", _add_unknown_method)
    _, problems = validate(catalog_copy)
    (problem,) = [p for p in problems if p.file == "catalog/frameworks/trl.yaml"]
    lines = (catalog_copy / "frameworks" / "trl.yaml").read_text(encoding="utf-8").splitlines()
    assert lines[problem.line - 1].strip() == "no-such-method:"


def test_cli_validate_gives_one_line_and_exit_2(catalog_copy: Path) -> None:
    _edit(catalog_copy / "frameworks" / "verl.yaml", lambda d: d.update(docs="not a url"))
    res = subprocess.run(
        [sys.executable, "-m", "posttrain", "validate", str(catalog_copy)], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    lines = [ln for ln in res.stdout.splitlines() if "verl.yaml" in ln]
    assert len(lines) == 1 and re.match(r"catalog/frameworks/verl\.yaml:\d+: docs: ", lines[0]), res.stdout


def test_a_catalog_without_the_frameworks_folder_still_validates(catalog_copy: Path) -> None:
    shutil.rmtree(catalog_copy / "frameworks")
    cat, problems = validate(catalog_copy)
    assert [str(p) for p in problems] == [] and cat.frameworks == {}


# --- TRL: the flags are the installed TRL's ------------------------------------------------------


def _trl_recipes() -> list[tuple[str, object]]:
    trl = load_catalog(REPO / "catalog").frameworks["trl"]
    return sorted(trl.methods.items())


@pytest.mark.parametrize(("method", "recipe"), _trl_recipes(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_trl_flag_is_a_field_of_its_config_class(method, recipe, monkeypatch) -> None:
    pytest.importorskip("trl")
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    assert recipe.config_class, f"{method}: a TRL recipe names the config class its flags belong to"
    module_name, _, class_name = recipe.config_class.rpartition(".")
    config_class = getattr(importlib.import_module(module_name), class_name)
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(recipe.flags) - fields)
    assert not unknown, f"{method}: {unknown} are not fields of {recipe.config_class}"
    entry_module, _, entry_name = recipe.entry_point.split(" ")[0].rpartition(".")
    assert hasattr(importlib.import_module(entry_module), entry_name), recipe.entry_point


def test_trl_sources_are_files_of_the_version_checked(catalog) -> None:
    trl = pytest.importorskip("trl")
    framework = catalog.frameworks["trl"]
    if trl.__version__ != framework.version:
        pytest.skip(f"installed TRL {trl.__version__}, map checked against {framework.version}")
    package = Path(trl.__file__).resolve().parent
    prefix = f"https://github.com/huggingface/trl/blob/v{framework.version}/trl/"
    for method, recipe in framework.methods.items():
        assert recipe.source.startswith(prefix), (method, recipe.source)
        assert (package / recipe.source.removeprefix(prefix)).is_file(), (method, recipe.source)


# --- implementation links --------------------------------------------------------------------------


def test_no_link_points_where_a_project_moved_from(catalog) -> None:
    urls = [(mid, i.url) for mid, e in catalog.methods.items() for i in e.implementations]
    urls += [(f"{f.id}:{mid}", r.source) for f in catalog.frameworks.values() for mid, r in f.methods.items()]
    stale = [(where, url, new) for where, url in urls for old, new in MOVED if url.startswith(old)]
    assert not stale, "links to where a project moved from (use the new place): " + "; ".join(
        f"{where}: {url} -> {new}" for where, url, new in stale
    )


# --- the site --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sb():
    pytest.importorskip("material", reason="the site needs the docs extra: pip install -e '.[docs]'")
    spec = importlib.util.spec_from_file_location("sitebuild", REPO / "tests" / "site_fixtures" / "sitebuild.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _text(page: str) -> str:
    article = page[page.find("<article") : page.find("</article>")]
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", article)).split())


def test_method_pages_show_the_flags_and_frameworks_md_the_coverage(sb, tmp_path: Path) -> None:
    cat = sb.fixture_catalog(tmp_path)
    (cat / "frameworks").mkdir()
    demo = {
        "id": "demo-fw",
        "name": "Demo_FW *x*",
        "version": "1.0 | not a cell",
        "checked": "2026-12-07",
        "how_checked": "Read *its* [docs](https://example.org/docs).",
        "docs": "https://example.org/docs",
        "flag_style": "cli",
        "methods": {
            "demo-runnable": {
                "entry_point": "demo-train",
                "flags": {"beta": 0.1, "use_kl": True, "loss": "a|b", "bounds": [0.2, 0.28]},
                "paper_defaults": {"beta": "beta"},
                "source": "https://example.org/src.py",
                "note": "Differs *here*.",
            },
            "demo-catalogued": {
                "entry_point": "demo-train",
                "flags": {"mode": "catalogued"},
                "source": "https://example.org/other.py",
            },
        },
    }
    (cat / "frameworks" / "demo-fw.yaml").write_text(yaml.safe_dump(demo), encoding="utf-8")
    out = sb.build_site(tmp_path / "build", catalog=cat, reports=sb.fixture_reports(tmp_path), plugins={})

    page = (out / "methods" / "demo-runnable.html").read_text(encoding="utf-8")
    text = _text(page)
    assert "Run it elsewhere" in text and "Demo_FW *x*" in text and "<em>x</em>" not in page
    assert "1.0 | not a cell, checked 2026-12-07" in text
    assert "--beta 0.1 †" in text and "--use_kl" in text and "--loss a|b" in text and "--bounds 0.2 0.28" in text
    assert 'href="https://example.org/src.py"' in page and "Differs *here*." in text
    assert "Run it elsewhere" in _text((out / "methods" / "demo-catalogued.html").read_text(encoding="utf-8"))
    assert "Run it elsewhere" not in _text((out / "methods" / "demo-missing.html").read_text(encoding="utf-8"))

    coverage = (out / "frameworks.html").read_text(encoding="utf-8")
    assert 'href="methods/demo-runnable.html"' in coverage and 'href="methods/demo-catalogued.html"' in coverage
    assert "2 methods in 1 frameworks." in _text(coverage)
    assert "Read *its* [docs](https://example.org/docs)." in _text(coverage)


def test_nav_lists_the_frameworks_page(sb) -> None:
    from mkdocs.config import load_config

    hooks = sb.load_hooks()
    config = hooks.on_config(load_config(config_file=str(sb.CONFIG)))
    top = {name: value for item in config["nav"] for name, value in item.items()}
    assert top["Run it elsewhere"] == "frameworks.md"
