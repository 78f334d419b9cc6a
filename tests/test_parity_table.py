"""catalog/parity.yaml, the reference-parity table the method pages show, cannot go stale: every test it
lists exists, every method it names has an entry, and every parity test is listed (a test whose name
says ``trl``, in a test file that imports TRL), under a method or in ``not_parity`` with its reason.
Parsed with ``ast``: nothing is imported or run."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from posttrain.catalog.load import load_catalog
from posttrain.catalog.parity import ParityTable, load_parity, unknown_methods
from posttrain.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
IMPORTS_TRL = re.compile(r"^\s*(from trl\b|import trl\b)|importorskip\(\"trl", re.M)


def functions_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def parity_files() -> list[Path]:
    return [p for p in sorted((ROOT / "tests").glob("test_*.py")) if IMPORTS_TRL.search(p.read_text(encoding="utf-8"))]


@pytest.fixture(scope="module")
def table() -> ParityTable:
    return load_parity(ROOT / "catalog")


def listed_nodes(table: ParityTable) -> set[str]:
    return {check.test for checks in table.methods.values() for check in checks} | set(table.not_parity)


def test_the_parity_test_files_are_found():
    names = {p.name for p in parity_files()}
    assert {"test_rl_parity.py", "test_preference_trl_losses.py", "test_preference_trl_variants.py"} <= names


def test_every_listed_test_exists(table):
    for node in sorted(listed_nodes(table)):
        file, _, name = node.partition("::")
        path = ROOT / file
        assert path.is_file(), f"catalog/parity.yaml: {node}: no file {file}"
        assert name in functions_of(path), f"catalog/parity.yaml: {node}: no test function {name} in {file}"


def test_every_parity_test_is_listed(table):
    listed = listed_nodes(table)
    missing = [
        f"tests/{path.name}::{name}"
        for path in parity_files()
        for name in sorted(functions_of(path))
        if "trl" in name and f"tests/{path.name}::{name}" not in listed
    ]
    assert missing == [], f"parity tests not in catalog/parity.yaml (add them under their method): {missing}"


def test_every_listed_test_compares_with_trl(table):
    # a listed test lives in a file that imports TRL and says so in its name
    parity = {f"tests/{p.name}" for p in parity_files()}
    for node in listed_nodes(table):
        file, _, name = node.partition("::")
        assert file in parity and "trl" in name, node


def test_every_method_has_an_entry(table):
    assert unknown_methods(table, set(load_catalog(ROOT / "catalog").methods)) == []
    assert {"grpo", "gspo", "cispo", "sapo", "gmpo", "dpo", "kto", "wpo"} <= set(table.methods)


def test_a_bad_table_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "parity.yaml").write_text("methods:\n  dpo:\n    - reference: x\n      test: not-a-node\n")
    with pytest.raises(UserError, match=r"^[^\n]*parity\.yaml: .*test") as info:
        load_parity(tmp_path)
    assert "\n" not in str(info.value)


def test_no_table_is_an_empty_table(tmp_path):
    assert load_parity(tmp_path).methods == {}
