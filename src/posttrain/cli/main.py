"""The `catalog` command line (also `python -m posttrain`).

Commands that only read the catalog (list, show, validate, schema, plugins) never import torch;
`run` and `smoke` import the plugin, and with it torch, only when they start.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from posttrain.cli.output import FORMAT_HELP, check_format, print_rows
from posttrain.cli.runhelp import RunCommand
from posttrain.cli.usage import OneLineUsageGroup
from posttrain.errors import UserError


def help_layout() -> dict[str, int]:
    """Help at the terminal's width (at most 120 columns) on a terminal; piped or redirected, one line
    per option and paragraph, so nothing is wrapped mid-sentence in a file or a pager."""
    if sys.stdout.isatty():
        return {"max_content_width": 120}
    return {"terminal_width": 10_000, "max_content_width": 10_000}


# Plain click help (rich_markup_mode=None): typer's rich panels show every flag as taking a
# `<bool>` value and break descriptions in a narrow column.
app = typer.Typer(
    name="catalog",
    cls=OneLineUsageGroup,
    help="A catalog of LLM post-training methods in which every entry runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings=help_layout(),
)
console = Console(soft_wrap=True)
CatalogOpt = Annotated[Path | None, typer.Option("--catalog", help="Catalog folder (default: the built-in one).")]


def _load(catalog: Path | None):
    from posttrain.catalog.load import load_catalog

    return load_catalog(catalog)


FormatOpt = Annotated[str, typer.Option("--format", help=FORMAT_HELP)]


@app.command("list")
def list_methods(
    family: Annotated[str | None, typer.Option(help="Only this family (or branch) id.")] = None,
    runnable: Annotated[bool, typer.Option("--runnable", help="Only methods with a plugin.")] = False,
    catalog: CatalogOpt = None,
    format_: FormatOpt = "table",
) -> None:
    """List the catalogued methods with their branch, family and status."""
    check_format(format_)
    cat = _load(catalog)
    families = cat.taxonomy.families() if cat.taxonomy else {}
    if family and family not in families and family not in {b for b, _ in ((b.id, 0) for b, _ in families.values())}:
        from posttrain.registry import suggest

        raise UserError(f"--family: unknown family '{family}'{suggest(family, list(families))}")
    rows = []
    for entry in sorted(cat.methods.values(), key=lambda e: (e.family, e.id)):
        branch = families[entry.family][0].id if entry.family in families else None
        if family and family not in (entry.family, branch):
            continue
        if runnable and not entry.plugin:
            continue
        rows.append(
            {
                "id": entry.id,
                "name": entry.name,
                "branch": branch,
                "family": entry.family,
                "status": entry.status.value,
                "plugin": entry.plugin,
            }
        )
    print_rows(console, ["id", "name", "branch", "family", "status", "plugin"], rows, format_)


@app.command()
def show(
    method: Annotated[str, typer.Argument(help="Method id or alias.")],
    catalog: CatalogOpt = None,
    format_: Annotated[
        str, typer.Option("--format", help="table, json (the whole entry) or csv (the config table).")
    ] = "table",
) -> None:
    """Show a method: summary, objective, papers and its plugin's config table."""
    from posttrain.registry import suggest

    check_format(format_)
    cat = _load(catalog)
    entry = cat.resolve(method)
    if entry is None:
        raise UserError(f"no method '{method}' in the catalog{suggest(method, list(cat.methods))}")
    fields = _config_rows(entry.plugin)
    frameworks = _framework_records(cat, entry.id)
    if format_ == "json":
        console.out(json.dumps(_entry_record(entry, fields, frameworks), indent=2, default=str))
    elif format_ == "csv":
        print_rows(console, CONFIG_COLUMNS, fields or [], "csv")
    else:
        _show_text(entry, fields, frameworks)


CONFIG_COLUMNS = ["option", "type", "default", "description"]


