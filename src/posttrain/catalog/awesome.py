"""Import the papers of the Awesome-LLM-Post-training list into ``catalog/papers/``.

The list (GitHub mbzuai-oryx/Awesome-LLM-Post-training) is a README with four kinds of entries:

* paper bullets ``* Title [[Paper]](url) ![](https://img.shields.io/badge/<Venue>-<Date>-<colour>)``,
  sometimes followed by ``[[Code]](url)``;
* older bullets ``- **"Title"** - Org (Year) [[Paper](url)]`` and library links ``- 🔹 [Name (GitHub)](url)``;
* the survey table ``| Title | Publication Date | Link |``;
* the repository table ``| # | Repository & Link | Description |``.

:func:`parse` turns the markdown into :class:`ListedPaper` items; :func:`merge` folds them into the
records on disk. Merging only adds: a new record per unseen paper, a new section on a known one, and
fields a record lacks. Hand-made fields (``methods``, ``authors``, ``note``) and values someone
corrected by hand are never overwritten, so running the import twice changes nothing the second time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from posttrain.errors import UserError

DEFAULT_SOURCE = Path("../shared/data/awesome-llm-post-training/README.md")
LIST_URL = "https://github.com/mbzuai-oryx/Awesome-LLM-Post-training"
# Headings whose entries are not papers or repositories (courses, generic web pages).
SKIPPED_SECTIONS = {"Contents", "Tutorials & Courses", "Other Resources", "Contributing", "Citation"}
FIELD_ORDER = (
    "id",
    "title",
    "kind",
    "authors",
    "date",
    "arxiv",
    "url",
    "doi",
    "venue",
    "sections",
    "methods",
    "note",
)

_ARXIV_URL = re.compile(r"^https?://(?:www\.)?arxiv\.org/(?:abs|pdf)/(?P<id>[^\s?#]+?)(?:\.pdf)?/?$")
_ARXIV_ID = re.compile(r"^\d{4}\.\d{4,5}$")
_BULLET = re.compile(
    r"^\s*[*-]\s+(?:[*-]\s+)?(?P<title>.+?)\s*\[\[Paper\]\]\((?P<url>[^)\s]+)\)"
    r"(?:\s*!\[[^\]]*\]\((?P<badge>[^)\s]+)\))?"
)
_OLD_BULLET = re.compile(
    r'^\s*-\s+\*\*"(?P<title>[^"]+)"\*\*\s*-\s*[^(\[]*\((?P<year>\d{4})\)\s*\[\[Paper\]\((?P<url>[^)\s]+)\)\]'
)
_LIBRARY = re.compile(r"^\s*-\s+\S*\s*\[(?P<name>[^\]]+?)(?:\s*\(GitHub\))?\]\((?P<url>https?://github\.com/[^)\s]+)\)")
_TABLE_LINK = re.compile(r"\[(?:\*\*)?(?P<text>[^\]]+?)(?:\*\*)?\]\((?P<url>[^)\s]+)\)")
_SUP = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


@dataclass
class ListedPaper:
    """One entry as the list gives it."""

    title: str
    section: str
    line: int
    kind: str = "paper"
    arxiv: str | None = None
    url: str | None = None
    date: str | None = None
    venue: str | None = None
    note: str | None = None


@dataclass
class MergeReport:
    parsed: int = 0
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    kept: list[str] = field(default_factory=list)  # "id: field" where a hand-made value differs from the list

    def summary(self) -> str:
        return (
            f"{self.parsed} list entries: {len(self.added)} new papers, {len(self.updated)} updated, "
            f"{self.unchanged} unchanged"
            + (f"; kept {len(self.kept)} existing values that differ from the list" if self.kept else "")
        )


# --- reading the list ---------------------------------------------------------------------------


def read_source(source: str | Path) -> str:
    """The markdown of a local file or an http(s) URL."""
    text = str(source)
    if text.startswith(("http://", "https://")):
        import requests

        try:
            response = requests.get(text, timeout=20)
            response.raise_for_status()
        except requests.ConnectionError:
            raise UserError(f"--from: cannot reach {text} (offline?); pass a local file instead") from None
        except requests.Timeout:
            raise UserError(f"--from: {text} did not answer within 20 s; pass a local file instead") from None
        except requests.HTTPError as exc:
            raise UserError(f"--from: {text} answered HTTP {exc.response.status_code}") from None
        return response.text
    path = Path(source)
    if not path.is_file():
        raise UserError(f"--from: {path} is not a file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"--from: {path} is not UTF-8 text") from None


def section_name(heading: str) -> str:
    """A heading without its emoji and markdown decoration: '## 🏆 Reward Learning' -> 'Reward Learning'."""
    text = heading.lstrip("#").strip()
    text = re.sub(r"^[^\w(]+", "", text)  # leading emoji, variation selectors, spaces
    return re.sub(r"\s*:[a-z_]+:\s*$", "", text).strip()


def clean_title(title: str) -> str:
    title = re.sub(r"<sup>(\d+)</sup>", lambda m: m.group(1).translate(_SUP), title)
    title = re.sub(r"<[^>]+>", "", title)
    return re.sub(r"\s+", " ", title.replace("**", "")).strip()


def split_link(url: str) -> tuple[str | None, str | None, str | None]:
    """(arxiv id, url, note) for a listed link; arXiv links become ids, versions dropped."""
    match = _ARXIV_URL.match(url)
    if not match:
        return None, url, None
    ident = re.sub(r"v\d+$", "", match.group("id"))
    if _ARXIV_ID.match(ident):
        return ident, None, None
    return (
        None,
        url,
        f"The list links {url}, which is not a well-formed arXiv id; the correct id is not verified.",
    )


def parse_badge(badge: str | None) -> tuple[str | None, str | None]:
    """(venue, date) from a shields.io badge such as arXiv-2024.12-red or NeurIPS-2024-blue."""
    if not badge:
        return None, None
    match = re.search(r"/badge/(?P<body>.+)-[a-z]+(?:\.svg)?$", badge)
    if not match:
        return None, None
    body = match.group("body")
    parts = body.rsplit("-", 1)
    if len(parts) != 2:
        return None, None
    venue, date = parts[0].replace("_", " ").replace("--", "-"), parts[1]
    if re.match(r"^\d{4}\.\d{2}$", date):
        date = date.replace(".", "-")
    elif not re.match(r"^\d{4}$", date):
        return venue, None
    if venue.lower() == "arxiv":
        return None, date
    return (venue if re.match(r"^\d{4}-", date) else f"{venue} {date}"), date


def parse_table_date(text: str) -> str | None:
    """'28 Feb 2025' or '16 July 2024' -> '2025-02-28'."""
    text = text.strip()
    for fmt in ("%d %b %Y", "%d %B %Y"):
        try:
            return datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            continue
    return None


def parse(markdown: str) -> list[ListedPaper]:
    """Every paper and repository entry of the list, in order, with the section it sits under."""
    out: list[ListedPaper] = []
    section = ""
    in_code = False
    for number, line in enumerate(markdown.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("```"):
            in_code = not in_code
            continue
        if in_code or not stripped:
            continue
        if re.match(r"^#{1,3}\s", stripped):
            section = section_name(stripped)
            continue
        if not section or section in SKIPPED_SECTIONS or stripped.startswith("<"):
            continue
        if stripped.startswith("|"):
            item = _table_row(stripped, section, number)
            if item:
                out.append(item)
            continue
        match = _BULLET.match(line)
        if match:
            arxiv, url, note = split_link(match.group("url"))
            venue, date = parse_badge(match.group("badge"))
            kind = "post" if venue and venue.lower().startswith("notion") else "paper"
            out.append(
                ListedPaper(clean_title(match.group("title")), section, number, kind, arxiv, url, date, venue, note)
            )
            continue
        match = _OLD_BULLET.match(line)
        if match:
            arxiv, url, note = split_link(match.group("url"))
            out.append(
                ListedPaper(
                    clean_title(match.group("title")),
                    section,
                    number,
                    "paper",
                    arxiv,
                    url,
                    match.group("year"),
                    None,
                    note,
                )
            )
            continue
        match = _LIBRARY.match(line)
        if match:
            out.append(
                ListedPaper(clean_title(match.group("name")), section, number, "repository", url=match.group("url"))
            )
    return out


def _table_row(row: str, section: str, number: int) -> ListedPaper | None:
    cells = [c.strip() for c in row.strip().strip("|").split("|")]
    if not cells or all(re.match(r"^:?-*:?$", c) for c in cells):
        return None
    if section == "Survey" and len(cells) >= 3:
        link = _TABLE_LINK.search(cells[2])
        date = parse_table_date(cells[1])
        if not link or not date:
            return None
        arxiv, url, note = split_link(link.group("url"))
        return ListedPaper(clean_title(cells[0]), section, number, "paper", arxiv, url, date, None, note)
    if len(cells) >= 3 and cells[0].isdigit():
        link = _TABLE_LINK.search(cells[1])
        if link and "github.com" in link.group("url"):
            return ListedPaper(clean_title(link.group("text")), section, number, "repository", url=link.group("url"))
    return None


# --- merging into catalog/papers/ ----------------------------------------------------------------


def normalise_title(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", title.lower())


def slug(title: str, date: str | None, taken: set[str]) -> str:
    """A readable, unique record id: the first words of the title plus the year."""
    words = re.sub(r"[^a-z0-9]+", " ", re.sub(r"['’]", "", title.lower())).split()
    year = (date or "")[:4]
    for n in range(min(4, len(words)) or 1, len(words) + 1):
        base = "-".join(words[:n])[:60].strip("-")
        candidate = f"{base}-{year}" if year else base
        if candidate not in taken:
            return candidate
    base = "-".join(words)[:60].strip("-") or "paper"
    i = 2
    while f"{base}-{year}-{i}" in taken:
        i += 1
    return f"{base}-{year}-{i}"


def load_records(papers_dir: Path) -> dict[str, dict[str, Any]]:
    """The raw records on disk by id; a file that does not parse stops the import."""
    records: dict[str, dict[str, Any]] = {}
    if not papers_dir.is_dir():
        return records
    for path in sorted(papers_dir.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark else 1
            raise UserError(f"{path}:{line}: invalid YAML; fix it before importing (see `catalog validate`)") from None
        if not isinstance(data, dict) or not data.get("title"):
            raise UserError(f"{path}:1: not a paper record (needs at least a title); fix it before importing")
        data.setdefault("id", path.stem)
        records[path.stem] = data
    return records


def dump_record(record: dict[str, Any]) -> str:
    ordered = {k: record[k] for k in FIELD_ORDER if record.get(k) not in (None, [], "")}
    ordered.update({k: v for k, v in record.items() if k not in FIELD_ORDER and v not in (None, [], "")})
    return yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True, width=100)


def merge(listed: list[ListedPaper], papers_dir: Path, dry_run: bool = False) -> MergeReport:
    """Fold the listed entries into the records under ``papers_dir``; write only files that change."""
    records = load_records(papers_dir)
    original = {pid: dump_record(rec) for pid, rec in records.items()}
    by_arxiv = {re.sub(r"v\d+$", "", str(r["arxiv"])): pid for pid, r in records.items() if r.get("arxiv")}
    by_title = {normalise_title(str(r["title"])): pid for pid, r in records.items()}
    by_url = {str(r["url"]).rstrip("/"): pid for pid, r in records.items() if r.get("url")}
    report = MergeReport(parsed=len(listed))
    touched: set[str] = set()
    for item in listed:
        pid = by_arxiv.get(item.arxiv) if item.arxiv else None
        if pid is None:
            # same title or same link, unless both carry different arXiv ids (two surveys share a title)
            for candidate in (
                by_title.get(normalise_title(item.title)),
                by_url.get((item.url or "").rstrip("/")),
            ):
                other = records[candidate].get("arxiv") if candidate else None
                if candidate and not (item.arxiv and other and re.sub(r"v\d+$", "", str(other)) != item.arxiv):
                    pid = candidate
                    break
        if pid is None:
            pid = slug(item.title, item.date, set(records))
            records[pid] = {"id": pid, "title": item.title}
        record = records[pid]
        for key in ("kind", "date", "arxiv", "url", "venue", "note"):
            value = getattr(item, key)
            if key == "kind" and value == "paper":
                continue
            if value is None:
                continue
            if record.get(key) in (None, ""):
                record[key] = value
            elif record[key] != value and key not in ("note", "url"):
                report.kept.append(f"{pid}: {key}")
        sections = record.setdefault("sections", [])
        if item.section not in sections:
            sections.append(item.section)
        if record.get("arxiv"):
            by_arxiv[re.sub(r"v\d+$", "", str(record["arxiv"]))] = pid
        by_title.setdefault(normalise_title(item.title), pid)
        if record.get("url"):
            by_url.setdefault(str(record["url"]).rstrip("/"), pid)
        touched.add(pid)
    for pid in sorted(touched):
        text = dump_record(records[pid])
        if pid not in original:
            report.added.append(pid)
        elif text != original[pid]:
            report.updated.append(pid)
        else:
            report.unchanged += 1
            continue
        if not dry_run:
            papers_dir.mkdir(parents=True, exist_ok=True)
            (papers_dir / f"{pid}.yaml").write_text(text, encoding="utf-8")
    report.kept = sorted(set(report.kept))
    return report


def default_source(catalog_root: Path) -> Path | None:
    """``../shared/data/awesome-llm-post-training/README.md`` next to the repository, if it is there."""
    for base in (catalog_root.resolve().parent, Path.cwd()):
        candidate = (base / DEFAULT_SOURCE).resolve()
        if candidate.is_file():
            return candidate
    return None
