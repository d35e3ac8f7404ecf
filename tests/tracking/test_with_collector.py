"""Both trackers against the real collector of the central service (not a capturing stub).

The browser module (the official Snowplow browser tracker inside) runs in Debian's Chromium on a
page served from one loopback origin and sends to the service on another: the page view, a
``Tracking.event`` and a ``data-track-*`` click all arrive good, which proves the CORS path with
credentials. The backend tracker's event arrives good with the standard context validated
against the bundled Iglu schema. Nothing lands in bad.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.browser import Watched
from tests.serving import serve
from tests.tracking.test_frontend import PageServer, bundle, host, page_with, script_tag
from usage_ping.collector.app import create_app
from usage_ping.collector.settings import ServiceSettings, SnowplowSettings
from usage_ping.tracking import STANDARD_CONTEXT_SCHEMA, Tracking, TrackingConfig

__all__ = ["bundle", "host"]  # the fixtures of test_frontend, used here too


@pytest.fixture
def service(tmp_path: Path) -> Iterator[str]:
    """The central service with its collector and the Micro API, on SQLite; yields its URL."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'service.db'}")
    app = create_app(ServiceSettings(snowplow=SnowplowSettings(micro=True)), engine=engine)
    with serve(app) as url:
        yield url
    engine.dispose()


def good_events(service: str, expected: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """``/micro/good`` once it holds ``expected`` events (the trackers send asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        found: list[dict[str, Any]] = httpx.get(f"{service}/micro/good").json()
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def contexts_of(event: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The event's contexts by schema URI."""
    raw = event["event"].get("contexts") or {}
    return {item["schema"]: item["data"] for item in raw.get("data", [])}


def test_the_browser_module_sends_good_events_across_origins(
    service: str, host: PageServer, watched_page: Watched
) -> None:
    url = host.add(
        "/project",
        page_with(head=script_tag(collector_url=service, app_id="web-test", project_id=11)),
    )
    page = watched_page.page
    page.goto(url)
    page.wait_for_function("() => window.UsagePingTracking !== undefined")
    page.evaluate(
        "() => UsagePingTracking.Tracking.event('projects:show', 'open_menu', {label: 'nav'})"
    )
    page.click("#save")
    events = good_events(service, expected=4)
    assert httpx.get(f"{service}/micro/bad").json() == []
    by_kind: dict[tuple[Any, Any, Any], dict[str, Any]] = {
        (e["event"]["event"], e["event"].get("se_action"), e["event"].get("se_label")): e
        for e in events
    }
    assert ("page_view", None, None) in by_kind
    assert ("struct", "open_menu", "nav") in by_kind
    click = by_kind[("struct", "click_button", "save")]
    assert click["event"]["se_category"] == "projects:show"
    assert click["event"]["se_property"] == "primary"
    assert click["event"]["se_value"] == 3
    assert click["event"]["app_id"] == "web-test"
    assert click["event"]["page_url"] == url
    standard = contexts_of(click)[STANDARD_CONTEXT_SCHEMA]
    assert standard["source"] == "usage-ping-js"
    assert standard["project_id"] == 11
    assert standard["extra"] == {"k": "v"}
    assert ("struct", "render", "banner") in by_kind
    watched_page.screenshot("tracking-cross-origin")
    assert watched_page.problems == []


def test_the_backend_tracker_sends_good_events_with_the_standard_context(service: str) -> None:
    tracker = Tracking(TrackingConfig(endpoint=service, app_id="backend-test", plan="premium"))
    tracker.start()
    try:
        tracker.event("issues", "create", label="board", user=7, project=11, namespace=3, via="api")
        assert tracker.flush(10.0)
    finally:
        tracker.close()
    (event,) = good_events(service, expected=1)
    assert httpx.get(f"{service}/micro/bad").json() == []
    fields = event["event"]
    assert (fields["se_category"], fields["se_action"], fields["se_label"]) == (
        "issues",
        "create",
        "board",
    )
    assert fields["app_id"] == "backend-test"
    standard = contexts_of(event)[STANDARD_CONTEXT_SCHEMA]
    assert standard["source"] == "usage-ping-python"
    assert (standard["user_id"], standard["project_id"], standard["namespace_id"]) == (7, 11, 3)
    assert standard["plan"] == "premium"
    assert standard["extra"] == {"via": "api"}
