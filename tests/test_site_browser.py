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
    from posttrain.catalog import load_catalog

    return load_catalog()


@pytest.fixture(scope="module")
def built(tmp_path_factory, catalog) -> SimpleNamespace:
    """The real site, with the names of the target's config fields.

    Until the target method's plugin source exists, a fixture plugin stands in for it (in this
    temporary build only), so that the config table can still be checked."""
    from posttrain.configinfo import config_fields
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
    from posttrain import textsafety

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
    headings = [h.get_attribute("id") for h in browser.find_elements(By.CSS_SELECTOR, "article h2")]
    assert len(headings) == len(sb.ANATOMY)
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


def test_every_method_page_renders(browser, base_url: str, catalog) -> None:
    for mid in sorted(catalog.methods):
        browser.get(base_url + f"methods/{mid}.html")
        wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, "div.arithmatex .katex")))
        assert browser.find_elements(By.CSS_SELECTOR, ".katex-error") == [], mid
        h2 = [h.text.replace("¶", "").strip() for h in browser.find_elements(By.CSS_SELECTOR, "article h2")]
        assert h2 == sb.ANATOMY, mid
        assert only_local_requests(browser, base_url) == [], mid
    browser.get(base_url + "status.html")
    # the matrix is the first table; the GPU check's section below it may hold tables of its own
    assert len(browser.find_elements(By.XPATH, "(//article//table)[1]/tbody/tr")) == len(catalog.methods)
    shot(browser, "07-status")


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
