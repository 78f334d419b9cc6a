"""mkdocs hooks that generate the site's pages from the catalog at build time.

Nothing generated is committed: every build reads ``catalog/`` through ``posttrain.catalog.load``,
finds plugins through ``posttrain.registry`` (entry points, no plugin import), reads each
plugin's ``Config`` and docstring statically (``ast``, no torch), and reads the run reports under
``reports/`` when they exist. Pages made here:

- ``taxonomy.md``                 the taxonomy as a clickable SVG (``taxonomy_svg.py``)
- ``branches/<id>/index.md``      one page per branch of the survey's taxonomy
- ``families/<id>/index.md``      one page per family
- ``methods/<id>.md``             one page per method: a "Use it" block when it runs (``method_use.py``),
                                  a "not runnable yet" box and its practitioner fields ("In practice")
                                  when it has no plugin; empty sections left out
- ``papers.md``                   the papers index (filterable, searchable)
- ``status.md``                   the status matrix (runnable, CPU and GPU smoke, held-out verdict, last verified)
                                  and the GPU check's results (``reports/gpu/``), or "not measured on GPU yet"
- ``results.md``                  one row per measured method: headline metric before -> after, paired test, seeds
- ``cli.md``                      the CLI reference, from the typer app
- ``models.md``                   the survey's Table I (RL-trained models), from ``catalog/models/``
- ``datasets.md``                 the survey's Table III (datasets and benchmarks), from ``catalog/benchmarks/``
- ``frameworks.md``               which methods TRL, verl, OpenRLHF and LLaMA-Factory run, from ``catalog/frameworks/``;
                                  each method page's "Run it elsewhere" table comes from the same files

Hand-written pages (``docs/index.md``, ``docs/contributing.md``) can hold ``<!-- catalog:NAME -->``
markers that are replaced with generated text (see ``MARKERS``). Problems with the data (an invalid
catalog entry, an unreadable report) are logged as warnings, so ``mkdocs build --strict`` fails on them.

Environment: ``POSTTRAIN_CATALOG`` picks another catalog folder (as for the CLI) and
``POSTTRAIN_REPORTS`` another reports folder (the tests use both).
"""

from __future__ import annotations

import ast
import json
import logging
import os
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import method_use
from mkdocs.structure.files import File, Files
from mkdocs.utils import get_relative_url
from taxonomy_svg import BranchNode, FamilyNode, MethodNode, taxonomy_svg
from untrusted import (
    description_html,
    executable_markup,
    front_matter_title,
    link,
    literal,
    literal_value,
    nav_title,
    objective_html,
    page_link_resolver,
)

from posttrain import registry, stats
from posttrain.catalog import load as catalog_module
from posttrain.catalog.frameworks import written_flags
from posttrain.catalog.parity import load_parity
from posttrain.catalog.schema import MethodEntry
from posttrain.catalog.textsafety import safe_url
from posttrain.cli.configinfo import FieldInfo, config_fields, module_file
from posttrain.runs.runner import headline_metric

log = logging.getLogger("mkdocs.hooks.posttrain")
SITE_DIR = Path(__file__).resolve().parent
REPO = SITE_DIR.parent
FIGURE_PLACEHOLDER = '<div class="taxonomy-figure"></div>'
# Where a page links to a committed file outside docs/ (a report): the repository's web view, from
# mkdocs.yml's repo_url (set in on_config).
REPO_FILES = ""


# --- the data behind the pages -----------------------------------------------------------------


@dataclass
class MethodInfo:
    """One method entry with everything its page needs."""

    entry: MethodEntry
    branch: Any  # posttrain.catalog.schema.Branch, or None when the family is unknown
    family: Any  # posttrain.catalog.schema.Family, or None
    spec: registry.PluginSpec | None = None
    source: Path | None = None  # the plugin's module file
    fields: list[FieldInfo] = field(default_factory=list)
    docstring: str | None = None

    @property
    def state(self) -> str:
        """runnable | no-source | not-installed | catalogued."""
        if self.entry.plugin is None:
            return "catalogued"
        if self.spec is None:
            return "not-installed"
        return "runnable" if self.source is not None else "no-source"

    @property
    def src(self) -> str:
        return f"methods/{self.entry.id}.md"


@dataclass
class SiteData:
    catalog: Any
    methods: dict[str, MethodInfo]
    smoke: dict[str, dict[str, dict[str, Any]]]  # "cpu"/"gpu" -> plugin -> record
    runs: dict[str, dict[str, Any]]  # method id -> summary.json
    papers: list[dict[str, Any]]  # awesome-list records, normalised
    reports_dir: Path
    parity: dict[str, list[Any]] = field(default_factory=dict)  # method id -> ParityCheck rows (catalog/parity.yaml)
    report_paths: dict[str, str] = field(default_factory=dict)  # method id -> its report, where not runs/<id>.json

    def report_path(self, method_id: str) -> str:
        return self.report_paths.get(method_id, f"reports/runs/{method_id}.json")


def reports_dir() -> Path:
    return Path(os.environ.get("POSTTRAIN_REPORTS") or REPO / "reports")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("cannot read report %s: %s", path, exc)
        return None


def load_reports(folder: Path) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, dict[str, Any]]]:
    smoke: dict[str, dict[str, dict[str, Any]]] = {"cpu": {}, "gpu": {}}
    for kind in smoke:
        path = folder / f"smoke-{kind}.json"
        if not path.is_file():
            continue
        data = _read_json(path)
        if not isinstance(data, list):
            if data is not None:
                log.warning("%s: expected a list of smoke results", path)
            continue
        for rec in data:
            if isinstance(rec, dict) and isinstance(rec.get("plugin"), str):
                smoke[kind][rec["plugin"]] = rec
    runs: dict[str, dict[str, Any]] = {}
    for path in sorted((folder / "runs").glob("*.json")):
        data = _read_json(path)
        if isinstance(data, dict):
            runs[str(data.get("method") or path.stem)] = check_paired(data, path)
        elif data is not None:
            log.warning("%s: expected a JSON object (a run's summary.json)", path)
    return smoke, runs


# A report's paired statistics (``posttrain.stats``): "paired" per metric for seed 0's run; for
# methods that sample, "seeds" (each seed's before/after/paired) and "pooled" per metric.
PAIRED_KEYS = ("fixed", "broken", "difference", "se", "p")
POOLED_KEYS = ("seeds", "difference_mean", "difference_sd", "fixed", "broken", "p")
VERDICTS = ("gain", "no significant change", "harm")


def _well_formed(rec: Any, keys: tuple[str, ...]) -> bool:
    return (
        isinstance(rec, dict)
        and all(isinstance(rec.get(k), int | float) and not isinstance(rec.get(k), bool) for k in keys)
        and rec.get("verdict") in VERDICTS
    )


def _checked_tests(tests: Any, keys: tuple[str, ...], where: str) -> dict[str, dict[str, Any]]:
    if tests is None:
        return {}
    if not isinstance(tests, dict):
        log.warning("%s: expected an object of per-metric tests", where)
        return {}
    out = {}
    for metric, rec in tests.items():
        if _well_formed(rec, keys):
            out[str(metric)] = rec
        else:
            log.warning("%s.%s: expected %s and a verdict (%s)", where, metric, ", ".join(keys), " | ".join(VERDICTS))
    return out


def check_paired(run: dict[str, Any], path: Path) -> dict[str, Any]:
    """The report with its "paired", "seeds" and "pooled" parts checked once: a malformed test is a
    warning (so --strict fails) and is left out. A report from before paired tests has none of them."""
    run = dict(run)
    run["paired"] = _checked_tests(run.get("paired"), PAIRED_KEYS, f"{path}: paired")
    run["pooled"] = _checked_tests(run.get("pooled"), POOLED_KEYS, f"{path}: pooled")
    seeds = run.get("seeds")
    if seeds is not None and not isinstance(seeds, list):
        log.warning("%s: seeds: expected a list with one object per seed", path)
        seeds = []
    kept = []
    for i, rec in enumerate(seeds or []):
        if not isinstance(rec, dict) or not isinstance(rec.get("seed"), int):
            log.warning("%s: seeds[%d]: expected an object with an integer seed", path, i)
            continue
        kept.append({**rec, "paired": _checked_tests(rec.get("paired"), PAIRED_KEYS, f"{path}: seeds[{i}].paired")})
    run["seeds"] = kept
    return run


def _get(rec: Any, *names: str) -> Any:
    for name in names:
        value = rec.get(name) if isinstance(rec, dict) else getattr(rec, name, None)
        if value not in (None, "", []):
            return value
    return None


def normalise_paper(rec: Any) -> dict[str, Any] | None:
    """One paper record from ``posttrain.catalog.load``, whatever its shape, as a plain dict."""
    title = _get(rec, "title")
    if not title:
        return None
    arxiv = _get(rec, "arxiv", "arxiv_id")
    link = _get(rec, "link", "url") or (f"https://arxiv.org/abs/{arxiv}" if arxiv else None)
    date = _get(rec, "date", "published")
    year = _get(rec, "year")
    if year is None and date is not None:
        match = re.match(r"(\d{4})", str(date))
        year = int(match.group(1)) if match else None
    sections = _get(rec, "sections", "section", "categories")
    if isinstance(sections, str):
        sections = [sections]
    return {
        "title": str(title),
        "link": str(link) if link else None,
        "arxiv": str(arxiv) if arxiv else None,
        "venue": str(_get(rec, "venue") or ""),
        "date": str(date) if date is not None else "",
        "year": int(year) if year is not None else None,
        "sections": [str(s) for s in (sections or [])],
    }


def load_papers(cat: Any) -> list[dict[str, Any]]:
    """The awesome-list papers that ``posttrain.catalog.load`` exposes, or [] while it exposes none."""
    records: Any = getattr(cat, "papers", None)
    if not records:
        loader = getattr(catalog_module, "load_papers", None)
        if callable(loader):
            try:
                records = loader(cat.root)
            except TypeError:
                records = loader()
    if isinstance(records, tuple) and len(records) == 2 and isinstance(records[1], list):
        records = records[0]  # a (papers, problems) pair
    if isinstance(records, dict):
        records = list(records.values())
    out = [normalise_paper(r) for r in records or []]
    return [p for p in out if p]


def plugin_docstring(path: Path) -> str | None:
    try:
        return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    except (OSError, SyntaxError, ValueError):
        return None


def load_site_data() -> SiteData:
    cat = catalog_module.load_catalog()
    for problem in cat.problems:
        log.warning("catalog: %s", problem)
    families = cat.taxonomy.families() if cat.taxonomy else {}
    specs = registry.discover()
    methods: dict[str, MethodInfo] = {}
    for mid, entry in sorted(cat.methods.items()):
        branch, family = families.get(entry.family, (None, None))
        info = MethodInfo(entry, branch, family)
        if entry.plugin is not None and entry.plugin in specs:
            info.spec = specs[entry.plugin]
            path = module_file(info.spec.target.partition(":")[0])
            if path is not None and path.is_file():
                info.source = path
                info.fields = config_fields(info.spec.target)
                info.docstring = plugin_docstring(path)
        methods[mid] = info
    folder = reports_dir()
    smoke, runs = load_reports(folder)
    parity = load_parity(cat.root).methods
    report_paths = add_run_as_reports(cat, folder, runs)
    return SiteData(cat, methods, smoke, runs, load_papers(cat), folder, parity, report_paths)


