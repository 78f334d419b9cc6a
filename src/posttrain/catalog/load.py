"""Find, load and validate the catalog (``catalog/``: taxonomy.yaml, methods/<id>.yaml, papers/<id>.yaml,
the survey's tables: models/<id>.yaml for Table I, benchmarks/<id>.yaml for Table III, and the
per-framework flag maps: frameworks/<id>.yaml).

Validation collects every problem before reporting, each as ``file:line: field: message``.
YAML is read only through the safe loader (the C one when PyYAML has it); line numbers are worked
out only for files that have a problem, so loading stays fast. No torch import here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from posttrain.catalog import yamlsafe
from posttrain.catalog.entry_sources import entry_source_findings
from posttrain.catalog.paper_identity import arxiv_key, paper_findings
from posttrain.catalog.paper_identity import normalise_title as normalise_title  # re-exported for callers
from posttrain.catalog.parity import PARITY_FILE, load_parity, unknown_methods
from posttrain.catalog.schema import (
    ARXIV_PATTERN,
    BenchmarkRow,
    Framework,
    MethodEntry,
    ModelRow,
    Paper,
    PaperRecord,
    Taxonomy,
)
from posttrain.errors import UserError, one_line

TAXONOMY_FILE = "taxonomy.yaml"
METHODS_DIR = "methods"
PAPERS_DIR = "papers"
MODELS_DIR = "models"  # the survey's Table I, one file per row
BENCHMARKS_DIR = "benchmarks"  # the survey's Table III, one file per row
FRAMEWORKS_DIR = "frameworks"  # one flag map per training framework (TRL, verl, ...)
_KIND = {
    PAPERS_DIR: "paper",
    METHODS_DIR: "method",
    MODELS_DIR: "model",
    BENCHMARKS_DIR: "benchmark",
    FRAMEWORKS_DIR: "framework",
}
FILE_LIMIT = 64 * 1024  # bytes in one YAML file: over ten times the largest today
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def catalog_dir(explicit: Path | None = None) -> Path:
    """The catalog: an explicit path, $POSTTRAIN_CATALOG, the checkout's catalog/, or the packaged copy."""
    candidates: list[Path] = []
    if explicit is not None:
        candidates.append(explicit)
    elif os.environ.get("POSTTRAIN_CATALOG"):
        candidates.append(Path(os.environ["POSTTRAIN_CATALOG"]))
    else:
        here = Path(__file__).resolve().parents[1]  # src/posttrain
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
        return one_line(f"{self.file}:{self.line}: {self.field}: {self.message}")


@dataclass
class Catalog:
    root: Path
    taxonomy: Taxonomy | None
    methods: dict[str, MethodEntry] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)  # method id -> file
    problems: list[Problem] = field(default_factory=list)
    papers: dict[str, PaperRecord] = field(default_factory=dict)
    paper_files: dict[str, Path] = field(default_factory=dict)  # paper id -> file
    # method id -> [(index in `papers`, paper id)] as written, before ids were replaced by citations
    paper_refs: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    # ids of files that exist but did not load (already reported), so references to them are not
    # reported a second time as unknown
    broken: set[str] = field(default_factory=set)
    models: dict[str, ModelRow] = field(default_factory=dict)  # Table I rows by id
    benchmarks: dict[str, BenchmarkRow] = field(default_factory=dict)  # Table III rows by id
    row_files: dict[str, Path] = field(
        default_factory=dict
    )  # "model:<id>" / "benchmark:<id>" / "framework:<id>" -> file
    frameworks: dict[str, Framework] = field(default_factory=dict)  # flag maps by framework id

    def frameworks_of(self, method_id: str) -> list[Framework]:
        """The frameworks whose flag map covers this method, in file order."""
        return [f for f in self.frameworks.values() if method_id in f.methods]

    def models_trained_with(self, method_id: str) -> list[ModelRow]:
        """Table I rows whose RL method is this method."""
        return [m for m in self.models.values() if method_id in m.rl_methods]

    def benchmarks_of(self, method_id: str) -> list[BenchmarkRow]:
        """Table III rows the survey ties to this method."""
        return [b for b in self.benchmarks.values() if method_id in b.methods]

    def papers_of(self, method_id: str) -> list[PaperRecord]:
        """The paper records a method entry cites by id, in order."""
        return [self.papers[pid] for _, pid in self.paper_refs.get(method_id, []) if pid in self.papers]

    def methods_of(self, paper_id: str) -> list[str]:
        """Method ids linked to a paper: entries citing it plus the record's own ``methods``."""
        citing = [mid for mid, refs in self.paper_refs.items() if any(pid == paper_id for _, pid in refs)]
        record = self.papers.get(paper_id)
        extra = [m for m in (record.methods if record else []) if m not in citing]
        return citing + extra

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
    """Parse a file and compose its node tree (for line numbers)."""
    data, text = _load_yaml(path, problems, rel)
    return data, (_compose(text) if text is not None else None)


