"""The backend tracker against a capturing Snowplow collector on loopback (the real package)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from tests.tracking.collector import (
    GET_PATH,
    POST_PATH,
    CapturingCollector,
    refusing_port,
    silent_port,
)
from tests.tracking.conftest import MakeTracking
from usage_ping import tracking
from usage_ping.testing import Swallowed
from usage_ping.tracking import STANDARD_CONTEXT_SCHEMA, Tracking

THING_SCHEMA = "iglu:com.example/thing/jsonschema/1-0-0"
QUIET = 0.3
"""Seconds to wait before asserting that nothing arrived."""


@dataclass
class User:
    id: int


@dataclass
class Project:
    id: int


def test_event_arrives_with_its_fields_and_the_standard_context(
    make_tracking: MakeTracking, collector: CapturingCollector
) -> None:
    """A structured event carries se_* fields, the app and tracker ids, and the context in cx."""
    tracker = make_tracking(environment="staging", plan="premium", tracker_namespace="shop")
    event_id = tracker.event(
        "projects",
        "create",
        label="template",
        property="blank",
        value=3,
        user=User(5),
        project=Project(11),
        namespace=7,
        via="api",
    )
    assert tracker.flush()
    [event] = collector.wait_for_events(1)
    assert event.request.method == "POST"
    assert event.request.path == POST_PATH
    assert event.request.headers["content-type"].startswith("application/json")
    assert {k: event[k] for k in ("e", "se_ca", "se_ac", "se_la", "se_pr", "se_va")} == {
        "e": "se",
        "se_ca": "projects",
        "se_ac": "create",
        "se_la": "template",
        "se_pr": "blank",
        "se_va": "3",
    }
    assert (event["eid"], event["aid"], event["tna"], event["p"]) == (
        event_id,
        "test-app",
        "shop",
        "srv",
    )
    assert event["tv"].startswith("py-")
    assert "cx" in event.params
    assert "co" not in event.params
    assert event.contexts() == [
        {
            "schema": STANDARD_CONTEXT_SCHEMA,
            "data": {
                "environment": "staging",
                "source": "usage-ping-python",
                "plan": "premium",
                "namespace_id": 7,
                "project_id": 11,
                "user_id": 5,
                "extra": {"via": "api"},
            },
        }
    ]


def test_get_emitter_sends_each_event_to_i_with_plain_json_contexts(
    make_tracking: MakeTracking, collector: CapturingCollector
) -> None:
    """With GET, each event is its own request to /i; unencoded contexts arrive in co."""
    tracker = make_tracking(method="GET", encode_base64=False)
    tracker.event("issues", "close", user=1)
    tracker.event("issues", "reopen", user=2)
    events = collector.wait_for_events(2)
    assert [e.request.method for e in events] == ["GET", "GET"]
    assert [e.request.path for e in events] == [GET_PATH, GET_PATH]
    assert sorted(e["se_ac"] for e in events) == ["close", "reopen"]
    assert all("co" in e.params and "cx" not in e.params for e in events)
    assert sorted(e.context(STANDARD_CONTEXT_SCHEMA)["user_id"] for e in events) == [1, 2]


def test_post_sends_a_full_batch_in_one_request(
    make_tracking: MakeTracking, collector: CapturingCollector
) -> None:
    """POST events wait in the buffer until the batch is full, then go in one request."""
    tracker = make_tracking(batch_size=3)
    tracker.event("c", "one")
    tracker.event("c", "two")
    time.sleep(QUIET)
    assert collector.events == []
    tracker.event("c", "three")
    events = collector.wait_for_events(3)
    assert len({id(e.request) for e in events}) == 1
    assert [e["se_ac"] for e in events] == ["one", "two", "three"]


def test_flush_interval_sends_a_partial_batch(
    make_tracking: MakeTracking, collector: CapturingCollector
) -> None:
    """A batch that never fills is sent by the background flush timer."""
    tracker = make_tracking(flush_interval=0.1)
    tracker.event("c", "lonely")
    [event] = collector.wait_for_events(1, timeout=3.0)
    assert event["se_ac"] == "lonely"


def test_more_context_entities_follow_the_standard_context(
    make_tracking: MakeTracking, collector: CapturingCollector
) -> None:
    """Entities given in ``context`` are sent after the standard context, as given."""
    tracker = make_tracking()
    tracker.event("c", "a", context=[{"schema": THING_SCHEMA, "data": {"size": 2}}])
    tracker.flush()
    [event] = collector.wait_for_events(1)
    assert [entity["schema"] for entity in event.contexts()] == [
        STANDARD_CONTEXT_SCHEMA,
        THING_SCHEMA,
    ]
    assert event.context(THING_SCHEMA) == {"size": 2}


def test_extra_values_json_cannot_encode_are_sent_as_text(
    make_tracking: MakeTracking, collector: CapturingCollector
) -> None:
    """Datetimes in ``extra`` become ISO 8601 strings rather than losing the event."""
    tracker = make_tracking()
    when = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    tracker.event("c", "a", at=when, tags={"b", "a"})
    tracker.flush()
    [event] = collector.wait_for_events(1)
    extra = event.context(STANDARD_CONTEXT_SCHEMA)["extra"]
    assert extra == {"at": "2026-11-23T10:00:00+00:00", "tags": ["a", "b"]}


def test_page_view_and_self_describing_events(
    make_tracking: MakeTracking, collector: CapturingCollector
) -> None:
    """Page views (pv) and self-describing events (ue) carry the standard context too."""
    tracker = make_tracking()
    tracker.page_view("https://app.example.com/projects/1", "Project", user=4)
    tracker.self_describing(THING_SCHEMA, {"size": 3}, project=9)
    tracker.flush()
    page_view, described = collector.wait_for_events(2)
    assert (page_view["e"], page_view["url"], page_view["page"]) == (
        "pv",
        "https://app.example.com/projects/1",
        "Project",
    )
    assert page_view.context(STANDARD_CONTEXT_SCHEMA)["user_id"] == 4
    assert described["e"] == "ue"
    assert described.self_describing() == {"schema": THING_SCHEMA, "data": {"size": 3}}
    assert described.context(STANDARD_CONTEXT_SCHEMA)["project_id"] == 9


def test_disabled_tracking_sends_nothing_and_builds_nothing(
    make_tracking: MakeTracking, collector: CapturingCollector
) -> None:
    """Switched off, every call is a no-op: no event id, no worker, no request at all."""
    tracker = make_tracking(enabled=False)
    assert tracker.event("c", "a", user=1) is None
    assert tracker.page_view("https://app.example.com/") is None
    assert tracker.frontend_options() is None
    assert tracker.flush()
    assert not tracker.start()
    time.sleep(QUIET)
    assert collector.requests == []
    assert tracker._sender is None


def test_without_an_endpoint_tracking_is_off() -> None:
    """No endpoint means nothing to send to: a no-op, like disabled."""
    tracker = Tracking()
    assert not tracker.enabled
    assert tracker.event("c", "a") is None


def test_a_closed_tracker_is_a_no_op(
    make_tracking: MakeTracking, collector: CapturingCollector
) -> None:
    """Closing sends what is buffered; later calls track nothing."""
    tracker = make_tracking()
    tracker.event("c", "before")
    assert tracker.close()
    assert [e["se_ac"] for e in collector.wait_for_events(1)] == ["before"]
    assert tracker.event("c", "after") is None
    time.sleep(QUIET)
    assert len(collector.events) == 1


@pytest.fixture(params=["refusing", "silent"])
def dead_endpoint(request: pytest.FixtureRequest) -> Iterator[str]:
    """A collector that is down: a port that refuses connections, or one that never answers."""
    opener = refusing_port if request.param == "refusing" else silent_port
    with opener() as port:
        yield f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_a_dead_collector_neither_raises_nor_blocks_the_caller(
    make_tracking: MakeTracking, dead_endpoint: str, method: str
) -> None:
    """With the collector down or hanging, tracking calls return at once and flush is bounded."""
    tracker = make_tracking(
        endpoint=dead_endpoint, method=method, batch_size=1, request_timeout=0.5
    )
    assert tracker.start()
    slowest = 0.0
    began = time.perf_counter()
    for number in range(100):
        start = time.perf_counter()
        assert tracker.event("c", "a", value=number, user=number) is not None
        slowest = max(slowest, time.perf_counter() - start)
    total = time.perf_counter() - began
    assert slowest < 0.1, f"one call took {slowest:.3f} s"
    assert total < 1.0, f"100 calls took {total:.3f} s"
    start = time.perf_counter()
    assert tracker.flush(timeout=0.3) is False
    assert time.perf_counter() - start < 1.0
    start = time.perf_counter()
    tracker.close(timeout=0.3)
    assert time.perf_counter() - start < 1.0


def test_an_outage_is_logged_once_and_events_are_retried(
    make_tracking: MakeTracking, collector: CapturingCollector, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing collector is logged once; the worker retries and delivers once it recovers."""
    collector.status = 500
    tracker = make_tracking(batch_size=1)
    with caplog.at_level(logging.INFO, logger="usage_ping"):
        tracker.event("c", "a")
        deadline = time.monotonic() + 5
        while len(collector.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(collector.requests) >= 2, "the failed send was not retried"
        assert collector.events == []
        collector.status = 200
        [event] = collector.wait_for_events(1, timeout=10.0)
        assert tracker.flush()  # the worker has finished with the send (and its callbacks)
    assert event["se_ac"] == "a"
    failures = [r for r in caplog.records if "cannot deliver" in r.getMessage()]
    assert len(failures) == 1
    assert any("accepts tracked events again" in r.getMessage() for r in caplog.records)


@pytest.mark.swallows
def test_bad_arguments_are_swallowed_and_nothing_is_sent(
    make_tracking: MakeTracking, collector: CapturingCollector, swallowed: list[Swallowed]
) -> None:
    """A wrong id type, an empty action or a bad entity is logged, never raised into the host."""
    tracker = make_tracking()
    assert tracker.event("c", "a", user="alice") is None  # type: ignore[arg-type]
    assert tracker.event("c", "") is None
    assert tracker.event("c", "a", context=[{"data": {}}]) is None
    assert tracker.event("c", "a", value="3") is None  # type: ignore[arg-type]
    assert tracker.flush()
    time.sleep(QUIET)
    assert collector.events == []
    assert [type(s.exception) for s in swallowed] == [TypeError, ValueError, ValueError, TypeError]
    assert swallowed[0].description == "tracking event 'c'/'a'"
    assert "user: expected an int id" in str(swallowed[0].exception)


def test_tests_see_the_errors_the_boundary_would_swallow(make_tracking: MakeTracking) -> None:
    """Outside ``swallows`` tests the boundary re-raises, so tracking bugs fail tests."""
    tracker = make_tracking()
    with pytest.raises(TypeError, match="project: expected an int id"):
        tracker.event("c", "a", project=3.5)  # type: ignore[arg-type]


def test_frontend_options_describe_the_page_for_the_js_module(
    make_tracking: MakeTracking, collector: CapturingCollector
) -> None:
    """The JS module gets the collector, app id and standard-context defaults of this page."""
    tracker = make_tracking(environment="staging", plan="free")
    assert tracker.frontend_options(user=User(3), project=4) == {
        "collectorUrl": collector.url,
        "appId": "test-app",
        "trackerNamespace": "usage-ping",
        "environment": "staging",
        "plan": "free",
        "namespaceId": None,
        "projectId": 4,
        "userId": 3,
    }


def test_module_functions_use_the_configured_default(collector: CapturingCollector) -> None:
    """``configure`` sets the default tracker; reconfiguring flushes and closes the previous one."""
    assert not tracking.enabled()
    assert tracking.event("c", "before") is None
    configured = tracking.configure(endpoint=collector.url, app_id="mod", flush_interval=None)
    assert tracking.get_tracking() is configured
    assert tracking.enabled()
    assert tracking.event("c", "a", label="l", user=2, via="module") is not None
    tracking.page_view("https://app.example.com/")
    tracking.configure(enabled=False)
    assert not configured.enabled
    events = collector.wait_for_events(2)
    assert [e["e"] for e in events] == ["se", "pv"]
    assert events[0].context(STANDARD_CONTEXT_SCHEMA)["extra"] == {"via": "module"}
    assert tracking.event("c", "after") is None


def test_config_script_cannot_be_closed_by_a_value() -> None:
    """Markup in an option is escaped inside the JSON element; no options, no element."""
    html = tracking.config_script({"plan": "</script><b>&"})
    assert html == (
        '<script type="application/json" id="usage-ping-tracking-config">'
        '{"plan": "\\u003c/script\\u003e\\u003cb\\u003e\\u0026"}</script>'
    )
    assert tracking.config_script(None) == ""


def test_bundle_path_points_into_the_package() -> None:
    """The JS bundle's place is the package's tracking/static directory."""
    path = tracking.bundle_path()
    assert path.name == "usage-ping-tracking.js"
    assert path.parent.name == "static"
    assert path.parent.parent.name == "tracking"
