import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("POSTTRAIN_BUILTIN_ONLY", "1")  # tests see only this distribution's plugins
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def cli():
    """Invoke the CLI in-process and return (exit_code, combined output)."""
    from typer.testing import CliRunner

    from posttrain.cli import app
    from posttrain.errors import UserError

    runner = CliRunner()

    def invoke(*args: str):
        result = runner.invoke(app, list(args), catch_exceptions=True)
        if isinstance(result.exception, UserError):
            return 2, f"error: {result.exception}"
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.output

    return invoke


@pytest.fixture
def python() -> str:
    return sys.executable
