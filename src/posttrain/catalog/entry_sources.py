"""Cross-checks of the sources a method entry's practitioner fields and objective cite (issue #21 item 2).

Every claim (``when_to_use``, ``avoid_when``, ``failure_modes``, ``data.amount``, ``compute``) names a
paper id from ``catalog/papers/`` or a committed report under ``reports/``; every result names a paper;
an objective's source is one of the entry's own papers. ``catalog.validate`` turns the findings into
problems with file and line. No torch import here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from posttrain.catalog.schema import Claim, MethodEntry

# (method id, location in the YAML as a pydantic-style path, message)
Finding = tuple[str, tuple[Any, ...], str]

CLAIM_LISTS = ("when_to_use", "avoid_when", "failure_modes")


def _claims(entry: MethodEntry) -> Iterator[tuple[tuple[Any, ...], Claim]]:
    for name in CLAIM_LISTS:
        for i, claim in enumerate(getattr(entry, name)):
            yield (name, i), claim
    if entry.data and entry.data.amount:
        yield ("data", "amount"), entry.data.amount
    if entry.compute:
        yield ("compute", "cost_vs_sft"), entry.compute.cost_vs_sft


def _source_problem(source: str, papers: set[str], repo_root: Path) -> str | None:
    """Why a source does not resolve, or None when it does."""
    if source.startswith("reports/"):
        if not (repo_root / "reports").is_dir():
            return None  # a catalog outside a checkout (the packaged copy) has no reports to check
        return None if (repo_root / source).is_file() else f"report '{source}' is not in the repository"
    return None if source in papers else f"unknown paper id '{source}' (cite a record in papers/)"


def claim_sources(mid: str, entry: MethodEntry, papers: set[str], repo_root: Path) -> list[Finding]:
    """Claims whose source is neither a paper record nor a committed report."""
    findings: list[Finding] = []
    for loc, claim in _claims(entry):
        problem = _source_problem(claim.source, papers, repo_root)
        if problem:
            findings.append((mid, (*loc, "source"), problem))
    if entry.compute:
        problem = _source_problem(entry.compute.source, papers, repo_root)
        if problem:
            findings.append((mid, ("compute", "source"), problem))
    return findings


def result_papers(mid: str, entry: MethodEntry, papers: set[str]) -> list[Finding]:
    """Results citing a paper that has no record."""
    return [
        (mid, ("results", i, "paper"), f"unknown paper id '{result.paper}' (cite a record in papers/)")
        for i, result in enumerate(entry.results)
        if result.paper not in papers
    ]


def objective_paper(mid: str, entry: MethodEntry, cited: list[str]) -> list[Finding]:
    """An objective source that is not one of the entry's own papers."""
    source = entry.objective_source
    if source is None or source.paper in cited:
        return []
    return [(mid, ("objective_source", "paper"), f"'{source.paper}' is not in this entry's papers")]


def entry_source_findings(
    mid: str, entry: MethodEntry, papers: set[str], cited: list[str], repo_root: Path
) -> list[Finding]:
    """Every source finding for one entry."""
    return (
        claim_sources(mid, entry, papers, repo_root)
        + result_papers(mid, entry, papers)
        + objective_paper(mid, entry, cited)
    )
