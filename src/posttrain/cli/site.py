"""`catalog site build` and `catalog site serve`: the documentation site generated from the catalog.

The site lives in the checkout's ``site/`` folder (mkdocs-material; pages are generated from
``catalog/`` by ``site/hooks.py`` at build time). Both commands run the mkdocs command line
in-process, and mkdocs is imported only when one of them is used.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Annotated

import typer

from posttrain.errors import UserError

DOCS_EXTRA = "pip install 'posttrain-catalog[docs]'"


def default_config() -> Path:
    """``site/mkdocs.yml`` of the checkout this package runs from."""
    return Path(__file__).resolve().parents[3] / "site" / "mkdocs.yml"


def have_mkdocs_material() -> bool:
    return importlib.util.find_spec("mkdocs") is not None and importlib.util.find_spec("material") is not None


def _mkdocs(args: list[str], config: Path | None) -> int:
    """Run the mkdocs command line in this process and return its exit status."""
    if not have_mkdocs_material():
        typer.echo(f"error: the site needs mkdocs-material, which is not installed; run: {DOCS_EXTRA}", err=True)
        raise typer.Exit(1)
    config = config or default_config()
    if not config.is_file():
        raise UserError(
            f"no site configuration at {config}: the site is built from a checkout of the repository "
            "(pass --config-file to use another mkdocs.yml)"
        )
    # mkdocs-material prints a banner about its successor unless told not to; it is noise here.
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")
    from mkdocs.__main__ import cli as mkdocs_cli

    try:
        mkdocs_cli.main(args=[*args, "--config-file", str(config)], prog_name="mkdocs")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config-file", "-f", help="mkdocs.yml to use (default: the checkout's site/mkdocs.yml)."),
]


def register(app: typer.Typer) -> None:
    """Add the ``site`` command group to the main ``catalog`` app."""
    site = typer.Typer(
        name="site",
        help="Build or serve the documentation site generated from the catalog.",
        no_args_is_help=True,
    )

    @site.command("build")
    def build(
        site_dir: Annotated[
            Path | None, typer.Option("--site-dir", "-d", help="Output folder (default: site/build).")
        ] = None,
        strict: Annotated[
            bool, typer.Option("--strict/--no-strict", help="Fail on any warning (broken link, bad entry).")
        ] = True,
        config_file: ConfigOpt = None,
    ) -> None:
        """Generate the site from catalog/, plugins and reports/ (mkdocs build)."""
        args = ["build", "--clean"]
        if strict:
            args.append("--strict")
        if site_dir is not None:
            args += ["--site-dir", str(site_dir.resolve())]
        code = _mkdocs(args, config_file)
        if code:
            raise typer.Exit(code)

    @site.command("serve")
    def serve(
        dev_addr: Annotated[
            str, typer.Option("--dev-addr", "-a", help="Address to serve on (keep it on localhost).")
        ] = "127.0.0.1:8000",
        config_file: ConfigOpt = None,
    ) -> None:
        """Serve the site on localhost and rebuild it when the catalog or the pages change."""
        site_root = (config_file or default_config()).resolve().parent
        repo = site_root.parent
        args = ["serve", "--dev-addr", dev_addr]
        # mkdocs serves under site_url's path; served locally, the site starts at the address's root.
        os.environ.setdefault("POSTTRAIN_SITE_URL", f"http://{dev_addr}/")
        for watched in (repo / "catalog", repo / "plugins", repo / "reports", site_root / "hooks.py"):
            if watched.exists():
                args += ["--watch", str(watched)]
        code = _mkdocs(args, config_file)
        if code:
            raise typer.Exit(code)

    app.add_typer(site, name="site")
