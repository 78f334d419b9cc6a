"""The site as a person uses it: headless Chromium on the built site, served on 127.0.0.1.

Run with ``bash tools/site_browser_test.sh`` (installs Debian's chromium and chromium-driver when
missing) or ``python -m pytest -m browser -q tests/test_site_browser.py``. Skips when chromium,
chromedriver or selenium is missing. Screenshots go to ``site/build/screenshots/`` (or
``$SITE_SCREENSHOTS``).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.browser

_spec = importlib.util.spec_from_file_location("sitebuild", Path(__file__).parent / "site_fixtures" / "sitebuild.py")
assert _spec and _spec.loader
sb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sb)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
TARGET = "dpo"  # the method the walk-through follows (any runnable one would do)
SHOTS = Path(os.environ.get("SITE_SCREENSHOTS") or sb.REPO / "site" / "build" / "screenshots")


def _missing() -> str | None:
    if not Path(CHROMIUM).is_file():
        return "chromium is not installed (apt-get install chromium chromium-driver)"
    if not Path(CHROMEDRIVER).is_file():
        return "chromedriver is not installed (apt-get install chromium-driver)"
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -e '.[test-browser]')"
    if importlib.util.find_spec("material") is None:
        return "mkdocs-material is not installed (pip install -e '.[docs]')"
    return None


if _missing():
    pytest.skip(_missing(), allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def catalog():
    from posttrain.catalog.load import load_catalog

    return load_catalog()


@pytest.fixture(scope="module")
def built(tmp_path_factory, catalog) -> SimpleNamespace:
    """The real site, with the names of the target's config fields.

    Until the target method's plugin source exists, a fixture plugin stands in for it (in this
    temporary build only), so that the config table can still be checked."""
    from posttrain.cli.configinfo import config_fields
    from posttrain.registry import discover

    assert TARGET in catalog.methods, f"the walk-through needs the catalog entry '{TARGET}'"
    plugin = catalog.methods[TARGET].plugin
    specs = discover()
    fields = config_fields(specs[plugin].target) if plugin in specs else []
    plugins = None
    if not fields:
        plugins = {**specs, plugin: sb.demo_spec(plugin)}
        with pytest.MonkeyPatch.context() as mp:
            mp.syspath_prepend(str(sb.FIXTURES))
            fields = config_fields("site_demo_plugin:plugin")
    out = tmp_path_factory.mktemp("browser-site") / "build"
    sb.build_site(out, reports=sb.REPO / "reports", plugins=plugins)
    return SimpleNamespace(dir=out, config_names=[f.name for f in fields], stand_in=plugins is not None)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve(folder: Path):
    """A built site served on 127.0.0.1; yields its base URL."""
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def base_url(built: SimpleNamespace):
    with serve(built.dir) as url:
        yield url


@pytest.fixture(scope="module")
def payload_url(tmp_path_factory):
    """The fixture catalog with script planted in every text field (sitebuild.PAYLOADS), built with the
    validator's text check off, so that only the site's own escaping stands in the way."""
    from posttrain.catalog import textsafety

    root = tmp_path_factory.mktemp("payload-browser-site")
    catalog = sb.payload_catalog(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(textsafety, "text_problem", lambda *args, **kwargs: None)
        sb.build_site(root / "build", catalog=catalog, plugins={"demo": sb.demo_spec("demo")})
    with serve(root / "build") as url:
        yield SimpleNamespace(
            url=url, pages=sorted(p.relative_to(root / "build").as_posix() for p in (root / "build").rglob("*.html"))
        )


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def wait(driver, seconds: float = 20) -> WebDriverWait:
    return WebDriverWait(driver, seconds)


def shot(driver, name: str, full_page: bool = False) -> Path:
    path = SHOTS / f"{name}.png"
    if full_page:
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1400, min(int(height) + 100, 6000))
    driver.save_screenshot(str(path))
    if full_page:
        driver.set_window_size(1400, 1000)
    return path


def only_local_requests(driver, base_url: str) -> list[str]:
    names = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    return [n for n in names if not n.startswith(base_url) and not n.startswith("data:")]


def test_home_taxonomy_to_method_page(browser, base_url: str, built: SimpleNamespace, catalog) -> None:
    browser.get(base_url + "index.html")
    assert browser.find_element(By.CSS_SELECTOR, "article h1").text.strip() == "posttrain-catalog"
    article = browser.find_element(By.CSS_SELECTOR, "article").text
    assert "catalog run dpo" in article and "bash .ci/run" in article
    shot(browser, "01-home")

    # Follow the taxonomy link, then the method's box in the picture.
    browser.find_element(By.CSS_SELECTOR, 'article a[href="taxonomy.html"]').click()
    wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, "svg.taxonomy-svg")))
    assert browser.current_url.endswith("/taxonomy.html")
    boxes = browser.find_elements(By.CSS_SELECTOR, "svg.taxonomy-svg a[data-method]")
    assert sorted(b.get_attribute("data-method") for b in boxes) == sorted(catalog.methods)
    svg_width = browser.execute_script(
        "return document.querySelector('svg.taxonomy-svg').getBoundingClientRect().width"
    )
    assert svg_width > 600, "the taxonomy picture is not laid out at page width"
    shot(browser, "02-taxonomy")
    target = browser.find_element(By.CSS_SELECTOR, f'svg.taxonomy-svg a[data-method="{TARGET}"]')
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", target)
    target.click()
    wait(browser).until(ec.url_contains(f"/methods/{TARGET}.html"))

    # The objective is rendered math (KaTeX, from the bundled files), not LaTeX source.
    wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, "div.arithmatex .katex-display")))
    assert browser.find_elements(By.CSS_SELECTOR, ".katex-error") == []
    tex = browser.execute_script(
        "return document.querySelector('div.arithmatex annotation[encoding=\"application/x-tex\"]').textContent"
    )
    assert tex.split() == catalog.methods[TARGET].objective.split()
    assert browser.execute_script("return document.fonts.ready.then(() => document.fonts.check('16px KaTeX_Main'))")
    assert "\\frac" not in browser.find_element(By.CSS_SELECTOR, "div.arithmatex").text

    # The config table is the plugin's Config, field by field.
    table = browser.find_element(By.XPATH, "//h3[@id='configuration']/following::table[1]")
    headers = [th.text.strip().lower() for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    assert headers[:3] == ["option", "type", "default"] and "description" in headers
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    names = [r.find_element(By.CSS_SELECTOR, "td").text.strip() for r in rows]
    assert names and names == built.config_names
    headings = [h.text.replace("¶", "").strip() for h in browser.find_elements(By.CSS_SELECTOR, "article h2")]
    assert sb.anatomy_problem(headings, "runnable") is None
    browser.execute_script("window.scrollTo(0, document.getElementById('objective').offsetTop - 70)")
    time.sleep(0.5)  # let the header's title transition finish
    shot(browser, "03-method-objective")
    shot(browser, "04-method-full", full_page=True)
    assert only_local_requests(browser, base_url) == []


def test_search_box_finds_a_method(browser, base_url: str, catalog) -> None:
    browser.get(base_url + "index.html")
    name = catalog.methods[TARGET].name
    box = browser.find_element(By.CSS_SELECTOR, "input.md-search__input")
    box.click()
    box.send_keys(name)
    link = f'.md-search-result__item a[href*="/methods/{TARGET}.html"]'
    wait(browser, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, link)))
    shot(browser, "05-search")
    box.send_keys(Keys.ESCAPE)
    browser.get(base_url + "index.html")
    box = browser.find_element(By.CSS_SELECTOR, "input.md-search__input")
    box.click()
    box.send_keys(name)
    result = wait(browser, 30).until(ec.element_to_be_clickable((By.CSS_SELECTOR, link)))
    result.click()
    wait(browser).until(ec.url_contains(f"/methods/{TARGET}.html"))


def test_papers_index_filters(browser, base_url: str, catalog) -> None:
    browser.get(base_url + "papers.html")
    rows = browser.find_elements(By.CSS_SELECTOR, "#papers-table tbody tr")
    assert rows
    visible = "return [...document.querySelectorAll('#papers-table tbody tr')].filter(r => !r.hidden).length"
    assert browser.execute_script(visible) == len(rows)
    title = catalog.methods[TARGET].papers[0].title
    browser.find_element(By.ID, "papers-search").send_keys(title.split(":")[0])
    wait(browser).until(lambda d: d.execute_script(visible) < len(rows) or len(rows) == 1)
    assert 1 <= browser.execute_script(visible) <= len(rows)
    assert title in browser.find_element(By.ID, "papers-table").text
    year = str(catalog.methods[TARGET].papers[0].year)
    Select(browser.find_element(By.ID, "papers-year")).select_by_value(year)
    assert browser.execute_script(visible) >= 1
    assert "of" in browser.find_element(By.ID, "papers-count").text
    shot(browser, "06-papers")
    browser.find_element(By.ID, "papers-search").send_keys(" zzzz-no-such-paper")
    wait(browser).until(lambda d: d.execute_script(visible) == 0)
    assert browser.find_element(By.ID, "papers-empty").is_displayed()


# What every page is checked for, in the page itself: returns a list of problems (empty when fine).
PAGE_CHECKS = """
const problems = [];
const article = document.querySelector("article");
if (!article) return ["no article"];
const column = article.getBoundingClientRect();
// Rendered text: no markdown escapes (inline code included) and no backticks outside code.
const shown = article.cloneNode(true);
shown.querySelectorAll("pre, .arithmatex, .katex, script, style").forEach(e => e.remove());
const withCode = shown.textContent;
shown.querySelectorAll("code").forEach(e => e.remove());
const prose = shown.textContent;
for (const [raw, text] of [["\\\\[", withCode], ["\\\\|", withCode], ["`", prose]]) {
  const at = text.indexOf(raw);
  if (at >= 0) problems.push("raw " + raw + " in: " + text.slice(Math.max(0, at - 40), at + 40).trim());
}
// Every formula is rendered, and fits its column or scrolls inside it.
article.querySelectorAll(".arithmatex").forEach(m => {
  if (!m.querySelector(".katex")) problems.push("unrendered formula: " + m.textContent.slice(0, 60));
  const box = m.getBoundingClientRect();
  const scrolls = ["auto", "scroll"].includes(getComputedStyle(m).overflowX);
  if (box.right > column.right + 1) problems.push("formula wider than its column: " + m.textContent.slice(0, 40));
  if (m.scrollWidth > m.clientWidth + 1 && !scrolls) problems.push("formula clipped: " + m.textContent.slice(0, 40));
});
// The page itself never scrolls sideways (wide tables and formulas scroll inside their box).
if (document.documentElement.scrollWidth > window.innerWidth + 1)
  problems.push("page wider than the window: " + document.documentElement.scrollWidth);
