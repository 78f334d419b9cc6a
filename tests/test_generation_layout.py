"""Issue #20: one sampler, one ``left_pad``, one ``completion_logprobs`` contract, and the sweeps
run by the runner (test-time plumbing never imports the CLI's runner)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "posttrain"


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"))


def _definitions(name: str) -> list[str]:
    return [
        str(path.relative_to(SRC))
        for path, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == name
    ]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_one_left_pad_and_one_completion_logprobs():
    assert _definitions("left_pad") == ["generation/sampler.py"]
    assert _definitions("completion_logprobs") == ["generation/logprobs.py"]


def test_test_time_plumbing_does_not_import_the_runner():
    for name in ("inference/recipe.py", "runs/sweeps.py", "scoring/scorers.py"):
        imported = _imported_modules(SRC / name)
        assert not imported & {"posttrain.runs.runner", "posttrain.cli.main"}, name
