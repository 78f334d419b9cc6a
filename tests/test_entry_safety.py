"""Untrusted text is refused early and quoted briefly (issue #23, items 1, 5 and 6).

- `catalog validate` refuses HTML, script and non-http links, oversize fields and files, and YAML
  aliases in catalog entries, one `file:line: field: message` line each, exit status 2;
- `catalog new --name` refuses the same;
- an error quotes at most a few hundred characters of a bad value, and YAML aliases in `--set`
  and `--config` are refused before they can expand;
- `catalog run FILE.py` says that it executes the file, and what plugin it found there.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml

from posttrain.catalog.load import validate
from posttrain.errors import QUOTE_LIMIT, UserError, quoted

REPO = Path(__file__).resolve().parents[1]

ENTRY = {
    "id": "alpha",
    "name": "Alpha",
    "family": "preference-optimization",
    "summary": "A method used to test the validator.",
    "description": "Test entry with math $y_{<t}$ and a [link](https://example.org/a) and one [to a page](dpo.md).",
    "objective": r"\mathcal{L} = -\sum_t \log\pi_\theta(y_t\mid y_{<t}),\ t_1<t_2",
    "papers": [{"title": "A paper", "year": 2024, "arxiv": "2401.00001"}],
    "plugin": None,
    "status": "catalogued",
    "status_note": "Data: many tasks phrased as instructions.",
}


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    root = tmp_path / "catalog"
    (root / "methods").mkdir(parents=True)
    shutil.copy(REPO / "catalog" / "taxonomy.yaml", root / "taxonomy.yaml")
    write(root, ENTRY)
    return root


def write(root: Path, entry: dict, text: str | None = None) -> Path:
    path = root / "methods" / "alpha.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(entry, sort_keys=False), encoding="utf-8")
    return path


def problems_of(root: Path) -> list[str]:
    return [str(p) for p in validate(root)[1]]


def test_a_clean_entry_with_latex_and_links_passes(root: Path) -> None:
    assert problems_of(root) == []


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("name", "<script>alert(1)</script>", "HTML tag '<script'"),
        ("description", "Text <script>alert(1)</script>.", "HTML tag '<script'"),
        ("description", "An image <img src=x onerror=alert(1)>.", "HTML tag '<img'"),
        ("description", "A [link](javascript:alert(1)).", "javascript:"),
        ("description", "A [link](JaVaScRiPt:alert(1)).", "javascript:"),
        ("description", "A [link](&#106;avascript:alert(1)).", "javascript:"),
        ("description", "A [link][r].\n\n[r]: data:text/html,x", "links to 'data:text/html,x'"),
        ("description", "A comment <!-- x -->.", "HTML tag '<!'"),
        ("summary", "A summary that closes a tag </p>.", "HTML tag '</p'"),
        ("objective", "x <svg onload=alert(1)>", "HTML tag '<svg'"),
        ("aliases", ["ok", "<b>bold</b>"], "item 1: contains the HTML tag '<b'"),
        ("name", "N" * 101, "101 characters, at most 100 allowed"),
        ("description", "d" * 4001, "4001 characters, at most 4000 allowed"),
        ("tags", [f"t{i}" for i in range(101)], "101 items, at most 100 allowed"),
    ],
)
def test_unsafe_or_oversize_text_is_one_problem_naming_the_field(root: Path, field, value, expected) -> None:
    write(root, {**ENTRY, field: value})
    [problem] = problems_of(root)
    assert problem.startswith("catalog/methods/alpha.yaml:") and f": {field}: " in problem, problem
    assert expected in problem and "\n" not in problem


def test_paper_and_taxonomy_text_is_checked_too(root: Path) -> None:
    write(root, {**ENTRY, "papers": [{"title": "T <script>x</script>", "year": 2024, "arxiv": "2401.00001"}]})
    [problem] = problems_of(root)
    assert ": papers.0.title: contains the HTML tag '<script'" in problem
    write(root, ENTRY)
    taxonomy = yaml.safe_load((root / "taxonomy.yaml").read_text())
    taxonomy["branches"][0]["families"][0]["name"] = "<img src=x onerror=alert(1)>"
    (root / "taxonomy.yaml").write_text(yaml.safe_dump(taxonomy))
    assert any(": branches.0.families.0.name: contains the HTML tag '<img'" in p for p in problems_of(root))


def test_validate_refuses_every_payload_the_site_test_plants(tmp_path: Path) -> None:
    """tests/test_site_escaping.py builds the site from this catalog with the check turned off."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("sitebuild", REPO / "tests" / "site_fixtures" / "sitebuild.py")
    assert spec and spec.loader
    sb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sb)
    problems = problems_of(sb.payload_catalog(tmp_path))
    fields = {p.split(": ")[1] for p in problems if "demo-catalogued.yaml" in p}
    assert {"name", "aliases", "summary", "description", "objective", "status_note", "tags"} <= fields
    assert {"metrics.0.name", "implementations.0.name", "papers.0.title"} <= fields
    assert any(f.startswith("defaults.") for f in fields)
    assert any("demo-missing.yaml" in p and ": plugin: " in p for p in problems)
    assert any("taxonomy.yaml" in p and ".name: contains the HTML tag '<script'" in p for p in problems)


def test_oversize_file_and_yaml_aliases_are_refused_before_loading(root: Path) -> None:
    write(root, ENTRY, "id: alpha\n# padding\n" + "#" * (64 * 1024) + "\n")
    [problem] = problems_of(root)
    assert "alpha.yaml:1: (file): " in problem and "at most 65536 allowed" in problem
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    write(root, ENTRY, yaml.safe_dump(ENTRY) + bomb)
    [problem] = problems_of(root)
    assert "alpha.yaml:" in problem and "(yaml): YAML aliases (*name) are not allowed" in problem


