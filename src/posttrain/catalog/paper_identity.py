"""Checks that each paper record names one paper, once, with tidy metadata (issue #21 item 1).

* One paper under two identities: the same arXiv id, DOI, ACL Anthology id or OpenReview id (from the
  record's fields or its URL), or a near-identical title.
* A title ending in punctuation that is not part of the title (the awesome-list's trailing dots).
* A date that disagrees with the month a new-style arXiv id (YYMM.NNNNN) encodes: records are dated by
  their first arXiv version, so a venue date belongs in ``venue``.

Each check is a function of its own returning ``(paper id, field, message)`` tuples; ``catalog.validate``
turns them into problems with file and line. No torch import here.
"""

from __future__ import annotations

import calendar
import difflib
import re
from collections.abc import Iterator

from posttrain.catalog.schema import PaperRecord

# difflib ratio of two normalised titles at or above which they name the same paper
NEAR_TITLE_RATIO = 0.95
# arXiv assigns a paper submitted after a month's last cut-off the next month's id; a full date this
# many days before the id's month is still that paper's v1 date
ARXIV_MONTH_GRACE_DAYS = 3
TRAILING_PUNCTUATION = ".,;:"

_ARXIV_URL = re.compile(r"arxiv\.org/(?:abs|pdf)/(\d{4}\.\d{4,5})", re.IGNORECASE)
_DOI_URL = re.compile(r"doi\.org/(10\.\d{4,9}/[^\s?#]+)", re.IGNORECASE)
_ACL_URL = re.compile(r"aclanthology\.org/([A-Za-z0-9.-]+?)(?:\.pdf)?/?$", re.IGNORECASE)
_OPENREVIEW_URL = re.compile(r"openreview\.net/(?:forum|pdf)\?(?:[^#]*&)?id=([A-Za-z0-9_-]+)", re.IGNORECASE)
_NEW_STYLE_ARXIV = re.compile(r"^(\d{2})(\d{2})\.\d{4,5}")

Finding = tuple[str, str, str]  # (paper id, field, message)


def normalise_title(title: str) -> str:
    """Lowercase letters and digits only: the key for spotting the same paper listed twice."""
    return re.sub(r"[^a-z0-9]+", "", title.lower())


def arxiv_key(arxiv: str) -> str:
    """An arXiv id without its version suffix."""
    return re.sub(r"v\d+$", "", arxiv)


def identifiers(record: PaperRecord) -> list[tuple[str, str, str]]:
    """The record's external ids as (kind, id, field it was read from)."""
    found: list[tuple[str, str, str]] = []
    if record.arxiv:
        found.append(("arXiv", arxiv_key(record.arxiv), "arxiv"))
    if record.doi:
        found.append(("DOI", record.doi.lower(), "doi"))
    url = record.url or ""
    for kind, pattern in (
        ("arXiv", _ARXIV_URL),
        ("DOI", _DOI_URL),
        ("ACL Anthology", _ACL_URL),
        ("OpenReview", _OPENREVIEW_URL),
    ):
        match = pattern.search(url)
        if match:
            value = match.group(1).lower() if kind == "DOI" else match.group(1)
            if (kind, value) not in {(k, v) for k, v, _ in found}:
                found.append((kind, value, "url"))
    return found


def same_identifier(papers: dict[str, PaperRecord]) -> list[Finding]:
    """Records sharing an arXiv id, DOI, ACL Anthology id or OpenReview id; the later one is reported."""
    owner: dict[tuple[str, str], str] = {}
    findings: list[Finding] = []
    for pid, record in papers.items():
        for kind, value, field in identifiers(record):
            other = owner.setdefault((kind, value), pid)
            if other != pid:
                findings.append((pid, field, f"duplicate paper: {kind} {value} is already '{other}'"))
                break
    return findings


def _different_arxiv_ids(a: PaperRecord, b: PaperRecord) -> bool:
    # two distinct papers may share a title (e.g. two surveys); distinct arXiv ids tell them apart
    return bool(a.arxiv and b.arxiv and arxiv_key(a.arxiv) != arxiv_key(b.arxiv))


