"""The JavaScript module in Debian's Chromium: page views, Tracking.event, data-track-* clicks
and renders reach a collector on another origin; the UsageData helpers post with the CSRF token.

The bundle is built from ``frontend/`` (``npm run build``) when it is missing or older than its
sources. Without npm (or its packages) the tests skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page

from tests.browser import Watched
from tests.tracking.collector import POST_PATH, CapturedEvent, CapturingCollector, refusing_port
from usage_ping.tracking import STANDARD_CONTEXT_SCHEMA, Tracking, bundle_path, config_script

REPO_ROOT = Path(__file__).resolve().parents[2]
FRONTEND = REPO_ROOT / "frontend"
SOURCES = (
    FRONTEND / "src" / "tracking.js",
    FRONTEND / "package.json",
    FRONTEND / "package-lock.json",
)
WEB_PAGE_SCHEMA = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"
BUNDLE_URL = "/usage-ping-tracking.js"


# -- the bundle -------------------------------------------------------------------------------


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def _npm(npm: str, *args: str) -> None:
    done = subprocess.run(
        [npm, *args], cwd=FRONTEND, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        _unavailable(f"`npm {' '.join(args)}` failed in frontend/: {done.stderr[-2000:]}")


@pytest.fixture(scope="session")
def bundle() -> Path:
    """The built bundle; built first (as ``make js`` does) if missing or older than its sources."""
    path = bundle_path()
    newest_source = max(source.stat().st_mtime for source in SOURCES)
    if path.exists() and path.stat().st_mtime >= newest_source:
        return path
    npm = shutil.which("npm")
    if npm is None:
        _unavailable(f"npm is not installed and {path} needs building (make js)")
        raise AssertionError("unreachable")
    if not (FRONTEND / "node_modules" / ".package-lock.json").exists():
        _npm(npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund")
    _npm(npm, "run", "build")
    assert path.exists(), f"npm run build did not write {path}"
    return path


# -- the host's pages -------------------------------------------------------------------------


@dataclass(frozen=True)
class Posted:
    """A POST that the page made to the host (the UsageData API)."""

    path: str
    headers: dict[str, str]
    json: Any


class _PageHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        server = cast(_PageHTTPServer, self.server).owner
        path = urlsplit(self.path).path
        if path == BUNDLE_URL:
            self._send(200, "application/javascript", server.bundle.read_bytes())
        elif path in server.pages:
            self._send(200, "text/html; charset=utf-8", server.pages[path].encode())
        else:
            self._send(404, "text/plain", b"not found")

    def do_POST(self) -> None:
        server = cast(_PageHTTPServer, self.server).owner
        headers = {name.lower(): value for name, value in self.headers.items()}
        body = self.rfile.read(int(headers.get("content-length") or 0))
        with server.lock:
            server.posted.append(Posted(urlsplit(self.path).path, headers, json.loads(body)))
        self._send(200, "application/json", b"{}")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class _PageHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, owner: PageServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _PageHandler)


class PageServer:
    """The host application on its own loopback origin: test pages, the bundle, UsageData posts."""

    def __init__(self, bundle: Path) -> None:
        self.bundle = bundle
        self.pages: dict[str, str] = {}
        self.posted: list[Posted] = []
        self.lock = threading.Lock()
        self._httpd = _PageHTTPServer(self)
        self.origin = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def add(self, path: str, page: str) -> str:
        """Serve ``page`` at ``path``; return its URL."""
        self.pages[path] = page
        return self.origin + path

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


@pytest.fixture
def host(bundle: Path) -> Iterator[PageServer]:
    with PageServer(bundle) as server:
        yield server


def script_tag(**data: object) -> str:
    """The bundle's ``<script>`` tag with ``data-*`` options (``app_id`` -> ``data-app-id``)."""
    attributes = "".join(
        f' data-{name.replace("_", "-")}="{html.escape(str(value))}"'
        for name, value in data.items()
    )
    return f'<script src="{BUNDLE_URL}"{attributes}></script>'


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title><link rel="icon" href="data:,">
<meta name="csrf-token" content="token-123">
{head}
</head>
<body data-page="projects:show">
<button id="save" data-track-action="click_button" data-track-label="save"
        data-track-property="primary" data-track-value="3"
        data-track-extra='{{"k": "v"}}'>Save</button>
