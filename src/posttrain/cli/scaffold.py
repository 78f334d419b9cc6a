"""Scaffolding for contributors: ``catalog new`` writes a catalog entry, a paper record, a plugin file
and a test file that follow the project's anatomy; ``catalog cp`` copies a built-in plugin.

Every placeholder the contributor must replace carries the marker ``TODO(scaffold)`` so that
``tools/check_placeholders.py`` (run in pull-request CI) can point at the ones left behind.
No torch import here.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posttrain.catalog.schema import ARXIV_PATTERN, ID_PATTERN
from posttrain.catalog.textsafety import field_limit, text_problem
from posttrain.errors import UserError, clipped

TODO = "TODO(scaffold)"
ARXIV_API = "https://export.arxiv.org/api/query"
ARXIV_TIMEOUT_S = 10.0
ENTRY_POINTS_HEADER = '[project.entry-points."posttrain.plugins"]'
_ATOM = {"a": "http://www.w3.org/2005/Atom"}


# --- where things go -------------------------------------------------------------------------


def find_checkout(start: Path) -> Path | None:
    """The posttrain-catalog checkout that contains ``start`` (a folder with pyproject, catalog/ and plugins/)."""
    for folder in [start.resolve(), *start.resolve().parents]:
        pyproject = folder / "pyproject.toml"
        if (
            pyproject.is_file()
            and (folder / "catalog" / "taxonomy.yaml").is_file()
            and (folder / "plugins" / "posttrain_plugins").is_dir()
            and 'name = "posttrain-catalog"' in pyproject.read_text(encoding="utf-8")
        ):
            return folder
    return None


def module_name(method_id: str) -> str:
    """The plugin module of a method id: dashes become underscores (``best-of-n`` -> ``best_of_n``)."""
    return method_id.replace("-", "_")


# --- arXiv metadata ----------------------------------------------------------------------------


@dataclass
class PaperMeta:
    arxiv: str
    title: str | None = None
    authors: list[str] = field(default_factory=list)
    date: str | None = None  # YYYY-MM-DD from arXiv, or YYYY-MM read from the id when offline
    fetched: bool = False
    why_not: str = ""  # why the metadata was not fetched

    @property
    def year(self) -> int | None:
        return int(self.date[:4]) if self.date else None


def date_from_arxiv_id(arxiv: str) -> str:
    """The submission month an arXiv id encodes: 2305.18290 -> 2023-05, hep-th/9901001 -> 1999-01."""
    number = arxiv.split("/")[-1]
    yy, mm = int(number[:2]), number[2:4]
    century = 1900 if yy >= 91 else 2000  # arXiv started in August 1991
    return f"{century + yy}-{mm}"


def parse_arxiv_atom(text: str) -> tuple[str, list[str], str] | None:
    """(title, authors, YYYY-MM-DD) from an arXiv API Atom answer; None when it holds no paper."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return None
    entry = root.find("a:entry", _ATOM)
    if entry is None or "api/errors" in (entry.findtext("a:id", "", _ATOM) or ""):
        return None
    title = " ".join((entry.findtext("a:title", "", _ATOM) or "").split())
    authors = [" ".join((a.findtext("a:name", "", _ATOM) or "").split()) for a in entry.findall("a:author", _ATOM)]
    published = (entry.findtext("a:published", "", _ATOM) or "")[:10]
    if not title or not re.match(r"^\d{4}-\d{2}-\d{2}$", published):
        return None
    return title, [a for a in authors if a], published


def fetch_arxiv(arxiv: str, offline: bool = False) -> PaperMeta:
    """Title, authors and date from the arXiv API; on any failure, only the date the id encodes.

    The endpoint can be changed with $POSTTRAIN_ARXIV_API (a mirror, or a test server).
    """
    meta = PaperMeta(arxiv=arxiv, date=date_from_arxiv_id(arxiv))
    if offline:
        meta.why_not = "--offline was given"
        return meta
    import requests

    url = os.environ.get("POSTTRAIN_ARXIV_API", ARXIV_API)
    try:
        response = requests.get(
            url,
            params={"id_list": arxiv},
            timeout=ARXIV_TIMEOUT_S,
            headers={"User-Agent": "posttrain-catalog (catalog new)"},
        )
        response.raise_for_status()
    except requests.RequestException as exc:
        meta.why_not = f"the arXiv API ({url}) could not be reached: {type(exc).__name__}"
        return meta
    parsed = parse_arxiv_atom(response.text)
    if parsed is None:
        meta.why_not = f"the arXiv API ({url}) returned no paper for {arxiv}"
        return meta
    meta.title, meta.authors, meta.date = parsed
    meta.fetched = True
    return meta


