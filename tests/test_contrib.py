"""`catalog new`, `catalog cp`, `catalog run FILE.py` and `catalog validate --format github`.

`catalog new` writes into a copy of the checkout's catalog, pyproject and plugin folder (a
"mini checkout" in tmp_path); the arXiv API is replaced by a fake answer or an unreachable address.
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
import yaml

from posttrain.catalog.load import Problem, validate
from posttrain.cli import scaffold
from posttrain.cli.contrib import github_annotation
from posttrain.cli.scaffold import TODO
from posttrain.errors import UserError

REPO = Path(__file__).resolve().parents[1]
NEW_ARXIV = "2510.00042"  # not in catalog/papers (checked below)
ATOM = """<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <entry>
    <id>http://arxiv.org/abs/2510.00042v2</id>
    <published>2025-10-01T17:59:59Z</published>
    <title>A Margin Loss
      for   Preference Learning</title>
    <author><name>Ada Lovelace</name></author>
    <author><name>Alan  Turing</name></author>
  </entry>
</feed>
"""
ATOM_ERROR = """<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <entry><id>http://arxiv.org/api/errors#incorrect_id_format_for_2510.00042</id><title>Error</title></entry>
</feed>
"""
UNREACHABLE = "http://127.0.0.1:9/api/query"  # the discard port: nothing listens, the connection is refused


def mini_checkout(dest: Path) -> Path:
    """What `catalog new` reads and writes: pyproject, catalog/, plugins/posttrain_plugins/, tests/."""
    shutil.copytree(REPO / "catalog", dest / "catalog")
    (dest / "plugins" / "posttrain_plugins").mkdir(parents=True)
    (dest / "plugins" / "posttrain_plugins" / "__init__.py").write_text("")
    (dest / "tests").mkdir()
    shutil.copy(REPO / "pyproject.toml", dest / "pyproject.toml")
    return dest


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


class FakeResponse:
    def __init__(self, text: str, status: int = 200):
        self.text, self.status_code = text, status

    def raise_for_status(self) -> None:
        import requests

        if self.status_code >= 400:
            raise requests.HTTPError(f"{self.status_code}")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = mini_checkout(tmp_path / "repo")
    assert not any(NEW_ARXIV in p.read_text() for p in (root / "catalog" / "papers").glob("*.yaml"))
    return root


@pytest.fixture
def arxiv_online(monkeypatch):
    import requests

    calls = []

    def fake_get(url, params=None, timeout=None, headers=None):
        calls.append({"url": url, "params": params, "timeout": timeout})
        return FakeResponse(ATOM)

    monkeypatch.setattr(requests, "get", fake_get)
    return calls


def test_new_with_arxiv_online_writes_an_entry_that_validates(checkout, cli, arxiv_online):
    code, out = cli(
        "new", "margin-po", "--family", "preference-optimization", "--paper", NEW_ARXIV, "--repo", str(checkout)
    )
    assert code == 0, out
    assert arxiv_online == [{"url": scaffold.ARXIV_API, "params": {"id_list": NEW_ARXIV}, "timeout": 10.0}]
    assert "paper: A Margin Loss for Preference Learning (2025-10-01), from the arXiv API" in out
    assert "pip install -e ." in out and "catalog smoke margin-po" in out
    assert f"1. cd {checkout.resolve()}" in out  # run from elsewhere with --repo

    paper_file = checkout / "catalog" / "papers" / "a-margin-loss-for-2025.yaml"
    record = yaml.safe_load(paper_file.read_text())
    assert record == {
        "id": "a-margin-loss-for-2025",
        "title": "A Margin Loss for Preference Learning",
        "authors": ["Ada Lovelace", "Alan Turing"],
        "date": "2025-10-01",
        "arxiv": NEW_ARXIV,
    }
    entry = yaml.safe_load((checkout / "catalog" / "methods" / "margin-po.yaml").read_text())
    assert entry["status"] == "catalogued" and entry["plugin"] is None
    assert entry["papers"] == ["a-margin-loss-for-2025"] and entry["family"] == "preference-optimization"
    cat, problems = validate(checkout / "catalog")
    assert problems == [] and "margin-po" in cat.methods
    assert cat.methods["margin-po"].papers[0].title == "A Margin Loss for Preference Learning"
    assert 'margin-po = "posttrain_plugins.margin_po:plugin"' in (checkout / "pyproject.toml").read_text()


def test_scaffolded_plugin_has_the_standard_anatomy(checkout, arxiv_online):
    scaffold.scaffold(checkout, "margin-po", "preference-optimization", NEW_ARXIV)
    source = (checkout / "plugins" / "posttrain_plugins" / "margin_po.py").read_text()
    tree = ast.parse(source)
    docstring = ast.get_docstring(tree)
    assert "Ada Lovelace, Alan Turing, 2025" in docstring and "arXiv:2510.00042" in docstring
    assert "catalog run margin-po" in docstring and "Deviations from the paper:" in docstring
    order = [
        n.name if isinstance(n, ast.ClassDef | ast.FunctionDef) else n.targets[0].id
        for n in tree.body
        if isinstance(n, ast.ClassDef | ast.FunctionDef) or (isinstance(n, ast.Assign) and len(n.targets) == 1)
    ]
    assert order == ["SCAFFOLD_TODO", "Config", "margin_po_loss", "run", "plugin"]
    tests = ast.parse((checkout / "tests" / "test_margin_po.py").read_text())
    marks = {n.name: [ast.unparse(d) for d in n.decorator_list] for n in tests.body if isinstance(n, ast.FunctionDef)}
    assert len(marks) == 4 and all(len(m) == 1 for m in marks.values())
    assert sum("pytest.mark.skip(reason=TO_DO)" in m[0] for m in marks.values()) == 3
    assert "strict=True" in marks["test_margin_po_loss_is_written"][0]


def test_scaffolded_plugin_fails_smoke_saying_what_to_fill_in(checkout, arxiv_online):
    from posttrain.runs.runner import smoke_all

    scaffold.scaffold(checkout, "margin-po", "preference-optimization", NEW_ARXIV)
    plugin_file = checkout / "plugins" / "posttrain_plugins" / "margin_po.py"
    [result] = smoke_all([str(plugin_file)], device="cpu")
    assert not result["ok"]
    assert result["detail"].startswith(
        "error: plugin 'margin-po' is not written yet: fill in margin_po_loss() and run() in "
        "plugins/posttrain_plugins/margin_po.py"
    )
    assert "set plugin: margin-po and status: experimental in catalog/methods/margin-po.yaml" in result["detail"]
    # the loss stub says the same when called directly (the scaffolded test expects this)
    from posttrain.registry import load_file

    module = __import__(load_file(plugin_file).run.__module__, fromlist=["margin_po_loss"])
    assert module.train_loop  # tests/test_smoke.py spies on the plugin's train_loop, so the scaffold imports it
    with pytest.raises(NotImplementedError, match="is not written yet"):
        module.margin_po_loss()


def test_new_offline_leaves_title_and_authors_with_a_note(checkout, cli, monkeypatch):
    monkeypatch.setenv("POSTTRAIN_ARXIV_API", UNREACHABLE)
    code, out = cli(
        "new", "margin-po", "--family", "preference-optimization", "--paper", NEW_ARXIV, "--repo", str(checkout)
    )
    assert code == 0, out
    assert f"title and authors of arXiv {NEW_ARXIV} were not fetched" in out
    assert f"the arXiv API ({UNREACHABLE}) could not be reached: ConnectionError" in out
    [paper_file] = [p for p in (checkout / "catalog" / "papers").glob("*.yaml") if NEW_ARXIV in p.read_text()]
    record = yaml.safe_load(paper_file.read_text())
    assert record["id"] == paper_file.stem == "arxiv-2510-00042-2025"
    assert record["date"] == "2025-10"  # the month the arXiv id encodes
    assert record["title"] == f"{TODO}: title of arXiv {NEW_ARXIV}" and "authors" not in record
    assert f"copy the title and authors from https://arxiv.org/abs/{NEW_ARXIV}" in record["note"]
    assert validate(checkout / "catalog")[1] == []
    docstring = ast.get_docstring(ast.parse((checkout / "plugins" / "posttrain_plugins" / "margin_po.py").read_text()))
    assert f"{TODO}: authors" in docstring and "2025" in docstring


def test_new_with_offline_flag_does_not_call_the_api(checkout, monkeypatch):
    import requests

    monkeypatch.setattr(requests, "get", lambda *a, **k: pytest.fail("the arXiv API was called"))
    result = scaffold.scaffold(checkout, "margin-po", "preference-optimization", NEW_ARXIV, offline=True)
    assert result.paper is not None and not result.paper.fetched and result.paper.why_not == "--offline was given"


def test_arxiv_answer_without_a_paper_falls_back(monkeypatch):
    import requests

    monkeypatch.setattr(requests, "get", lambda *a, **k: FakeResponse(ATOM_ERROR))
    meta = scaffold.fetch_arxiv(NEW_ARXIV)
    assert not meta.fetched and meta.title is None and meta.date == "2025-10"
    assert meta.why_not == f"the arXiv API ({scaffold.ARXIV_API}) returned no paper for {NEW_ARXIV}"
    monkeypatch.setattr(requests, "get", lambda *a, **k: FakeResponse("busy", status=503))
    assert scaffold.fetch_arxiv(NEW_ARXIV).why_not.endswith("could not be reached: HTTPError")
    assert scaffold.parse_arxiv_atom("not xml") is None


@pytest.mark.parametrize(
    "arxiv, date",
    [("2305.18290", "2023-05"), ("2305.18290v3", "2023-05"), ("hep-th/9901001", "1999-01"), ("cs/0112017", "2001-12")],
)
def test_date_from_arxiv_id(arxiv, date):
    assert scaffold.date_from_arxiv_id(arxiv) == date


def test_new_cites_a_paper_already_in_the_catalog(checkout, cli, monkeypatch):
    monkeypatch.setenv("POSTTRAIN_ARXIV_API", UNREACHABLE)
    before = set((checkout / "catalog" / "papers").iterdir())
    code, out = cli(
        "new", "dpo-variant", "--family", "preference-optimization", "--paper", "2305.18290v2", "--repo", str(checkout)
    )
    assert code == 0, out
    assert "already catalog/papers/direct-preference-optimization-your-2023.yaml" in out
    assert set((checkout / "catalog" / "papers").iterdir()) == before
    entry = yaml.safe_load((checkout / "catalog" / "methods" / "dpo-variant.yaml").read_text())
    assert entry["papers"] == ["direct-preference-optimization-your-2023"]
    docstring = ast.get_docstring(
        ast.parse((checkout / "plugins" / "posttrain_plugins" / "dpo_variant.py").read_text())
    )
    assert "Rafael Rafailov" in docstring and "arXiv:2305.18290" in docstring
    # --paper also takes a record id
    code, out = cli(
        "new",
        "dpo-two",
        "--family",
        "preference-optimization",
        "--entry-only",
        "--paper",
        "direct-preference-optimization-your-2023",
        "--repo",
        str(checkout),
    )
    assert code == 0, out
    assert validate(checkout / "catalog")[1] == []


def test_entry_only_writes_no_plugin(checkout, arxiv_online):
    result = scaffold.scaffold(checkout, "margin-po", "preference-optimization", NEW_ARXIV, entry_only=True)
    assert [p.relative_to(checkout).as_posix() for p in result.written] == [
        "catalog/papers/a-margin-loss-for-2025.yaml",
        "catalog/methods/margin-po.yaml",
    ]
    assert result.edited == [] and not (checkout / "plugins" / "posttrain_plugins" / "margin_po.py").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["My_Method", "--family", "preference-optimization"], "ID 'My_Method': expected lower case letters"),
        (
            ["x-po", "--family", "preference-optimisation"],
            "--family: unknown family 'preference-optimisation'; did you mean preference-optimization",
        ),
        (["dpo", "--family", "preference-optimization"], "ID 'dpo': already in the catalog (catalog/methods/dpo.yaml)"),
        (
            ["x-po", "--family", "preference-optimization", "--paper", "arxiv.org/abs/1"],
            "--paper: 'arxiv.org/abs/1' is neither an arXiv id",
        ),
        (
            ["x-po", "--family", "preference-optimization", "--name", 'say "hi"'],
            "--name 'say \"hi\"': use no double quotes",
        ),
    ],
)
def test_new_refuses_bad_input_and_writes_nothing(checkout, cli, args, message, monkeypatch):
    monkeypatch.setenv("POSTTRAIN_ARXIV_API", UNREACHABLE)
    if "--paper" not in args:
        args = [*args, "--paper", NEW_ARXIV]
    before = snapshot(checkout)
    code, out = cli("new", *args, "--repo", str(checkout))
    assert code == 2 and message in out, out
    assert snapshot(checkout) == before


def test_new_outside_a_checkout_says_where_to_run_it(tmp_path, cli):
    code, out = cli("new", "x-po", "--family", "preference-optimization", "--paper", NEW_ARXIV, "--repo", str(tmp_path))
    assert code == 2 and "is not inside a posttrain-catalog checkout" in out and "catalog cp" in out


def test_new_refuses_to_overwrite_a_plugin_file(checkout, cli, monkeypatch):
    monkeypatch.setenv("POSTTRAIN_ARXIV_API", UNREACHABLE)
    (checkout / "plugins" / "posttrain_plugins" / "x_po.py").write_text("# mine\n")
    code, out = cli("new", "x-po", "--family", "preference-optimization", "--paper", NEW_ARXIV, "--repo", str(checkout))
    assert code == 2 and "x_po.py already exists" in out
    assert (checkout / "plugins" / "posttrain_plugins" / "x_po.py").read_text() == "# mine\n"


def test_entry_point_goes_at_the_end_of_its_table():
    text = '[project.scripts]\na = "b"\n\n[project.entry-points."posttrain.plugins"]\nsft = "x:plugin"\n\n[tool.x]\ny = 1\n'
    out = scaffold.add_entry_point(text, "margin-po", "posttrain_plugins.margin_po:plugin")
    assert out == text.replace(
        'sft = "x:plugin"\n', 'sft = "x:plugin"\nmargin-po = "posttrain_plugins.margin_po:plugin"\n'
    )
    assert scaffold.entry_point_names(out) == {"sft", "margin-po"}
    with pytest.raises(UserError, match="has no"):
        scaffold.add_entry_point("[project]\n", "a", "b:plugin")


def test_registered_scaffold_is_reported_as_not_linked(checkout, arxiv_online):
    """After `pip install -e .` the scaffold's entry point exists while the entry still says plugin: null."""
    scaffold.scaffold(checkout, "margin-po", "preference-optimization", NEW_ARXIV)
    from posttrain.registry import discover

    registered = {name: "posttrain-catalog" for name in discover()}  # every built-in the catalog links
    _, problems = validate(checkout / "catalog", {**registered, "margin-po": "posttrain-catalog"})
    problems = [p for p in problems if "margin-po.yaml" in str(p)]  # other entries now have plugins not in `registered`
    line = (
        (checkout / "catalog" / "methods" / "margin-po.yaml")
        .read_text()
        .splitlines()
        .index(
            next(
                x
                for x in (checkout / "catalog" / "methods" / "margin-po.yaml").read_text().splitlines()
                if x.startswith("plugin:")
            )
        )
    )
    assert [str(p) for p in problems] == [
        f"catalog/methods/margin-po.yaml:{line + 1}: plugin: registered plugin 'margin-po' (posttrain-catalog) is "
        "not linked: once `catalog smoke margin-po` passes, set plugin: margin-po and status: experimental here"
    ]


