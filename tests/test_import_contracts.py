"""The layer rules of pyproject.toml's [tool.importlinter] hold (checked with import-linter).

- plugins-independent: no plugin imports another (shared code lives in the core package of its family);
- low-layers-without-embedded: the low layers reach the embedded models and task only through
  ``posttrain.sources`` (the embedded package registers into it);
- core-without-plugins: the core package never imports a plugin;
- layers: cli > runs > the family recipes (inference, rl) > training > scoring > generation, each
  importing only the layers below it (the flat modules of ``posttrain`` are the foundation).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONTRACTS = ["plugins-independent", "low-layers-without-embedded", "layers", "core-without-plugins"]
LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def test_the_layer_contracts_are_configured():
    config = (REPO / "pyproject.toml").read_text()
    assert "[tool.importlinter]" in config
    assert config.count("[[tool.importlinter.contracts]]") == len(CONTRACTS)
    assert all(f'id = "{contract}"' in config for contract in CONTRACTS)


@pytest.mark.parametrize("contract", CONTRACTS)
def test_import_contract_is_kept(contract):
    # This checkout's packages, not an installed copy: grimp finds modules through sys.path.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "plugins")])}
    result = subprocess.run(
        [sys.executable, "-c", LINT, "--no-cache", "--contract", contract],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    broken = result.stdout[result.stdout.find("Broken contracts") :] if "Broken contracts" in result.stdout else ""
    assert result.returncode == 0, f"import contract {contract} is broken:\n{broken or result.stdout + result.stderr}"