<a id="link" href="#" data-track-action="click_link" data-track-label="docs"
   ><span id="inner">Docs</span></a>
<input id="check" type="checkbox" value="1" data-track-category="settings"
       data-track-action="toggle" data-track-label="emails">
<p id="plain">Not tracked</p>
<div data-track-action="render" data-track-label="banner" data-track-property="hero"></div>
{body}
</body></html>
"""


def page_with(title: str = "Tracking test", head: str = "", body: str = "") -> str:
    return PAGE.format(title=title, head=head, body=body)


def standard(event: CapturedEvent) -> dict[str, Any]:
    return event.context(STANDARD_CONTEXT_SCHEMA)


EXPECTED_CONTEXT = {
    "environment": "test",
    "source": "usage-ping-js",
    "plan": "premium",
    "namespace_id": 7,
    "project_id": 11,
    "user_id": 42,
    "extra": None,
}


def data_attributes(collector_url: str) -> dict[str, object]:
    return {
        "collector_url": collector_url,
        "app_id": "test-app",
        "environment": "test",
        "plan": "premium",
        "namespace_id": 7,
        "project_id": 11,
        "user_id": 42,
    }


# -- tests ------------------------------------------------------------------------------------


def test_page_view_event_click_and_render_reach_the_collector(
    host: PageServer, collector: CapturingCollector, watched_page: Watched
) -> None:
    """Configured from its script tag, the module tracks a page view, a render, an explicit
    event and a click, each with the standard context, across origins (CORS with credentials)."""
    page = watched_page.page
    url = host.add("/project", page_with(head=script_tag(**data_attributes(collector.url))))
    page.goto(url)
    [view] = collector.wait_for_events(1, where={"e": "pv"})
    [render] = collector.wait_for_events(1, where={"se_ac": "render"})

    assert page.evaluate(
        "UsagePingTracking.Tracking.event('manual', 'do_it',"
        " {label: 'l', property: 'p', value: 5, extra: {a: 1}})"
    )
    [manual] = collector.wait_for_events(1, where={"se_ac": "do_it"})
    page.click("#save")
    [click] = collector.wait_for_events(1, where={"se_ac": "click_button"})

    assert (view["url"], view["page"], view["aid"], view["p"]) == (
        url,
        "Tracking test",
        "test-app",
        "web",
    )
    assert view["tv"].startswith("js-")
    assert standard(view) == EXPECTED_CONTEXT
    assert view.context(WEB_PAGE_SCHEMA)["id"]

    assert (render["se_ca"], render["se_la"], render["se_pr"]) == (
        "projects:show",
        "banner",
        "hero",
    )
    assert standard(render) == EXPECTED_CONTEXT

    assert {k: manual[k] for k in ("e", "se_ca", "se_la", "se_pr", "se_va")} == {
        "e": "se",
        "se_ca": "manual",
        "se_la": "l",
        "se_pr": "p",
        "se_va": "5",
    }
    assert standard(manual) == {**EXPECTED_CONTEXT, "extra": {"a": 1}}

    assert {k: click[k] for k in ("se_ca", "se_la", "se_pr", "se_va")} == {
        "se_ca": "projects:show",
        "se_la": "save",
        "se_pr": "primary",
        "se_va": "3",
    }
    assert standard(click) == {**EXPECTED_CONTEXT, "extra": {"k": "v"}}

    assert all(e.request.path == POST_PATH for e in collector.events)
    assert {e.request.headers.get("origin") for e in collector.events} == {host.origin}
    assert host.origin != collector.origin
    assert any(r.method == "OPTIONS" for r in collector.requests), "no CORS preflight seen"
    assert watched_page.problems == []


def test_python_options_in_the_json_element_and_click_conventions(
    host: PageServer, collector: CapturingCollector, watched_page: Watched
) -> None:
    """Options from Tracking.frontend_options, rendered by config_script after the bundle's tag,
    reach the JS intact (even markup in a value); a click inside a tracked element counts for
    it; a checkbox sends 1 when checked and 0 when unchecked; other clicks send nothing."""
    page = watched_page.page
    plan = "</script><i>x</i>&"
    options = Tracking(
        endpoint=collector.url, app_id="test-app", environment="test", plan=plan
    ).frontend_options(user=42, project=11, namespace=7)
    assert options is not None
    body = config_script({**options, "pageView": False})
    page.goto(host.add("/json", page_with(head=script_tag(), body=body)))
    [render] = collector.wait_for_events(1, where={"se_ac": "render"})
    page.click("#inner")
    page.click("#plain")
    page.click("#check")
    page.click("#check")
    [link] = collector.wait_for_events(1, where={"se_ac": "click_link"})
    toggles = collector.wait_for_events(2, where={"se_ac": "toggle"})
    assert standard(render) == {**EXPECTED_CONTEXT, "plan": plan}
    assert link["se_la"] == "docs"
    assert standard(link) == {**EXPECTED_CONTEXT, "plan": plan}
    assert [(t["se_ca"], t["se_va"]) for t in toggles] == [("settings", "1"), ("settings", "0")]
    assert sorted(e["se_ac"] for e in collector.events) == [
        "click_link",
        "render",
        "toggle",
        "toggle",
    ]
    assert watched_page.problems == []


def test_do_not_track_is_respected(
    host: PageServer, collector: CapturingCollector, watched_page: Watched
) -> None:
    """A browser that asks not to be tracked sends nothing; Tracking.event says false."""
    page = watched_page.page
    page.add_init_script(
        "Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'})"
    )
    page.goto(host.add("/dnt", page_with(head=script_tag(**data_attributes(collector.url)))))
    assert page.evaluate("UsagePingTracking.Tracking.event('c', 'a')") is False
    page.click("#save")
    page.wait_for_timeout(300)
    assert collector.requests == []


def test_a_dead_collector_never_breaks_the_page(host: PageServer, unwatched_page: Page) -> None:
    """With the collector down, tracking calls still return and the page sees no error."""
    page = unwatched_page
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    with refusing_port() as port:
        attributes = data_attributes(f"http://127.0.0.1:{port}")
        page.goto(host.add("/down", page_with(head=script_tag(**attributes))))
        assert page.evaluate("UsagePingTracking.Tracking.event('c', 'a')") is True
        page.click("#save")
        page.wait_for_timeout(300)
    assert errors == []


def test_usage_data_helpers_post_the_event_with_the_csrf_token(
    host: PageServer, watched_page: Watched
) -> None:
    """trackRedisCounterEvent and trackRedisHllUserEvent POST {event} with X-CSRF-Token, to
    the default paths or to the configured ones; they work without a collector."""
    page = watched_page.page
    page.goto(host.add("/api", page_with(head=script_tag())))
    assert page.evaluate("UsagePingTracking.trackRedisCounterEvent('e_counter')") is True
    assert page.evaluate("UsagePingTracking.trackRedisHllUserEvent('e_users')") is True
    custom = script_tag(
        usage_data_counter_path="/-/counter", usage_data_unique_users_path="/-/users"
    )
    page.goto(host.add("/api-custom", page_with(head=custom)))
    assert page.evaluate("UsagePingTracking.trackRedisCounterEvent('c2')") is True
    assert page.evaluate("UsagePingTracking.trackRedisHllUserEvent('u2')") is True
    assert page.evaluate("UsagePingTracking.trackRedisCounterEvent('')") is False
    with host.lock:
        posted = list(host.posted)
    assert [(p.path, p.json) for p in posted] == [
        ("/usage_data/increment_counter", {"event": "e_counter"}),
        ("/usage_data/increment_unique_users", {"event": "e_users"}),
        ("/-/counter", {"event": "c2"}),
        ("/-/users", {"event": "u2"}),
    ]
    assert {p.headers.get("x-csrf-token") for p in posted} == {"token-123"}
    assert {p.headers.get("content-type") for p in posted} == {"application/json"}
    assert watched_page.problems == []


@pytest.fixture
def unwatched_page(watched_page: Watched) -> Page:
    """A page that is not checked for problems (the collector is meant to be unreachable)."""
    return watched_page.page