# --- file contents -----------------------------------------------------------------------------


def paper_record(pid: str, meta: PaperMeta) -> dict:
    record: dict = {"id": pid, "title": meta.title or f"{TODO}: title of arXiv {meta.arxiv}"}
    record["authors"] = meta.authors
    record["date"] = meta.date
    record["arxiv"] = meta.arxiv
    if not meta.fetched:
        record["note"] = (
            f"{TODO}: written by `catalog new` without the arXiv metadata ({meta.why_not}); copy the title "
            f"and authors from https://arxiv.org/abs/{meta.arxiv}, then delete this note."
        )
    return record


def entry_yaml(method_id: str, name: str, family: str, paper_id: str) -> str:
    return f"""\
# Written by `catalog new`. Replace every {TODO} and delete these comment lines.
# Field reference: CONTRIBUTING.md (step 2, "The entry") or `catalog schema`.
id: {method_id}
name: {json.dumps(name)}  # {TODO}: the name the paper uses, with its acronym, e.g. "Direct Preference Optimization (DPO)"
aliases: []
family: {family}
summary: {json.dumps(f"{TODO}: one or two sentences on what {name} changes and why, ending in a period.")}
description: |
  {TODO}: a paragraph of markdown: the idea, what it needs (data, reward model, reference model),
  what the paper reports, and the equation numbers the objective comes from.
objective: |
  \\text{{{TODO}: the objective in LaTeX, exactly as the paper states it}}
papers:
  - {paper_id}
plugin: null  # set to "{method_id}" (and status to experimental) once the plugin passes `catalog smoke {method_id}`
status: catalogued
status_note: "Scaffolded by catalog new; the plugin is not written yet."
defaults: {{}}  # name: {{value: 0.1, source: "section 4.1: beta = 0.1"}} for each paper value the plugin uses
metrics: []  # - {{name: loss, description: "..."}} for each metric the plugin logs
related: []  # method ids; each must list this one back
tags: []
"""