def _config_rows(plugin: str | None) -> list[dict[str, Any]] | None:
    """The plugin's Config fields read from its source (no torch); None when it is not installed."""
    from posttrain.cli.configinfo import config_fields
    from posttrain.registry import discover

    spec = discover().get(plugin) if plugin else None
    if spec is None:
        return None
    return [
        {"option": f.name, "type": f.type, "default": f.default, "description": f.description}
        for f in config_fields(spec.target)
    ]


def _entry_record(entry, fields: list[dict[str, Any]] | None, frameworks: list[dict[str, Any]]) -> dict[str, Any]:
    papers = [{"title": p.title, "authors": list(p.authors), "year": p.year, "link": p.link} for p in entry.papers]
    return {
        "id": entry.id,
        "name": entry.name,
        "family": entry.family,
        "status": entry.status.value,
        "summary": entry.summary,
        "objective": entry.objective.strip(),
        "papers": papers,
        "plugin": entry.plugin,
        "run_as": entry.run_as.model_dump() if entry.run_as else None,
        "status_note": entry.status_note,
        "config": fields,
        "frameworks": frameworks,
    }


def _framework_records(cat, method_id: str) -> list[dict[str, Any]]:
    """How other frameworks run this method (catalog/frameworks/), as ``catalog show`` prints it."""
    from posttrain.catalog.frameworks import written_flags

    return [
        {
            "framework": f.name,
            "version": f.version,
            "checked": f.checked,
            "entry_point": f.methods[method_id].entry_point,
            "flags": written_flags(f, f.methods[method_id]),
            "source": f.methods[method_id].source,
            "note": f.methods[method_id].note,
        }
        for f in cat.frameworks_of(method_id)
    ]


def _show_practice(entry) -> None:
    """The practitioner fields, one line per claim with its source (the site page has them all)."""
    for title, claims in (
        ("Use it when", entry.when_to_use),
        ("Avoid it when", entry.avoid_when),
        ("Failure modes", entry.failure_modes),
    ):
        if claims:
            console.print(f"\n[bold]{title}[/bold]")
            for claim in claims:
                console.print(f"- {claim.text} ({claim.source})", markup=False, highlight=False)


def _show_frameworks(records: list[dict[str, Any]]) -> None:
    if not records:
        return
    console.print("\n[bold]Run it elsewhere[/bold] (flags checked against the version shown)")
    for r in records:
        console.print(f"- {r['framework']} {r['version']} ({r['entry_point']}): {' '.join(r['flags'])}", markup=False)
        console.print(f"  {r['source']}", markup=False, highlight=False)


def _show_text(entry, fields: list[dict[str, Any]] | None, frameworks: list[dict[str, Any]]) -> None:
    console.print(f"[bold]{entry.name}[/bold] ({entry.id})  family: {entry.family}  status: {entry.status.value}")
    console.print(entry.summary)
    console.print("\n[bold]Objective[/bold]")
    console.print(entry.objective.strip(), markup=False, highlight=False)
    console.print("\n[bold]Papers[/bold]")
    for p in entry.papers:
        authors = ", ".join(p.authors[:3]) + (" et al." if len(p.authors) > 3 else "")
        console.print(f"- {p.title} ({authors}, {p.year}) {p.link}", markup=False)
    _show_practice(entry)
    _show_frameworks(frameworks)
    if entry.plugin is None:
        console.print(f"\nNot runnable (status catalogued). {entry.status_note or ''}")
        return
    if fields is None:
        console.print(f"\nPlugin '{entry.plugin}' is not installed.")
        return
    if entry.run_as is not None:
        sets = " ".join(f"--set {k}={v}" for k, v in entry.run_as.set.items())
        console.print(
            f"\nRuns as: catalog run {entry.plugin} {sets} (the defaults below are {entry.plugin}'s)", markup=False
        )
    console.print(f"\n[bold]catalog run {entry.id}[/bold] --set OPTION=VALUE")
    shown = [r | {"default": repr(r["default"])} for r in fields]
    print_rows(console, ["option", "default", "description"], shown, "table")


def plugin_config_fields(specs: dict, plugin: str) -> set[str] | None:
    """The Config field names of a registered plugin, read from its source without importing it
    (None when it is not registered or its source is not found)."""
    from posttrain.cli.configinfo import config_fields

    if plugin not in specs:
        return None
    return {f.name for f in config_fields(specs[plugin].target)} or None


