"""tools/changed_plugins.py (which plugins a pull request smoke-tests) and tools/check_placeholders.py."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from posttrain.cli.scaffold import TODO

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cp = _tool("changed_plugins")
ph = _tool("check_placeholders")

PYPROJECT = """[project]
name = "posttrain-catalog"
dependencies = ["pydantic>=2.6"]

[project.entry-points."posttrain.plugins"]
sft = "posttrain_plugins.sft:plugin"
dpo = "posttrain_plugins.dpo:plugin"
"best-of-n" = "posttrain_plugins.best_of_n:plugin"
ipo = "posttrain_plugins.dpo:ipo_plugin"  # two plugins in one module

[tool.ruff]
line-length = 120
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    methods = tmp_path / "catalog" / "methods"
    methods.mkdir(parents=True)
    (methods / "dpo.yaml").write_text("id: dpo\nplugin: dpo\n")
    (methods / "kto.yaml").write_text("id: kto\nplugin: null\n")
    (methods / "ghost.yaml").write_text("id: ghost\nplugin: not-registered\n")
    (methods / "broken.yaml").write_text("id: [broken\n")
    return tmp_path


ALL = ["best-of-n", "dpo", "ipo", "sft"]


@pytest.mark.parametrize(
    "files, expected",
    [
        (["plugins/posttrain_plugins/sft.py"], ["sft"]),
        (["plugins/posttrain_plugins/dpo.py"], ["dpo", "ipo"]),
        (["./plugins/posttrain_plugins/best_of_n.py", "README.md"], ["best-of-n"]),
        (["catalog/methods/dpo.yaml"], ["dpo"]),
        (["catalog/methods/kto.yaml", "catalog/papers/x.yaml", "site/docs/index.md"], []),
        (["catalog/methods/ghost.yaml", "catalog/methods/broken.yaml", "catalog/methods/deleted.yaml"], []),
        (["tests/test_losses.py", "tools/record_run.py", ".github/workflows/tests.yml"], []),
        (["src/posttrain/training/trainer.py"], ALL),
        (["src/posttrain/embedded/task.py", "plugins/posttrain_plugins/sft.py"], ALL),
        (["plugins/posttrain_plugins/__init__.py"], ALL),
        (["plugins/posttrain_plugins/_shared_helper.py"], ALL),  # imported by unknown plugins
        (["tests/test_smoke.py"], ALL),
        ([], []),
    ],
)
def test_changed_files_map_to_plugins(repo, files, expected):
    assert cp.changed_plugins(files, repo, old_pyproject=PYPROJECT) == expected


def test_pyproject_new_entry_point_smokes_only_that_plugin(repo):
    old = PYPROJECT.replace('"best-of-n" = "posttrain_plugins.best_of_n:plugin"\n', "")
    assert cp.changed_plugins(["pyproject.toml"], repo, old_pyproject=old) == ["best-of-n"]
    retargeted = PYPROJECT.replace("posttrain_plugins.sft:plugin", "posttrain_plugins.sft_old:plugin")
    assert cp.changed_plugins(["pyproject.toml"], repo, old_pyproject=retargeted) == ["sft"]
    other = PYPROJECT.replace("pydantic>=2.6", "pydantic>=2.0")
    assert cp.changed_plugins(["pyproject.toml"], repo, old_pyproject=other) == ALL
    assert cp.changed_plugins(["pyproject.toml"], repo, old_pyproject=None) == ALL  # base unknown: be safe


def test_entry_points_are_read_from_the_text():
    assert cp.entry_points(PYPROJECT) == {
        "sft": "posttrain_plugins.sft:plugin",
        "dpo": "posttrain_plugins.dpo:plugin",
        "best-of-n": "posttrain_plugins.best_of_n:plugin",
        "ipo": "posttrain_plugins.dpo:ipo_plugin",
    }


def test_the_real_pyproject_maps_every_builtin_plugin_file():
    repo = TOOLS.parent
    for name, target in cp.entry_points((repo / "pyproject.toml").read_text()).items():
        module_file = "plugins/" + target.partition(":")[0].replace(".", "/") + ".py"
        assert (repo / module_file).is_file(), module_file
        assert name in cp.changed_plugins([module_file], repo)


def test_command_line_and_github_output(repo, tmp_path, monkeypatch, capsys):
    out_file = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out_file))
    monkeypatch.setattr(cp, "REPO", repo)
    assert cp.main(["plugins/posttrain_plugins/dpo.py", "--github-output"]) == 0
    assert capsys.readouterr().out == "dpo ipo\n"
    assert out_file.read_text() == "plugins=dpo ipo\n"


def test_git_diff_against_a_base(tmp_path):
    """Without file arguments the tool asks git what changed since --base."""

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    repo_root = tmp_path
    (repo_root / "tools").mkdir()
    (repo_root / "tools" / "changed_plugins.py").write_text((TOOLS / "changed_plugins.py").read_text())
    (repo_root / "pyproject.toml").write_text(PYPROJECT)
    (repo_root / "plugins" / "posttrain_plugins").mkdir(parents=True)
    (repo_root / "plugins" / "posttrain_plugins" / "sft.py").write_text("x = 1\n")
    git("init", "-q", "-b", "main")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "base", "--allow-empty")
    git("add", "-A")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "base files")
    git("checkout", "-qb", "feature")
    (repo_root / "plugins" / "posttrain_plugins" / "sft.py").write_text("x = 2\n")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", "change sft")
    proc = subprocess.run(
        [sys.executable, "tools/changed_plugins.py", "--base", "main"],
        cwd=repo_root,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "sft\n"
    proc = subprocess.run(
        [sys.executable, "tools/changed_plugins.py", "--base", "no-such-ref"],
        cwd=repo_root,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "cannot list the changed files against no-such-ref" in proc.stderr


def test_check_placeholders_points_at_file_and_line(tmp_path, capsys):
    (tmp_path / "catalog" / "methods").mkdir(parents=True)
    (tmp_path / "catalog" / "methods" / "x.yaml").write_text(f"id: x\nsummary: '{TODO}: say it.'\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "notes.md").write_text(f"{TODO} in a markdown file is not checked\n")
    assert ph.main(["--repo", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == f"catalog/methods/x.yaml:2: summary: '{TODO}: say it.'\n"
    assert "1 scaffold placeholder(s) left" in captured.err
    assert ph.main(["--repo", str(tmp_path), "--format", "github"]) == 1
    assert capsys.readouterr().out.startswith("::error file=catalog/methods/x.yaml,line=2,title=scaffold placeholder::")
    (tmp_path / "catalog" / "methods" / "x.yaml").write_text("id: x\n")
    assert ph.main(["--repo", str(tmp_path)]) == 0


def test_the_repository_has_no_placeholders_left():
    assert ph.placeholders(TOOLS.parent) == []