def plugin_source(method_id: str, name: str, meta: PaperMeta | None, paper_id: str) -> str:
    module = module_name(method_id)
    fn = f"{module}_loss"
    if meta is not None:
        authors = ", ".join(meta.authors) if meta.authors else f"{TODO}: authors"
        title = meta.title or f"{TODO}: title"
        cite = f'{authors}, {meta.year}, "{title}",\narXiv:{meta.arxiv}.'
    else:
        cite = f"{TODO}: authors, year, title and arXiv id (catalog/papers/{paper_id}.yaml)."
    return f'''\
"""{name}.

Paper: {cite}
Catalog entry: catalog/methods/{method_id}.yaml.

    catalog run {method_id}                                   # embedded tiny model and task
    catalog run {method_id} --model <hf-id-or-folder> --dataset <file.jsonl> --set learning_rate=1e-5

Data: {TODO}: the fields a dataset line needs (e.g. ``prompt`` + ``chosen`` + ``rejected``).

Deviations from the paper:
1. {TODO}: every way this file differs from the paper (optimizer, defaults sized for the tiny
   model, approximations), numbered; write "None." if there are none.
"""

from __future__ import annotations

import torch
from pydantic import Field  # noqa: F401 (for the Config fields you add)

from posttrain import Plugin, RunContext, RunResult
from posttrain.training.config import TrainingConfig
from posttrain.data import batch_indices, pad_sequences, task_records  # noqa: F401 (for run)
from posttrain.errors import UserError
from posttrain.hf import load_policy, lora_settings  # noqa: F401 (for run)
from posttrain.training.trainer import finish, loop_settings, train_loop  # noqa: F401 (for run)

SCAFFOLD_TODO = (
    "plugin '{method_id}' is not written yet: fill in {fn}() and run() in plugins/posttrain_plugins/{module}.py "
    "(a `catalog new` scaffold; see CONTRIBUTING.md, step 4, 'The plugin'), then set plugin: {method_id} and "
    "status: experimental in catalog/methods/{method_id}.yaml"
)


class Config(TrainingConfig):
    """{TODO}: one field per hyperparameter of the paper, for example

    beta: float = Field(0.1, gt=0, description="β, strength of the KL penalty (paper §4.1: 0.1).")

    Defaults are the paper's values (say in the docstring above when they are not); each description
    names the paper's symbol and where the value comes from. TrainingConfig already has the optimizer,
    schedule, batch, LoRA and evaluation fields.
    """


# --- objective (paper Eq. {TODO}) ---------------------------------------------------------------


def {fn}(*inputs: torch.Tensor) -> torch.Tensor:
    """{TODO}: the method's loss (or advantage, or selection rule) as a pure function: tensors in,
    tensors out, no model and no I/O. Name the arguments after the paper's symbols, give their
    shapes, and state a hand-worked value and the paper's limiting cases here; test them in
    tests/test_{module}.py. Variants get their own function, not a flag.
    """
    raise NotImplementedError(SCAFFOLD_TODO)


# --- run ----------------------------------------------------------------------------------------


def run(cfg: Config, ctx: RunContext) -> RunResult:
    """{TODO}: the training loop (a pairwise-preference loss needs none: hand it to
    posttrain.training.preference.train_pairwise, as plugins/posttrain_plugins/dpo.py and ipo.py do).
    The usual shape of a loop of its own (see src/posttrain/training/sft.py):
    policy, tokenizer = posttrain.hf.load_policy(ctx, lora_settings(cfg)); records from
    posttrain.data.task_records(ctx, ...); a held-out evaluation before and after;
    loop = posttrain.training.trainer.train_loop(policy, ctx, loop_settings(cfg), loss_fn) with loss_fn calling
    {fn}() and returning (loss, metrics with "tokens"); return posttrain.training.trainer.finish(...).
    """
    raise UserError(SCAFFOLD_TODO)


plugin = Plugin(
    id="{method_id}",
    config=Config,
    run=run,
    summary="{TODO}: one line on the method.",
    # a 2-step run on the tiny model, used by `catalog smoke` and tests/test_smoke.py (keep it under ~3 s)
    smoke={{"max_steps": 2, "train_examples": 32, "eval_examples": 16, "batch_size": 8, "log_every": 1}},
)
'''


def test_source(method_id: str) -> str:
    module = module_name(method_id)
    fn = f"{module}_loss"
    return f'''\
"""Tests of {fn} ({method_id}): hand-worked numbers and the paper's limiting cases.

Written by `catalog new`: the tests below are marked to do. Write each one, then remove its mark.
"""

import pytest

torch = pytest.importorskip("torch")

from posttrain_plugins.{module} import {fn}  # noqa: E402

TO_DO = "{TODO}: write this test, then remove this mark"


@pytest.mark.skip(reason=TO_DO)
def test_{fn}_hand_worked_example():
    """A small input whose value you worked out by hand; put the arithmetic in this docstring."""


@pytest.mark.skip(reason=TO_DO)
def test_{fn}_limiting_cases():
    """The paper's limiting cases (e.g. the loss when the policy equals the reference)."""


@pytest.mark.skip(reason=TO_DO)
def test_{fn}_gradient_points_the_right_way():
    """One gradient step on the inputs moves them the way the paper says (e.g. raises the chosen log-prob)."""


@pytest.mark.xfail(raises=NotImplementedError, strict=True, reason="{TODO}: {fn} is not written yet")
def test_{fn}_is_written():
    """Fails (XPASS or another error) once {fn} is written: then delete this test."""
    {fn}()
'''