def add_run_as_reports(cat: Any, folder: Path, runs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The committed reports of methods that run as an option of another plugin (an entry's
    ``run_as.report``), filed under the method's id; returns where each came from."""
    paths: dict[str, str] = {}
    for mid, entry in cat.methods.items():
        report = entry.run_as.report if entry.run_as else None
        data = _read_json(folder / "runs" / Path(report).name) if report else None
        if isinstance(data, dict):
            runs[mid] = check_paired(data, folder / "runs" / Path(report).name)
            paths[mid] = str(report)
    return paths


# --- small helpers ---------------------------------------------------------------------------


def md(text: Any) -> str:
    """Catalog text made safe for inline markdown (no emphasis, links, math, raw HTML or table
    breaks); a `code span` its author wrote stays code."""
    return inline_md(text)


_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
_PROSE_SPECIAL = re.compile(r"([\\*_\[\]$|#{}])")  # { } too: attr_list would read {: onclick=...}


def inline_md(text: Any) -> str:
    """Text whose authors wrote `code spans` (Config field descriptions, CLI help, schema text), as
    inline markdown safe in a table cell: the code spans render as code, and everything else is
    plain text (no emphasis, links, math, raw HTML or cell breaks)."""
    text = " ".join(str(text).split())
    out, last = [], 0
    for match in _CODE_SPAN.finditer(text):
        out.append(_plain_prose(text[last : match.start()]))
        out.append(code_text(match.group(2).strip()))
        last = match.end()
    out.append(_plain_prose(text[last:]))
    return "".join(out)


def _plain_prose(text: str) -> str:
    # "<" and ">" as entities: Python-Markdown has no backslash escape for them.
    escaped = _PROSE_SPECIAL.sub(r"\\\1", text)
    return escaped.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code_text(text: str) -> str:
    """Raw text as one code span (a pipe inside it does not break a table cell)."""
    text = " ".join(str(text).split())
    ticks = "`"
    while ticks in text:
        ticks += "`"
    pad = " " if text.startswith("`") or text.endswith("`") or ticks != "`" else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def rel(from_src: str, to_src: str) -> str:
    """A markdown link target from one source page to another (mkdocs checks and rewrites it)."""
    return posixpath.relpath(to_src, posixpath.dirname(from_src) or ".")


def code(value: Any) -> str:
    """A value as inline code, safe inside a table cell."""
    try:
        text = repr(value) if isinstance(value, str) else json.dumps(value)
    except (TypeError, ValueError):
        text = str(value)
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def fmt_number(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return md(value)
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def status_badge(status: str) -> str:
    return f'<span class="status-badge status-{escape(status)}">{escape(status)}</span>'


def smoke_cell(rec: dict[str, Any] | None) -> str:
    if rec is None:
        return "not yet measured"
    seconds = rec.get("seconds")
    took = f" ({seconds:.1f} s)" if isinstance(seconds, int | float) else ""
    if rec.get("ok") and str(rec.get("detail", "")).startswith("skipped"):
        return f'<span class="result-skip">skipped</span> ({md(rec["detail"].partition(":")[2].strip())})'
    if rec.get("ok"):
        return f'<span class="result-pass">pass</span>{took}'
    return f'<span class="result-fail">fail</span>{took}'


def fmt_p(p: float) -> str:
    """A p-value as ``posttrain.stats.describe`` writes it (two significant digits)."""
    return f"{p:.2g}"


def verdict_badge(verdict: str) -> str:
    """gain / harm / no significant change, marked so that gains and harms stand out."""
    kind = {"gain": "gain", "harm": "harm"}.get(verdict, "none")
    mark = {"gain": "▲ ", "harm": "▼ "}.get(verdict, "")
    return f'<span class="verdict verdict-{kind}">{mark}{escape(verdict)}</span>'


def paired_cells(test: dict[str, Any]) -> list[str]:
    """fixed / broken, difference ± SE (points), p, verdict: the end-of-run table's columns."""
    return [
        f"{test['fixed']} / {test['broken']}",
        f"{100 * test['difference']:+.1f} ± {100 * test['se']:.1f}",
        fmt_p(test["p"]),
        verdict_badge(test["verdict"]),
    ]


def pooled_line(metric: str, test: dict[str, Any]) -> str:
    """``posttrain.stats.describe`` of a pooled test, with its verdict as a badge."""
    text = stats.describe(test).rsplit(": ", 1)[0]
    return f"`{metric}`: {md(text)}: {verdict_badge(test['verdict'])}"


def headline(run: dict[str, Any]) -> dict[str, Any] | None:
    """A report's headline metric (``posttrain.runs.runner.headline_metric``: exact_match for trainers,
    accuracy for test-time methods), before and after, and its test: pooled over seeds when the
    report has seeds (before and after are then means over seeds), else seed 0's paired test."""
    pooled, paired = run.get("pooled") or {}, run.get("paired") or {}
    metric = headline_metric({**paired, **pooled})
    if metric is None:
        return None
    seed0 = paired.get(metric) or {}
    before = seed0.get("before", (run.get("before") or {}).get(metric))
    after = seed0.get("after", (run.get("after") or {}).get(metric))
    if metric in pooled:
        per_seed = [s["paired"][metric] for s in run.get("seeds") or [] if metric in s["paired"]]
        before = _mean_of([t.get("before") for t in per_seed]) if per_seed else before
        after = _mean_of([t.get("after") for t in per_seed]) if per_seed else after
        return {"metric": metric, "before": before, "after": after, "test": pooled[metric], "pooled": True}
    return {"metric": metric, "before": before, "after": after, "test": seed0, "pooled": False}


def _mean_of(values: list[Any]) -> float | None:
    nums = [v for v in values if isinstance(v, int | float)]
    return sum(nums) / len(nums) if nums else None


def last_verified(data: SiteData, info: MethodInfo) -> str:
    dates = []
    if info.entry.plugin:
        for kind in ("cpu", "gpu"):
            rec = data.smoke[kind].get(info.entry.plugin)
            if rec and rec.get("ok") and rec.get("date"):
                dates.append(str(rec["date"]))
    run = data.runs.get(info.entry.id)
    if run and run.get("date"):
        dates.append(str(run["date"]))
    return max(dates) if dates else "never"


def docstring_markdown(text: str) -> str:
    """A plugin docstring as markdown.

    Docstrings are plain text: a list starts right under a line of text, a command is a block
    indented by four spaces, and "Deviations from the paper:" opens its own part. Markdown needs a
    blank line before a list, and would read an indented block after a list as part of the list,
    so lists get their blank line, indented blocks become fenced code, and the deviations label
    becomes a bold lead-in.
    """
    item = re.compile(r"^\s{0,3}(\d+[.)]|[-*])\s+")
    label = re.compile(r"^(Deviations? from the paper\s*:?)(.*)$", re.IGNORECASE)
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("    ") and (not out or not out[-1].strip()):
            block = []
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                block.append(lines[i][4:])
                i += 1
            out += [fence("\n".join(block).strip("\n"), "bash"), ""]
            continue
        match = label.match(line.strip())
        if match:
            if out and out[-1].strip():
                out.append("")
            line = f"**{match.group(1).strip()}**{match.group(2)}"
        elif item.match(line) and out and out[-1].strip() and not item.match(out[-1]) and not out[-1][:1].isspace():
            out.append("")
        out.append(line)
        i += 1
    return "\n".join(out)


def row(*cells: Any) -> str:
    """One markdown table row."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def fence(text: str, lang: str = "") -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}"


def indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line if line.strip() else "" for line in text.splitlines())


def shown_path(path: Path) -> str:
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return path.name


# --- method pages ----------------------------------------------------------------------------


def method_page(data: SiteData, info: MethodInfo) -> str:
    """A method's page. Sections with nothing to say are left out; a method without a plugin gets one
    "not runnable yet" box instead of its run, metrics, notes and results sections."""
    e = info.entry
    lines: list[str] = [*method_header(info), "## Objective", "", objective_html(e.objective), ""]
    lines += objective_source_line(data, info)
    if info.state == "runnable":
        lines += ["## Use it", "", *use_it_section(data, info), ""]
    elif info.state == "catalogued":
        lines += not_runnable_box(data, info)
        lines += in_practice_section(data, info)
    lines += ["## Papers", "", *papers_section(info), ""]
    lines += lineage_section(data, info)
    if info.state != "catalogued":
        lines += ["## How to run it", "", *run_section(data, info), ""]
        if e.metrics:
            lines += ["## Logged metrics", "", "| metric | meaning |", "|---|---|"]
            lines += [f"| {code_text(m.name)} | {inline_md(m.description)} |" for m in e.metrics] + [""]
        lines += ["## Implementation notes and deviations from the paper", "", *notes_section(info), ""]
    lines += parity_section(data, info)
    if info.state != "catalogued":
        lines += ["## Results", "", *results_section(data, info), ""]
    lines += related_sections(data, info)
    lines += run_elsewhere_section(data, info)
    lines += survey_table_links(data, info)
    entry_file = data.catalog.files.get(e.id)
    foot = f"Catalog entry: {literal(shown_path(entry_file))}" if entry_file else ""
    if e.tags:
        foot += " · Tags: " + ", ".join(literal(t) for t in e.tags)
    lines += ["---", "", foot, ""]
    return "\n".join(lines)


def method_header(info: MethodInfo) -> list[str]:
    e, src = info.entry, info.src
    meta = []
    if info.branch is not None:
        meta.append(f"**Branch:** [{md(info.branch.name)}]({rel(src, f'branches/{info.branch.id}/index.md')})")
        meta.append(f"**Family:** [{md(info.family.name)}]({rel(src, f'families/{info.family.id}/index.md')})")
    else:
        meta.append(f"**Family:** {literal(e.family)} (not in the taxonomy)")
    meta.append(f"**Status:** {status_badge(e.status.value)}")
    if e.aliases:
        meta.append("**Also known as:** " + ", ".join(md(a) for a in e.aliases))
    return [
        front_matter_title(e.name),
        f"# {md(e.name)}",
        "",
        " · ".join(meta),
        "",
        '!!! abstract "Summary"',
        "",
        "    " + md(e.summary),
        "",
        description_html(e.description.strip(), page_link_resolver(src, _url_from(src))),
        "",
    ]


def papers_section(info: MethodInfo) -> list[str]:
    out = []
    for p in info.entry.papers:
        authors = ", ".join(p.authors[:4]) + (" et al." if len(p.authors) > 4 else "")
        bits = [b for b in (md(authors) if authors else "", str(p.year), md(p.venue) if p.venue else "") if b]
        arxiv = f" · arXiv [{p.arxiv}](https://arxiv.org/abs/{p.arxiv})" if p.arxiv else ""
        out.append(f"- {link(md(p.title), p.link)} — {', '.join(bits)}{arxiv}")
    return [*out, "", f"More papers on this topic: the [papers index]({rel(info.src, 'papers.md')})."]


def lineage_section(data: SiteData, info: MethodInfo) -> list[str]:
    """The method this one modifies and the methods that modify it; nothing when there are none."""
    e, src = info.entry, info.src
    children = [m for m in data.methods.values() if m.entry.lineage and m.entry.lineage.parent == e.id]
    if not e.lineage and not children:
        return []
    out = ["## Lineage", ""]
    if e.lineage:
        parent = data.methods.get(e.lineage.parent)
        target = f"[{md(parent.entry.name)}]({rel(src, parent.src)})" if parent else f"`{e.lineage.parent}`"
        out += [f"{md(e.name)} modifies {target}. What it changes:", ""]
        out += [f"- {md(c)}" for c in e.lineage.changes] + [""]
    if children:
        out += ["Methods that modify this one:", ""]
        for child in children:
            changes = "; ".join(md(c) for c in child.entry.lineage.changes)
            out.append(f"- [{md(child.entry.name)}]({rel(src, child.src)}): {changes}")
        out.append("")
    return out


def related_sections(data: SiteData, info: MethodInfo) -> list[str]:
    e, out = info.entry, []
    if e.related:
        out += ["## Related methods", ""]
        for rid in e.related:
            other = data.methods.get(rid)
            if other:
                out.append(f"- [{md(other.entry.name)}]({rel(info.src, other.src)}): {md(other.entry.summary)}")
            else:
                out.append(f"- `{rid}` (not in the catalog)")
        out.append("")
    if e.implementations:
        out += ["## Implementations in other libraries", ""]
        out += [f"- {link(md(i.name), i.url)}" for i in e.implementations] + [""]
    return out


def new_plugin_command(info: MethodInfo) -> str:
    """The `catalog new` command that scaffolds this catalogued method's plugin and test."""
    e = info.entry
    paper = next((p.arxiv for p in e.papers if p.arxiv), None)
    return f"catalog new {e.id} --family {e.family} --paper {paper or 'ARXIV_ID'}"


def not_runnable_box(data: SiteData, info: MethodInfo) -> list[str]:
    """One box for a method that has no plugin: why, and the command that starts one."""
    e = info.entry
    # A note that only repeats "no plugin yet" is left out: the box says so.
    says_more = e.status_note and e.status_note.strip().rstrip(".").lower() != "no plugin yet"
    note = f" {md(e.status_note)}" if says_more else ""
    out = [
        '!!! info "Not runnable yet"',
        "",
        f"    No plugin implements {md(e.name)} yet, so `catalog run {e.id}` is not available.{note} "
        "To contribute one, scaffold its plugin and test from a checkout (the entry stays as it is) and "
        f"follow [adding a plugin]({rel(info.src, 'contributing.md')}#add-a-plugin):",
        "",
        indent(fence(new_plugin_command(info), "bash")),
        "",
    ]
    if e.defaults:
        out += [
            "    The paper's hyperparameters, for the plugin's `Config`:",
            "",
            "    | hyperparameter | paper value | where the paper says so |",
            "    |---|---|---|",
        ]
        out += [
            f"    | {code_text(k)} | {literal_value(d.value)} | {inline_md(d.source)} |" for k, d in e.defaults.items()
        ]
        out.append("")
    return out


def in_practice_section(data: SiteData, info: MethodInfo) -> list[str]:
    """A catalogued method's practitioner fields (a runnable one has them in "Use it"); nothing without them."""
    advice = method_use.advice_part(info.entry, inline_md, lambda source, where: cite_source(data, source, where))
    return ["## In practice", "", *advice] if advice else []


def use_it_section(data: SiteData, info: MethodInfo) -> list[str]:
    """Data, a command on a hub model with its memory need, the objective's symbols, advice, the
    recorded run: each part from the plugin's source, its Config, the catalog entry or its report."""
    assert info.source is not None
    e = info.entry
    facts = method_use.plugin_facts(info.source)
    peft = info.family is not None and info.family.id == "parameter-efficient"
    out = method_use.data_part(facts, fence)
    out += method_use.command_part(e.id, facts, peft, fence)
    out += method_use.glossary_part(e.objective, info.fields, inline_md, code_text)
    out += method_use.advice_part(e, inline_md, lambda source, where: cite_source(data, source, where))
    out += recorded_run_part(data, info)
    return out


def objective_source_line(data: SiteData, info: MethodInfo) -> list[str]:
    """Where the objective was checked: the paper and its equation, or that it was not."""
    source = info.entry.objective_source
    if source is None:
        return ["*Not yet matched to an equation of the paper.*", ""]
    cited = cite_source(data, source.paper, source.equation)
    if not source.verified:
        return [f"*Not verified against the paper's text yet (written from {cited}).*", ""]
    return [f"*As in {cited}.*", ""]


def cite_source(data: SiteData, source: str, where: str | None) -> str:
    """A practitioner claim's source: the paper's title as a link, or the committed report."""
    place = f", {inline_md(where)}" if where else ""
    if source.startswith("reports/"):
        return report_link(source) + place
    record = data.catalog.papers.get(source)
    if record is None:
        return code_text(source) + place
    return link(md(record.title), record.link) + place


def parity_section(data: SiteData, info: MethodInfo) -> list[str]:
    """The "Reference parity" section: the tests that compare this method's loss with a reference implementation's
    own code (catalog/parity.yaml, which tests/test_parity_table.py keeps complete). None: no section."""
    checks = data.parity.get(info.entry.id, [])
    if not checks:
        return []
    out = [
        "## Reference parity",
        "",
        "The loss is compared with the reference implementation's own code on the same random inputs "
        f"(listed in {report_link('catalog/parity.yaml')}; "
        f"[how parity is checked]({rel(info.src, 'evidence.md')}#reference-parity)):",
        "",
        "| reference | test | compares | tolerance | dtype |",
        "|---|---|---|---|---|",
    ]
    out += [
        row(md(c.reference), code_text(c.test), md(c.compares), md(c.tolerance), code_text(c.dtype)) for c in checks
    ]
    return [*out, ""]


def report_link(path: str) -> str:
    """A link to a committed file outside docs/ (or its path alone when no repo_url is set)."""
    return f"[`{path}`]({REPO_FILES}{path})" if REPO_FILES else f"`{path}`"


def recorded_run_part(data: SiteData, info: MethodInfo) -> list[str]:
    """The recorded run: its curves (a sweep's chart for test-time methods) and its headline result."""
    e = info.entry
    run = data.runs.get(e.id)
    out = ["**The recorded run**", ""]
    if run is None:
        return [*out, "No run of this method is committed under `reports/runs/` yet.", ""]
    sweep = data.reports_dir / "tts" / f"{e.id}.png"
    if sweep.is_file():
        out += [
            f'<figure class="use-it-chart" markdown>\n![{e.id}: accuracy against compute]'
            f"({rel(info.src, sweep_src(e.id))})\n</figure>",
            "",
            f"Accuracy against generated tokens per problem over a budget sweep ({report_link(f'reports/tts/{e.id}.json')}).",
            "",
        ]
    else:
        out += [
            f"Training curves: this report keeps the end-of-run numbers only, not per-step metrics "
            f"({report_link(data.report_path(e.id))}); `catalog run {e.id}` writes them to the run "
            "folder's `metrics.jsonl` and plots them in its `plot.png`.",
            "",
        ]
    top = headline(run)
    if top is None:
        return [*out, "The report has no per-problem outcomes, so no paired test ([results](#results)).", ""]
    test = top["test"]
    pooled = f", pooled over {test['seeds']} seeds" if top["pooled"] else ""
    out += [
        f"Held-out {code_text(top['metric'])}: {fmt_number(top['before'])} before, {fmt_number(top['after'])} "
        f"after; {test['fixed']} problems fixed, {test['broken']} broken, sign-test p = {fmt_p(test['p'])}{pooled}: "
        f"{verdict_badge(test['verdict'])}. Every metric and seed is under [Results](#results).",
        "",
    ]
    return out


def sweep_src(method_id: str) -> str:
    """Where a committed sweep chart (reports/tts/<id>.png) is placed in the built site."""
    return f"assets/reports/tts/{method_id}.png"


def _example_override(fields: list[FieldInfo]) -> str:
    for f in fields:
        if isinstance(f.default, int | float) and not isinstance(f.default, bool):
            return f"{f.name}={f.default}"
    return ""


def cli_value(value: Any) -> str:
    """A Config value as `--set` takes it on a shell command line (YAML: true/false, numbers, quoted text)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return shlex.quote(value) if isinstance(value, str) else str(value)


def run_as_box(info: MethodInfo) -> list[str]:
    """For a method that is its plugin run with some Config values (``run_as``): the command that says so."""
    e = info.entry
    if e.run_as is None:
        return []
    sets = " ".join(f"--set {k}={cli_value(v)}" for k, v in e.run_as.set.items())
    values = ", ".join(code_text(f"{k}={cli_value(v)}") for k, v in e.run_as.set.items())
    return [
        f'!!! note "An option of {md(e.plugin)}"',
        "",
        f"    This method is the plugin {literal(e.plugin)} run with {values}:",
        "",
        indent(fence(f"catalog run {e.plugin} {sets}", "bash")),
        "",
        f"    `catalog run {e.id}` is the same run (it sets these values before any `--config` or `--set`). "
        f"The configuration table below shows {literal(e.plugin)}'s own defaults.",
        "",
    ]


def run_section(data: SiteData, info: MethodInfo) -> list[str]:
    e = info.entry
    out: list[str] = [*run_as_box(info)]
    if info.state == "runnable":
        assert info.spec is not None and info.source is not None
        example = _example_override(info.fields)
        cmds = [
            "# run it on the embedded tiny task (a CPU is enough), with the defaults below",
            f"catalog run {e.id}",
        ]
        if example:
            cmds += [
                "# override a config value (checked by the plugin's Config)",
                f"catalog run {e.id} --set {example}",
            ]
        cmds += [
            "# your own model and data",
            f"catalog run {e.id} --model <hf-id-or-folder> --dataset <file.jsonl>",
            "# this page's summary and config table in a terminal; a 2-step check that it runs",
            f"catalog show {e.id}",
            f"catalog smoke {e.id}",
        ]
        out += [fence("\n".join(cmds), "bash"), ""]
        out += [
            f"Plugin `{info.spec.name}` (`{info.spec.target}`), provided by `{info.spec.distribution}` "
            f"{info.spec.version}. A run writes `config.yaml`, `metrics.jsonl`, `summary.json`, a plot and "
            f"the model under `runs/{e.id}/<timestamp>/`.",
            "",
            "### Configuration",
            "",
        ]
        if info.fields:
            out += [
                f"Every field of the plugin's `Config` (read from `{shown_path(info.source)}`); set one with "
                "`--set name=value` or a YAML file given to `--config`.",
                "",
                '<div class="config-table" markdown>',
                "",
                "| option | type | default | paper value | description |",
                "|---|---|---|---|---|",
            ]
            for f in info.fields:
                paper = e.defaults.get(f.name)
                paper_cell = literal_value(paper.value) if paper else ""
                out.append(
                    row(code_text(f.name), code_text(f.type), code(f.default), paper_cell, inline_md(f.description))
                )
            out += ["", "</div>"]
        else:
            out.append(f"The plugin's module `{shown_path(info.source)}` declares no `Config` fields.")
        out.append("")
    elif info.state == "no-source":
        assert info.spec is not None
        out += [
            '!!! warning "Plugin source not found"',
            "",
            f"    `{info.spec.distribution}` registers the plugin `{info.spec.name}` as "
            f"`{info.spec.target}`, but "
            "that module could not be found when this site was built, so there is no config table. "
            f"Once the module exists, `catalog run {e.id}` runs it.",
            "",
        ]
    elif info.state == "not-installed":
        out += [
            '!!! warning "Plugin not installed"',
            "",
            f"    This entry names the plugin {literal(e.plugin)}, but no installed distribution "
            "registers it in the "
            "`posttrain.plugins` entry-point group, so the config table cannot be shown. Install the "
            f"distribution that provides it, check with `catalog plugins`, then run `catalog run {e.id}`.",
            "",
        ]
    out += ["### Paper defaults", ""]
    if e.defaults:
        out += ["| hyperparameter | paper value | where the paper says so |", "|---|---|---|"]
        out += [f"| {code_text(k)} | {literal_value(d.value)} | {inline_md(d.source)} |" for k, d in e.defaults.items()]
    else:
        out.append("No paper defaults recorded for this entry.")
    return out


def notes_section(info: MethodInfo) -> list[str]:
    e = info.entry
    out: list[str] = []
    if e.status_note:
        out += [f"**Status note:** {md(e.status_note)}", ""]
    if info.state != "runnable":
        out.append(
            "There is no plugin source to describe yet."
            if info.state != "no-source"
            else "The plugin's source was not found."
        )
        return out
    assert info.source is not None
    doc = info.docstring
    if doc:
        title, _, body = doc.partition("\n")
        out += [f"From the docstring of `{shown_path(info.source)}`:", ""]
        out += [f"**{md(title.strip())}**", "", docstring_markdown(body.strip()), ""]
        if "deviation" not in doc.lower():
            out += ["The docstring lists no deviations from the paper.", ""]
    else:
        out += [f"`{shown_path(info.source)}` has no module docstring.", ""]
    source = info.source.read_text(encoding="utf-8")
    n = len(source.splitlines())
    out += [
        "### Source",
        "",
        # Left out of the search index: a search for a method should find its prose, not its code.
        '<div class="plugin-source" data-search-exclude markdown>',
        "",
        f'??? example "{shown_path(info.source)} ({n} lines): the whole method in one file"',
        "",
        indent(fence(source, "python")),
        "",
        "</div>",
        "",
        f"Copy it to start your own variant: `catalog cp {e.id} ./my_{e.id.replace('-', '_')}.py`.",
    ]
    return out


def results_section(data: SiteData, info: MethodInfo) -> list[str]:
    e = info.entry
    out: list[str] = []
    plugin = e.plugin
    smoke = {k: data.smoke[k].get(plugin) for k in ("cpu", "gpu")} if plugin else {}
    run = data.runs.get(e.id)
    if not any(smoke.values()) and not run:
        what = "a smoke test or a run" if plugin else "results (the method has no plugin)"
        return [f"Not yet measured: no report of {what} for this method is committed under `reports/`."]
    if any(smoke.values()):
        out += ["### Smoke tests", "", "A 2-step run on the tiny embedded model (`catalog smoke`).", ""]
        out += ["| machine | result | date | detail |", "|---|---|---|---|"]
        for kind, rec in smoke.items():
            if rec is None and not data.smoke[kind]:
                continue  # no smoke run on this kind of machine is committed at all (the status page says so)
            if rec is None:
                out.append(f"| {kind.upper()} | not yet measured | | |")
            else:
                device = f" ({md(rec['device'])})" if rec.get("device") else ""
                out.append(
                    row(
                        kind.upper() + device,
                        smoke_cell(rec),
                        md(rec.get("date", "")),
                        md(str(rec.get("detail", ""))[:300]),
                    )
                )
        out.append("")
    if run:
        out += ["### Run on the embedded task", ""]
        if run.get("command"):
            out += [fence(str(run["command"]), "bash"), ""]
        facts = []
        for key, label in (("device", "device"), ("seconds", "wall time (s)"), ("date", "date")):
            if run.get(key) is not None:
                facts.append(f"{label}: {fmt_number(run[key])}")
        if facts:
            out += [" · ".join(facts), ""]
        out += run_table(run, info.src)
        if isinstance(run.get("initial"), dict) and run["initial"]:
            shown = ", ".join(f"`{k}` {fmt_number(v)}" for k, v in run["initial"].items())
            out += [f"Before is the bare base model; with the method's untrained parameters (`initial`): {shown}.", ""]
        out += seeds_section(run)
        out.append(f"From `{data.report_path(e.id)}`, the `summary.json` of that run.")
    else:
        out.append("Run on the embedded task: not yet measured.")
    return out


TEST_SENTENCE = (
    "The paired columns compare the same held-out problems before and after, one by one: *fixed* were "
    "wrong before and right after, *broken* the reverse, the difference is after minus before in "
    "percentage points with its standard error, and p is the exact two-sided sign test on the fixed and "
    "broken problems; a gain (or a harm) counts only at p < 0.05 ([how results are measured]({link}))."
)


def run_table(run: dict[str, Any], src: str) -> list[str]:
    """Each held-out metric before and after; with per-problem outcomes also the paired test."""
    before, after = run.get("before") or {}, run.get("after") or {}
    paired = run.get("paired") or {}
    names = list(dict.fromkeys([*before, *after, *paired]))
    if not names:
        return []
    out: list[str] = []
    if run.get("seeds"):
        out += [f"Seed {fmt_number(run.get('seed', 0))}'s run (every seed is under *Seeds* below):", ""]
    if not paired:
        out += ["| metric | before | after |", "|---|---|---|"]
        for name in names:
            out.append(f"| `{name}` | {fmt_number(before.get(name, ''))} | {fmt_number(after.get(name, ''))} |")
        out += ["", "This report has no per-problem outcomes, so no paired test.", ""]
        return out
    out += [
        "| metric | before | after | fixed / broken | difference ± SE (points) | p | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        test = paired.get(name)
        b = before.get(name, test.get("before", "") if test else "")
        a = after.get(name, test.get("after", "") if test else "")
        cells = paired_cells(test) if test else ["", "", "", ""]
        out.append(row(f"`{name}`", fmt_number(b), fmt_number(a), *cells))
    out += ["", TEST_SENTENCE.format(link=rel(src, "evidence.md")), ""]
    return out


def seeds_section(run: dict[str, Any]) -> list[str]:
    """For methods that sample: each seed's paired test, and the test pooled over seeds."""
    seeds, pooled = run.get("seeds") or [], run.get("pooled") or {}
    if not seeds and not pooled:
        return []
    out = ["### Seeds", ""]
    if seeds:
        out += [
            f"The method samples, so it ran with {len(seeds)} seeds; each seed's paired test on the same "
            "held-out problems:",
            "",
            "| seed | metric | before | after | fixed / broken | difference ± SE (points) | p | verdict |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for rec in seeds:
            b, a = rec.get("before") or {}, rec.get("after") or {}
            for name, test in rec["paired"].items():
                out.append(
                    row(
                        rec["seed"],
                        f"`{name}`",
                        fmt_number(test.get("before", b.get(name, ""))),
                        fmt_number(test.get("after", a.get(name, ""))),
                        *paired_cells(test),
                    )
                )
        out.append("")
    if pooled:
        out += [
            "Pooled over seeds (mean ± sample standard deviation of the difference; the sign test on fixed "
            "and broken summed over seeds; a gain needs every seed's difference above zero and pooled "
            "p < 0.05):",
            "",
        ]
        out += [f"- {pooled_line(name, test)}" for name, test in pooled.items()]
        out.append("")
    return out


# --- taxonomy, branch and family pages -------------------------------------------------------


def _methods_of(data: SiteData, family_id: str) -> list[MethodInfo]:
    return sorted((m for m in data.methods.values() if m.entry.family == family_id), key=lambda m: m.entry.name.lower())


def _runnable_cell(info: MethodInfo) -> str:
    return {
        "runnable": f"yes: `catalog run {info.entry.id}`",
        "no-source": f"plugin {literal(info.entry.plugin)} registered, source missing",
        "not-installed": f"plugin {literal(info.entry.plugin)} not installed",
        "catalogued": "no (catalogued only)",
    }[info.state]


def _lineage_order(methods: list[MethodInfo]) -> list[tuple[MethodInfo, int]]:
    """Methods of one family with each variant right under the method it modifies, and its depth."""
    ids = {m.entry.id for m in methods}
    children: dict[str, list[MethodInfo]] = {}
    roots = []
    for m in methods:
        parent = m.entry.lineage.parent if m.entry.lineage else None
        if parent in ids and parent != m.entry.id:
            children.setdefault(parent, []).append(m)
        else:
            roots.append(m)
    out: list[tuple[MethodInfo, int]] = []
    seen: set[str] = set()

    def visit(m: MethodInfo, depth: int) -> None:
        if m.entry.id in seen:
            return
        seen.add(m.entry.id)
        out.append((m, depth))
        for child in children.get(m.entry.id, []):
            visit(child, depth + 1)

    for m in roots:
        visit(m, 0)
    for m in methods:  # a lineage cycle leaves some unvisited: show them flat
        visit(m, 0)
    return out


def taxonomy_nodes(data: SiteData) -> list[BranchNode]:
    out = []
    for b in data.catalog.taxonomy.branches:
        bn = BranchNode(b.id, b.name, f"branches/{b.id}/index.md")
        for f in b.families:
            fn = FamilyNode(f.id, f.name, f"families/{f.id}/index.md")
            for m, depth in _lineage_order(_methods_of(data, f.id)):
                fn.methods.append(
                    MethodNode(m.entry.id, m.entry.name, m.src, m.state == "runnable", m.entry.status.value, depth)
                )
            bn.families.append(fn)
        out.append(bn)
    return out


def taxonomy_page(data: SiteData) -> str:
    tax = data.catalog.taxonomy
    n_fam = sum(len(b.families) for b in tax.branches)
    lines = [
        "---",
        "hide: [navigation, toc]",
        "---",
        "# Taxonomy",
        "",
        f"The catalog follows the survey *LLM Post-Training: A Deep Dive into Reasoning LLMs* "
        f"([arXiv 2502.21321](https://arxiv.org/abs/2502.21321)): {len(tax.branches)} branches, "
        f"{n_fam} families and {len(data.methods)} methods. Click a branch, a family or a method to open "
        "its page. A green dot marks a method you can run with `catalog run ID`; a method indented "
        "under another modifies it (its lineage).",
        "",
        FIGURE_PLACEHOLDER,
        "",
    ]
    for b in tax.branches:
        lines += [f"## [{md(b.name)}](branches/{b.id}/index.md)", "", md(b.description), ""]
        for f in b.families:
            names = ", ".join(f"[{md(m.entry.name)}]({m.src})" for m in _methods_of(data, f.id)) or "none yet"
            lines.append(f"- **[{md(f.name)}](families/{f.id}/index.md)**: {names}")
        lines.append("")
    return "\n".join(lines)


def branch_page(data: SiteData, branch: Any) -> str:
    src = f"branches/{branch.id}/index.md"
    lines = [front_matter_title(branch.name), f"# {md(branch.name)}", ""]
    if branch.survey_section:
        lines += [
            f"Survey section: {md(branch.survey_section)} · [whole taxonomy]({rel(src, 'taxonomy.md')})",
            "",
        ]
    lines += [
        md(branch.description),
        "",
        "| family | methods | runnable | description |",
        "|---|---|---|---|",
    ]
    for f in branch.families:
        ms = _methods_of(data, f.id)
        runnable = sum(m.state == "runnable" for m in ms)
        lines.append(
            row(
                f"[{md(f.name)}]({rel(src, f'families/{f.id}/index.md')})",
                len(ms),
                runnable,
                md(f.description),
            )
        )
    return "\n".join(lines) + "\n"


def family_page(data: SiteData, branch: Any, family: Any) -> str:
    src = f"families/{family.id}/index.md"
    ms = _methods_of(data, family.id)
    lines = [
        front_matter_title(family.name),
        f"# {md(family.name)}",
        "",
        f"Branch: [{md(branch.name)}]({rel(src, f'branches/{branch.id}/index.md')})"
        + (f" · Survey section: {md(family.survey_section)}" if family.survey_section else "")
        + f" · [whole taxonomy]({rel(src, 'taxonomy.md')})",
        "",
        md(family.description),
        "",
        "## Methods",
        "",
    ]
    if ms:
        lines += ["| method | summary | status | runnable |", "|---|---|---|---|"]
        for m in ms:
            lines.append(
                f"| [{md(m.entry.name)}]({rel(src, m.src)}) | {md(m.entry.summary)} | "
                f"{status_badge(m.entry.status.value)} | {_runnable_cell(m)} |"
            )
    else:
        lines.append("No methods of this family are catalogued yet.")
    edges = [m for m in ms if m.entry.lineage]
    if edges:
        lines += ["", "## How they relate", ""]
        for m in edges:
            parent = data.methods.get(m.entry.lineage.parent)
            ptxt = f"[{md(parent.entry.name)}]({rel(src, parent.src)})" if parent else f"`{m.entry.lineage.parent}`"
            lines.append(
                f"- [{md(m.entry.name)}]({rel(src, m.src)}) modifies {ptxt}: " + md("; ".join(m.entry.lineage.changes))
            )
    return "\n".join(lines) + "\n"


# --- papers and status -----------------------------------------------------------------------

CATALOG_SECTION = "Cited by a catalog entry"


_ARXIV_IN_LINK = re.compile(r"arxiv\.org/(?:abs|pdf)/(\d{4}\.\d{4,5})")


def _paper_keys(title: str, arxiv: str | None, link: str | None) -> list[str]:
    """Keys on which two records of one paper meet: the arXiv id (from id or link) and the title."""
    keys = []
    match = re.match(r"\d{4}\.\d{4,5}", arxiv or "") or _ARXIV_IN_LINK.search(link or "")
    if match:
        keys.append("arxiv:" + (match.group(1) if match.groups() else match.group(0)))
    keys.append("title:" + re.sub(r"\W+", " ", title.lower()).strip())
    return keys


def papers_rows(data: SiteData) -> list[dict[str, Any]]:
    """The awesome-list papers plus the papers that entries cite, one row per paper."""
    rows: list[dict[str, Any]] = []
    index: dict[str, dict[str, Any]] = {}

    def add(record: dict[str, Any]) -> dict[str, Any]:
        keys = _paper_keys(record["title"], record["arxiv"], record["link"])
        row = next((index[k] for k in keys if k in index), None)
        if row is None:
            row = {**record, "methods": []}
            rows.append(row)
        for k in keys:
            index.setdefault(k, row)
        return row

    for p in data.papers:
        add(p)
    for info in data.methods.values():
        for p in info.entry.papers:
            record = {
                "title": p.title,
                "link": p.link,
                "arxiv": p.arxiv,
                "venue": p.venue or "",
                "date": "",
                "year": p.year,
                "sections": [CATALOG_SECTION],
            }
            row = add(record)
            if info not in row["methods"]:
                row["methods"].append(info)
    return sorted(rows, key=lambda r: (-(r["year"] or 0), r["title"].lower()))


def papers_page(data: SiteData, href) -> str:
    rows = papers_rows(data)
    sections = sorted({s for r in rows for s in r["sections"] if s != CATALOG_SECTION})
    if any(CATALOG_SECTION in r["sections"] for r in rows):
        sections.append(CATALOG_SECTION)
    years = sorted({r["year"] for r in rows if r["year"]}, reverse=True)
    lines = ["---", "hide: [toc]", "---", "# Papers", ""]
    if data.papers:
        lines += [
            f"{len(data.papers)} papers from the companion awesome-list "
            "([Awesome-LLM-Post-training](https://github.com/mbzuai-oryx/Awesome-LLM-Post-training)), "
            "with the list's sections, plus the papers that catalog entries cite. Filter by section and "
            "year, or type to search titles and venues.",
            "",
        ]
    else:
        lines += [
            '!!! note "No papers index yet"',
            "",
            "    The awesome-list's papers have not been imported into the catalog yet (`catalog/papers/`). "
            "Until they are, this page lists only the papers that catalog entries cite.",
            "",
        ]
    opts_s = "".join(f'<option value="{escape(s)}">{escape(s)}</option>' for s in sections)
    opts_y = "".join(f'<option value="{y}">{y}</option>' for y in years)
    lines += [
        '<div class="papers-filter">',
        '<input type="search" id="papers-search" placeholder="Search titles, venues, methods" '
        'aria-label="Search papers">',
        f'<select id="papers-section" aria-label="Section"><option value="">All sections</option>{opts_s}</select>',
        f'<select id="papers-year" aria-label="Year"><option value="">All years</option>{opts_y}</select>',
        f'<span id="papers-count" aria-live="polite">{len(rows)} papers</span>',
        "</div>",
        "",
        '<table id="papers-table">',
        "<thead><tr><th>Title</th><th>Year</th><th>Venue</th><th>Sections</th><th>Catalog methods</th></tr></thead>",
        "<tbody>",
    ]
    for r in rows:
        title = escape(r["title"])
        if r["link"] and safe_url(r["link"]):
            title = f'<a href="{escape(safe_url(r["link"]))}">{title}</a>'
        methods = ", ".join(f'<a href="{escape(href(m.src))}">{escape(m.entry.name)}</a>' for m in r["methods"])
        sections_attr = escape("|".join(r["sections"]))
        lines.append(
            f'<tr data-year="{r["year"] or ""}" data-sections="{sections_attr}"><td>{title}</td>'
            f"<td>{escape(r['date'] or str(r['year'] or ''))}</td><td>{escape(r['venue'])}</td>"
            f"<td>{'<br>'.join(escape(s) for s in r['sections'])}</td><td>{methods}</td></tr>"
        )
    lines += [
        "</tbody>",
        "</table>",
        "",
        '<p id="papers-empty" hidden>No paper matches these filters.</p>',
        "",
    ]
    return "\n".join(lines)


def status_page(data: SiteData) -> str:
    lines = [
        "---",
        "hide: [navigation]",
        "---",
        "# Status matrix",
        "",
        "Which methods run, and whether their plugins passed the smoke test (2 steps on the tiny "
        "embedded model) on CPU and on GPU, and what the paired test says about each method's headline "
        "held-out metric on the embedded task (gain, no significant change or harm, with the sign-test p; "
        "pooled over seeds for methods that sample). Results come from `reports/smoke-cpu.json`, "
        "`reports/smoke-gpu.json` and `reports/runs/*.json`; a cell says *not yet measured* when the "
        "committed reports do not cover that method. [Results](results.md) has the numbers behind each verdict, and "
        "[how results are measured](evidence.md) the test.",
        "",
    ]
    counts = {
        s: sum(m.state == s for m in data.methods.values())
        for s in ("runnable", "no-source", "not-installed", "catalogued")
    }
    lines += [
        f"{len(data.methods)} methods: {counts['runnable']} runnable, {counts['catalogued']} catalogued only"
        + (f", {counts['not-installed']} with a plugin that is not installed" if counts["not-installed"] else "")
        + (f", {counts['no-source']} with a registered plugin whose source is missing" if counts["no-source"] else "")
        + ".",
        "",
        *[smoke_summary(data, kind) for kind in ("cpu", "gpu")],
        "| method | family | status | runnable | CPU smoke | GPU smoke | held-out result | last verified |",
        "|---|---|---|---|---|---|---|---|",
    ]
    order = sorted(data.methods.values(), key=lambda m: (m.state != "runnable", m.entry.family, m.entry.name.lower()))
    for m in order:
        fam = f"[{md(m.family.name)}](families/{m.family.id}/index.md)" if m.family else literal(m.entry.family)
        plugin = m.entry.plugin
        cpu = smoke_cell(data.smoke["cpu"].get(plugin)) if plugin else "—"
        gpu = smoke_cell(data.smoke["gpu"].get(plugin)) if plugin and data.smoke["gpu"] else "—"
        lines.append(
            row(
                f"[{md(m.entry.name)}]({m.src})",
                fam,
                status_badge(m.entry.status.value),
                _runnable_cell(m),
                cpu,
                gpu,
                verdict_cell(data.runs.get(m.entry.id)) if plugin else "—",
                last_verified(data, m) if plugin else "—",
            )
        )
    lines += ["", "## Model families", "", *families_section(_read_json_if_present(data.reports_dir / MATRIX_REPORT))]
    lines += ["", "## GPU check", "", gpu_section(load_gpu_reports(data.reports_dir / "gpu"))]
    return "\n".join(lines) + "\n"


# --- the survey's Tables I and III (catalog/models/, catalog/benchmarks/) ---------------------------

MODELS_PAGE = "models.md"
DATASETS_PAGE = "datasets.md"
SURVEY_LINK = "https://arxiv.org/abs/2502.21321"
BENCHMARK_GROUPS = {  # the survey's §6 groups, in its order
    "reasoning": "Reasoning",
    "rl-alignment": "RL alignment",
    "multilingual": "Multilingual evaluation",
    "general-comprehension": "General comprehension",
    "dialogue-and-search": "Dialogue and search",
}


def survey_table_links(data: SiteData, info: MethodInfo) -> list[str]:
    """The method page's links to the Table I models trained with it and the Table III datasets tied to it."""
    out = []
    models = data.catalog.models_trained_with(info.entry.id)
    if models:
        names = ", ".join(md(m.name) for m in models)
        out.append(f"**Models trained with it** ([RL-trained models]({rel(info.src, MODELS_PAGE)})): {names}")
    benchmarks = data.catalog.benchmarks_of(info.entry.id)
    if benchmarks:
        names = ", ".join(md(b.name) for b in benchmarks)
        out.append(
            f"**Datasets the survey ties to it** ([datasets and benchmarks]({rel(info.src, DATASETS_PAGE)})): {names}"
        )
    return [line for item in out for line in (item, "")]


def _method_links(data: SiteData, page_src: str, ids: list[str]) -> str:
    """Method ids as links to their pages (an id without a page, which validate reports, as code)."""
    links = []
    for mid in ids:
        info = data.methods.get(mid)
        links.append(f"[{md(info.entry.name)}]({rel(page_src, info.src)})" if info else literal(mid))
    return ", ".join(links) or "—"


def _table_caveat(table: str) -> str:
    return (
        f"The body of the survey's {table} could not be recovered from its published text, so a row is "
        "recorded here only where the survey's own text states it: the table's caption, the prose of the "
        "section it sits in, or a bibliography entry cited only at the table. Each row says which. Rows the "
        "text does not confirm are left out rather than guessed."
    )


def models_page(data: SiteData) -> str:
    rows = sorted(data.catalog.models.values(), key=lambda m: m.name.lower())
    lines = [
        "---",
        "hide: [navigation]",
        "---",
        "# RL-trained models",
        "",
        f"Models from Table I of the survey {link('LLM Post-Training: A Deep Dive into Reasoning Large Language Models', SURVEY_LINK)} "
        "(RL-enhanced LLMs), with the catalog's method for the RL each one used. A size such as 141B-A39B "
        "is a mixture of experts: 141B parameters in all, 39B active per token (the table's caption).",
        "",
        _table_caveat("Table I"),
        "",
        f"{len(rows)} models. Source files: `catalog/models/`.",
        "",
        "| model | organisation | parameters | RL method | modality | access | source in the survey | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in rows:
        lines.append(
            row(
                md(m.name),
                md(m.organisation) if m.organisation else "—",
                literal(m.parameters) if m.parameters else "—",
                _method_links(data, MODELS_PAGE, m.rl_methods),
                md(m.modality) if m.modality else "—",
                m.access.value if m.access else "—",
                md(m.survey.where),
                md(m.note) if m.note else "",
            )
        )
    return "\n".join(lines) + "\n"


def _paper_cell(data: SiteData, bench: Any) -> str:
    if bench.arxiv:
        return link(f"arXiv {md(bench.arxiv)}", f"https://arxiv.org/abs/{bench.arxiv}")
    record = data.catalog.papers.get(bench.paper) if bench.paper else None
    return link(md(record.title), record.link) if record else "—"


def datasets_page(data: SiteData) -> str:
    lines = [
        "---",
        "hide: [navigation]",
        "---",
        "# Datasets and benchmarks",
        "",
        f"Datasets and benchmarks from Table III of the survey {link('LLM Post-Training: A Deep Dive into Reasoning Large Language Models', SURVEY_LINK)} "
        "(reasoning, RL-alignment and multilingual datasets) and its section 6, grouped as section 6 groups them. "
        "This page is about evaluation data; the [Benchmarks](benchmarks.md) page is about the catalog's speed.",
        "",
        _table_caveat("Table III"),
        "",
        f"{len(data.catalog.benchmarks)} datasets and benchmarks. Source files: `catalog/benchmarks/`.",
        "",
    ]
    for group, title in BENCHMARK_GROUPS.items():
        members = sorted(
            (b for b in data.catalog.benchmarks.values() if b.group.value == group), key=lambda b: b.name.lower()
        )
        if not members:
            continue
        lines += [f"## {title}", "", "| dataset | what it measures | paper | methods | source in the survey | note |"]
        lines.append("|---|---|---|---|---|---|")
        for b in members:
            lines.append(
                row(
                    md(b.name),
                    md(b.focus),
                    _paper_cell(data, b),
                    _method_links(data, DATASETS_PAGE, b.methods),
                    md(b.survey.where),
                    md(b.note) if b.note else "",
                )
            )
        lines.append("")
    return "\n".join(lines)


MATRIX_REPORT = "architecture-matrix.json"


def _read_json_if_present(path: Path) -> Any:
    return _read_json(path) if path.is_file() else None


def families_section(matrix: Any) -> list[str]:
    """The architecture matrix (`tools/architecture_matrix.py`): which plugins ran 2 steps on a tiny
    random model of each family, and the one-line error each gap gives."""
    if not isinstance(matrix, dict) or not matrix.get("cells"):
        return [
            f"No architecture matrix is committed (`reports/{MATRIX_REPORT}`, `python tools/architecture_matrix.py`)."
        ]
    families = list(matrix.get("families") or {})
    cells = {(c["family"], c["plugin"]): c for c in matrix["cells"]}
    plugins = list(dict.fromkeys(c["plugin"] for c in matrix["cells"]))
    out = [
        f"Each plugin below ran 2 steps on a tiny random-initialised model of each family, on "
        f"{md(matrix.get('device', 'cpu'))}, on {md(matrix.get('date', 'an unrecorded date'))} "
        f"(`reports/{MATRIX_REPORT}`, `python tools/architecture_matrix.py`). A gap is a one-line error, listed "
        "under the table.",
        "",
        "| plugin | " + " | ".join(md(f) for f in families) + " |",
        "|---|" + "---|" * len(families),
    ]
    for plugin in plugins:
        marks = [_matrix_mark(cells.get((f, plugin))) for f in families]
        out.append(f"| {code_text(plugin)} | " + " | ".join(marks) + " |")
    gaps: dict[str, list[str]] = {}
    for c in matrix["cells"]:
        if c.get("outcome") != "ok":
            gaps.setdefault(str(c.get("detail", "")), []).append(f"{c['plugin']} on {c['family']}")
    if gaps:
        out += ["", "Gaps, each with the error a user sees:", ""]
        out += [f"- {', '.join(md(w) for w in where)}: {inline_md(detail)}" for detail, where in gaps.items()]
    return out


def _matrix_mark(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "—"
    return "✓" if cell.get("outcome") == "ok" else "✗ (see below)"


def smoke_summary(data: SiteData, kind: str) -> str:
    """One paragraph: how many plugins passed the committed smoke run on this kind of machine, and when."""
    records = list(data.smoke[kind].values())
    name = kind.upper()
    if not records:
        return (
            f"{name} smoke: no run is committed yet (`reports/smoke-{kind}.json`"
            + (", written by `python tools/gpu_check.py` on a CUDA machine" if kind == "gpu" else "")
            + f"), so the {name} column shows —.\n"
        )
    skipped = [r for r in records if r.get("ok") and str(r.get("detail", "")).startswith("skipped")]
    passed = sum(1 for r in records if r.get("ok")) - len(skipped)
    failed = sum(1 for r in records if not r.get("ok"))
    dates = sorted({str(r["date"]) for r in records if r.get("date")})
    when = f"run on {dates[0]}" if len(dates) == 1 else (f"run {dates[0]} to {dates[-1]}" if dates else "undated")
    devices = ", ".join(sorted({str(r["device"]) for r in records if r.get("device")})) or kind
    return (
        f"{name} smoke (`reports/smoke-{kind}.json`, `catalog smoke --device {kind if kind == 'cpu' else 'cuda'}`, "
        f"{when} on {md(devices)}): {passed} of {len(records)} plugins pass, {failed} fail"
        + (
            f", {len(skipped)} skipped ({', '.join(md(r['plugin']) for r in skipped)}: needs a CUDA GPU)"
            if skipped
            else ""
        )
        + ".\n"
    )


# --- GPU check (tools/gpu_check.py writes reports/gpu/<step>.json) ------------------------------

GPU_STEPS = ("pytest-gpu", "smoke", "throughput", "qlora")
NOT_ON_GPU = "Not measured on GPU yet: `reports/gpu/` holds no results (`python tools/gpu_check.py` writes them on a CUDA machine)."


def load_gpu_reports(folder: Path) -> list[dict[str, Any]]:
    """The GPU check's step reports, in step order; rehearsals on a CPU (``--cpu-rehearsal``) are left out."""
    found = []
    for path in sorted(folder.glob("*.json")):
        rec = _read_json(path)
        if not isinstance(rec, dict) or not isinstance(rec.get("step"), str):
            if rec is not None:
                log.warning("%s: expected a GPU check step report (a JSON object with a step)", path)
            continue
        if rec.get("gpu") and rec.get("device", "cuda") == "cuda":
            found.append(rec)
    order = {s: i for i, s in enumerate(GPU_STEPS)}
    return sorted(found, key=lambda r: (order.get(r["step"], len(order)), r["step"]))


def _gib(run: dict[str, Any]) -> str:
    value = run.get("peak_memory_gib")
    return f"{value:.1f}" if isinstance(value, int | float) else "—"


def _percent(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, int | float) else "—"


def throughput_table(result: dict[str, Any]) -> list[str]:
    """One row per measured method and side: tokens/s, MFU, step time, peak memory."""
    lines = [
        "| method | trainer | tokens/s | MFU | of the ≈790 TFLOP/s ceiling | step (s) | peak memory (GiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in result.get("runs") or []:
        if not isinstance(run, dict):
            continue
        side = "TRL" if run.get("side") == "trl" else "posttrain"
        if "error" in run:
            lines.append(row(run.get("method"), side, f"failed: {md(run['error'])[:120]}", "", "", "", ""))
            continue
        lines.append(
            row(
                run.get("method"),
                side,
                f"{run.get('tokens_per_second', 0):,.0f}",
                _percent(run.get("mfu")),
                _percent(run.get("share_of_practical_ceiling")),
                f"{run.get('step_seconds_median', 0):.3f}",
                _gib(run),
            )
        )
    return lines


def gpu_section(records: list[dict[str, Any]]) -> str:
    """The GPU check's results (date, versions, each step; tokens/s, MFU and memory), or the not-yet line."""
    if not records:
        return NOT_ON_GPU
    first = records[0]
    versions = ", ".join(f"{k} {v}" for k, v in (first.get("versions") or {}).items())
    lines = [
        f"GPU check on {md(first.get('gpu'))}, {md(first.get('date'))} ({md(versions)}), from "
        "`reports/gpu/*.json` (`python tools/gpu_check.py`).",
        "",
        "| step | date | result | detail | seconds |",
        "|---|---|---|---|---|",
    ]
    for rec in records:
        lines.append(
            row(rec["step"], rec.get("date"), rec.get("status"), md(rec.get("detail", ""))[:200], rec.get("seconds"))
        )
    for rec in records:
        if rec["step"] == "throughput" and isinstance(rec.get("result"), dict):
            result = rec["result"]
            lines += [
                "",
                f"Throughput on a random-initialised model of Qwen2.5-0.5B's shape ({fmt_number(result.get('parameters'))} "
                f"parameters, bf16); MFU = 6 × parameters × tokens/s over the {fmt_number(result.get('peak_tflops'))} "
                f"TFLOP/s dense bf16 peak. TRL: {md(result.get('trl', ''))}.",
                "",
                *throughput_table(result),
            ]
    return "\n".join(lines)


def verdict_cell(run: dict[str, Any] | None) -> str:
    """The headline metric's verdict and p (pooled over seeds when there are seeds), for one table cell."""
    if run is None:
        return "not yet measured"
    top = headline(run)
    if top is None:
        return "no paired test"
    test = top["test"]
    where = (
        f"{top['metric']}, pooled p = {fmt_p(test['p'])}, {test['seeds']} seeds"
        if top["pooled"]
        else (f"{top['metric']}, p = {fmt_p(test['p'])}")
    )
    return f"{verdict_badge(test['verdict'])} ({md(where)})"


def results_page(data: SiteData) -> str:
    """One row per runnable or measured method: its headline metric and the paired test."""
    shown = [m for m in data.methods.values() if m.entry.id in data.runs or m.state == "runnable"]
    shown.sort(key=lambda m: (m.entry.family, m.entry.name.lower()))
    tops = {m.entry.id: headline(data.runs[m.entry.id]) if m.entry.id in data.runs else None for m in shown}
    verdicts = [t["test"]["verdict"] for t in tops.values() if t]
    lines = [
        "---",
        "hide: [navigation]",
        "---",
        "# Results",
        "",
        "Each method run on the embedded task, its headline held-out metric (exact match for methods that "
        "train, accuracy for test-time methods) before and after, and the paired test on the same "
        "held-out problems: fixed (wrong before, right after) and broken (the reverse), the difference in "
        "percentage points, the exact sign-test p-value and the verdict. A gain or a harm counts only at "
        "p < 0.05. Methods that sample ran with several seeds: their row shows the means over seeds, the "
        "mean ± sample standard deviation of the difference and the pooled test, and a gain needs every "
        "seed's difference above zero. [How results are measured](evidence.md) explains the test; each "
        "method's page has every metric and every seed. From `reports/runs/*.json`.",
        "",
    ]
    measured = sum(1 for m in shown if m.entry.id in data.runs)
    lines += [
        f"{len(shown)} methods, {measured} with a run report, {len(verdicts)} with a paired test of the headline "
        f"metric: {verdicts.count('gain')} gain, {verdicts.count('no significant change')} no significant "
        f"change, {verdicts.count('harm')} harm.",
        "",
        "| method | metric | before → after | difference (points) | fixed / broken | p | verdict | seeds "
        "| other paired metrics |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in shown:
        link = f"[{md(m.entry.name)}]({m.src})"
        run = data.runs.get(m.entry.id)
        if run is None:
            lines.append(row(link, "", "", "", "", "", "not yet measured", "", ""))
            continue
        top = tops[m.entry.id]
        seeds = len(run.get("seeds") or []) or None
        seeds_cell = f"{seeds}" if seeds else (f"seed {fmt_number(run['seed'])}" if "seed" in run else "")
        if top is None:
            metric = next(
                (k for k in (run.get("after") or {}) if k.split("/")[-1] in ("exact_match", "accuracy")), None
            )
            change = (
                f"{fmt_number(run['before'].get(metric, ''))} → {fmt_number(run['after'][metric])}"
                if metric and isinstance(run.get("before"), dict)
                else ""
            )
            lines.append(
                row(
                    link, f"`{metric}`" if metric else "", change, "", "", "", "no per-problem outcomes", seeds_cell, ""
                )
            )
            continue
        test = top["test"]
        if top["pooled"]:
            diff = f"{100 * test['difference_mean']:+.1f} ± {100 * test['difference_sd']:.1f} (sd)"
            p = f"pooled {fmt_p(test['p'])}"
        else:
            diff = f"{100 * test['difference']:+.1f} (SE {100 * test['se']:.1f})"
            p = fmt_p(test["p"])
        pooled = run.get("pooled") or {}
        others = {**(run.get("paired") or {}), **pooled}
        other = "<br>".join(
            f"`{name}` {verdict_badge(t['verdict'])} ({'pooled ' if name in pooled else ''}p = {fmt_p(t['p'])})"
            for name, t in others.items()
            if name != top["metric"]
        )
        lines.append(
            row(
                link,
                f"`{top['metric']}`",
                f"{fmt_number(top['before'])} → {fmt_number(top['after'])}",
                diff,
                f"{test['fixed']} / {test['broken']}",
                p,
                verdict_badge(test["verdict"]),
                seeds_cell,
                other,
            )
        )
    return "\n".join(lines) + "\n"


# --- CLI reference ---------------------------------------------------------------------------


COMPARE_PLOT = "assets/reports/compare/compare.png"


def compare_page(folder: Path) -> str | None:
    """The committed output of ``catalog compare`` (reports/compare/): its table and plot."""
    table, plot = folder / "compare.md", folder / "compare.png"
    if not table.is_file():
        return None
    lines = [
        "# Method comparison",
        "",
        "Several methods run on the same task with the same budget by `catalog compare` (each in its own "
        "process, so the peak resident memory is that run's). Held-out exact match before and after, "
        "trainable parameters, peak memory and wall time; wall times were measured on a shared, loaded "
        "2-core machine, so compare them only within this table. Regenerate with the command below and "
        "copy `compare.md`, `compare.json` and `compare.png` into `reports/compare/`.",
        "",
        table.read_text(encoding="utf-8"),
    ]
    if plot.is_file():
        lines += [
            "",
            f"![Comparison: held-out exact match, trainable parameters, peak memory, wall time]({COMPARE_PLOT})",
        ]
    return "\n".join(lines) + "\n"


def cli_page() -> str:
    """Walk the typer app's command tree (duck-typed: typer may ship its own copy of click)."""
    import typer

    from posttrain.cli.main import app

    root = typer.main.get_command(app)
    lines = [
        "# CLI reference",
        "",
        "Generated from the `catalog` command's own definitions (the typer app in "
        "`src/posttrain/cli/main.py`). `catalog COMMAND --help` prints the same in a terminal, and "
        "`python -m posttrain` is the same program.",
        "",
    ]

    def param_row(p: Any) -> str | None:
        if p.name == "help" or getattr(p, "hidden", False):
            return None
        if p.param_type_name == "argument":
            label = f"`{p.metavar or p.name.upper()}`" + ("" if p.required else " (optional)")
        else:
            label = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
        default = p.default
        shown = not (default in (None, (), []) or callable(default) or p.required)
        if getattr(p, "is_flag", False) and not getattr(p, "secondary_opts", None) and not default:
            shown = False
        return row(label, md(type_name(p)), code(default) if shown else "", inline_md(getattr(p, "help", "") or ""))

    def type_name(p: Any) -> str:
        if getattr(p, "type", None) is not None:
            return p.type.name
        ann = getattr(getattr(p, "type_descriptor", None), "annotation", None)
        return (
            ""
            if ann is None
            else getattr(ann, "__name__", str(ann))
            if not getattr(ann, "__args__", None)
            else str(ann)
        )

    def walk(cmd: Any, ctx: Any, depth: int) -> None:
        name = ctx.command_path
        lines.extend([f"{'#' * min(depth + 2, 4)} `{name}`", ""])
        help_text = (cmd.help or "").split("\f")[0].strip()
        if help_text:
            lines.extend([inline_md(help_text), ""])
        usage = " ".join([name, *cmd.collect_usage_pieces(ctx)])
        usage = re.sub(r"\{(\w+)\}", lambda m: m.group(1).upper(), usage)  # typer may write {arg}
        lines.extend([fence(usage, "text"), ""])
        rows = [r for r in (param_row(p) for p in cmd.get_params(ctx)) if r]
        if rows:
            lines.extend([row("argument / option", "type", "default", "description"), "|---|---|---|---|"])
            lines.extend([*rows, ""])
        if hasattr(cmd, "list_commands"):
            for sub_name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, sub_name)
                if sub is not None and not getattr(sub, "hidden", False):
                    walk(sub, sub.context_class(sub, info_name=sub_name, parent=ctx), depth + 1)

    walk(root, root.context_class(root, info_name="catalog"), 0)
    return "\n".join(lines)


# --- hand-written pages' markers -------------------------------------------------------------


def marker_counts(data: SiteData, page_src: str) -> str:
    ms = list(data.methods.values())
    runnable = sum(m.state == "runnable" for m in ms)
    fams = sum(len(b.families) for b in data.catalog.taxonomy.branches)
    return (
        f"The catalog holds **{len(ms)} methods** in **{fams} families** under the survey's "
        f"**{len(data.catalog.taxonomy.branches)} branches**; **{runnable}** of them run with "
        "`catalog run ID` "
        f"in the environment this site was built from. The [status matrix]({rel(page_src, 'status.md')}) "
        "shows which passed their smoke tests."
    )


def marker_runnable(data: SiteData, page_src: str) -> str:
    ms = [m for m in data.methods.values() if m.state == "runnable"]
    if not ms:
        pending = [m for m in data.methods.values() if m.state in ("no-source", "not-installed")]
        text = (
            "No plugin's source was found in the environment this site was built from, "
            "so no method is shown as runnable."
        )
        if pending:
            text += (
                " These entries name a plugin that is on its way: "
                + ", ".join(f"[{md(m.entry.name)}]({rel(page_src, m.src)})" for m in pending)
                + "."
            )
        return text
    lines = ["| method | family | command | CPU smoke |", "|---|---|---|---|"]
    for m in sorted(ms, key=lambda m: (m.entry.family, m.entry.id)):
        fam = md(m.family.name) if m.family else m.entry.family
        lines.append(
            f"| [{md(m.entry.name)}]({rel(page_src, m.src)}) | {fam} | `catalog run {m.entry.id}` "
            f"| {smoke_cell(data.smoke['cpu'].get(m.entry.plugin or ''))} |"
        )
    return "\n".join(lines)


# Said here for the fields whose schema gives no description (the schema's own text wins).
FIELD_HELP = {
    "name": "The method's full name, as the paper gives it.",
    "aliases": "Other names and abbreviations; `catalog show` finds the entry by any of them.",
    "papers": "The canonical paper first: title, authors, year, and an arXiv id or a URL.",
    "status": "stable, experimental (has a plugin), or catalogued (no plugin yet).",
    "defaults": "The paper's hyperparameters: name -> {value, source}, source = where the paper says so.",
    "metrics": "What the plugin logs: a list of {name, description}.",
    "related": "Ids of related catalog entries.",
    "lineage": "The method this one modifies (parent id) and what it changes, one item each.",
    "implementations": "The method in other libraries: a list of {name, url}.",
    "tags": "Free keywords.",
}


def marker_entry_fields(data: SiteData, page_src: str) -> str:
    lines = ["| field | required | what it holds |", "|---|---|---|"]
    for name, f in MethodEntry.model_fields.items():
        text = f.description or FIELD_HELP.get(name, "")
        lines.append(row(f"`{name}`", "yes" if f.is_required() else "no", inline_md(text)))
    return "\n".join(lines)


def marker_families(data: SiteData, page_src: str) -> str:
    lines = []
    for b in data.catalog.taxonomy.branches:
        fams = ", ".join(f"[`{f.id}`]({rel(page_src, f'families/{f.id}/index.md')})" for f in b.families)
        lines.append(f"- {md(b.name)}: {fams}")
    return "\n".join(lines)


def marker_gpu_results(data: SiteData, page_src: str) -> str:
    return gpu_section(load_gpu_reports(data.reports_dir / "gpu"))


MARKERS = {
    "counts": marker_counts,
    "gpu-results": marker_gpu_results,
    "runnable": marker_runnable,
    "entry-fields": marker_entry_fields,
    "families": marker_families,
}


# --- other frameworks' flags (catalog/frameworks/) --------------------------------------------------

FRAMEWORKS_PAGE = "frameworks.md"
PAPER_MARK = "†"  # after a flag whose value is the paper's (validate checks it equals the entry's default)


def flags_cell(framework: Any, recipe: Any) -> str:
    """A recipe's flags as the framework takes them, one code span a line; paper values marked."""
    spans = [
        code_text(text) + (PAPER_MARK if name in recipe.paper_defaults else "")
        for name, text in zip(recipe.flags, written_flags(framework, recipe), strict=True)
    ]
    return "<br>".join(spans)


def run_elsewhere_section(data: SiteData, info: MethodInfo) -> list[str]:
    """The flags that run this method in other frameworks (catalog/frameworks/); nothing when none does."""
    mid, src = info.entry.id, info.src
    frameworks = data.catalog.frameworks_of(mid)
    if not frameworks:
        return []
    out = [
        "## Run it elsewhere",
        "",
        f"The options that turn this method on in other training frameworks, checked against the version named "
        f"(coverage of every framework: [frameworks]({rel(src, FRAMEWORKS_PAGE)})). A value marked {PAPER_MARK} "
        "is the paper's, and `catalog validate` checks that it equals this entry's paper default.",
        "",
        "| framework | version checked | flags | source |",
        "|---|---|---|---|",
    ]
    for f in frameworks:
        recipe = f.methods[mid]
        out.append(
            row(
                f"{link(md(f.name), f.docs)}: {code_text(recipe.entry_point)}",
                f"{md(f.version)}, checked {f.checked}",
                flags_cell(f, recipe),
                link("source", recipe.source),
            )
        )
    notes = [f"- {md(f.name)}: {md(f.methods[mid].note)}" for f in frameworks if f.methods[mid].note]
    return [*out, "", *notes, *([""] if notes else [])]


def frameworks_page(data: SiteData) -> str:
    """Which catalog methods each framework runs (methods x frameworks), and how each map was checked."""
    frameworks = list(data.catalog.frameworks.values())
    covered = sorted(
        {mid for f in frameworks for mid in f.methods if mid in data.methods},
        key=lambda mid: data.methods[mid].entry.name.lower(),
    )
    lines = [
        "---",
        "hide: [navigation]",
        "---",
        "# Run it elsewhere",
        "",
        "The options that run a catalog method's paper version in other training frameworks. Each method's page "
        'shows its flags in a "Run it elsewhere" table; this page shows which framework covers which method. '
        "A mark links to the page or file the flags were read from. Source files: `catalog/frameworks/`; "
        f"[contributing]({rel(FRAMEWORKS_PAGE, 'contributing.md')}) says how to add a framework or a method.",
        "",
        f"{len(covered)} methods in {len(frameworks)} frameworks.",
        "",
        "| method | " + " | ".join(md(f.name) for f in frameworks) + " |",
        "|---|" + "---|" * len(frameworks),
    ]
    for mid in covered:
        info = data.methods[mid]
        cells = [link("✓", f.methods[mid].source) if mid in f.methods else "—" for f in frameworks]
        lines.append(row(f"[{md(info.entry.name)}]({rel(FRAMEWORKS_PAGE, info.src)})", *cells))
    lines += ["", "## How each map was checked", ""]
    for f in frameworks:
        lines += [
            f"### {md(f.name)}",
            "",
            f"Version {md(f.version)}, checked {f.checked}. Docs: {link(md(f.docs), f.docs)}. "
            f"Flags are written as {f.flag_style.value} options. {md(f.how_checked)}",
            "",
        ]
    return "\n".join(lines)


# --- mkdocs events ---------------------------------------------------------------------------

DATA: SiteData | None = None
PAGES: dict[str, str] = {}
USE_DIRECTORY_URLS = False  # the site's setting, read in on_config
GENERATED_PAGES = (
    "taxonomy.md",
    "papers.md",
    "status.md",
    "results.md",
    "cli.md",
    "compare.md",
    "models.md",
    "datasets.md",
    "frameworks.md",
)


def _url_from(page_src: str):
    """``url_of(src)`` for links in catalog text on ``page_src``: a relative URL, or None (with a
    warning, so --strict fails) when ``src`` is no page of the site."""

    def url_of(src: str) -> str | None:
        known = (
            src in GENERATED_PAGES
            or src.startswith(("branches/", "families/"))
            or (DATA is not None and any(m.src == src for m in DATA.methods.values()))
            or (SITE_DIR / "docs" / src).is_file()
        )
        if not known:
            log.warning("%s: catalog text links to %s, which is not a page of the site", page_src, src)
            return None
        return get_relative_url(_page_url(src, USE_DIRECTORY_URLS), _page_url(page_src, USE_DIRECTORY_URLS))

    return url_of


def _page_url(src: str, use_directory_urls: bool) -> str:
    if not use_directory_urls:
        return src[:-3] + ".html"
    if src == "index.md":
        return ""
    return src[: -len("index.md")] if src.endswith("/index.md") else src[:-3] + "/"


FILE_WORKER = "assets/javascripts/file-worker.js"


def local_polyfills(config) -> None:
    """The offline plugin adds a web-worker shim fetched from unpkg.com; the site fetches nothing from
    another host, so our own shim (docs/assets/javascripts/file-worker.js) takes its place."""
    polyfills = config["extra"].get("polyfills") or []
    kept = [p for p in polyfills if "iframe-worker" not in str(p)]
    if len(kept) != len(polyfills) or "offline" in config["plugins"]:
        config["extra"]["polyfills"] = [*kept, FILE_WORKER]


def on_config(config, **kwargs):
    global DATA, REPO_FILES, USE_DIRECTORY_URLS
    USE_DIRECTORY_URLS = config["use_directory_urls"]
    local_polyfills(config)
    repo_url = (config.get("repo_url") or "").rstrip("/")
    REPO_FILES = f"{repo_url}/blob/main/" if repo_url else ""
    DATA = load_site_data()
    if DATA.catalog.taxonomy is None:
        log.warning("catalog: no valid taxonomy; the taxonomy pages are left out")
        return config
    nav: list[Any] = [{"Home": "index.md"}, {"Taxonomy": "taxonomy.md"}]
    for b in DATA.catalog.taxonomy.branches:
        section: list[Any] = [f"branches/{b.id}/index.md"]
        for f in b.families:
            section.append(
                {
                    nav_title(f.name): [
                        f"families/{f.id}/index.md",
                        *({nav_title(nav_name(m, f.name)): m.src} for m in _methods_of(DATA, f.id)),
                    ]
                }
            )
        nav.append({nav_title(b.name): section})
    nav += [
        {"Papers": "papers.md"},
        {"Status matrix": "status.md"},
        {"Results": "results.md"},
        {"How results are measured": "evidence.md"},
        {"Benchmarks": "benchmarks.md"},
        *_survey_table_nav(DATA),
        *([{"Run it elsewhere": FRAMEWORKS_PAGE}] if DATA.catalog.frameworks else []),
        {"Contributing": "contributing.md"},
        {"Architecture": "architecture.md"},
        {"CLI reference": "cli.md"},
    ]
    if (reports_dir() / "compare" / "compare.json").is_file():
        nav.append({"Method comparison": "compare.md"})
    nav += _extra_pages(config, nav)
    config["nav"] = nav
    return config


def _survey_table_nav(data: SiteData) -> list[dict[str, str]]:
    """Nav entries for the survey-table pages that have rows (named apart from the speed "Benchmarks")."""
    nav = []
    if data.catalog.models:
        nav.append({"RL-trained models": MODELS_PAGE})
    if data.catalog.benchmarks:
        nav.append({"Datasets and benchmarks": DATASETS_PAGE})
    return nav


def nav_name(info: MethodInfo, family_name: str) -> str:
    """A method's nav label; one named like its family says which it is, so no two labels are the same."""
    name = info.entry.name
    if name.lower() != family_name.lower():
        return name
    short = next((a for a in info.entry.aliases if a.lower() != name.lower() and len(a) <= 12), None)
    return f"{name} ({short})" if short else f"{name} (method)"


def _extra_pages(config, nav: list[Any]) -> list[dict[str, str]]:
    """Hand-written top-level pages in docs/ that the nav does not list yet, titled by their first heading."""
    listed = set(re.findall(r"[\w./-]+\.md", repr(nav)))
    extra = []
    for page in sorted(Path(config["docs_dir"]).glob("*.md")):
        if page.name in listed:
            continue
        heading = next(
            (ln[2:].strip() for ln in page.read_text(encoding="utf-8").splitlines() if ln.startswith("# ")), ""
        )
        extra.append({nav_title(heading or page.stem): page.name})
    return extra


def on_files(files: Files, config, **kwargs):
    assert DATA is not None
    PAGES.clear()
    use_dir = config["use_directory_urls"]
    if DATA.catalog.taxonomy is not None:
        PAGES["taxonomy.md"] = taxonomy_page(DATA)
        for b in DATA.catalog.taxonomy.branches:
            PAGES[f"branches/{b.id}/index.md"] = branch_page(DATA, b)
            for f in b.families:
                PAGES[f"families/{f.id}/index.md"] = family_page(DATA, b, f)
    for info in DATA.methods.values():
        PAGES[info.src] = method_page(DATA, info)

    def from_root(src: str) -> str:
        return get_relative_url(_page_url(src, use_dir), _page_url("papers.md", use_dir))

    PAGES["papers.md"] = papers_page(DATA, from_root)
    PAGES["status.md"] = status_page(DATA)
    PAGES["results.md"] = results_page(DATA)
    PAGES["cli.md"] = cli_page()
    if DATA.catalog.models:
        PAGES[MODELS_PAGE] = models_page(DATA)
    if DATA.catalog.benchmarks:
        PAGES[DATASETS_PAGE] = datasets_page(DATA)
    if DATA.catalog.frameworks:
        PAGES[FRAMEWORKS_PAGE] = frameworks_page(DATA)
    comparison = compare_page(reports_dir() / "compare")
    if comparison is not None:
        PAGES["compare.md"] = comparison
    for src, image in report_images(DATA).items():
        files.append(File.generated(config, src, content=image.read_bytes()))
    for src, content in PAGES.items():
        if files.get_file_from_path(src) is not None:
            log.warning("%s is generated from the catalog; remove the hand-written copy in docs/", src)
            files.remove(files.get_file_from_path(src))
        files.append(File.generated(config, src, content=content))
    return files


def report_images(data: SiteData) -> dict[str, Path]:
    """Committed charts the pages show, by their place in the built site: each method's budget sweep
    and the comparison's plot."""
    folder = data.reports_dir / "tts"
    found = {sweep_src(mid): folder / f"{mid}.png" for mid in data.methods if (folder / f"{mid}.png").is_file()}
    compare = data.reports_dir / "compare" / "compare.png"
    if compare.is_file() and (data.reports_dir / "compare" / "compare.md").is_file():
        found[COMPARE_PLOT] = compare
    return found


_MARKER = re.compile(r"^([ \t]*)<!--\s*catalog:([a-z-]+)\s*-->", re.MULTILINE)


def on_page_markdown(markdown: str, page, config, files, **kwargs):
    assert DATA is not None

    def replace(match: re.Match[str]) -> str:
        lead, name = match.group(1), match.group(2)
        fn = MARKERS.get(name)
        if fn is None:
            log.warning("%s: unknown marker %s", page.file.src_uri, match.group(0).strip())
            return match.group(0)
        return indent(fn(DATA, page.file.src_uri), lead) if lead else fn(DATA, page.file.src_uri)

    return _MARKER.sub(replace, markdown)


def on_page_content(html: str, page, config, files, **kwargs):
    for found in executable_markup(html):  # catalog text that got past the escaping
        log.warning("%s: the page would run script: %s", page.file.src_uri, found)
    if FIGURE_PLACEHOLDER not in html or DATA is None or DATA.catalog.taxonomy is None:
        return html
    use_dir = config["use_directory_urls"]

    def href(src: str) -> str:
        return get_relative_url(_page_url(src, use_dir), page.url or ".")

    figure = f'<div class="taxonomy-figure">{taxonomy_svg(taxonomy_nodes(DATA), href)}</div>'
    return html.replace(FIGURE_PLACEHOLDER, figure)


# Material asks api.github.com for the repository's stars and latest release when the repo link has
# this attribute; the site fetches nothing from another host, so the link stays a plain link.
_REPO_FACTS = ' data-md-component="source"'


def on_post_page(output: str, page, config, **kwargs):
    return output.replace(_REPO_FACTS, "")
