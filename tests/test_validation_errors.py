"""`catalog validate` catches each kind of mistake and reports it as `file:line: field: message`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from posttrain.catalog.load import validate
from posttrain.cli.main import app

CATALOG = Path(__file__).resolve().parents[1] / "catalog"

METHOD_A = """id: alpha
name: Alpha
aliases: [A1]
family: preference-optimization
summary: A method used to test the validator.
description: Test entry.
objective: x
papers:
  - paper-one-2024
plugin: null
status: catalogued
status_note: Test.
related: [beta]
"""
METHOD_B = """id: beta
name: Beta
family: policy-optimization
summary: Another method used to test the validator.
description: Test entry.
objective: y
papers:
  - title: An inline paper
    year: 2020
    arxiv: "2001.00001"
plugin: null
status: catalogued
status_note: Test.
related: [alpha]
"""
PAPER = """id: paper-one-2024
title: Paper One
date: 2024-02
arxiv: "2402.00001"
sections: [Survey]
"""


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    root = tmp_path / "catalog"
    (root / "methods").mkdir(parents=True)
    (root / "papers").mkdir()
    shutil.copy(CATALOG / "taxonomy.yaml", root / "taxonomy.yaml")
    (root / "methods" / "alpha.yaml").write_text(METHOD_A)
    (root / "methods" / "beta.yaml").write_text(METHOD_B)
    (root / "papers" / "paper-one-2024.yaml").write_text(PAPER)
    return root


def problems(root: Path) -> list[str]:
    return [str(p) for p in validate(root)[1]]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def only(root: Path, prefix: str) -> str:
    found = problems(root)
    assert len(found) == 1, found
    assert found[0].startswith(prefix), found
    return found[0]


def test_fixture_is_valid(root):
    assert problems(root) == []


# (file under the catalog, text to replace, replacement, expected location prefix, expected message part)
ONE_EDIT_MISTAKES = [
    pytest.param(
        "methods/alpha.yaml",
        "family: preference-optimization",
        "family: prefs",
        "catalog/methods/alpha.yaml:4: family:",
        "unknown family 'prefs'",
        id="unknown_family",
    ),
    pytest.param(
        "methods/alpha.yaml",
        "related: [beta]",
        "related: [beta, gamma]",
        "catalog/methods/alpha.yaml:13: related.1:",
        "unknown method id 'gamma'",
        id="unknown_related_id",
    ),
    pytest.param(
        "methods/beta.yaml",
        "name: Beta\n",
        "name: Beta\naliases: [a1]\n",
        "catalog/methods/beta.yaml:3: aliases.0:",
        "already used by 'alpha'",
        id="duplicate_alias",
    ),
    pytest.param(
        "papers/paper-one-2024.yaml",
        '"2402.00001"',
        '"2402.1"',
        "catalog/papers/paper-one-2024.yaml:4: arxiv:",
        "not an arXiv id",
        id="malformed_arxiv_id_in_paper_record",
    ),
    pytest.param(
        "methods/beta.yaml",
        '"2001.00001"',
        '"arXiv:2001"',
        "catalog/methods/beta.yaml:10: papers.0.arxiv:",
        "not an arXiv id",
        id="malformed_arxiv_id_inline",
    ),
    pytest.param(
        "papers/paper-one-2024.yaml",
        "sections:",
        "url: www.example.com/paper\nsections:",
        "catalog/papers/paper-one-2024.yaml:5: url:",
        "",
        id="malformed_url",
    ),
    pytest.param(
        "methods/beta.yaml",
        '"2001.00001"',
        '"2402.00001"',
        "catalog/methods/beta.yaml:8: papers.0:",
        "cite it by its id 'paper-one-2024'",
        id="inline_paper_that_has_a_record",
    ),
    pytest.param(
        "methods/alpha.yaml",
        "  - paper-one-2024",
        "  - paper-one-2024\n  - no-such-paper",
        "catalog/methods/alpha.yaml:10: papers.1:",
        "unknown paper id 'no-such-paper'",
        id="unresolvable_paper_reference",
    ),
    pytest.param(
        "papers/paper-one-2024.yaml",
        "sections: [Survey]",
        "sections: [Survey]\nmethods: [gamma]",
        "catalog/papers/paper-one-2024.yaml:6: methods.0:",
        "unknown method id 'gamma'",
        id="paper_links_to_unknown_method",
    ),
    pytest.param(
        "methods/alpha.yaml",
        "name: Alpha\n",
        "name: Alpha\nnmae: typo\n",
        "catalog/methods/alpha.yaml:3: nmae:",
        "unknown field",
        id="unknown_field",
    ),
    pytest.param(
        "papers/paper-one-2024.yaml",
        "sections:",
        "year: 2024\nsections:",
        "catalog/papers/paper-one-2024.yaml:5: year:",
        "unknown field",
        id="unknown_field_in_paper",
    ),
]


@pytest.mark.parametrize(("file", "old", "new", "where", "message"), ONE_EDIT_MISTAKES)
def test_one_edit_mistake(root, file, old, new, where, message):
    edit(root / file, old, new)
    assert message in only(root, where)


def test_file_name_differs_from_id(root):
    (root / "methods" / "alpha.yaml").rename(root / "methods" / "alfa.yaml")
    assert "must equal the file name 'alfa'" in only(root, "catalog/methods/alfa.yaml:1: id:")


@pytest.mark.parametrize("bad", ["2024-13", "2023-02-30", "24-02", "spring 2024"])
def test_bad_date(root, bad):
    edit(root / "papers" / "paper-one-2024.yaml", "date: 2024-02", f"date: '{bad}'")
    assert bad in only(root, "catalog/papers/paper-one-2024.yaml:3: date:")


def test_duplicate_paper_same_arxiv(root):
    (root / "papers" / "paper-two-2024.yaml").write_text(
        PAPER.replace("paper-one-2024", "paper-two-2024").replace("Paper One", "Another title")
    )
    assert "duplicate paper" in only(root, "catalog/papers/paper-two-2024.yaml:4: arxiv:")


def test_duplicate_paper_same_title(root):
    (root / "papers" / "paper-three-2024.yaml").write_text(
        "id: paper-three-2024\ntitle: 'PAPER one!'\ndate: '2024'\nurl: https://example.org/p1\n"
    )
    assert "same title as 'paper-one-2024'" in only(root, "catalog/papers/paper-three-2024.yaml:2: title:")


def test_one_way_related_without_marker(root):
    edit(root / "methods" / "beta.yaml", "related: [alpha]", "related: []")
    msg = only(root, "catalog/methods/alpha.yaml:13: related.0:")
    assert "'beta' does not list 'alpha'" in msg and "related_one_way" in msg


def test_one_way_related_with_marker_is_fine(root):
    edit(root / "methods" / "beta.yaml", "related: [alpha]", "related: []")
    edit(root / "methods" / "alpha.yaml", "related: [beta]", "related_one_way: [beta]")
    assert problems(root) == []


def test_invalid_yaml(root):
    (root / "methods" / "alpha.yaml").write_text(METHOD_A.replace("aliases: [A1]", "aliases: [A1"))
    assert "invalid YAML" in only(root, "catalog/methods/alpha.yaml:4: (yaml):")


def test_cli_prints_one_line_per_problem_and_fails(root, monkeypatch):
    import posttrain.registry

    monkeypatch.setattr(posttrain.registry, "discover", lambda: {})
    edit(root / "methods" / "alpha.yaml", "family: preference-optimization", "family: prefs")
    edit(root / "papers" / "paper-one-2024.yaml", "date: 2024-02", "date: '2024-13'")
    result = CliRunner().invoke(app, ["validate", str(root)], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert any(line.startswith("catalog/methods/alpha.yaml:4: family:") for line in lines)
    assert any(line.startswith("catalog/papers/paper-one-2024.yaml:3: date:") for line in lines)
    assert "Traceback" not in result.output
    assert "2 problem(s) found" in result.output
