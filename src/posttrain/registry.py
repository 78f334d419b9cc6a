"""Plugin discovery through the ``posttrain.plugins`` entry-point group.

Built-in plugins are declared in this project's own pyproject exactly as a third party declares
theirs. Discovery reads only package metadata; a plugin module (and torch with it) is imported only
when that plugin is loaded.

``POSTTRAIN_PLUGINS=sft,dpo`` restricts discovery to an allow-list, and
``POSTTRAIN_BUILTIN_ONLY=1`` to the plugins this distribution ships (the tests use it).
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path

from posttrain.errors import UserError
from posttrain.interface import Plugin

GROUP = "posttrain.plugins"
BUILTIN_DISTRIBUTION = "posttrain-catalog"


@dataclass(frozen=True)
class PluginSpec:
    name: str
    target: str  # "module:attribute"
    distribution: str
    version: str

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION


@lru_cache(maxsize=1)
def discover() -> dict[str, PluginSpec]:
    """All registered plugins by name, without importing any of them."""
    allow = {n.strip() for n in os.environ.get("POSTTRAIN_PLUGINS", "").split(",") if n.strip()}
    builtin_only = os.environ.get("POSTTRAIN_BUILTIN_ONLY", "") not in ("", "0")
    found: dict[str, PluginSpec] = {}
    for ep in entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist is not None else "unknown"
        spec = PluginSpec(ep.name, ep.value, dist, ep.dist.version if ep.dist is not None else "")
        if allow and spec.name not in allow:
            continue
        if builtin_only and not spec.builtin:
            continue
        previous = found.get(spec.name)
        if previous is not None and previous != spec:
            raise UserError(
                f"plugin '{spec.name}' is registered twice: by {previous.distribution} ({previous.target}) "
                f"and by {spec.distribution} ({spec.target}); uninstall one of them"
            )
        found[spec.name] = spec
    return dict(sorted(found.items()))


def suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    return f"; did you mean {', '.join(close)}?" if close else ""


def load(name: str) -> Plugin:
    """Import and check one registered plugin."""
    specs = discover()
    if name not in specs:
        raise UserError(f"no plugin named '{name}'{suggest(name, list(specs))} (see `catalog plugins`)")
    spec = specs[name]
    module_name, _, attr = spec.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(
            f"plugin '{name}' ({spec.distribution}) failed to import: {exc}; "
            "install the training extras with: pip install 'posttrain-catalog[train]'"
        ) from exc
    except Exception as exc:  # the plugin's module raised while importing: name its file, not a traceback
        raise UserError(
            f"plugin '{name}' ({spec.distribution}): {_module_file(exc, module_name)} failed at import: "
            f"{_one_line(exc)}"
        ) from None
    return _checked(getattr(module, attr or "plugin", None), name, spec.target)


# Plugin files already executed in this process, so that a second lookup does not run a file again.
_LOADED_FILES: dict[Path, Plugin] = {}


def executing_file_notice(path: Path) -> str:
    """What ``catalog run FILE.py`` says before it runs the file: that the file is code it executes."""
    return (
        f"{path}: executing this Python file to find its plugin (it runs with your permissions, "
        "like `python` would; run only files you trust)"
    )


def found_in_file(path: Path, plugin: Plugin) -> str:
    """What ``catalog run FILE.py`` found in the file: the plugin, its kind and its Config."""
    n = len(plugin.config.model_fields)
    return (
        f"{path}: found plugin '{plugin.id}' ({plugin.kind}; Config {plugin.config.__name__} with {n} "
        f"field{'s' if n != 1 else ''})"
    )


def load_file(path: Path) -> Plugin:
    """Load a plugin from a Python file the user named on the command line (``catalog run ./my_dpo.py``).

    The file is executed once per process; ``executing_file_notice`` says so to the user."""
    if not path.is_file():
        raise UserError(f"plugin file {path} does not exist")
    if path.resolve() in _LOADED_FILES:
        return _LOADED_FILES[path.resolve()]
    module_name = f"posttrain_user_{path.stem.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        raise UserError(f"{path}: import failed: {exc}") from exc
    except SyntaxError as exc:
        raise UserError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except Exception as exc:  # the user's module ran and raised: name the file and line, not a traceback
        raise UserError(f"{path}:{_raising_line(exc, path)}: failed at import: {_one_line(exc)}") from None
    plugin = _checked(getattr(module, "plugin", None), None, str(path))
    _LOADED_FILES[path.resolve()] = plugin
    return plugin


def _raising_line(exc: BaseException, path: Path) -> int | str:
    """The last line of ``path`` in the exception's traceback (where the module raised)."""
    import traceback

    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path.resolve()]
    return lines[-1] if lines and lines[-1] is not None else "?"


def _one_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _module_file(exc: BaseException, module_name: str) -> str:
    """file:line where the module ``module_name`` (or a module it imported) raised."""
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else module_name


def _checked(obj: object, name: str | None, where: str) -> Plugin:
    if not isinstance(obj, Plugin):
        raise UserError(f"{where}: expected a posttrain.Plugin object named 'plugin', found {type(obj).__name__}")
    if name is not None and obj.id != name:
        raise UserError(f"{where}: plugin id '{obj.id}' does not match its entry-point name '{name}'")
    return obj