@app.command()
def validate(
    path: Annotated[Path | None, typer.Argument(help="Catalog folder or one entry file.")] = None,
    links: Annotated[bool, typer.Option("--links", help="Also check every URL online.")] = False,
    format_: Annotated[
        str, typer.Option("--format", help="text, or github: ::error annotations for GitHub Actions.")
    ] = "text",
) -> None:
    """Check the catalog's schema and cross-references; print every problem as file:line: field: message."""
    from posttrain.catalog.load import validate as run_validation
    from posttrain.registry import discover

    if format_ not in ("text", "github"):
        raise UserError(f"--format {format_}: expected text or github")
    only_file = None
    root = path
    if path is not None and path.is_file():
        only_file, root = path.name, path.resolve().parent
        while root != root.parent and not (root / "taxonomy.yaml").is_file():
            root = root.parent
    elif path is not None and not path.exists():
        raise UserError(f"{path} does not exist")
    specs = discover()
    registered = {name: spec.distribution for name, spec in specs.items()}
    cat, problems = run_validation(root, registered, lambda plugin: plugin_config_fields(specs, plugin))
    if only_file:
        problems = [p for p in problems if p.file.endswith("/" + only_file)]
    for p in problems:
        if format_ == "github":
            from posttrain.cli.contrib import github_annotation

            print(github_annotation(p))
        else:
            console.print(str(p), markup=False, highlight=False)
    if problems:
        console.print(f"{len(problems)} problem(s) found", style="red")
        raise typer.Exit(2)  # a catalog problem is bad input, like any other (README: exit status 2)
    tables = f", {len(cat.models)} models, {len(cat.benchmarks)} datasets and benchmarks" if cat.models else ""
    console.print(f"ok: {len(cat.methods)} methods{tables}, catalog {cat.root}")
    if links:
        from posttrain.catalog.linkcheck import check_catalog_links

        check_catalog_links(cat, console)


@app.command()
def schema(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Folder to write the schemas into.")] = None,
) -> None:
    """Write the JSON Schemas of method entries and the taxonomy (for editor validation)."""
    from posttrain.catalog.schema import json_schemas

    schemas = json_schemas()
    if output is None:
        print(json.dumps(schemas, indent=2))
        return
    output.mkdir(parents=True, exist_ok=True)
    for name, body in schemas.items():
        (output / f"{name}.schema.json").write_text(json.dumps(body, indent=2) + "\n")
        console.print(f"wrote {output / f'{name}.schema.json'}")


@app.command()
def plugins(format_: FormatOpt = "table") -> None:
    """List installed plugins and the distribution that provides each."""
    from posttrain.registry import discover

    check_format(format_)
    columns = ["plugin", "target", "distribution", "version"]
    rows = [dict(zip(columns, (s.name, s.target, s.distribution, s.version), strict=True)) for s in discover().values()]
    print_rows(console, columns, rows, format_)


