"""The reference-parity table (``catalog/parity.yaml``): which test compares a method's loss with a
reference implementation's own code (TRL 1.16), at what tolerance and in what dtype.

Method pages show it as their "Reference parity" section (site/hooks.py). The table cannot go stale:
tests/test_parity_table.py checks that every listed test exists and that every parity test (a test
whose name says ``trl``, in a test file that imports TRL) is listed, or listed as not a parity test
with the reason. No torch import here.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import Field, ValidationError

from posttrain.catalog.schema import Strict
from posttrain.errors import UserError, one_line

PARITY_FILE = "parity.yaml"
TEST_NODE = r"^tests/test_\w+\.py::test_\w+$"


class ParityCheck(Strict):
    """One test that compares a method's loss with a reference implementation."""

    reference: str = Field(min_length=1, description="The reference code: library, version, function and setting.")
    test: str = Field(pattern=TEST_NODE, description="tests/FILE.py::test_NAME (every parametrisation of it).")
    compares: str = Field(min_length=1, description="What must agree: loss, gradients, logged statistics.")
    tolerance: str = Field(min_length=1, description="E.g. 'absolute 1e-6'.")
    dtype: str = Field(pattern=r"^(float64|float32)$", description="The dtype the comparison runs in.")


class ParityTable(Strict):
    """``catalog/parity.yaml``: method id -> its parity checks, and the TRL tests that are not parity checks."""

    methods: dict[str, list[ParityCheck]] = Field(description="Method id -> the tests comparing it with a reference.")
    not_parity: dict[str, str] = Field(
        default_factory=dict, description="tests/FILE.py::test_NAME -> why a test naming TRL compares no plugin."
    )


def load_parity(catalog_root: Path) -> ParityTable:
    """The table in ``catalog_root/parity.yaml``; an empty one when the file is absent (a packaged catalog)."""
    path = catalog_root / PARITY_FILE
    if not path.is_file():
        return ParityTable(methods={})
    try:
        return ParityTable.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    except (yaml.YAMLError, ValidationError) as exc:
        raise UserError(f"{catalog_root.name}/{PARITY_FILE}: {one_line(str(exc))}") from exc


def unknown_methods(table: ParityTable, method_ids: set[str]) -> list[str]:
    """Method ids of the table that have no catalog entry."""
    return sorted(set(table.methods) - method_ids)
