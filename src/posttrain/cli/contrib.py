"""CLI commands for contributors: ``catalog new`` (scaffold a method) and ``catalog cp`` (fork a plugin).

``cli.py`` calls :func:`register`; ``catalog validate --format github`` prints its problems with
:func:`github_annotation`. Nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from posttrain.errors import UserError

console = Console(soft_wrap=True)


def github_annotation(problem) -> str:
    """A validation problem as a GitHub Actions ``::error`` workflow command (shown on the PR's diff)."""

    def data(text: str) -> str:
        return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    def prop(text: str) -> str:
        return data(text).replace(":", "%3A").replace(",", "%2C")

    return f"::error file={prop(problem.file)},line={problem.line},title={prop(problem.field)}::{data(problem.message)}"


def new(
    method_id: Annotated[str, typer.Argument(metavar="ID", help="The new method's id: lower case and dashes.")],
    family: Annotated[str, typer.Option("--family", help="Family id from catalog/taxonomy.yaml.")],
    paper: Annotated[
        str,
        typer.Option("--paper", help="The canonical paper: an arXiv id (2305.18290) or a paper id in catalog/papers/."),
    ],
    name: Annotated[str | None, typer.Option("--name", help="Display name (default: from the id).")] = None,
    entry_only: Annotated[
        bool, typer.Option("--entry-only", help="Only the catalog entry (and paper record), no plugin.")
    ] = False,
    offline: Annotated[
        bool, typer.Option("--offline", help="Do not ask the arXiv API for the paper's metadata.")
    ] = False,
    repo: Annotated[
        Path | None,
        typer.Option("--repo", help="The checkout to write into (default: the one around the current folder)."),
    ] = None,
) -> None:
    """Scaffold a method: catalog entry (status catalogued), paper record, plugin file, test file, entry point."""
    from posttrain.cli.scaffold import find_checkout, scaffold

    root = find_checkout(repo or Path.cwd())
    if root is None:
        where = repo or Path.cwd()
        raise UserError(
            f"{where} is not inside a posttrain-catalog checkout: run `catalog new` from a clone of the repository "
            "(git clone, then pip install -e .), or use `catalog cp ID ./mine.py` to fork a plugin outside it"
        )
    result = scaffold(root, method_id, family, paper, name=name, entry_only=entry_only, offline=offline)
    for path in result.written:
        console.print(f"+ {path.relative_to(root)}", markup=False, highlight=False)
    for path in result.edited:
        console.print(f"~ {path.relative_to(root)} (entry point '{method_id}')", markup=False, highlight=False)
    if result.paper is not None and result.paper.fetched:
        console.print(f"paper: {result.paper.title} ({result.paper.date}), from the arXiv API", markup=False)
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    module = method_id.replace("-", "_")
    steps = [] if Path.cwd().resolve() == root else [f"cd {root}"]
    steps.append(f"catalog validate catalog/methods/{method_id}.yaml   # passes now (status: catalogued)")
    if not entry_only:
        steps += [
            "pip install -e .   # registers the new entry point; until then the plugin is not found",
            f"catalog smoke {method_id}   # fails, saying what to fill in, until you write the plugin",
            f"edit plugins/posttrain_plugins/{module}.py and tests/test_{module}.py (replace every TODO(scaffold))",
            f"python -m pytest tests/test_{module}.py && catalog smoke {method_id}",
            f"set plugin: {method_id} and status: experimental in catalog/methods/{method_id}.yaml; catalog validate",
            f"python tools/record_run.py {method_id}   # the result shown on the method's page",
        ]
    steps.append("catalog site serve   # check the method's page; CONTRIBUTING.md has the reviewer's checklist")
    console.print("\nnext:", highlight=False)
    for i, step in enumerate(steps, 1):
        console.print(f"  {i}. {step}", markup=False, highlight=False)


def cp(
    method: Annotated[str, typer.Argument(metavar="ID", help="Plugin name, method id or alias.")],
    dest: Annotated[Path, typer.Argument(metavar="DEST.py", help="The Python file to write.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite DEST if it exists.")] = False,
) -> None:
    """Copy a plugin's source to a file you own; run your copy with `catalog run DEST.py`."""
    from posttrain.cli.scaffold import copy_plugin

    plugin_name, source = copy_plugin(method, dest, force=force)
    console.print(f"copied plugin '{plugin_name}' from {source} to {dest}", markup=False, highlight=False)
    console.print(f"run it: catalog run {dest}   (smoke check: catalog smoke {dest})", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add the contributor commands to the main ``catalog`` app."""
    app.command("new")(new)
    app.command("cp")(cp)
