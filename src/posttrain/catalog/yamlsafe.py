"""YAML without aliases, for text that users and pull requests write.

A YAML alias (``*name``) repeats an anchored value without copying it, so a few dozen characters
can describe a value of billions of items ("billion laughs"): printing or validating it then
takes gigabytes. Nothing the catalog, ``--set`` or ``--config`` needs uses anchors, so text with
an alias is refused before it is loaded. Parsing the events first is cheap (the C parser when
PyYAML has it).
"""

from __future__ import annotations

from typing import Any

import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
ALIAS_MESSAGE = "YAML aliases (*name) are not allowed; write the value out"


class AliasError(ValueError):
    """The text uses a YAML alias; ``line`` is 1-based."""

    def __init__(self, line: int) -> None:
        super().__init__(ALIAS_MESSAGE)
        self.line = line


def first_alias_line(text: str) -> int | None:
    """The 1-based line of the first alias in ``text``, or None. Raises yaml.YAMLError on bad YAML."""
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent):
            return event.start_mark.line + 1 if event.start_mark else 1
    return None


def load(text: str) -> Any:
    """``yaml.safe_load`` that raises AliasError instead of loading text with an alias."""
    line = first_alias_line(text)
    if line is not None:
        raise AliasError(line)
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a safe loader)