def _title_pairs(papers: dict[str, PaperRecord]) -> Iterator[tuple[str, str, float]]:
    """(later id, earlier id, similarity): the first earlier record each record nearly shares a title with."""
    keys = [(pid, normalise_title(rec.title)) for pid, rec in papers.items()]
    for i, (pid, title) in enumerate(keys):
        for other, other_title in keys[:i]:
            if _different_arxiv_ids(papers[pid], papers[other]):
                continue
            if 2 * min(len(title), len(other_title)) < NEAR_TITLE_RATIO * (len(title) + len(other_title)):
                continue  # the lengths alone rule the ratio out
            matcher = difflib.SequenceMatcher(None, title, other_title, autojunk=False)
            if matcher.real_quick_ratio() < NEAR_TITLE_RATIO or matcher.quick_ratio() < NEAR_TITLE_RATIO:
                continue
            ratio = matcher.ratio()
            if ratio >= NEAR_TITLE_RATIO:
                yield pid, other, ratio
                break


def same_title(papers: dict[str, PaperRecord], skip: frozenset[str] | set[str] = frozenset()) -> list[Finding]:
    """Records whose titles are the same or nearly so (difflib ratio >= 0.95 after normalising)."""
    findings: list[Finding] = []
    for pid, other, ratio in _title_pairs(papers):
        if pid in skip:
            continue
        if ratio == 1.0:
            findings.append((pid, "title", f"duplicate paper: same title as '{other}'"))
        else:
            findings.append((pid, "title", f"duplicate paper: title nearly identical to '{other}' ({ratio:.2f})"))
    return findings


def trailing_punctuation(papers: dict[str, PaperRecord]) -> list[Finding]:
    """Titles ending in '.', ',', ';' or ':' (a question or exclamation mark can be part of a title)."""
    return [
        (pid, "title", f"title ends in '{rec.title[-1]}': drop the trailing punctuation")
        for pid, rec in papers.items()
        if rec.title and rec.title[-1] in TRAILING_PUNCTUATION
    ]


def arxiv_month(arxiv: str) -> tuple[int, int] | None:
    """(year, month) of a new-style arXiv id's first version; None for old-style ids."""
    match = _NEW_STYLE_ARXIV.match(arxiv)
    return (2000 + int(match.group(1)), int(match.group(2))) if match else None


def _just_before(date: str, year: int, month: int) -> bool:
    """A full date in the last days of the month before (year, month): submitted after the cut-off."""
    parts = [int(p) for p in date.split("-")]
    if len(parts) != 3:
        return False
    prev_year, prev_month = (year, month - 1) if month > 1 else (year - 1, 12)
    last_day = calendar.monthrange(prev_year, prev_month)[1]
    return (parts[0], parts[1]) == (prev_year, prev_month) and parts[2] > last_day - ARXIV_MONTH_GRACE_DAYS


def _date_versus_arxiv(date: str, year: int, month: int) -> int:
    """-1 if the date is earlier than the arXiv month, 1 if later, 0 if it agrees (at its precision)."""
    parts = [int(p) for p in date.split("-")]
    if len(parts) == 1:
        # a bare year: the id's year, or the year before for a January id (see _just_before)
        allowed = {year, year - 1} if month == 1 else {year}
        return 0 if parts[0] in allowed else (-1 if parts[0] < year else 1)
    if (parts[0], parts[1]) == (year, month) or _just_before(date, year, month):
        return 0
    return -1 if (parts[0], parts[1]) < (year, month) else 1


def date_against_arxiv(papers: dict[str, PaperRecord]) -> list[Finding]:
    """Dates earlier or later than the month the arXiv id encodes (records are dated by arXiv v1)."""
    findings: list[Finding] = []
    for pid, rec in papers.items():
        encoded = arxiv_month(rec.arxiv) if rec.arxiv and rec.date else None
        if encoded is None or rec.date is None:
            continue
        order = _date_versus_arxiv(rec.date, *encoded)
        v1 = f"{encoded[0]}-{encoded[1]:02d}"
        if order < 0:
            findings.append((pid, "date", f"'{rec.date}' is earlier than arXiv {rec.arxiv}'s first version ({v1})"))
        elif order > 0:
            findings.append(
                (
                    pid,
                    "date",
                    f"'{rec.date}' is later than arXiv {rec.arxiv}'s first version ({v1}): date a paper by "
                    "its arXiv v1 and put a later venue in 'venue'",
                )
            )
    return findings


def paper_findings(papers: dict[str, PaperRecord]) -> list[Finding]:
    """Every identity and metadata finding over the paper records."""
    by_id = same_identifier(papers)
    flagged = {pid for pid, _, _ in by_id}
    return by_id + same_title(papers, skip=flagged) + trailing_punctuation(papers) + date_against_arxiv(papers)
