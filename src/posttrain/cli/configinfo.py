"""Read a plugin's ``Config`` fields without importing the plugin (and so without importing torch).

``catalog show`` and the docs use this to print the config table fast. It parses the plugin
module's source with ``ast``: fields must be declared as ``name: type = Field(default, description=...)``
or ``name: type = default``. A test checks the result against the imported pydantic model for every
built-in plugin, so the two cannot drift apart.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_UNSET = object()


@dataclass(frozen=True)
class FieldInfo:
    name: str
    type: str
    default: Any
    description: str


def module_file(module_name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec and spec.origin else None


def config_fields(target: str, class_name: str | None = None) -> list[FieldInfo]:
    """Fields of ``class_name`` in the module of ``target`` ("module:attr"), bases first. By default
    the class is the one ``attr = Plugin(config=...)`` names (a module may hold several plugins,
    e.g. apo-zero and apo-down), else ``Config``."""
    module_name, _, attr = target.partition(":")
    path = module_file(module_name)
    if path is None or not path.is_file():
        return []
    if class_name is None:
        class_name = _plugin_config_name(ast.parse(path.read_text(encoding="utf-8")), attr or "plugin")
    return _fields_from_source(path, module_name, class_name, depth=0)


def _plugin_config_name(tree: ast.Module, attr: str) -> str:
    """The class passed as ``config=`` to the ``Plugin(...)`` assigned to ``attr``; ``Config`` if none."""
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
            continue
        if any(isinstance(t, ast.Name) and t.id == attr for t in node.targets):
            for kw in node.value.keywords:
                if kw.arg == "config" and isinstance(kw.value, ast.Name):
                    return kw.value.id
    return "Config"


def fields_from_file(path: Path, class_name: str = "Config") -> list[FieldInfo]:
    """Fields of ``class_name`` in a plugin file that is not installed (``catalog run my_dpo.py``)."""
    return _fields_from_source(path, path.stem, class_name, depth=0)


def _fields_from_source(path: Path, module_name: str, class_name: str, depth: int) -> list[FieldInfo]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imports = _imported_names(tree, module_name)
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name), None)
    if cls is None or depth > 4:
        return []
    fields: dict[str, FieldInfo] = {}
    for base in cls.bases:
        resolved = _resolve_base(base, imports)
        if resolved is None and isinstance(base, ast.Name) and _defines_class(tree, base.id):
            resolved = (module_name, base.id)  # a base class defined in the same module
        if resolved:
            base_path = module_file(resolved[0])
            if base_path:
                for f in _fields_from_source(base_path, resolved[0], resolved[1], depth + 1):
                    fields[f.name] = f
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if _is_classvar(node.annotation):  # not a field (pydantic): removes an inherited one
                fields.pop(node.target.id, None)
            else:
                fields[node.target.id] = _field(node)
    return list(fields.values())


def _is_classvar(annotation: ast.expr) -> bool:
    """``ClassVar``, ``ClassVar[...]`` or ``typing.ClassVar[...]``."""
    node = annotation.value if isinstance(annotation, ast.Subscript) else annotation
    return (isinstance(node, ast.Name) and node.id == "ClassVar") or (
        isinstance(node, ast.Attribute) and node.attr == "ClassVar"
    )


def _defines_class(tree: ast.Module, name: str) -> bool:
    return any(isinstance(n, ast.ClassDef) and n.name == name for n in tree.body)


def _imported_names(tree: ast.Module, module_name: str) -> dict[str, str]:
    """Local name -> fully qualified name, for imports of modules and classes."""
    package = module_name.rpartition(".")[0]
    names: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = package + ("." + base if base else "")
            for alias in node.names:
                names[alias.asname or alias.name] = f"{base}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name] = alias.name
    return names


def _resolve_base(base: ast.expr, imports: dict[str, str]) -> tuple[str, str] | None:
    if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) and base.value.id in imports:
        return imports[base.value.id], base.attr
    if isinstance(base, ast.Name) and base.id in imports and base.id != "BaseModel":
        module, _, cls = imports[base.id].rpartition(".")
        return module, cls
    return None


def _literal(node: ast.expr | None) -> Any:
    if node is None:
        return _UNSET
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ast.unparse(node)


def _field(node: ast.AnnAssign) -> FieldInfo:
    type_str = ast.unparse(node.annotation)
    value = node.value
    default: Any = _UNSET
    description = ""
    if isinstance(value, ast.Call) and getattr(value.func, "id", getattr(value.func, "attr", "")) == "Field":
        if value.args:
            default = _literal(value.args[0])
        for kw in value.keywords:
            if kw.arg == "default":
                default = _literal(kw.value)
            elif kw.arg == "description":
                description = str(_literal(kw.value))
            elif kw.arg == "default_factory":
                default = ast.unparse(kw.value) + "()"
    else:
        default = _literal(value)
    return FieldInfo(node.target.id, type_str, None if default is _UNSET else default, description)  # type: ignore[union-attr]
