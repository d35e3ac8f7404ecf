"""Debian's Chromium driven by Playwright, for the tests that need a real browser.

Playwright never downloads a browser here: it launches ``/usr/bin/chromium`` (installed by
``scripts/ensure-services.sh``). Without it the browser tests skip, except under ``CI=true``,
where they fail. Each page records what its console and network said, so a test can assert
that nothing went wrong, and screenshots land in ``artifacts/browser/`` (or
``$USAGE_PING_ARTIFACTS/browser/``) for a person to look at.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Response, sync_playwright

CHROMIUM = os.environ.get("USAGE_PING_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking switches Chromium keeps trying to reach Google's hosts,
# which this project's machines refuse; as root it needs --no-sandbox.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("USAGE_PING_ARTIFACTS", "artifacts")) / "browser"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}: run scripts/ensure-services.sh", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium for the test module.

    Not for the session: Playwright's sync API keeps an asyncio loop running in the main thread
    while it is started, and tests elsewhere that call ``asyncio.run`` would then fail.
    """
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _unavailable(f"Chromium is not installed at {CHROMIUM}")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@dataclass
class Watched:
    """A page and what went wrong on it: console errors, uncaught exceptions, failed requests
    and HTTP error responses."""

    page: Page
    problems: list[str] = field(default_factory=list)

    def screenshot(self, name: str) -> Path:
        """Save a full-page screenshot as an artifact; return its path."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


def watch(page: Page) -> Watched:
    """Record the page's problems from now on."""
    watched = Watched(page)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            watched.problems.append(f"console error: {message.text} at {message.location}")

    def on_response(response: Response) -> None:
        if response.status >= 400:
            watched.problems.append(f"HTTP {response.status} for {response.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: watched.problems.append(f"page error: {error}"))
    page.on(
        "requestfailed",
        lambda request: watched.problems.append(
            f"request failed: {request.url} ({request.failure})"
        ),
    )
    page.on("response", on_response)
    return watched


@pytest.fixture
def watched_page(browser: Browser) -> Iterator[Watched]:
    """A fresh browser context (no cookies) with one watched page."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield watch(context.new_page())
    finally:
        context.close()
