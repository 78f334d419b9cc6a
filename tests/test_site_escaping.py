"""The site escapes catalog text: script planted in any field of an entry never reaches a page as code.

The payloads (tests/site_fixtures/sitebuild.py: PAYLOADS) are refused by `catalog validate`; here the
validator's text check is turned off so that the built site itself is what is tested.
tests/test_site_browser.py loads the same pages in Chromium and checks that no alert() runs.
"""

from __future__ import annotations

import html
import importlib.util
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytest.importorskip("material", reason="the site needs the docs extra: pip install -e '.[docs]'")

_spec = importlib.util.spec_from_file_location("sitebuild", Path(__file__).parent / "site_fixtures" / "sitebuild.py")
assert _spec and _spec.loader
sb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sb)

_untrusted_spec = importlib.util.spec_from_file_location("site_untrusted", sb.SITE / "untrusted.py")
assert _untrusted_spec and _untrusted_spec.loader
untrusted = importlib.util.module_from_spec(_untrusted_spec)
_untrusted_spec.loader.exec_module(untrusted)

URL_ATTRIBUTES = {"href", "src", "action", "formaction", "xlink:href", "srcdoc", "data"}


class ExecutableFinder(HTMLParser):
    """Every place in a page where a browser would run script: script elements that call alert(),
    event-handler attributes, and javascript:/data:/vbscript: URLs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            value = value or ""
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}={value!r}>")
            cleaned = re.sub(r"[\x00-\x20]", "", value).lower()
            if name in URL_ATTRIBUTES and cleaned.startswith(("javascript:", "vbscript:", "data:text")):
                self.found.append(f"<{tag} {name}={value!r}>")
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and "alert(" in data:
            self.found.append(f"<script>{data[:80]}")


def executable_payloads(page: str) -> list[str]:
    finder = ExecutableFinder()
    finder.feed(page)
    return finder.found


@pytest.fixture(scope="module")
def payload_site(tmp_path_factory) -> Path:
    from posttrain.catalog import textsafety

    root = tmp_path_factory.mktemp("payload-site")
    catalog = sb.payload_catalog(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(textsafety, "text_problem", lambda *args, **kwargs: None)  # bypass the validator
        # --strict: the site builds without a warning, so nothing but escaping stands between the payloads and a reader
        sb.build_site(root / "build", catalog=catalog, plugins={"demo": sb.demo_spec("demo")})
    return root / "build"


def test_no_payload_is_executable_on_any_page(payload_site: Path) -> None:
    pages = sorted(payload_site.rglob("*.html"))
    assert len(pages) > 20
    found = {str(p.relative_to(payload_site)): executable_payloads(p.read_text(encoding="utf-8")) for p in pages}
    assert {page: hits for page, hits in found.items() if hits} == {}


def test_search_index_holds_no_executable_payload(payload_site: Path) -> None:
    """The theme's search shows each result's title and text as HTML."""
    import json

    docs = json.loads((payload_site / "search" / "search_index.json").read_text(encoding="utf-8"))["docs"]
    assert any("alert(" in d["text"] for d in docs)
    hits = {d["location"]: executable_payloads(d["title"] + " " + d["text"]) for d in docs}
    assert {where: found for where, found in hits.items() if found} == {}


def test_payloads_are_shown_as_text(payload_site: Path) -> None:
    page = (payload_site / "methods" / "demo-catalogued.html").read_text(encoding="utf-8")
    text = html.unescape(page)
    for marker in ("alert('name')", "alert('description')", "alert('img')", "alert('objective')", "alert('tag')"):
        assert marker in text, marker
    # the objective stays display math, with its LaTeX escaped
    assert '<div class="arithmatex">\\[\nx\n$$\n&lt;script&gt;' in page
    # the description's safe link is kept and points at the page; the script links are plain text
    assert '<a href="demo-runnable.html">page link</a>' in page
    assert "<span>a markdown link</span>" in page
    # the paper link's URL is percent-encoded, so it cannot end the link early
    assert 'href="https://example.org/%29%3Cscript%3E' in page


def test_titles_are_escaped_in_the_navigation_and_the_title_element(payload_site: Path) -> None:
    page = (payload_site / "families" / "search" / "index.html").read_text(encoding="utf-8")
    assert "<script>alert(" not in page
    assert "&lt;\u2060/title&gt;&lt;\u2060script&gt;alert(&#x27;name&#x27;)" in page  # the nav entry
    title = re.search(r"<title>(.*?)</title>", (payload_site / "methods" / "demo-catalogued.html").read_text())
    assert title and "alert" in title.group(1) and "<" not in title.group(1)


def test_description_allow_list() -> None:
    def resolve(target: str) -> str | None:
        return None if target.startswith("javascript") else target

    out = untrusted.description_html(
        "| a | b |\n|:--|--:|\n| 1 | 2 |\n\n![alt text](https://example.org/x.png) <b>bold</b> "
        "[ok](https://example.org/a b) [bad](javascript:alert(1)) `code<x>` $x<y$",
        untrusted.page_link_resolver("methods/x.md", lambda src: None),
    )
    assert '<th style="text-align: left;">a</th>' in out  # table alignment survives
    assert "<span>alt text</span>" in out and "<img" not in out  # images become their alt text
    assert "&lt;b&gt;bold&lt;/b&gt;" in out  # raw HTML is text
    assert "<span>bad</span>" in out and "javascript" not in out
    assert "<code>code&lt;x&gt;</code>" in out
    assert '<span class="arithmatex">\\(x&lt;y\\)</span>' in out
    assert resolve("https://x") == "https://x"


def test_page_links_resolve_to_pages_of_the_site() -> None:
    known = {"methods/lora.md": "lora.html", "papers.md": "../papers.html"}
    resolve = untrusted.page_link_resolver("methods/sft.md", known.get)
    assert resolve("lora.md") == "lora.html"
    assert resolve("lora.md#objective") == "lora.html#objective"
    assert resolve("../papers.md") == "../papers.html"
    assert resolve("missing.md") is None
    assert resolve("https://example.org/a b") == "https://example.org/a%20b"
    assert resolve("#objective") == "#objective"
    for bad in (
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        " javascript:alert(1)",
        "java\tscript:x",
        "data:text/html,x",
    ):
        assert resolve(bad) is None, bad


def test_literal_and_link_helpers() -> None:
    assert untrusted.literal("a`<b>|_*") == "<code>a&#96;&#60;b&#62;&#124;&#95;&#42;</code>"
    assert untrusted.link("text", "javascript:alert(1)") == "text"
    assert untrusted.link("text", "https://example.org/(x)") == "[text](https://example.org/%28x%29)"
    assert untrusted.nav_title("</title>") == "&lt;\u2060/title&gt;"


def test_a_page_that_would_run_script_is_a_build_warning(caplog) -> None:
    """The last check in on_page_content: with --strict, a way around the escaping fails the build."""
    from types import SimpleNamespace

    hooks = sb.load_hooks()
    page = SimpleNamespace(file=SimpleNamespace(src_uri="methods/x.md"))
    content = '<p onclick="alert(1)">x</p><a href=" JavaScript:alert(2)">y</a><script>alert(3)</script>'
    with caplog.at_level("WARNING", logger="mkdocs.hooks.posttrain"):
        assert hooks.on_page_content(content, page, {"use_directory_urls": False}, None) == content
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3 and all(m.startswith("methods/x.md: the page would run script: ") for m in messages)
    assert untrusted.executable_markup('<img alt="plot" src="data:image/png;base64,AAAA"><a href="#x">x</a>') == []
