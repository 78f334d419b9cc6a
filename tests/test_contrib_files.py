"""The contributor-facing files agree with each other and with the code: one reviewer checklist,
issue forms and workflows that parse, and guides that name only commands and files that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
GUIDES = [REPO / "CONTRIBUTING.md", REPO / "site" / "docs" / "contributing.md"]


def checklist(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    section = text[text.index("## Reviewer checklist") :]
    return [line for line in section.splitlines() if line.startswith("- [ ] **")]


def test_one_reviewer_checklist_in_the_template_and_both_guides():
    template = checklist(REPO / ".github" / "PULL_REQUEST_TEMPLATE.md")
    titles = [re.match(r"- \[ \] \*\*(.+?)\*\*", line).group(1) for line in template]
    assert titles == [
        "Paper and arXiv id",
        "Objective checked against the paper",
        "Defaults with their source",
        "Loss tests with hand-worked numbers",
        "Reference parity",
        "Smoke passing",
        "Docs page rendering",
        "A result on the embedded task",
        "A learning test",
        "Machine checks",
    ]
    for guide in GUIDES:
        assert checklist(guide) == template, guide


@pytest.mark.parametrize("name", ["request-a-method.yml", "report-a-bug.yml"])
def test_issue_forms(name):
    form = yaml.safe_load((REPO / ".github" / "ISSUE_TEMPLATE" / name).read_text())
    assert {"name", "description", "body"} <= set(form)
    ids = [item["id"] for item in form["body"] if "id" in item]
    assert len(ids) == len(set(ids))
    assert all(item["type"] in {"markdown", "input", "textarea", "dropdown", "checkboxes"} for item in form["body"])
    assert any(item.get("validations", {}).get("required") for item in form["body"])


def _steps(workflow: dict) -> list[str]:
    return [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]


def test_workflows():
    folder = REPO / ".github" / "workflows"
    flows = {p.name: yaml.safe_load(p.read_text()) for p in folder.glob("*.yml")}
    pr = flows["pull-request.yml"]
    assert list(pr[True]) == ["pull_request"]  # YAML 1.1 reads the key `on` as True
    runs = "\n".join(_steps(pr))
    assert "catalog validate --format github" in runs and "tools/check_placeholders.py --format github" in runs
    assert '-m "not smoke' in runs and "tools/changed_plugins.py" in runs and "catalog smoke $PLUGINS" in runs
    full = flows["tests.yml"]
    assert "pull_request" not in full[True] and "schedule" in full[True] and "push" in full[True]
    assert "catalog smoke --device cpu" in "\n".join(_steps(full))
    gpu = flows["gpu-smoke.yml"]
    changed = gpu["jobs"]["changed"]
    assert changed["runs-on"] == ["self-hosted", "gpu"] and "pull_request" in changed["if"]
    assert "catalog smoke $PLUGINS --device cuda" in "\n".join(s.get("run", "") for s in changed["steps"])
    assert "schedule" in gpu[True]


def test_pre_commit_config():
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert {"ruff", "ruff-format", "check-yaml", "catalog-validate"} <= set(hooks)
    assert (
        hooks["catalog-validate"]["entry"] == "catalog validate" and hooks["catalog-validate"]["language"] == "system"
    )


@pytest.mark.parametrize("guide", GUIDES + [REPO / ".github" / "PULL_REQUEST_TEMPLATE.md"], ids=lambda p: p.name)
def test_guides_name_only_real_commands_and_files(guide):
    import typer

    from posttrain.cli.main import app

    root = typer.main.get_command(app)
    commands = set(root.list_commands(root.context_class(root, info_name="catalog")))
    text = guide.read_text(encoding="utf-8")
    used = set(re.findall(r"`catalog ([a-z]+)", text)) | set(re.findall(r"^catalog ([a-z]+)", text, re.M))
    assert used and used <= commands, used - commands
    for tool in set(re.findall(r"tools/[a-z_]+\.(?:py|sh)", text)):
        assert (REPO / tool).is_file(), tool
    for path in set(re.findall(r"`(\.github/[A-Za-z_./-]+)`", text)):
        assert (REPO / path).exists(), path