def test_cli_validate_exits_2_with_one_line_per_problem(root: Path, cli, monkeypatch) -> None:
    import posttrain.registry

    monkeypatch.setattr(posttrain.registry, "discover", lambda: {})
    write(root, {**ENTRY, "name": "<script>alert(1)</script>", "description": "[x](javascript:alert(1))"})
    code, out = cli("validate", str(root))
    assert code == 2
    lines = [line for line in out.splitlines() if line.startswith("catalog/methods/alpha.yaml:")]
    assert len(lines) == 2 and "Traceback" not in out
    assert any(": name: " in line for line in lines) and any(": description: " in line for line in lines)


def test_catalog_new_refuses_a_script_name(tmp_path: Path, cli) -> None:
    shutil.copytree(REPO / "catalog", tmp_path / "repo" / "catalog")
    (tmp_path / "repo" / "plugins" / "posttrain_plugins").mkdir(parents=True)
    shutil.copy(REPO / "pyproject.toml", tmp_path / "repo" / "pyproject.toml")
    code, out = cli(
        "new",
        "evil",
        "--family",
        "preference-optimization",
        "--entry-only",
        "--paper",
        "direct-preference-optimization-your-2023",
        "--name",
        "<script>alert(1)</script>",
        "--repo",
        str(tmp_path / "repo"),
    )
    assert code == 2 and "--name '<script>alert(1)</script>': contains the HTML tag '<script'" in out
    assert not (tmp_path / "repo" / "catalog" / "methods" / "evil.yaml").exists()


# --- bounded output --------------------------------------------------------------------------

ALIAS_BOMB_SET = "learning_rate=[&a [1,1,1,1,1,1,1,1,1],&b [*a,*a,*a,*a,*a,*a,*a,*a,*a],&c [*b,*b,*b,*b,*b,*b,*b,*b]]"


def test_yaml_alias_in_set_is_refused() -> None:
    from posttrain.runs.runner import parse_sets

    assert len(ALIAS_BOMB_SET) < 100
    with pytest.raises(UserError) as info:
        parse_sets([ALIAS_BOMB_SET])
    assert str(info.value) == "--set learning_rate: YAML aliases (*name) are not allowed; write the value out"


def test_yaml_alias_bomb_in_config_is_refused(tmp_path: Path) -> None:
    from posttrain.runs.runner import read_run_file

    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdef", "bcdefg", strict=True):
        levels.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(levels[:6]) + "\nlearning_rate: *f\n")
    assert path.stat().st_size < 400
    with pytest.raises(UserError) as info:
        read_run_file(path)
    assert str(info.value) == f"--config {path}:2: YAML aliases (*name) are not allowed; write the value out"


def test_a_bad_value_is_quoted_briefly() -> None:
    from pydantic import BaseModel

    from posttrain.interface import Plugin
    from posttrain.runs.runner import build_config

    class Config(BaseModel):
        learning_rate: float = 0.1

    plugin = Plugin(id="p", config=Config, run=lambda cfg, ctx: None)
    for value in ("x" * 100_000, list(range(100_000)), [[[[[[["deep"]]]]]]] * 1000):
        with pytest.raises(UserError) as info:
            build_config(plugin, {"learning_rate": value}, {"learning_rate": "--set"})
        message = str(info.value)
        assert message.startswith("--set learning_rate: ") and len(message) < QUOTE_LIMIT + 150, message[:300]


def test_quoted_is_bounded_and_fast_on_huge_shared_structures() -> None:
    value: list = ["x" * 1000]
    for _ in range(30):  # 2**30 leaves, shared: what an alias bomb loads into
        value = [value, value]
    start = time.perf_counter()
    text = quoted(value)
    assert len(text) <= QUOTE_LIMIT + 40 and time.perf_counter() - start < 1


def test_user_error_messages_are_bounded() -> None:
    message = str(UserError("--set x: " + "y" * 100_000))
    assert len(message) < 2100 and message.endswith("more characters)")


# --- catalog run FILE.py -------------------------------------------------------------------------

PLUGIN_FILE = """
from pathlib import Path
from pydantic import BaseModel
from posttrain.interface import Plugin

Path(__file__).with_suffix(".ran").open("a").write("x")  # counts how often the file is executed


class Config(BaseModel):
    steps: int = 1
    width: int = 2


plugin = Plugin(id="my-method", config=Config, run=lambda cfg, ctx: None, kind="trainer")
"""


def test_run_file_says_it_executes_the_file_and_what_it_found(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from posttrain.cli.main import app

    path = tmp_path / "my_method.py"
    path.write_text(PLUGIN_FILE)
    result = CliRunner().invoke(app, ["run", str(path), "--set", "no_such_option=1"])  # stops before training
    assert isinstance(result.exception, UserError), result.output
    out = result.output + str(result.exception)
    assert f"{path}: executing this Python file to find its plugin" in out
    assert f"{path}: found plugin 'my-method' (trainer; Config Config with 2 fields)" in out
    assert "no_such_option: unknown option for my-method" in out
    assert out.index("executing") < out.index("found plugin")
    assert path.with_suffix(".ran").read_text() == "x"  # executed once, although two steps look the plugin up


def test_run_of_a_missing_file_announces_nothing(tmp_path: Path, cli) -> None:
    code, out = cli("run", str(tmp_path / "nope.py"))
    assert code == 2 and "does not exist" in out and "executing" not in out
