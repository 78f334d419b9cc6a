"""``catalog run ID --help``: the command's options, then that method's own Config fields.

Click prints help while it parses, before the method argument has a value, so the command keeps
the raw arguments and finds the method among them. The fields are read from the plugin's source
(``posttrain.cli.configinfo``), so help never imports the plugin or torch.
"""

from __future__ import annotations

from pathlib import Path

from typer.core import TyperCommand

from posttrain.cli.configinfo import FieldInfo, config_fields, fields_from_file
from posttrain.errors import UserError

RAW_ARGS = "posttrain.run_args"


class RunCommand(TyperCommand):
    def parse_args(self, ctx, args):
        ctx.meta[RAW_ARGS] = list(args)
        return super().parse_args(ctx, args)

    def format_help(self, ctx, formatter) -> None:
        super().format_help(ctx, formatter)
        method = first_positional(ctx.meta.get(RAW_ARGS, []), self.params)
        if method is None:
            formatter.write_paragraph()
            formatter.write_text("`catalog run ID --help` also lists method ID's Config fields (its --set options).")
            return
        name, fields = method_config(method)
        rows = [(f.name, field_help(f)) for f in fields]
        with formatter.section(f"Config of {name} (--set FIELD=VALUE, or a --config YAML file)"):
            formatter.write_dl(rows) if rows else formatter.write_text("(no fields)")


def field_help(field: FieldInfo) -> str:
    return f"{field.description}  [{field.type}, default: {field.default!r}]".strip()


def first_positional(args: list[str], params) -> str | None:
    """The first argument that is neither an option nor an option's value."""
    takes_value = {opt for p in params if not getattr(p, "is_flag", True) for opt in p.opts}
    skip_next = False
    for arg in args:
        if skip_next:
            skip_next = False
        elif arg == "--":
            continue
        elif arg.startswith("-"):
            skip_next = arg in takes_value
        else:
            return arg
    return None


def method_config(method: str) -> tuple[str, list[FieldInfo]]:
    """The method's name and Config fields, resolved as `catalog run` resolves it (without importing)."""
    from posttrain.registry import discover, suggest

    if method.endswith(".py"):
        if not Path(method).is_file():
            raise UserError(f"{method}: no such plugin file")
        return method, fields_from_file(Path(method))
    specs = discover()
    if method in specs:
        return method, config_fields(specs[method].target)
    from posttrain.catalog.load import load_catalog

    cat = load_catalog()
    entry = cat.resolve(method)
    if entry is None:
        names = sorted(set(specs) | set(cat.methods))
        raise UserError(f"unknown method '{method}'{suggest(method, names)} (see `catalog list --runnable`)")
    if entry.plugin is None or entry.plugin not in specs:
        raise UserError(f"'{entry.id}' has no runnable plugin installed ({entry.status_note or 'status catalogued'})")
    return entry.id, config_fields(specs[entry.plugin].target)