@app.command(cls=RunCommand, context_settings={"help_option_names": ["-h", "--help"]})
def run(
    method: Annotated[str, typer.Argument(metavar="ID", help="Method id, alias, plugin name, or a plugin .py file.")],
    model: Annotated[
        str | None, typer.Option(help="HF model id or local folder (default: embedded tiny model).")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="Local JSONL file or HF dataset id (default: embedded task).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="FIELD=VALUE", help="Config override (repeatable); the fields are listed below."),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", metavar="FILE", help="YAML file of config values.")] = None,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", help="Run folder (default runs/ID/TIMESTAMP).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    seed: Annotated[int | None, typer.Option(help="Random seed (default 0).")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the last checkpoint in the run folder.")
    ] = False,
    force_resume: Annotated[
        bool, typer.Option("--force-resume", help="Resume although the options differ from the run's.")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the run already in --output-dir.")] = False,
    trust_remote_code: Annotated[
        bool, typer.Option("--trust-remote-code", help="Allow model code from the hub.")
    ] = False,
    dtype: Annotated[str, typer.Option(help="auto | bf16 | fp16 | fp32 (auto: bf16 on CUDA, fp32 on CPU).")] = "auto",
    gradient_checkpointing: Annotated[
        bool, typer.Option("--gradient-checkpointing", help="Recompute activations in the backward pass.")
    ] = False,
    logit_chunk_size: Annotated[
        int,
        typer.Option(
            "--logit-chunk-size",
            help="Token log-probs with the LM head applied N tokens at a time, never the full logits (0: off).",
        ),
    ] = 0,
) -> None:
    """Run a method's plugin; writes config.yaml, metrics.jsonl, summary.json, a plot and the model.

    A comma list for a budget field (e.g. --set n=1,4,16,64) runs a sweep: one run per value,
    then sweep.json and sweep.png (accuracy against compute) in the output folder."""
    from posttrain.runs.runner import execute, prepare, resolve_plugin, run_sweep
    from posttrain.runs.sweeps import find_sweep

    plugin = _resolve_announced(method, resolve_plugin)
    sweep = find_sweep(plugin.config, set_ or [])
    if sweep is not None:
        field, values, rest = sweep
        run_sweep(
            method,
            field,
            values,
            rest,
            output_dir,
            console=console,
            model=model,
            dataset=dataset,
            config_file=config,
            device=device,
            seed=seed,
            trust_remote_code=trust_remote_code,
            dtype=dtype,
            gradient_checkpointing=gradient_checkpointing,
            logit_chunk_size=logit_chunk_size,
        )
        return
    prepared = prepare(
        method,
        model=model,
        dataset=dataset,
        sets=set_ or [],
        config_file=config,
        output_dir=output_dir,
        device=device,
        seed=seed,
        resume=resume,
        trust_remote_code=trust_remote_code,
        dtype=dtype,
        gradient_checkpointing=gradient_checkpointing,
        logit_chunk_size=logit_chunk_size,
        overwrite=overwrite,
        force_resume=force_resume,
    )
    execute(prepared, console=console)


def _resolve_announced(method: str, resolve_plugin):
    """The plugin to run; a .py file is announced before it is executed, and what it holds after."""
    if not (method.endswith(".py") and Path(method).is_file()):
        return resolve_plugin(method)[1]
    from posttrain.registry import executing_file_notice, found_in_file

    err = Console(stderr=True, soft_wrap=True)
    err.print(executing_file_notice(Path(method)), markup=False, highlight=False)
    plugin = resolve_plugin(method)[1]
    err.print(found_in_file(Path(method), plugin), markup=False, highlight=False)
    return plugin


@app.command()
def smoke(
    ids: Annotated[list[str] | None, typer.Argument(help="Plugins to test (default: all registered).")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    report: Annotated[Path, typer.Option(help="Where to write the JSON report.")] = Path("smoke-report.json"),
) -> None:
    """Run every plugin for 2 steps on the tiny model; print a pass/fail table and write a JSON report."""
    from posttrain.runs.runner import smoke_all

    results = smoke_all(ids or [], device=device, console=console)
    report.write_text(json.dumps(results, indent=2) + "\n")
    table = Table("plugin", "result", "seconds", "detail")
    for r in results:
        table.add_row(r["plugin"], "[green]pass" if r["ok"] else "[red]FAIL", f"{r['seconds']:.1f}", r["detail"][:100])
    console.print(table)
    console.print(f"report: {report}")
    if not all(r["ok"] for r in results):
        raise typer.Exit(1)


from posttrain.cli import catalog as cli_catalog  # noqa: E402
from posttrain.cli import contrib as cli_contrib  # noqa: E402
from posttrain.cli import embedded as cli_embedded  # noqa: E402
from posttrain.cli import site as cli_site  # noqa: E402

cli_catalog.register(app)
cli_embedded.register(app, console)
cli_site.register(app)
cli_contrib.register(app)

from posttrain.runs import compare as compare_cli  # noqa: E402

compare_cli.register(app)


def main() -> None:
    try:
        app()
    except UserError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        Console(stderr=True).print("[red]interrupted[/red]")
        sys.exit(130)
