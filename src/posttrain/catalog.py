"""Find, load and validate the catalog (``catalog/``: taxonomy.yaml and methods/<id>.yaml).

Validation collects every problem before reporting, each as ``file:line: field: message``.
YAML is read only through the safe loader. No torch import here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from posttrain.errors import UserError
from posttrain.schema import ARXIV_PATTERN, MethodEntry, Taxonomy

TAXONOMY_FILE = "taxonomy.yaml"
METHODS_DIR = "methods"


def catalog_dir(explicit: Path | None = None) -> Path:
    """The catalog to use: an explicit path, $POSTTRAIN_CATALOG, the checkout's catalog/, or the packaged copy."""
    candidates: list[Path] = []
    if explicit is not None:
        candidates.append(explicit)
    elif os.environ.get("POSTTRAIN_CATALOG"):
        candidates.append(Path(os.environ["POSTTRAIN_CATALOG"]))
    else:
        here = Path(__file__).resolve().parent
        candidates += [here.parents[1] / "catalog", here / "_catalog"]
    for path in candidates:
        if (path / TAXONOMY_FILE).is_file():
            return path
    where = ", ".join(str(p) for p in candidates)
    raise UserError(f"no catalog found (looked for {TAXONOMY_FILE} in: {where})")


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


@dataclass
class Catalog:
    root: Path
    taxonomy: Taxonomy | None
    methods: dict[str, MethodEntry] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)  # method id -> file
    problems: list[Problem] = field(default_factory=list)

    def resolve(self, name: str) -> MethodEntry | None:
        """A method by id or alias (case-insensitive)."""
        if name in self.methods:
            return self.methods[name]
        lowered = name.lower()
        for entry in self.methods.values():
            if lowered == entry.id or lowered in (a.lower() for a in entry.aliases):
                return entry
        return None


# --- YAML with line numbers -----------------------------------------------------------------


def _read_yaml(path: Path, problems: list[Problem], rel: str) -> tuple[Any, yaml.Node | None]:
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except UnicodeDecodeError:
        problems.append(Problem(rel, 1, "(file)", "not UTF-8 text"))
        return None, None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        problems.append(Problem(rel, line, "(yaml)", f"invalid YAML: {exc.problem}"))
        return None, None
    return data, node


def line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int:
    """The 1-based line of the deepest YAML node that ``loc`` (a pydantic error path) reaches."""
    if node is None:
        return 1
    line = node.start_mark.line + 1
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == key), None)
            if match is None:
                break
            node = match[1]
            line = match[0].start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _schema_problems(exc: ValidationError, node: yaml.Node | None, rel: str) -> list[Problem]:
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        dotted = ".".join(str(p) for p in loc) or "(entry)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see `catalog schema`)"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "string_pattern_mismatch" and loc and loc[-1] == "arxiv":
            msg = f"'{err['input']}' is not an arXiv id (expected e.g. 2305.18290)"
        out.append(Problem(rel, line_of(node, loc), dotted, msg))
    return out


# --- loading ------------------------------------------------------------------------------------


def load_catalog(root: Path | None = None) -> Catalog:
    """Load everything that parses; every problem met is kept in ``catalog.problems``."""
    root = catalog_dir(root)
    problems: list[Problem] = []
    taxonomy = None
    tax_rel = f"{root.name}/{TAXONOMY_FILE}"
    data, node = _read_yaml(root / TAXONOMY_FILE, problems, tax_rel)
    if data is not None:
        try:
            taxonomy = Taxonomy.model_validate(data)
        except ValidationError as exc:
            problems += _schema_problems(exc, node, tax_rel)
    cat = Catalog(root=root, taxonomy=taxonomy, problems=problems)
    for path in sorted((root / METHODS_DIR).glob("*")):
        rel = f"{root.name}/{METHODS_DIR}/{path.name}"
        if path.suffix not in (".yaml", ".yml"):
            problems.append(Problem(rel, 1, "(file)", "only <id>.yaml files belong in methods/"))
            continue
        data, node = _read_yaml(path, problems, rel)
        if data is None:
            if node is None and not any(p.file == rel for p in problems):
                problems.append(Problem(rel, 1, "(file)", "empty file"))
            continue
        if not isinstance(data, dict):
            problems.append(Problem(rel, 1, "(entry)", "expected a mapping of fields"))
            continue
        try:
            entry = MethodEntry.model_validate(data)
        except ValidationError as exc:
            problems += _schema_problems(exc, node, rel)
            continue
        if entry.id != path.stem:
            problems.append(
                Problem(rel, line_of(node, ("id",)), "id", f"'{entry.id}' must equal the file name '{path.stem}'")
            )
        if entry.id in cat.methods:
            problems.append(Problem(rel, line_of(node, ("id",)), "id", f"duplicate id '{entry.id}'"))
            continue
        cat.methods[entry.id] = entry
        cat.files[entry.id] = path
    return cat