// Every image has loaded and is shown at a readable size (at least 90% of the column, or its own size).
article.querySelectorAll("img").forEach(img => {
  if (!img.complete || img.naturalWidth === 0) { problems.push("image not loaded: " + img.src.slice(0, 80)); return; }
  const shown = img.getBoundingClientRect().width;
  if (shown + 1 < Math.min(img.naturalWidth, 0.9 * column.width)) problems.push("image too small: " + img.alt + " " + shown);
});
return problems;
"""


def site_pages(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.html") if "assets" not in p.parts)


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


class _EmptySearch(_Quiet):
    """The site with an empty search index: search has tests of its own, and in the page sweep the
    full index would be rebuilt on each of ~300 page loads."""

    def do_GET(self) -> None:
        if self.path.split("?")[0].endswith("search/search_index.json"):
            index = json.loads((Path(self.directory) / "search" / "search_index.json").read_text(encoding="utf-8"))
            body = json.dumps({**index, "docs": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


@pytest.fixture(scope="module")
def sweep_url(built: SimpleNamespace):
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_EmptySearch, directory=str(built.dir))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


def check_every_page(browser, base_url: str, pages: list[str], width: int) -> dict[str, list[str]]:
    browser.set_window_size(width, 1000)
    console_errors(browser)  # drop what earlier tests logged
    found = {}
    for page in pages:
        browser.get(base_url + page)
        if browser.find_elements(By.CSS_SELECTOR, "article .arithmatex"):
            wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "article .arithmatex .katex"))
        problems = browser.execute_script(PAGE_CHECKS) + console_errors(browser)
        if problems:
            found[page] = problems
    return found


def test_every_page_at_desktop_and_phone_width(
    browser, base_url: str, sweep_url: str, built: SimpleNamespace, catalog
) -> None:
    """Every built page at 1400 px and at 400 px: no console error, no raw escape or backtick, every
    formula fits or scrolls inside its column, every image loaded at a readable size."""
    pages = [p for p in site_pages(built.dir) if p != "404.html"]
    assert len(pages) > len(catalog.methods)
    for width in (1400, 400):
        assert check_every_page(browser, sweep_url, pages, width) == {}, f"at {width} px"
    browser.set_window_size(400, 1000)
    browser.get(base_url + f"methods/{TARGET}.html")
    shot(browser, "08-method-phone")
    browser.set_window_size(1400, 1000)
    for mid in sorted(catalog.methods):  # the method pages' sections, as the static test checks them
        if mid not in ("grpo", TARGET, "tree-of-thoughts", "bfpo"):
            continue
        browser.get(base_url + f"methods/{mid}.html")
        h2 = [h.text.replace("¶", "").strip() for h in browser.find_elements(By.CSS_SELECTOR, "article h2")]
        state = "catalogued" if catalog.methods[mid].plugin is None else "runnable"
        assert sb.anatomy_problem(h2, state) is None, mid
    browser.get(base_url + "status.html")
    # the matrix is the first table; the GPU check's section below it may hold tables of its own
    assert len(browser.find_elements(By.XPATH, "(//article//table)[1]/tbody/tr")) == len(catalog.methods)
    shot(browser, "07-status")
    browser.get(base_url + "test-time-scaling.html")
    shot(browser, "09-test-time-scaling")


def test_config_table_reads_on_a_phone(browser, base_url: str, built: SimpleNamespace) -> None:
    """At 400 px each option is a block of its own, and no option name breaks mid-word."""
    browser.set_window_size(400, 1000)
    try:
        browser.get(base_url + f"methods/{TARGET}.html")
        cells = browser.find_elements(By.CSS_SELECTOR, ".config-table tbody td:first-child code")
        assert [c.text for c in cells] == built.config_names
        for cell in cells:
            lines = browser.execute_script("return arguments[0].getClientRects().length", cell)
            assert lines == 1, f"{cell.text} breaks over {lines} lines"
        width = browser.execute_script("return document.querySelector('.config-table table').scrollWidth")
        column = browser.execute_script("return document.querySelector('article').clientWidth")
        assert width <= column + 1, "the config table is wider than the phone's column"
    finally:
        browser.set_window_size(1400, 1000)


def test_search_works_from_disk(browser, built: SimpleNamespace, catalog) -> None:
    """The offline plugin and the local worker shim: search from a file:// copy, with no server."""
    browser.get((built.dir / "index.html").as_uri())
    box = browser.find_element(By.CSS_SELECTOR, "input.md-search__input")
    box.click()
    box.send_keys(catalog.methods[TARGET].name)
    link = f'.md-search-result__item a[href*="methods/{TARGET}.html"]'
    wait(browser, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, link)))
    assert console_errors(browser) == []