# --- catalog cp and catalog run FILE.py -----------------------------------------------------


def test_cp_copies_a_builtin_plugin_that_then_runs_from_the_file(tmp_path, cli):
    dest = tmp_path / "my_sft.py"
    code, out = cli("cp", "sft", str(dest))
    assert code == 0, out
    assert dest.read_text() == (REPO / "plugins" / "posttrain_plugins" / "sft.py").read_text()
    assert f"catalog run {dest}" in out
    # the user's copy is what runs: give it its own id and run it for 2 steps
    dest.write_text(dest.read_text().replace('id="sft"', 'id="my-sft"'))
    run_dir = tmp_path / "run"
    sets = ["max_steps=2", "train_examples=16", "eval_examples=8", "batch_size=8"]
    code, out = cli(
        "run", str(dest), "--output-dir", str(run_dir), "--device", "cpu", *[a for s in sets for a in ("--set", s)]
    )
    assert code == 0, out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["method"] == "my-sft" and "exact_match" in summary["after"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["sft", "mine.txt"], "expected a Python file name ending in .py"),
        (["seqgan", "mine.py"], "'seqgan' is catalogued but has no plugin to copy"),
        (["no-such-method", "mine.py"], "no plugin or method named 'no-such-method'"),
        (["sft", "missing/mine.py"], "folder"),
    ],
)
def test_cp_errors(tmp_path, cli, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, out = cli("cp", *args)
    assert code == 2 and message in out, out


def test_cp_does_not_overwrite_without_force(tmp_path, cli):
    dest = tmp_path / "mine.py"
    dest.write_text("# mine\n")
    code, out = cli("cp", "dpo", str(dest))
    assert code == 2 and "already exists (pass --force" in out and dest.read_text() == "# mine\n"
    code, out = cli("cp", "DPO", str(dest), "--force")  # an alias works too
    assert code == 0 and "class Config" in dest.read_text()


def test_run_file_errors_are_one_line(tmp_path, cli):
    code, out = cli("run", str(tmp_path / "nope.py"))
    assert code == 2 and "does not exist" in out
    (tmp_path / "noplugin.py").write_text("x = 1\n")
    code, out = cli("run", str(tmp_path / "noplugin.py"))
    assert code == 2 and "expected a posttrain.Plugin object named 'plugin', found NoneType" in out


def test_a_catalog_entry_cannot_make_the_cli_load_a_file(tmp_path, monkeypatch):
    """`plugin:` in catalog data is looked up among registered plugins only, never imported as a path."""
    from posttrain.runs.runner import resolve_plugin

    marker = tmp_path / "executed"
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    root = tmp_path / "catalog"
    (root / "methods").mkdir(parents=True)
    (root / "papers").mkdir()
    shutil.copy(REPO / "catalog" / "taxonomy.yaml", root / "taxonomy.yaml")
    entry = yaml.safe_load((REPO / "catalog" / "methods" / "kto.yaml").read_text())
    entry.update(id="evil", aliases=[], related=[], lineage=None, plugin=str(evil), status="experimental")
    entry["papers"] = [{"title": "T", "year": 2024, "arxiv": "2401.00001"}]
    (root / "methods" / "evil.yaml").write_text(yaml.safe_dump(entry))
    monkeypatch.setenv("POSTTRAIN_CATALOG", str(root))
    with pytest.raises(UserError, match="no plugin named"):
        resolve_plugin("evil")
    assert not marker.exists()


# --- catalog validate --format github ---------------------------------------------------------


def test_github_annotation_escapes_what_github_would_misread():
    p = Problem("catalog/methods/a,b.yaml", 7, "papers.0", "50% of\nit: bad")
    assert github_annotation(p) == "::error file=catalog/methods/a%2Cb.yaml,line=7,title=papers.0::50%25 of%0Ait: bad"
    p = Problem("catalog/methods/x.yaml", 1, "a:b", "m")
    assert github_annotation(p) == "::error file=catalog/methods/x.yaml,line=1,title=a%3Ab::m"


def test_validate_format_option(cli):
    code, out = cli("validate", "--format", "json")
    assert code == 2 and "--format json: expected text or github" in out
    code, out = cli("validate", "--format", "github")
    assert code == 0 and out.startswith("ok:")


def test_new_on_a_catalogued_entry_writes_its_plugin_and_keeps_the_entry(checkout, cli, monkeypatch):
    """The "not runnable yet" box on a catalogued method's site page gives this command verbatim."""
    monkeypatch.setenv("POSTTRAIN_ARXIV_API", UNREACHABLE)
    entry = checkout / "catalog" / "methods" / "bfpo.yaml"
    before = entry.read_bytes()
    code, out = cli(
        "new", "bfpo", "--family", "preference-optimization", "--paper", "2408.15313", "--repo", str(checkout)
    )
    assert code == 0, out
    assert entry.read_bytes() == before and "catalog/methods/bfpo.yaml is kept" in " ".join(out.split())
    assert (checkout / "plugins" / "posttrain_plugins" / "bfpo.py").is_file()
    assert 'bfpo = "posttrain_plugins.bfpo:plugin"' in (checkout / "pyproject.toml").read_text()
    code, out = cli("new", "bfpo", "--family", "policy-optimization", "--paper", "2408.15313", "--repo", str(checkout))
    assert code == 2 and "is in family 'preference-optimization'" in out
