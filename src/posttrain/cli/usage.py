"""Command-line usage errors (an option of the wrong type, an unknown option or command) shown as
every other bad input is: one line, ``error: ...``, exit status 2. Click's own form is the usage
synopsis, a hint and the error on a fourth line."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import typer
from typer.core import TyperGroup

from posttrain.errors import MESSAGE_LIMIT, clipped, one_line

# The click that typer uses: its own copy (typer._click) in recent typer, click itself in older ones.
# typer.BadParameter is public in both and derives from that click's UsageError.
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
_NoArgsIsHelp = getattr(sys.modules[UsageError.__module__], "NoArgsIsHelpError", ())  # prints the help


class OneLineUsageError(UsageError):
    def show(self, file=None) -> None:
        command = self.ctx.command_path if self.ctx is not None else "catalog"
        message = one_line(" ".join(self.format_message().split()))
        typer.echo(f"error: {command}: {clipped(message, MESSAGE_LIMIT)} (see `{command} --help`)", err=True)


@contextlib.contextmanager
def one_line_usage() -> Iterator[None]:
    try:
        yield
    except (OneLineUsageError, _NoArgsIsHelp):
        raise
    except UsageError as exc:
        raise OneLineUsageError(exc.format_message(), exc.ctx) from None


class OneLineUsageGroup(TyperGroup):
    """The `catalog` group: usage errors of the group and of each command, on one line."""

    def make_context(self, *args, **kwargs):
        with one_line_usage():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx):
        with one_line_usage():
            return super().invoke(ctx)
