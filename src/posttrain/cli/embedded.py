"""`catalog embedded list | verify | build`: the frozen embedded models shipped in the package.

``list`` and ``verify`` never import torch; ``build`` trains a recipe (minutes on 2 CPU cores).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from posttrain.errors import UserError


def register(app: typer.Typer, console: Console) -> None:
    """Add the ``embedded`` command group to the main ``catalog`` app."""
    group = typer.Typer(
        name="embedded",
        help="The embedded models shipped in the package: list, verify, rebuild from their recipes.",
        no_args_is_help=True,
    )

    @group.command("list")
    def list_models() -> None:
        """Name, size, recipe version and held-out checks of every embedded model."""
        from posttrain.embedded.frozen import MODELS_ROOT, listing

        rows = listing()
        table = Table("name", "size", "recipe", "held-out checks", "what it is")
        for row in rows:
            checks = ", ".join(f"{k} {v}" for k, v in row["checks"].items() if k not in {"task", "seed"})
            size = f"{row['bytes'] / 1e6:.2f} MB" if row["shipped"] else "not shipped"
            table.add_row(row["name"], size, row["recipe_version"] or "-", checks, row["summary"])
        console.print(table)
        total = sum(r["bytes"] for r in rows)
        console.print(f"{len(rows)} models, {total / 1e6:.1f} MB in {MODELS_ROOT}", highlight=False)

    @group.command("verify")
    def verify_models() -> None:
        """Check every shipped file against the sha256 in its build.json (exit 2 on any difference)."""
        from posttrain.embedded.frozen import RECIPES, verify

        problems = [p for name in RECIPES for p in verify(name)]
        for name in RECIPES:
            if not any(f"'{name}'" in p or f"/{name}/" in p for p in problems):
                console.print(f"ok: {name}", highlight=False)
        if problems:
            raise UserError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))

    @group.command("build")
    def build_model(
        name: Annotated[str, typer.Argument(help="Embedded model to rebuild (see `catalog embedded list`).")],
        output: Annotated[Path, typer.Option("--output", "-o", help="Empty folder to write the model to.")],
    ) -> None:
        """Train an embedded model from its recipe into OUTPUT, with its build record (sha256, packages)."""
        from posttrain.embedded.frozen import build, recipe

        recipe(name)  # an unknown name fails before torch is imported
        console.print(f"Building embedded model '{name}' from its recipe into {output} (minutes on 2 CPU cores) ...")
        record = build(name, output, console)
        checks = ", ".join(f"{k} {v}" for k, v in record["checks"].items() if k not in {"task", "seed"})
        console.print(f"built {name}: {checks}", highlight=False)

    app.add_typer(group)
