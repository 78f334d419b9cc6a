"""What catalog text may contain: no HTML, only http(s) or relative links, bounded sizes.

Catalog entries come from pull requests and end up in the published site, so the validator
(``posttrain.catalog.schema``) refuses markup that a browser would run, and the site (``site/hooks.py``)
escapes and re-checks everything anyway. Both use the functions here. No imports beyond the
standard library, so ``catalog list/show/validate`` stay light.
"""

from __future__ import annotations

import html
import re
from urllib.parse import quote

# Longest text each field may hold, in characters: well above what any current entry uses (the
# longest name is under two thirds of its limit, every other field under half), far below a page
# that would take long to load.
TEXT_LIMITS = {"name": 100, "aliases": 100, "description": 4000, "objective": 2000, "status_note": 3000}
DEFAULT_TEXT_LIMIT = 1000
# Items in a list or mapping field: the longest today has about a fifth of the default; a paper's
# author list can be long (large collaborations), so it gets more.
LIST_LIMITS = {"authors": 2000}
DEFAULT_LIST_LIMIT = 100

# A start or end tag as a browser reads it: "<" (or "</") and a letter-led name ending at a space, "/",
# ">" or the end of the text; "<!" and "<?" open comments and declarations. LaTeX such as y_{<t} or
# t_1<t_2 is not a tag, since the name is followed by "}" or "_".
_TAG = re.compile(r"<(?:/?[A-Za-z][A-Za-z0-9-]*(?=[\s/>]|$)|[!?])")
# Schemes that run code wherever they appear, even as plain text pasted into a link later.
_CODE_SCHEME = re.compile(r"(?:java|vb)script\s*:", re.IGNORECASE)
# Link targets in markdown: inline [text](target), reference definitions [id]: target, autolinks <target>.
_INLINE_LINK = re.compile(r"\]\(\s*<?([^)\s>]*)")
_REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S*?)>?(?:\s|$)", re.MULTILINE)
_AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.-]*:[^\s<>]*)>")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_INVISIBLE = re.compile(r"[\x00-\x20\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")
SAFE_SCHEMES = ("http", "https")
# Characters kept as they are when a URL is written into markdown or an HTML attribute; the rest
# (spaces, quotes, < > ( ) and the like) are percent-encoded so the URL cannot end early.
_URL_SAFE_CHARS = "/:?#[]@!$&*+,;=%~-._"


def html_tag(text: str) -> str | None:
    """The opening of the first HTML tag or comment in ``text`` (e.g. ``<script``), or None."""
    match = _TAG.search(text)
    return match.group(0) if match else None


def url_scheme(url: str) -> str | None:
    """The scheme a browser would see, after entities and invisible characters are dropped."""
    cleaned = _INVISIBLE.sub("", html.unescape(url))
    match = _SCHEME.match(cleaned)
    return match.group(1).lower() if match else None


def url_allowed(url: str) -> bool:
    """http, https and relative links (no scheme) are allowed; javascript:, data: and the rest are not."""
    scheme = url_scheme(url)
    return scheme is None or scheme in SAFE_SCHEMES


def safe_url(url: str) -> str | None:
    """``url`` ready for a markdown link or an HTML attribute, or None when it may not be linked."""
    if not url_allowed(url):
        return None
    return quote(html.unescape(url).strip(), safe=_URL_SAFE_CHARS)


def link_targets(markdown: str) -> list[str]:
    """Every link target written in markdown text (inline, reference-style and autolinks)."""
    return [
        m.group(1)
        for pattern in (_INLINE_LINK, _REFERENCE_LINK, _AUTOLINK)
        for m in pattern.finditer(markdown)
        if m.group(1)
    ]


def text_problem(text: str, limit: int = DEFAULT_TEXT_LIMIT) -> str | None:
    """Why ``text`` cannot be a catalog field (too long, HTML, a script or non-http link), or None."""
    if len(text) > limit:
        return f"{len(text)} characters, at most {limit} allowed"
    tag = html_tag(text)
    if tag:
        return f"contains the HTML tag {tag!r}; write plain text or markdown (HTML is not allowed)"
    if _CODE_SCHEME.search(_INVISIBLE.sub("", html.unescape(text))):
        return "contains a javascript: or vbscript: URL; only http(s) and relative links are allowed"
    for target in link_targets(text):
        if not url_allowed(target):
            return f"links to {target[:60]!r}; only http(s) and relative links are allowed"
    return None


def field_limit(name: str) -> int:
    """Most characters in one text of the field ``name``."""
    return TEXT_LIMITS.get(name, DEFAULT_TEXT_LIMIT)


def list_limit(name: str) -> int:
    """Most items in the list or mapping field ``name``."""
    return LIST_LIMITS.get(name, DEFAULT_LIST_LIMIT)