# --- cross-references ---------------------------------------------------------------------------


def validate(root: Path | None = None, registered: dict[str, str] | None = None) -> tuple[Catalog, list[Problem]]:
    """Schema plus cross-reference checks. ``registered`` maps plugin name -> distribution."""
    cat = load_catalog(root)
    problems = list(cat.problems)
    families = cat.taxonomy.families() if cat.taxonomy else {}
    nodes: dict[str, yaml.Node | None] = {}

    def where(mid: str, loc: tuple[Any, ...]) -> tuple[str, int]:
        path = cat.files[mid]
        if mid not in nodes:
            nodes[mid] = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
        return f"{cat.root.name}/{METHODS_DIR}/{path.name}", line_of(nodes[mid], loc)

    names_seen: dict[str, str] = {}
    for mid, entry in cat.methods.items():
        if cat.taxonomy and entry.family not in families:
            problems.append(
                Problem(*where(mid, ("family",)), "family", f"unknown family '{entry.family}' (not in {TAXONOMY_FILE})")
            )
        for i, rel_id in enumerate(entry.related):
            if rel_id not in cat.methods:
                problems.append(Problem(*where(mid, ("related", i)), f"related.{i}", f"unknown method id '{rel_id}'"))
            if rel_id == mid:
                problems.append(
                    Problem(*where(mid, ("related", i)), f"related.{i}", "a method cannot relate to itself")
                )
        if entry.lineage and entry.lineage.parent not in cat.methods:
            problems.append(
                Problem(
                    *where(mid, ("lineage", "parent")), "lineage.parent", f"unknown method id '{entry.lineage.parent}'"
                )
            )
        if registered is not None and entry.plugin is not None and entry.plugin not in registered:
            problems.append(
                Problem(
                    *where(mid, ("plugin",)),
                    "plugin",
                    f"'{entry.plugin}' is not a registered plugin (see `catalog plugins`)",
                )
            )
        for i, paper in enumerate(entry.papers):
            if paper.arxiv and not re.match(ARXIV_PATTERN, paper.arxiv):
                problems.append(Problem(*where(mid, ("papers", i, "arxiv")), f"papers.{i}.arxiv", "malformed arXiv id"))
        for j, name in enumerate([mid, *entry.aliases]):
            key = name.lower()
            loc: tuple[Any, ...] = ("id",) if j == 0 else ("aliases", j - 1)
            if key in names_seen and names_seen[key] != mid:
                problems.append(
                    Problem(
                        *where(mid, loc),
                        "id" if j == 0 else f"aliases.{j - 1}",
                        f"'{name}' is already used by '{names_seen[key]}'",
                    )
                )
            names_seen.setdefault(key, mid)
    if registered is not None:
        documented = {e.plugin for e in cat.methods.values() if e.plugin}
        for name, dist in sorted(registered.items()):
            if name not in documented:
                problems.append(
                    Problem(
                        f"{cat.root.name}/{METHODS_DIR}/{name}.yaml",
                        1,
                        "plugin",
                        f"registered plugin '{name}' ({dist}) has no catalog entry",
                    )
                )
    problems.sort(key=lambda p: (p.file, p.line))
    return cat, problems