def _load_yaml(path: Path, problems: list[Problem], rel: str) -> tuple[Any, str | None]:
    """Parse a file; returns (data, text), or (None, None) after recording the problem."""
    size = path.stat().st_size
    if size > FILE_LIMIT:
        problems.append(Problem(rel, 1, "(file)", f"{size} bytes, at most {FILE_LIMIT} allowed"))
        return None, None
    try:
        text = path.read_text(encoding="utf-8")
        data = yamlsafe.load(text)
    except yamlsafe.AliasError as exc:
        problems.append(Problem(rel, exc.line, "(yaml)", str(exc)))
        return None, None
    except UnicodeDecodeError:
        problems.append(Problem(rel, 1, "(file)", "not UTF-8 text"))
        return None, None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        problems.append(Problem(rel, line, "(yaml)", f"invalid YAML: {exc.problem}"))
        return None, None
    except yaml.YAMLError as exc:  # e.g. a control character: the reader's message spans two lines
        problems.append(Problem(rel, 1, "(yaml)", f"invalid YAML: {str(exc).splitlines()[0]}"))
        return None, None
    return data, text


def _compose(text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return None


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
        # drop the union tags pydantic puts in the path of a method's `papers` items
        loc = tuple(p for p in err["loc"] if p not in ("ref", "inline"))
        dotted = ".".join(str(p) for p in loc) or "(entry)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see `catalog schema`)"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "string_pattern_mismatch" and loc and loc[-1] == "arxiv":
            msg = f"'{err['input']}' is not an arXiv id (expected e.g. 2305.18290)"
        out.append(Problem(rel, line_of(node, loc), dotted, msg))
    return out


# --- loading ------------------------------------------------------------------------------------


def _entries(root: Path, sub: str, problems: list[Problem], broken: set[str]):
    """Yield (path, rel, data, text) for each parsable mapping in ``root/sub``."""
    kind = _KIND[sub]
    for path in sorted((root / sub).glob("*")):
        broken.add(f"{kind}:{path.stem}")  # removed again below once the file parses
        rel = f"{root.name}/{sub}/{path.name}"
        if path.suffix not in (".yaml", ".yml"):
            problems.append(Problem(rel, 1, "(file)", f"only <id>.yaml files belong in {sub}/"))
            continue
        data, text = _load_yaml(path, problems, rel)
        if data is None:
            if text is not None:
                problems.append(Problem(rel, 1, "(file)", "empty file"))
            continue
        if not isinstance(data, dict):
            problems.append(Problem(rel, 1, "(entry)", "expected a mapping of fields"))
            continue
        broken.discard(f"{kind}:{path.stem}")
        yield path, rel, data, text


def load_catalog(root: Path | None = None) -> Catalog:
    """Load everything that parses; every problem met is kept in ``catalog.problems``.

    Paper ids in a method's ``papers`` are replaced by the records' citations, so ``entry.papers``
    holds ``Paper`` objects only; the ids as written are kept in ``catalog.paper_refs``.
    """
    root = catalog_dir(root)
    problems: list[Problem] = []
    taxonomy = None
    tax_rel = f"{root.name}/{TAXONOMY_FILE}"
    data, text = _load_yaml(root / TAXONOMY_FILE, problems, tax_rel)
    if data is not None:
        try:
            taxonomy = Taxonomy.model_validate(data)
        except ValidationError as exc:
            problems += _schema_problems(exc, _compose(text or ""), tax_rel)
    cat = Catalog(root=root, taxonomy=taxonomy, problems=problems)
    for path, rel, data, text in _entries(root, PAPERS_DIR, problems, cat.broken):
        try:
            record = PaperRecord.model_validate(data)
        except ValidationError as exc:
            problems += _schema_problems(exc, _compose(text), rel)
            cat.broken.add(f"paper:{path.stem}")
            continue
        if record.id != path.stem:
            problems.append(
                Problem(
                    rel,
                    line_of(_compose(text), ("id",)),
                    "id",
                    f"'{record.id}' must equal the file name '{path.stem}'",
                )
            )
            continue
        cat.papers[record.id] = record
        cat.paper_files[record.id] = path
    citations: dict[str, Paper] = {}
    for path, rel, data, text in _entries(root, METHODS_DIR, problems, cat.broken):
        try:
            entry = MethodEntry.model_validate(data)
        except ValidationError as exc:
            problems += _schema_problems(exc, _compose(text), rel)
            cat.broken.add(f"method:{path.stem}")
            continue
        if entry.id != path.stem:
            problems.append(
                Problem(
                    rel,
                    line_of(_compose(text), ("id",)),
                    "id",
                    f"'{entry.id}' must equal the file name '{path.stem}'",
                )
            )
        if entry.id in cat.methods:
            problems.append(Problem(rel, line_of(_compose(text), ("id",)), "id", f"duplicate id '{entry.id}'"))
            continue
        refs = [(i, p) for i, p in enumerate(entry.papers) if isinstance(p, str)]
        if refs:
            cat.paper_refs[entry.id] = refs
            resolved: list[Any] = []
            for p in entry.papers:
                if not isinstance(p, str):
                    resolved.append(p)
                elif p in cat.papers and cat.papers[p].date:
                    if p not in citations:
                        citations[p] = cat.papers[p].to_paper()
                    resolved.append(citations[p])
            entry.papers = resolved  # unresolvable ids are reported by validate()
        cat.methods[entry.id] = entry
        cat.files[entry.id] = path
    _load_rows(cat, MODELS_DIR, ModelRow, cat.models)
    _load_rows(cat, BENCHMARKS_DIR, BenchmarkRow, cat.benchmarks)
    _load_rows(cat, FRAMEWORKS_DIR, Framework, cat.frameworks)
    return cat


def _load_rows(
    cat: Catalog, sub: str, model: type[ModelRow] | type[BenchmarkRow] | type[Framework], into: dict[str, Any]
) -> None:
    """One file per row: a survey table's rows, or the framework flag maps; the folder is optional."""
    if not (cat.root / sub).is_dir():
        return
    for path, rel, data, text in _entries(cat.root, sub, cat.problems, cat.broken):
        try:
            row = model.model_validate(data)
        except ValidationError as exc:
            cat.problems.extend(_schema_problems(exc, _compose(text), rel))
            continue
        if row.id != path.stem:
            message = f"'{row.id}' must equal the file name '{path.stem}'"
            cat.problems.append(Problem(rel, line_of(_compose(text), ("id",)), "id", message))
            continue
        into[row.id] = row
        cat.row_files[f"{_KIND[sub]}:{row.id}"] = path


# --- cross-references ---------------------------------------------------------------------------


def validate(
    root: Path | None = None,
    registered: dict[str, str] | None = None,
    config_fields_of: Callable[[str], set[str] | None] | None = None,
) -> tuple[Catalog, list[Problem]]:
    """Schema plus cross-reference checks. ``registered`` maps plugin name -> distribution;
    ``config_fields_of(plugin)`` gives its Config's field names (None: unknown), to check ``run_as``."""
    cat = load_catalog(root)
    problems = list(cat.problems)
    families = cat.taxonomy.families() if cat.taxonomy else {}
    nodes: dict[Path, yaml.Node | None] = {}

    def at(path: Path, sub: str, loc: tuple[Any, ...]) -> tuple[str, int]:
        if path not in nodes:
            nodes[path] = _compose(path.read_text(encoding="utf-8"))
        return f"{cat.root.name}/{sub}/{path.name}", line_of(nodes[path], loc)

    def where(mid: str, loc: tuple[Any, ...]) -> tuple[str, int]:
        return at(cat.files[mid], METHODS_DIR, loc)

    def where_paper(pid: str, loc: tuple[Any, ...]) -> tuple[str, int]:
        return at(cat.paper_files[pid], PAPERS_DIR, loc)

    # papers: one paper under two identities, tidy titles and dates, and links to methods
    for pid, field_name, message in paper_findings(cat.papers):
        problems.append(Problem(*where_paper(pid, (field_name,)), field_name, message))
    by_arxiv = {arxiv_key(rec.arxiv): pid for pid, rec in reversed(cat.papers.items()) if rec.arxiv}
    for pid, rec in cat.papers.items():
        for i, mid in enumerate(rec.methods):
            if mid not in cat.methods and f"method:{mid}" not in cat.broken:
                problems.append(
                    Problem(*where_paper(pid, ("methods", i)), f"methods.{i}", f"unknown method id '{mid}'")
                )

    names_seen: dict[str, str] = {}
    for mid, entry in cat.methods.items():
        if cat.taxonomy and entry.family not in families:
            problems.append(
                Problem(
                    *where(mid, ("family",)),
                    "family",
                    f"unknown family '{entry.family}' (not in {TAXONOMY_FILE})",
                )
            )
        for kind in ("related", "related_one_way"):
            for i, rel_id in enumerate(getattr(entry, kind)):
                if rel_id not in cat.methods:
                    if f"method:{rel_id}" in cat.broken:
                        continue
                    problems.append(Problem(*where(mid, (kind, i)), f"{kind}.{i}", f"unknown method id '{rel_id}'"))
                elif rel_id == mid:
                    problems.append(Problem(*where(mid, (kind, i)), f"{kind}.{i}", "a method cannot relate to itself"))
                elif kind == "related_one_way" and rel_id in entry.related:
                    problems.append(Problem(*where(mid, (kind, i)), f"{kind}.{i}", f"'{rel_id}' is also in related"))
                elif kind == "related" and mid not in cat.methods[rel_id].related:
                    problems.append(
                        Problem(
                            *where(mid, (kind, i)),
                            f"{kind}.{i}",
                            f"'{rel_id}' does not list '{mid}' in its related; add it there, or move "
                            f"'{rel_id}' to related_one_way if the link is deliberately one-way",
                        )
                    )
        if (
            entry.lineage
            and entry.lineage.parent not in cat.methods
            and f"method:{entry.lineage.parent}" not in cat.broken
        ):
            problems.append(
                Problem(
                    *where(mid, ("lineage", "parent")),
                    "lineage.parent",
                    f"unknown method id '{entry.lineage.parent}'",
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
        for loc, message in run_as_findings(entry, cat.root.parent, config_fields_of):
            problems.append(Problem(*where(mid, loc), ".".join(str(p) for p in loc), message))
        cited = [pid for _, pid in cat.paper_refs.get(mid, [])]
        for _, loc, message in entry_source_findings(mid, entry, set(cat.papers), cited, cat.root.parent):
            problems.append(Problem(*where(mid, loc), ".".join(str(p) for p in loc), message))
        seen_refs: set[str] = set()
        for i, pid in cat.paper_refs.get(mid, []):
            if pid not in cat.papers:
                if f"paper:{pid}" in cat.broken:
                    continue
                problems.append(
                    Problem(
                        *where(mid, ("papers", i)),
                        f"papers.{i}",
                        f"unknown paper id '{pid}' (no {PAPERS_DIR}/{pid}.yaml)",
                    )
                )
            elif not cat.papers[pid].date:
                problems.append(
                    Problem(
                        *where(mid, ("papers", i)),
                        f"papers.{i}",
                        f"paper '{pid}' has no date, so it cannot be cited",
                    )
                )
            if pid in seen_refs:
                problems.append(Problem(*where(mid, ("papers", i)), f"papers.{i}", f"paper '{pid}' is cited twice"))
            seen_refs.add(pid)
        inline = (
            [(i, p) for i, p in enumerate(entry.papers) if not isinstance(p, str)] if mid not in cat.paper_refs else []
        )
        for i, paper in inline:
            if paper.arxiv and not re.match(ARXIV_PATTERN, paper.arxiv):
                problems.append(Problem(*where(mid, ("papers", i, "arxiv")), f"papers.{i}.arxiv", "malformed arXiv id"))
            elif paper.arxiv and arxiv_key(paper.arxiv) in by_arxiv:
                pid = by_arxiv[arxiv_key(paper.arxiv)]
                problems.append(
                    Problem(
                        *where(mid, ("papers", i)),
                        f"papers.{i}",
                        f"duplicate paper: cite it by its id '{pid}' instead of inline",
                    )
                )
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
    problems += _table_row_problems(cat, at)
    problems += _framework_problems(cat, at)
    problems += _parity_problems(cat)
    if registered is not None:
        documented = {e.plugin for e in cat.methods.values() if e.plugin}
        for name, dist in sorted(registered.items()):
            if name not in documented and name in cat.methods and cat.methods[name].plugin is None:
                # the state `catalog new` leaves after `pip install -e .`: say what to do next
                problems.append(
                    Problem(
                        *where(name, ("plugin",)),
                        "plugin",
                        f"registered plugin '{name}' ({dist}) is not linked: once `catalog smoke {name}` passes, "
                        f"set plugin: {name} and status: experimental here",
                    )
                )
            elif name not in documented:
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


def run_as_findings(
    entry: MethodEntry, repo: Path, config_fields_of: Callable[[str], set[str] | None] | None
) -> list[tuple[tuple[Any, ...], str]]:
    """``run_as``: each key a Config field of the entry's plugin (when its fields are known), and its
    report committed (when the catalog sits in a checkout with reports/)."""
    if entry.run_as is None or entry.plugin is None:
        return []
    found: list[tuple[tuple[Any, ...], str]] = []
    fields = config_fields_of(entry.plugin) if config_fields_of else None
    for key in entry.run_as.set if fields is not None else []:
        if key not in fields:
            found.append((("run_as", "set", key), f"'{key}' is not a Config field of plugin '{entry.plugin}'"))
    report = entry.run_as.report
    if report and (repo / "reports").is_dir() and not (repo / report).is_file():
        found.append((("run_as", "report"), f"{report} does not exist (record it with tools/record_run.py)"))
    return found


def _parity_problems(cat: Catalog) -> list[Problem]:
    """catalog/parity.yaml: its schema, and method ids that must have entries (tests/test_parity_table.py
    checks its test nodes)."""
    rel = f"{cat.root.name}/{PARITY_FILE}"
    try:
        table = load_parity(cat.root)
    except UserError as exc:
        return [Problem(rel, 1, "(file)", str(exc).removeprefix(rel + ": "))]
    return [
        Problem(rel, 1, f"methods.{mid}", f"unknown method id '{mid}'")
        for mid in unknown_methods(table, set(cat.methods))
        if f"method:{mid}" not in cat.broken
    ]


def _table_row_problems(cat: Catalog, at) -> list[Problem]:
    """The survey-table rows' links: method ids and paper ids that must exist in the catalog."""
    out: list[Problem] = []

    def unknown_method(kind: str, sub: str, row_id: str, field_name: str, ids: list[str]) -> None:
        for i, mid in enumerate(ids):
            if mid not in cat.methods and f"method:{mid}" not in cat.broken:
                path = cat.row_files[f"{kind}:{row_id}"]
                out.append(Problem(*at(path, sub, (field_name, i)), f"{field_name}.{i}", f"unknown method id '{mid}'"))

    for mid, model_row in cat.models.items():
        unknown_method("model", MODELS_DIR, mid, "rl_methods", model_row.rl_methods)
    for bid, bench in cat.benchmarks.items():
        unknown_method("benchmark", BENCHMARKS_DIR, bid, "methods", bench.methods)
        path = cat.row_files[f"benchmark:{bid}"]
        if bench.paper and bench.paper not in cat.papers and f"paper:{bench.paper}" not in cat.broken:
            out.append(
                Problem(
                    *at(path, BENCHMARKS_DIR, ("paper",)),
                    "paper",
                    f"unknown paper id '{bench.paper}' (no {PAPERS_DIR}/{bench.paper}.yaml)",
                )
            )
        elif bench.paper and bench.arxiv and cat.papers[bench.paper].arxiv not in (None, bench.arxiv):
            out.append(
                Problem(
                    *at(path, BENCHMARKS_DIR, ("arxiv",)),
                    "arxiv",
                    f"'{bench.arxiv}' differs from paper '{bench.paper}' ({cat.papers[bench.paper].arxiv})",
                )
            )
    return out


def _framework_problems(cat: Catalog, at) -> list[Problem]:
    """A flag map's method ids must exist, and a flag said to hold a paper default must hold the entry's value."""
    out: list[Problem] = []
    for fid, framework in cat.frameworks.items():
        path = cat.row_files[f"framework:{fid}"]
        for mid, recipe in framework.methods.items():
            if mid not in cat.methods:
                if f"method:{mid}" not in cat.broken:
                    out.append(
                        Problem(
                            *at(path, FRAMEWORKS_DIR, ("methods", mid)), f"methods.{mid}", f"unknown method id '{mid}'"
                        )
                    )
                continue
            defaults = cat.methods[mid].defaults
            for flag, key in recipe.paper_defaults.items():
                loc = ("methods", mid, "paper_defaults", flag)
                dotted = ".".join(loc)
                if flag not in recipe.flags:
                    out.append(
                        Problem(*at(path, FRAMEWORKS_DIR, loc), dotted, f"'{flag}' is not one of this method's flags")
                    )
                elif key not in defaults:
                    out.append(
                        Problem(
                            *at(path, FRAMEWORKS_DIR, loc),
                            dotted,
                            f"method '{mid}' has no default '{key}' in its entry",
                        )
                    )
                elif recipe.flags[flag] != defaults[key].value:
                    message = f"{recipe.flags[flag]!r} differs from the entry's {key} = {defaults[key].value!r}"
                    out.append(Problem(*at(path, FRAMEWORKS_DIR, ("methods", mid, "flags", flag)), dotted, message))
    return out
