"""``catalog validate --links``: check every URL of the catalog online.

HEAD first (GET when a server refuses HEAD), a timeout per request, at most a few requests in
flight, and a small on-disk cache of recent successes (``$XDG_CACHE_HOME/posttrain-catalog/links.json``,
one week) so repeated runs do not hammer arXiv or GitHub. Without network it says so in one line
and exits with status 3; it never reports a link as fine without having reached it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.console import Console

TIMEOUT_S = 10.0
MAX_WORKERS = 4
CACHE_TTL_S = 7 * 24 * 3600
USER_AGENT = "posttrain-catalog link check (+https://github.com/)"


@dataclass(frozen=True)
class LinkResult:
    url: str
    ok: bool
    detail: str  # status code, or the kind of failure
    network: bool = True  # False when the failure was not reaching any server


def cache_path() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "posttrain-catalog" / "links.json"


def _load_cache(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {str(k): float(v) for k, v in data.items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _save_cache(path: Path, cache: dict[str, float]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cache, indent=0, sort_keys=True), encoding="utf-8")
    except OSError:
        pass  # a cache we cannot write is only a slower next run


def check_url(url: str, session=None) -> LinkResult:
    import requests

    session = session or requests.Session()
    headers = {"User-Agent": USER_AGENT}
    try:
        response = session.head(url, allow_redirects=True, timeout=TIMEOUT_S, headers=headers)
        if response.status_code in (403, 405, 501) or response.status_code >= 500:
            response = session.get(url, allow_redirects=True, timeout=TIMEOUT_S, headers=headers, stream=True)
            response.close()
    except requests.exceptions.SSLError as exc:
        return LinkResult(url, False, f"TLS error: {type(exc).__name__}")
    except requests.ConnectionError:
        return LinkResult(url, False, "could not connect", network=False)
    except requests.Timeout:
        return LinkResult(url, False, f"no answer within {TIMEOUT_S:.0f} s", network=False)
    except requests.RequestException as exc:
        return LinkResult(url, False, type(exc).__name__)
    ok = response.status_code < 400
    return LinkResult(url, ok, f"HTTP {response.status_code}")


def check_urls(
    urls: Iterable[str], use_cache: bool = True, checker: Callable[[str], LinkResult] | None = None
) -> list[LinkResult]:
    """Check unique URLs with a small thread pool; recent successes come from the cache."""
    unique = sorted(set(urls))
    path = cache_path()
    cache = _load_cache(path) if use_cache else {}
    now = time.time()
    fresh = {u for u in unique if now - cache.get(u, 0.0) < CACHE_TTL_S}
    todo = [u for u in unique if u not in fresh]
    results = [LinkResult(u, True, "cached") for u in sorted(fresh)]
    if todo:
        with ThreadPoolExecutor(max_workers=MAX_WORKERS) as pool:
            results += list(pool.map(checker or check_url, todo))
    if use_cache:
        for r in results:
            if r.ok and r.detail != "cached":
                cache[r.url] = now
        _save_cache(path, cache)
    return results


def catalog_urls(cat) -> dict[str, list[str]]:
    """URL -> the catalog files that contain it."""
    out: dict[str, list[str]] = {}

    def add(url: str | None, where: str) -> None:
        if url:
            out.setdefault(url, []).append(where)

    for pid, rec in cat.papers.items():
        where = f"{cat.root.name}/papers/{pid}.yaml"
        add(f"https://arxiv.org/abs/{rec.arxiv}" if rec.arxiv else None, where)
        add(rec.url, where)
    for mid, entry in cat.methods.items():
        where = f"{cat.root.name}/methods/{mid}.yaml"
        for paper in entry.papers:
            add(paper.link, where)
        for impl in entry.implementations:
            add(impl.url, where)
    return out


def check_catalog_links(cat, console: Console, use_cache: bool = True) -> None:
    urls = catalog_urls(cat)
    results = check_urls(urls, use_cache=use_cache)
    checked = [r for r in results if r.detail != "cached"]
    if checked and not any(r.network for r in checked):
        console.print(
            f"links not checked: offline (none of {len(checked)} URLs could be reached; "
            "the network or a proxy is blocking requests)",
            style="red",
            highlight=False,
        )
        raise typer.Exit(3)
    bad = [r for r in results if not r.ok]
    for r in bad:
        for where in urls[r.url]:
            console.print(f"{where}:1: url: {r.url} {r.detail}", markup=False, highlight=False)
    if bad:
        console.print(f"{len(bad)} of {len(results)} links failed", style="red")
        raise typer.Exit(1)
    console.print(f"links ok: {len(results)} URLs ({len(results) - len(checked)} from the cache)")
