"""CLI commands for the catalog's content: ``catalog import awesome`` and ``catalog papers``.

``cli.py`` calls :func:`register`; ``catalog validate --links`` uses :func:`check_links` from
``posttrain.catalog.linkcheck``. Nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from posttrain.cli.output import FORMAT_HELP, check_format, print_rows
from posttrain.errors import UserError

console = Console()
import_app = typer.Typer(
    help="Bring outside material into the catalog.", no_args_is_help=True, pretty_exceptions_enable=False
)


@import_app.command("awesome")
def import_awesome(
    source: Annotated[
        str | None,
        typer.Option("--from", help="README.md of the awesome-list: a file or an http(s) URL."),
    ] = None,
    catalog: Annotated[
        Path | None, typer.Option("--catalog", help="Catalog folder (default: the built-in one).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would change; write nothing.")] = False,
) -> None:
    """Merge the Awesome-LLM-Post-training list's papers into catalog/papers/ (idempotent)."""
    from posttrain.catalog import awesome
    from posttrain.catalog.load import PAPERS_DIR, catalog_dir

    root = catalog_dir(catalog)
    if source is None:
        found = awesome.default_source(root)
        if found is None:
            raise UserError(
                f"--from: no default list at {awesome.DEFAULT_SOURCE} next to the repository; pass a file or URL"
            )
        source = str(found)
    listed = awesome.parse(awesome.read_source(source))
    if not listed:
        raise UserError(f"--from: {source} has no awesome-list entries (paper bullets, survey or repository tables)")
    report = awesome.merge(listed, root / PAPERS_DIR, dry_run=dry_run)
    for pid in report.added:
        console.print(f"+ {pid}", markup=False, highlight=False)
    for pid in report.updated:
        console.print(f"~ {pid}", markup=False, highlight=False)
    for kept in report.kept:
        console.print(f"  kept existing {kept}", markup=False, highlight=False, soft_wrap=True)
    console.print(("(dry run) " if dry_run else "") + report.summary(), highlight=False, soft_wrap=True)


def papers(
    section: Annotated[str | None, typer.Option(help="Only papers listed under this awesome-list section.")] = None,
    method: Annotated[str | None, typer.Option(help="Only papers linked to this method id.")] = None,
    catalog: Annotated[
        Path | None, typer.Option("--catalog", help="Catalog folder (default: the built-in one).")
    ] = None,
    format_: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "table",
) -> None:
    """List the papers in catalog/papers/ with their date, link and linked methods."""
    from posttrain.catalog.load import load_catalog

    check_format(format_)
    cat = load_catalog(catalog)
    if method and method not in cat.methods:
        raise UserError(f"--method: no method '{method}' in the catalog")
    rows = []
    for pid, rec in sorted(cat.papers.items(), key=lambda kv: (kv[1].date or "", kv[0]), reverse=True):
        linked = cat.methods_of(pid)
        if section and section not in rec.sections:
            continue
        if method and method not in linked:
            continue
        rows.append(
            {"id": pid, "date": rec.date, "link": rec.link, "methods": list(linked), "sections": list(rec.sections)}
        )
    print_rows(console, ["id", "date", "link", "methods", "sections"], rows, format_)
    if format_ == "table":
        console.print(f"{len(rows)} of {len(cat.papers)} papers")


def register(app: typer.Typer) -> None:
    """Add the content commands to the main ``catalog`` app."""
    app.add_typer(import_app, name="import")
    app.command("papers")(papers)
