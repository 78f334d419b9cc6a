"""Catalog text made safe for the site: it comes from pull requests, so nothing in it may run.

``catalog validate`` already refuses HTML and script links (``posttrain.catalog.textsafety``); the site
does not rely on that, and escapes or sanitises every piece of catalog text it shows:

- ``nav_title``, ``front_matter_title``: page and navigation titles, which the theme writes into
  every page as they are;
- ``literal``, ``literal_value``: a name or value shown as inline code (a plugin name, a tag, a paper
  default), even with backticks or ``|`` in it;
- ``link``: a markdown link whose target is http(s) or relative, or just the text otherwise;
- ``objective_html``: the LaTeX objective as display math, escaped, so ``$$`` cannot end it early;
- ``description_html``: an entry's markdown description rendered with raw HTML off and the result
  cut down to an allow-list of tags, attributes and link schemes;
- ``executable_markup``: a last check of each page's HTML (hooks.py warns, so --strict fails) for
  anything that would run script: a way around the escaping above that a later change opens.
"""

from __future__ import annotations

import json
import posixpath
import re
import xml.etree.ElementTree as etree
from collections.abc import Callable
from html import escape
from html.parser import HTMLParser

import markdown
from markdown.treeprocessors import Treeprocessor
from markdown.util import AMP_SUBSTITUTE

from posttrain.catalog.textsafety import safe_url

# What a description may turn into: the tags markdown makes for text, lists, tables, code and math.
ALLOWED_TAGS = {
    "p", "br", "hr", "em", "strong", "code", "pre", "span", "div", "a", "ul", "ol", "li", "blockquote",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "sup", "sub", "del",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "span": {"class"}, "div": {"class"}, "code": {"class"}}
_PLAIN = " -.,:/=+@()'"  # characters neither HTML nor markdown gives a meaning inside inline code
_ALIGN = re.compile(r"^text-align:\s*(left|right|center);?$")  # the tables extension's cell alignment


def nav_title(text: str) -> str:
    """A page or navigation title, escaped: the theme inserts titles as they are.

    The theme's <title> element unescapes the title once more (jinja's striptags), so each "<" also
    gets an invisible word joiner after it: "</title>" can then never close that element early."""
    return escape(" ".join(text.split())).replace("&lt;", "&lt;\u2060")


def front_matter_title(text: str) -> str:
    """A page's YAML front matter that sets its title (otherwise the title is the first heading's text)."""
    return f"---\ntitle: {json.dumps(nav_title(text))}\n---\n"


def literal(text: str) -> str:
    """``text`` as inline code, written as raw HTML with every character that HTML or markdown would read
    (< & ` * _ | $ { ...) as a numeric entity: nothing in it can end the code span or start markup."""
    return "<code>" + "".join(c if c.isalnum() or c in _PLAIN else f"&#{ord(c)};" for c in str(text)) + "</code>"


def literal_value(value: object) -> str:
    """A YAML value from an entry (a paper default) as inline code: strings quoted, the rest as JSON."""
    try:
        text = repr(value) if isinstance(value, str) else json.dumps(value)
    except (TypeError, ValueError):
        text = str(value)
    return literal(text)


def link(text_md: str, url: str | None) -> str:
    """A markdown link to ``url`` if it is http(s) or relative, else ``text_md`` alone (already escaped)."""
    target = safe_url(url) if url else None
    return f"[{text_md}]({target})" if target else text_md


def objective_html(tex: str) -> str:
    """Display math as pymdownx.arithmatex writes it (generic mode), with the LaTeX escaped."""
    return f'<div class="arithmatex">\\[\n{escape(tex.strip(), quote=False)}\n\\]</div>'


class _AllowList(Treeprocessor):
    """Drops every tag, attribute and link the allow-lists do not name (children and text are kept)."""

    def __init__(self, md: markdown.Markdown, resolve: Callable[[str], str | None]) -> None:
        super().__init__(md)
        self.resolve = resolve

    def run(self, root: etree.Element) -> None:
        for parent in list(root.iter()):
            for child in list(parent):
                self._clean(child)

    def _clean(self, el: etree.Element) -> None:
        if el.tag not in ALLOWED_TAGS:
            el.text = el.get("alt", el.text)  # an image becomes its alt text: nothing is loaded
            el.attrib.clear()
            el.tag = "span"
        allowed = ALLOWED_ATTRIBUTES.get(el.tag, set())
        for name in list(el.attrib):
            value = el.attrib[name]
            keep = name in allowed or (name == "style" and el.tag in ("th", "td") and _ALIGN.match(value))
            if not keep:
                del el.attrib[name]
        if el.tag == "a":
            href = self.resolve(el.attrib.get("href", "").replace(AMP_SUBSTITUTE, "&"))
            if href is None:
                el.tag, el.attrib = "span", {}
            else:
                el.set("href", href)


def description_html(text: str, resolve: Callable[[str], str | None]) -> str:
    """A description (markdown with math) as sanitised HTML.

    ``resolve(target)`` turns a link target into the href to write, or None to drop the link
    (``page_link_resolver`` makes one for a generated page)."""
    md = markdown.Markdown(
        extensions=["tables", "pymdownx.arithmatex", "pymdownx.superfences"],
        extension_configs={"pymdownx.arithmatex": {"generic": True}},
    )
    md.preprocessors.deregister("html_block")  # raw HTML is shown as text, never passed through
    md.inlinePatterns.deregister("html")
    md.treeprocessors.register(_AllowList(md, resolve), "allow_list", 1)
    return f'<div class="entry-description">\n{md.convert(text)}\n</div>'


def page_link_resolver(page_src: str, url_of: Callable[[str], str | None]) -> Callable[[str], str | None]:
    """Link targets of text on ``page_src``: http(s) kept, other schemes dropped, ``x.md`` made a page URL.

    ``url_of(src)`` gives the relative URL of a site page from ``page_src``, or None if no such page exists."""

    def resolve(target: str) -> str | None:
        target = safe_url(target) or ""
        if not target or re.match(r"^[a-z][a-z0-9+.-]*:|^//", target, re.IGNORECASE):
            return target or None
        path, _, anchor = target.partition("#")
        if not path.endswith(".md"):
            return target
        dest = url_of(posixpath.normpath(posixpath.join(posixpath.dirname(page_src), path)))
        return None if dest is None else dest + (f"#{anchor}" if anchor else "")

    return resolve


_URL_ATTRIBUTES = {"href", "src", "action", "formaction", "xlink:href", "srcdoc", "data"}
_SCRIPT_SCHEMES = ("javascript:", "vbscript:", "data:text/html", "data:application", "data:image/svg")


class _ExecutableFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "iframe", "object", "embed", "base", "form", "meta"):
            self.found.append(f"a <{tag}> element")
        for name, value in attrs:
            url = re.sub(r"[\x00-\x20]", "", value or "").lower()
            if name.startswith("on"):
                self.found.append(f"an event handler <{tag} {name}=...>")
            elif name in _URL_ATTRIBUTES and url.startswith(_SCRIPT_SCHEMES):
                self.found.append(f"a script URL <{tag} {name}={url[:30]}...>")


def executable_markup(page_html: str) -> list[str]:
    """What in a page's content would run script (elements, event handlers, script URLs), or []."""
    finder = _ExecutableFinder()
    finder.feed(page_html)
    finder.close()
    return finder.found
