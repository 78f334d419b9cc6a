"""Which plugins a change touches, so pull-request CI smoke-tests only those.

    python tools/changed_plugins.py --base origin/main        # files from `git diff --name-only BASE...HEAD`
    python tools/changed_plugins.py plugins/posttrain_plugins/dpo.py catalog/methods/sft.yaml

Prints the plugin names, space-separated (nothing when no plugin is touched). The rules:

- a plugin module (``plugins/posttrain_plugins/<module>.py``) -> the plugins whose entry point is in it;
  any other file under ``plugins/`` (``__init__.py``, a helper) -> all plugins;
- a catalog entry (``catalog/methods/<id>.yaml``) -> the plugin it names;
- ``pyproject.toml`` -> the entry points added or changed when nothing else in it changed, else all;
- the shared core (``src/posttrain/``) and ``tests/test_smoke.py`` -> all plugins;
- anything else (docs, site, papers, other tests, tools) -> none.

With ``--github-output`` it also appends ``plugins=<names>`` to $GITHUB_OUTPUT for later steps.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
PLUGIN_DIR = "plugins/posttrain_plugins/"
ALL = "*"  # stands for every registered plugin
ENTRY_POINTS = '[project.entry-points."posttrain.plugins"]'


def entry_points(pyproject: str) -> dict[str, str]:
    """``name -> "module:attr"`` of the posttrain.plugins table (read as text: Python 3.10 has no tomllib)."""
    found, inside = {}, False
    for line in pyproject.splitlines():
        stripped = line.split("#", 1)[0].strip()
        if stripped.startswith("["):
            inside = stripped == ENTRY_POINTS
        elif inside and "=" in stripped:
            key, value = (part.strip().strip('"').strip("'") for part in stripped.split("=", 1))
            found[key] = value
    return found


def without_entry_points(pyproject: str) -> str:
    """The pyproject text minus the posttrain.plugins table (to see whether anything else changed)."""
    kept, inside = [], False
    for line in pyproject.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            inside = stripped == ENTRY_POINTS
        if not inside and stripped:
            kept.append(line)
    return "\n".join(kept)


def pyproject_change(old: str | None, new: str) -> set[str]:
    """Plugins a pyproject edit touches: new or retargeted entry points, or ALL for any other change."""
    if old is None or without_entry_points(old) != without_entry_points(new):
        return {ALL}
    before, after = entry_points(old), entry_points(new)
    return {name for name, target in after.items() if before.get(name) != target}


def plugin_of_entry(path: Path) -> str | None:
    """The ``plugin:`` a catalog entry names (None when it names none, is deleted or does not parse)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    plugin = data.get("plugin") if isinstance(data, dict) else None
    return plugin if isinstance(plugin, str) else None


def changed_plugins(files: list[str], repo: Path = REPO, old_pyproject: str | None = None) -> list[str]:
    """Sorted plugin names touched by the changed ``files`` (paths relative to the repository root)."""
    pyproject = (repo / "pyproject.toml").read_text(encoding="utf-8")
    registered = entry_points(pyproject)
    by_module: dict[str, set[str]] = {}
    for name, target in registered.items():
        by_module.setdefault(target.partition(":")[0], set()).add(name)
    touched: set[str] = set()
    for file in files:
        file = file.strip().removeprefix("./")
        if not file:
            continue
        if file.startswith(PLUGIN_DIR) and file.endswith(".py") and file.count("/") == 2:
            module = "posttrain_plugins." + Path(file).stem
            touched |= by_module.get(module, set()) if module in by_module else {ALL}
            if Path(file).stem == "__init__":
                touched.add(ALL)
        elif file.startswith("plugins/"):
            touched.add(ALL)
        elif file.startswith("catalog/methods/") and file.endswith((".yaml", ".yml")):
            plugin = plugin_of_entry(repo / file)
            if plugin:
                touched.add(plugin)
        elif file == "pyproject.toml":
            touched |= pyproject_change(old_pyproject, pyproject)
        elif file.startswith("src/posttrain/") or file == "tests/test_smoke.py":
            touched.add(ALL)
    if ALL in touched:
        return sorted(registered)
    # a name that is not registered is `catalog validate`'s to report, not smoke's
    return sorted(touched & set(registered))


def git(*args: str, repo: Path = REPO) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="changed files (default: git diff against --base)")
    parser.add_argument("--base", default="origin/main", help="git ref the change is compared with")
    parser.add_argument("--github-output", action="store_true", help="also write plugins=... to $GITHUB_OUTPUT")
    args = parser.parse_args(argv)
    old_pyproject: str | None = None
    try:
        files = args.files or git("diff", "--name-only", f"{args.base}...HEAD").splitlines()
        old_pyproject = git("show", f"{args.base}:pyproject.toml")
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        if not args.files:
            print(f"error: cannot list the changed files against {args.base}: {exc}", file=sys.stderr)
            return 2
    names = changed_plugins(files, REPO, old_pyproject)
    print(" ".join(names))
    if args.github_output and os.environ.get("GITHUB_OUTPUT"):
        with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:
            out.write(f"plugins={' '.join(names)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
