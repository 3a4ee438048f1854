"""Helpers of the web tests: the demo shop on a real server and Redis, and a watched browser page.

A watched page records every JavaScript error, uncaught exception and Content-Security-Policy
violation; ``Watch.check`` fails the test on any of them.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer, make_settings
from tests.redis_clients import async_client

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
IDENTITY_SECRET = "demo-identity-secret-0123456789"
DEMO_RULES = resources.files("api.web").joinpath("demo_rules.yaml").read_text()
# Chromium logs each failed request (refused, or answered 4xx/5xx) on the console. A test accepts
# these only for the addresses it makes fail on purpose (``Watch.failing``).
NETWORK_FAILURE = "Failed to load resource"


def load_catalogue(redis_url: str, items_csv: Path) -> None:
    from engine.catalog import upsert_items
    from engine.ingest.importer import ImportReport, read_items

    async def load() -> None:
        client = async_client(redis_url)
        await upsert_items(client, read_items(items_csv, ImportReport()))
        await client.aclose()

    with ThreadPoolExecutor(1) as thread:  # playwright's sync API runs a loop in this thread
        thread.submit(asyncio.run, load()).result()


@pytest.fixture
def shop(data_dir: Path, redis_url: str, demo_files: tuple[Path, Path]) -> Iterator[LiveServer]:
    """The API with the demo storefront and console, the demo catalogue and the demo's rules file."""
    from api.app import create_app

    load_catalogue(redis_url, demo_files[0])
    rules = data_dir / "rules.yaml"
    rules.write_text(DEMO_RULES)
    settings = make_settings(data_dir, redis_url, demo_storefront=True, identity_secret=IDENTITY_SECRET,
                             rules_file=rules)
    with LiveServer(create_app(settings)) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's `chromium` package (.ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra: "
                                                                  "pip install -e '.[test]'")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


_WATCH = """document.addEventListener("securitypolicyviolation", function (e) {
  console.error("CSP violation: " + e.violatedDirective + " " + e.blockedURI);
});"""


@dataclass
class Watch:
    """A page's problems: console errors, uncaught exceptions, CSP violations."""

    failing: list[str] = field(default_factory=list)  # paths the test makes fail on purpose
    problems: list[str] = field(default_factory=list)

    def console(self, message: Any) -> None:
        if message.type != "error":
            return
        url = (message.location or {}).get("url", "")
        if message.text.startswith(NETWORK_FAILURE) and any(path in url for path in self.failing):
            return
        self.problems.append(f"console: {message.text} at {message.location}")

    def check(self) -> None:
        assert self.problems == [], "the pages logged errors:\n" + "\n".join(self.problems)


def watched(browser: Any, failing: tuple[str, ...] = ()) -> tuple[Any, Any, Watch]:
    """A new context (no cookies) and page whose errors are recorded."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(_WATCH)
    page = context.new_page()
    watch = Watch(list(failing))
    page.on("console", watch.console)
    page.on("pageerror", lambda exc: watch.problems.append(f"uncaught: {exc}"))
    return context, page, watch


def timings(page: Any, mark: str) -> dict[str, float | None]:
    """Milliseconds from navigation start: first contentful paint, DOM ready, load, and the
    snippet's ``mark`` (as ``python -m load_tests.bench_storefront`` reads them)."""
    return page.evaluate("""(mark) => {
      const nav = performance.getEntriesByType("navigation")[0];
      const paint = performance.getEntriesByName("first-contentful-paint")[0];
      const m = performance.getEntriesByName(mark)[0];
      const ms = (t) => Math.round(t * 10) / 10;
      return {fcp_ms: paint ? ms(paint.startTime) : null, dom_ready_ms: ms(nav.domContentLoadedEventEnd),
              load_ms: ms(nav.loadEventEnd), strip_ms: m ? ms(m.startTime) : null};
    }""", mark)


def strip_items(page: Any, selector: str = "#for-you") -> list[str]:
    page.wait_for_selector(f'{selector}[data-vitrine-state="ready"]')
    return page.eval_on_selector_all(f"{selector} .vitrine-item", "els => els.map(e => e.dataset.itemId)")