def add_entry_point(pyproject: str, plugin_id: str, target: str) -> str:
    """pyproject.toml text with ``plugin_id = "target"`` appended to the posttrain.plugins entry points."""
    lines = pyproject.splitlines(keepends=True)
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == ENTRY_POINTS_HEADER)
    except StopIteration:
        raise UserError(f"pyproject.toml has no {ENTRY_POINTS_HEADER} table") from None
    end = start + 1
    while end < len(lines) and not lines[end].lstrip().startswith("["):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():  # insert before the blank lines ending the table
        end -= 1
    key = plugin_id if re.match(r"^[A-Za-z0-9_-]+$", plugin_id) else f'"{plugin_id}"'
    return "".join([*lines[:end], f'{key} = "{target}"\n', *lines[end:]])


def entry_point_names(pyproject: str) -> set[str]:
    """Names declared in the posttrain.plugins entry-point table (read as text: Python 3.10 has no tomllib)."""
    names, inside = set(), False
    for line in pyproject.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            inside = stripped == ENTRY_POINTS_HEADER
        elif inside and "=" in stripped and not stripped.startswith("#"):
            names.add(stripped.split("=", 1)[0].strip().strip('"'))
    return names


# --- catalog new -------------------------------------------------------------------------------


@dataclass
class Scaffold:
    written: list[Path]
    edited: list[Path]
    paper_id: str
    paper: PaperMeta | None  # None when an existing record was cited
    notes: list[str]


def default_name(method_id: str) -> str:
    return " ".join(w.capitalize() for w in method_id.split("-"))


def resolve_paper(cat, paper: str, offline: bool) -> tuple[str, PaperMeta | None, list[str]]:
    """(paper id, metadata of a paper to write or None when a record exists, notes) for ``--paper``."""
    from posttrain.catalog import awesome
    from posttrain.catalog.load import arxiv_key

    if paper in cat.papers:
        return paper, None, []
    if not re.match(ARXIV_PATTERN, paper):
        raise UserError(
            f"--paper: '{paper}' is neither an arXiv id (e.g. 2305.18290) nor a paper id in catalog/papers/"
        )
    known = {arxiv_key(r.arxiv): pid for pid, r in cat.papers.items() if r.arxiv}
    if arxiv_key(paper) in known:
        pid = known[arxiv_key(paper)]
        return pid, None, [f"arXiv {paper} is already catalog/papers/{pid}.yaml; the entry cites it"]
    meta = fetch_arxiv(arxiv_key(paper), offline=offline)
    title_for_id = meta.title or f"arxiv {meta.arxiv.replace('/', ' ')}"
    return awesome.slug(title_for_id, meta.date, set(cat.papers)), meta, []


def catalogued_entry(cat, method_id: str, family: str, entry_only: bool) -> Any:
    """The existing entry ``method_id`` when it is catalogued only (no plugin), so that ``catalog new``
    writes just its plugin and test; None for a new id. Any other existing id is an error."""
    found = cat.resolve(method_id)
    if found is None:
        return None
    where = f"catalog/methods/{found.id}.yaml"
    if found.id != method_id or found.plugin is not None or entry_only:
        raise UserError(f"ID '{method_id}': already in the catalog ({where})")
    if found.family != family:
        raise UserError(
            f"--family {family}: the catalogued entry '{method_id}' is in family '{found.family}' ({where})"
        )
    return found


