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
        return one_line(clipped(super().__str__(), MESSAGE_LIMIT))


def one_line(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``, ``\\x1e``...): a bad value quoted in
    a message can neither break it into lines (``str.splitlines`` also breaks at \\x1c-\\x1e and
    \\u2028) nor send escape sequences to the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


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
