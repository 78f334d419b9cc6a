"""The embedded models as frozen, versioned artifacts shipped inside the package.

Each embedded model (base, reasoning, few-shot, diverse paths, PRM, s1, teacher) lives in
``posttrain/embedded/models/<name>/``: safetensors weights, tokenizer files, the recipe's own record
(``base.json``, ``prm.json``, ...: steps and held-out checks) and ``build.json`` (recipe version,
package versions, sha256 of every file). Loading one never trains: the files are checked against
``build.json`` and a missing or altered file is a one-line error naming it. Training the same recipe
again with other package versions can give a different model (the base was 64.0% with one
transformers release and 77.8% with the next), which is why the artifacts, not the recipes, are
what every run and every committed report starts from.

``catalog embedded build NAME --output DIR`` re-runs a recipe; ``catalog embedded verify`` checks
the hashes; ``catalog embedded list`` shows names, sizes and held-out checks. No torch at import.
Only seed 0 ships; another seed (``base_model_dir(seed=1)``) is built from its recipe on first use
and cached in ``$POSTTRAIN_CACHE`` (default ``~/.cache/posttrain``).
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posttrain.errors import UserError
from posttrain.files import file_sha256

MODELS_ROOT = Path(__file__).parent / "models"
BUILD_RECORD = "build.json"
PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "peft")


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    version_of: str  # "module:CONSTANT" holding the recipe version (bumped when the recipe changes)
    build_of: str  # "module:function" (seed, out, console) -> checks; trains the model into ``out``
    marker: str  # the recipe's own record in the folder (steps, held-out checks)

    def version(self) -> str:
        module, constant = self.version_of.split(":")
        return getattr(importlib.import_module(module), constant)


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe(
            "base",
            "2-digit addition, 148K-parameter Llama: the default model of every trainer",
            "posttrain.embedded.model:BASE_VERSION",
            "posttrain.embedded.model:build_base",
            "base.json",
        ),
        Recipe(
            "reasoning",
            "3-digit scratchpad addition with verify/refine/polish skills (--model embedded:reasoning)",
            "posttrain.embedded.model:REASONING_VERSION",
            "posttrain.embedded.model:build_reasoning",
            "base.json",
        ),
        Recipe(
            "fewshot",
            "the reasoning model trained on few-shot pages (cot, zero-shot-cot, self-polish)",
            "posttrain.embedded.fewshot:FEWSHOT_VERSION",
            "posttrain.embedded.fewshot:build_fewshot",
            "base.json",
        ),
        Recipe(
            "diverse",
            "the reasoning model solving by three checkable paths (self-consistency)",
            "posttrain.embedded.diverse:DIVERSE_VERSION",
            "posttrain.embedded.diverse:build_diverse",
            "base.json",
        ),
        Recipe(
            "prm",
            "process reward model of the reasoning task (--set prm=embedded)",
            "posttrain.embedded.prm:PRM_VERSION",
            "posttrain.embedded.prm:build_prm_model",
            "prm.json",
        ),
        Recipe(
            "s1",
            "the reasoning model fine-tuned on re-checking traces (budget-forcing)",
            "posttrain.embedded.s1:S1_VERSION",
            "posttrain.embedded.s1:build_s1",
            "s1.json",
        ),
        Recipe(
            "teacher",
            "a 3.2x larger addition model: the distillation plugins' teacher",
            "posttrain.embedded.teacher:TEACHER_VERSION",
            "posttrain.embedded.teacher:build_teacher",
            "teacher.json",
        ),
    ]
}


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise UserError(f"embedded model '{name}': unknown (expected one of {', '.join(RECIPES)})")
    return RECIPES[name]


def shipped_dir(name: str) -> Path:
    """The verified folder of a shipped model: every file of ``build.json`` present with its
    sha256, and the recipe version the code expects. Never trains."""
    folder = MODELS_ROOT / name
    if name not in _verified:
        problems = verify(name)
        if problems:
            raise UserError(problems[0])
        _verified.add(name)
    return folder


_verified: set[str] = set()


def verify(name: str) -> list[str]:
    """One line per problem of a shipped model (empty when intact), each naming the file."""
    folder = MODELS_ROOT / name
    record_path = folder / BUILD_RECORD
    if not record_path.is_file():
        return [
            f"{record_path}: missing (embedded model '{name}' is not shipped; rebuild it with `catalog embedded build {name}`)"
        ]
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        files = dict(record["files"])
    except (ValueError, KeyError, TypeError):
        return [f"{record_path}: not a valid build record (expected JSON with a 'files' mapping)"]
    problems = []
    expected = recipe(name).version()
    if record.get("recipe_version") != expected:
        problems.append(
            f"{record_path}: recipe version {record.get('recipe_version')!r}, the code expects {expected!r} "
            f"(rebuild with `catalog embedded build {name} --output {folder}`)"
        )
    for file, digest in sorted(files.items()):
        path = folder / file
        if not path.is_file():
            problems.append(f"{path}: missing (embedded model '{name}')")
        elif file_sha256(path) != digest:
            problems.append(f"{path}: sha256 differs from {BUILD_RECORD} (altered or corrupt embedded model '{name}')")
    return problems


def build(name: str, output: Path, console=None) -> dict[str, Any]:
    """Train ``name`` from its recipe into ``output`` (created; must be empty) and write its build
    record. Variants start from the shipped reasoning model, as the shipped variants did."""
    rec = recipe(name)
    if output.exists() and any(output.iterdir()):
        raise UserError(f"--output {output}: folder is not empty")
    output.mkdir(parents=True, exist_ok=True)
    module, function = rec.build_of.split(":")
    checks = getattr(importlib.import_module(module), function)(0, output, console)
    (output / rec.marker).write_text(json.dumps(checks, indent=2) + "\n")
    return write_build_record(name, output, checks)


def write_build_record(name: str, folder: Path, checks: dict[str, Any]) -> dict[str, Any]:
    files = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != BUILD_RECORD)
    record = {
        "name": name,
        "recipe_version": recipe(name).version(),
        "seed": 0,
        "built": dt.date.today().isoformat(),
        "threads": os.environ.get("OMP_NUM_THREADS", "default"),
        "checks": checks,
        "packages": {"python": platform.python_version(), **package_versions()},
        "files": {f: file_sha256(folder / f) for f in files},
    }
    (folder / BUILD_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return record


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


def listing() -> list[dict[str, Any]]:
    """Name, size, recipe version and held-out checks of every embedded model (no hashing)."""
    rows = []
    for name, rec in RECIPES.items():
        folder = MODELS_ROOT / name
        record_path = folder / BUILD_RECORD
        record = json.loads(record_path.read_text(encoding="utf-8")) if record_path.is_file() else {}
        size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) if folder.is_dir() else 0
        rows.append(
            {
                "name": name,
                "summary": rec.summary,
                "bytes": size,
                "recipe_version": record.get("recipe_version"),
                "checks": record.get("checks", {}),
                "shipped": record_path.is_file(),
            }
        )
    return rows


def model_dir(name: str, seed: int, build_into_cache) -> Path:
    """The folder a ``*_model_dir(seed)`` function returns: the shipped artifact for seed 0, else
    ``build_into_cache()`` (another seed is trained from the recipe on first use and cached)."""
    if seed == 0:
        return shipped_dir(name)
    return build_into_cache()
