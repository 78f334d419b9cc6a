"""The one exception type that reaches users as a one-line message instead of a traceback."""

from __future__ import annotations

import reprlib

QUOTE_LIMIT = 200  # characters of a bad value an error message shows
MESSAGE_LIMIT = 2000  # characters of a whole message: a backstop for values quoted without `quoted`


class UserError(Exception):
    """Bad input from the user: a file, field, option or value that is not what was expected.

    The CLI prints ``error: <message>`` and exits with status 2. Messages name the thing that is
    wrong and what was expected, on one line, and quote a bad value with ``quoted`` (bounded).
    """

    def __str__(self) -> str:
        return clipped(super().__str__(), MESSAGE_LIMIT)


def clipped(text: str, limit: int = QUOTE_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, saying how many were left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


_short_repr = reprlib.Repr()
_short_repr.maxlevel = 3
_short_repr.maxstring = _short_repr.maxother = QUOTE_LIMIT
_short_repr.maxlist = _short_repr.maxtuple = _short_repr.maxdict = _short_repr.maxset = 8


def quoted(value: object, limit: int = QUOTE_LIMIT) -> str:
    """A bad value as an error message shows it: its repr, never longer than ``limit`` characters,
    and computed without walking all of a huge or deeply nested value."""
    return clipped(_short_repr.repr(value), limit)