class _UnderSubPath(http.server.SimpleHTTPRequestHandler):
    """Serves the site under a sub-path (as a project page is), answering unknown paths with 404.html."""

    prefix = "/"

    def log_message(self, *args) -> None:
        pass

    def translate_path(self, path: str) -> str:
        inside = path[len(self.prefix) - 1 :] if path.startswith(self.prefix) else "/no-such-page"
        return super().translate_path(inside)

    def send_error(self, code, message=None, explain=None) -> None:
        page = Path(self.directory) / "404.html"
        if code != 404 or not page.is_file():
            return super().send_error(code, message, explain)
        body = page.read_bytes()
        self.send_response(404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_404_page_works_under_a_sub_path(browser, built: SimpleNamespace) -> None:
    import re

    page = (built.dir / "404.html").read_text(encoding="utf-8")
    prefix = re.search(r'href="(/[^"]*/)assets/stylesheets/extra.css"', page).group(1)
    handler = functools.partial(type("H", (_UnderSubPath,), {"prefix": prefix}), directory=str(built.dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        root = f"http://127.0.0.1:{server.server_port}{prefix}"
        browser.get(root + "methods/no-such-method.html")
        assert "404" in browser.find_element(By.CSS_SELECTOR, "article").text
        loaded = browser.execute_script(
            "return [...document.styleSheets].some(s => (s.href || '').endsWith('extra.css') && s.cssRules.length > 0)"
        )
        assert loaded, "the 404 page's stylesheets did not load"
        shot(browser, "10-not-found")
        browser.find_element(By.CSS_SELECTOR, "a.md-header__button.md-logo").click()
        wait(browser).until(ec.url_to_be(root + "index.html"))
    finally:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_catalog_site_serve(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "posttrain", "site", "serve", "--dev-addr", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        body = ""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/methods/{TARGET}.html", timeout=5) as r:
                    body = r.read().decode("utf-8")
                break
            except OSError:
                time.sleep(0.5)
        assert "Objective" in body and "How to run it" in body
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# Runs before any script of every page: alert(), confirm() and prompt() only record their message.
ALERT_SPY = (
    "window.__alerts = [];"
    "window.alert = window.confirm = window.prompt = function (m) { window.__alerts.push(String(m)); };"
)


def _alerts(driver) -> list[str]:
    return driver.execute_script("return window.__alerts || []")


def test_planted_payloads_do_not_run(browser, payload_url: SimpleNamespace) -> None:
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": ALERT_SPY})
    ran = {}
    for page in payload_url.pages:
        browser.get(payload_url.url + page)
        wait(browser).until(lambda d: d.execute_script("return document.readyState") == "complete")
        time.sleep(0.2)  # an <img onerror> fires once its image has failed to load
        if _alerts(browser):
            ran[page] = _alerts(browser)
    assert ran == {}

    # The search box shows page text as HTML: search for the payloads and open the results.
    browser.get(payload_url.url + "methods/demo-catalogued.html")
    box = browser.find_element(By.CSS_SELECTOR, "input.md-search__input")
    box.click()
    box.send_keys("alert onerror")
    wait(browser, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".md-search-result__item")))
    time.sleep(0.5)
    assert _alerts(browser) == []

    # The spy itself works: a handler added by hand is recorded.
    browser.execute_script("document.body.insertAdjacentHTML('beforeend', '<img src=x onerror=alert(\\'control\\')>')")
    wait(browser).until(lambda d: _alerts(d) == ["control"])