def scaffold(
    repo: Path,
    method_id: str,
    family: str,
    paper: str,
    name: str | None = None,
    entry_only: bool = False,
    offline: bool = False,
) -> Scaffold:
    """Write the files of a new method into the checkout ``repo``; nothing is written if a check fails."""
    from posttrain.catalog import awesome
    from posttrain.catalog.load import load_catalog
    from posttrain.registry import suggest

    if not re.match(ID_PATTERN, method_id):
        raise UserError(f"ID '{method_id}': expected lower case letters, digits and dashes (e.g. my-method)")
    cat = load_catalog(repo / "catalog")
    families = cat.taxonomy.families() if cat.taxonomy else {}
    if family not in families:
        raise UserError(f"--family: unknown family '{family}'{suggest(family, list(families))} (see `catalog list`)")
    catalogued = catalogued_entry(cat, method_id, family, entry_only)
    entry_path = repo / "catalog" / "methods" / f"{method_id}.yaml"
    module = module_name(method_id)
    plugin_path = repo / "plugins" / "posttrain_plugins" / f"{module}.py"
    test_path = repo / "tests" / f"test_{module}.py"
    pyproject_path = repo / "pyproject.toml"
    pyproject = pyproject_path.read_text(encoding="utf-8")
    targets = [entry_path] if entry_only else [entry_path, plugin_path, test_path]
    if catalogued is not None:
        targets.remove(entry_path)  # the entry is there already: write its plugin and test only
    for path in targets:
        if path.exists():
            raise UserError(f"{path} already exists; remove it or choose another ID")
    if not entry_only and method_id in entry_point_names(pyproject):
        raise UserError(f"pyproject.toml already registers a plugin named '{method_id}'")

    name = name or (catalogued.name if catalogued is not None else default_name(method_id))
    if re.search(r'["\\\n]', name):
        raise UserError(f"--name {clipped(name)!r}: use no double quotes, backslashes or line breaks")
    unsafe = text_problem(name, field_limit("name"))  # what catalog validate would refuse in the entry
    if unsafe:
        raise UserError(f"--name {clipped(name)!r}: {unsafe}")
    pid, meta, notes = resolve_paper(cat, paper, offline)
    paper_file = repo / "catalog" / "papers" / f"{pid}.yaml" if meta is not None else None
    if meta is not None and not meta.fetched:
        notes.append(
            f"title and authors of arXiv {meta.arxiv} were not fetched ({meta.why_not}); "
            f"fill them in catalog/papers/{pid}.yaml from https://arxiv.org/abs/{meta.arxiv}"
        )
    record = cat.papers.get(pid)
    cited = meta or PaperMeta(record.arxiv or "", record.title, list(record.authors), record.date)

    written, edited = [], []
    if paper_file is not None:
        paper_file.write_text(awesome.dump_record(paper_record(pid, meta)), encoding="utf-8")
        written.append(paper_file)
    if catalogued is None:
        entry_path.write_text(entry_yaml(method_id, name, family, pid), encoding="utf-8")
        written.append(entry_path)
    else:
        notes.append(
            f'catalog/methods/{method_id}.yaml is kept; set its plugin to "{method_id}" (and status to '
            f"experimental) once the plugin passes `catalog smoke {method_id}`"
        )
    if not entry_only:
        plugin_path.write_text(plugin_source(method_id, name, cited if cited.arxiv else None, pid), encoding="utf-8")
        test_path.write_text(test_source(method_id), encoding="utf-8")
        pyproject_path.write_text(
            add_entry_point(pyproject, method_id, f"posttrain_plugins.{module}:plugin"), encoding="utf-8"
        )
        written += [plugin_path, test_path]
        edited.append(pyproject_path)
    return Scaffold(written, edited, pid, meta, notes)


def copy_plugin(name: str, dest: Path, force: bool = False) -> tuple[str, Path]:
    """Copy the source file of a registered plugin (by plugin name, method id or alias) to ``dest``."""
    from posttrain.cli.configinfo import module_file
    from posttrain.registry import discover, suggest

    if dest.suffix != ".py":
        raise UserError(f"DEST {dest}: expected a Python file name ending in .py (e.g. ./my_{module_name(name)}.py)")
    if dest.exists() and not force:
        raise UserError(f"DEST {dest} already exists (pass --force to overwrite it)")
    if not dest.parent.is_dir():
        raise UserError(f"DEST {dest}: folder {dest.parent} does not exist")
    specs = discover()
    plugin_name = name
    if name not in specs:
        from posttrain.catalog.load import load_catalog

        entry = load_catalog().resolve(name)
        if entry is None:
            raise UserError(f"no plugin or method named '{name}'{suggest(name, list(specs))} (see `catalog plugins`)")
        if entry.plugin is None:
            raise UserError(f"'{entry.id}' is catalogued but has no plugin to copy (see `catalog list --runnable`)")
        plugin_name = entry.plugin
        if plugin_name not in specs:
            raise UserError(f"plugin '{plugin_name}' of '{entry.id}' is not installed (see `catalog plugins`)")
    source = module_file(specs[plugin_name].target.partition(":")[0])
    if source is None or not source.is_file():
        raise UserError(f"the source of plugin '{plugin_name}' ({specs[plugin_name].target}) was not found")
    dest.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    return plugin_name, source
