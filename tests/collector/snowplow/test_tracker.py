"""The official Python tracker (PyPI ``snowplow-tracker``) sending to the served collector.

GET and POST emitters, base64 and plain JSON fields: every event arrives good, with its fields,
as Snowplow Micro's API shows it; events that break a schema arrive bad, with their errors.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from snowplow_tracker.emitters import Emitter
from snowplow_tracker.events.page_view import PageView
from snowplow_tracker.events.self_describing import SelfDescribing
from snowplow_tracker.events.structured_event import StructuredEvent
from snowplow_tracker.self_describing_json import SelfDescribingJson
from snowplow_tracker.subject import Subject
from snowplow_tracker.tracker import Tracker

from usage_ping.collector.settings import SnowplowSettings
from usage_ping.collector.snowplow import STANDARD_CONTEXT

pytestmark = pytest.mark.dialects("postgresql", "sqlite")

CLICK = "iglu:com.example/button_click/jsonschema/1-0-0"
WEB_PAGE = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"


@pytest.fixture
def snowplow_settings(tmp_path: Path) -> SnowplowSettings:
    """Micro on, and the operator's schema of a button click."""
    folder = tmp_path / "schemas" / "com.example" / "button_click" / "jsonschema"
    folder.mkdir(parents=True)
    (folder / "1-0-0").write_text(
        json.dumps(
            {
                "$schema": "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0#",
                "self": {
                    "vendor": "com.example",
                    "name": "button_click",
                    "format": "jsonschema",
                    "version": "1-0-0",
                },
                "type": "object",
                "properties": {"id": {"type": "string"}, "count": {"type": "integer"}},
                "required": ["id"],
                "additionalProperties": False,
            }
        )
    )
    return SnowplowSettings(micro=True, schema_dir=str(tmp_path / "schemas"))


class Sent:
    """What the emitter reported: events sent, and failures."""

    def __init__(self) -> None:
        self.ok = 0
        self.failed: list[Any] = []

    def success(self, events: list[Any]) -> None:
        self.ok += len(events)

    def failure(self, ok: int, failed: list[Any]) -> None:
        self.ok += ok
        self.failed.extend(failed)


def tracker(url: str, method: str, sent: Sent, *, encode_base64: bool = True) -> Tracker:
    emitter = Emitter(
        url,
        method=method,  # type: ignore[arg-type]
        on_success=sent.success,
        on_failure=sent.failure,
    )
    subject = (
        Subject()
        .set_user_id("user-42")
        .set_screen_resolution(1920, 1080)
        .set_viewport(1200, 800)
        .set_lang("en-GB")
        .set_timezone("Europe/London")
        .set_domain_user_id("duid-1")
        .set_domain_session_id("sid-1")
        .set_domain_session_index(3)
    )
    return Tracker(
        f"ns-{method}",
        emitter,
        subject=subject,
        app_id="usage-ping-tests",
        encode_base64=encode_base64,
    )


def standard(**extra: Any) -> SelfDescribingJson:
    data: dict[str, Any] = {"environment": "test", "source": "usage-ping-python", "plan": None}
    data.update(extra)
    return SelfDescribingJson(STANDARD_CONTEXT, data)


def micro(url: str, path: str, filters: dict[str, Any] | None = None) -> Any:
    if filters is None:
        response = httpx.get(f"{url}/micro/{path}")
    else:
        response = httpx.post(f"{url}/micro/{path}", json=filters)
    response.raise_for_status()
    return response.json()


def track_all(t: Tracker) -> list[str | None]:
    """A struct event, a page view and a self-describing event; their event ids."""
    return [
        t.track(
            StructuredEvent(
                category="issues",
                action="create",
                label="from-ui",
                property_="project",
                value=2.5,
                context=[standard(project_id=7, user_id=42, extra={"k": "v"})],
            )
        ),
        t.track(
            PageView(
                page_url="https://gitlab.example.com/group/project/-/issues?state=opened#top",
                page_title="Issues",
                referrer="https://gitlab.example.com/dashboard",
                context=[standard()],
            )
        ),
        t.track(
            SelfDescribing(
                SelfDescribingJson(CLICK, {"id": "save", "count": 3}),
                context=[standard(), SelfDescribingJson(WEB_PAGE, {"id": _page_id()})],
            )
        ),
    ]


def _page_id() -> str:
    return "0f8fad5b-d9cb-469f-a165-70867728950e"


@pytest.fixture
def sent() -> Sent:
    return Sent()


@pytest.mark.parametrize(
    ("method", "encode_base64"), [("get", True), ("post", True), ("post", False)]
)
def test_every_event_of_the_python_tracker_arrives_good(
    served: str, sent: Sent, method: str, encode_base64: bool
) -> None:
    """Struct, page view and self-describing events with contexts: good, with their fields."""
    t = tracker(served, method, sent, encode_base64=encode_base64)
    ids = track_all(t)
    t.flush()
    assert sent.failed == []
    assert sent.ok == 3
    assert micro(served, "all") == {"total": 3, "good": 3, "bad": 0}
    good = micro(served, "good")
    by_type = {g["eventType"]: g for g in good}
    assert set(by_type) == {"struct", "page_view", "unstruct"}
    assert {g["event"]["event_id"] for g in good} == set(ids)

    struct = by_type["struct"]
    assert struct["schema"] == "iglu:com.google.analytics/event/jsonschema/1-0-0"
    assert struct["contexts"] == [STANDARD_CONTEXT]
    e = struct["event"]
    assert (e["se_category"], e["se_action"], e["se_label"], e["se_property"], e["se_value"]) == (
        "issues", "create", "from-ui", "project", 2.5,
    )  # fmt: skip
    assert e["app_id"] == "usage-ping-tests"
    assert e["platform"] == "pc"
    assert e["name_tracker"] == f"ns-{method}"
    assert e["v_tracker"].startswith("py-")
    assert e["user_id"] == "user-42"
    assert (e["dvce_screenwidth"], e["dvce_screenheight"]) == (1920, 1080)
    assert (e["br_viewwidth"], e["br_viewheight"]) == (1200, 800)
    assert (e["br_lang"], e["os_timezone"]) == ("en-GB", "Europe/London")
    assert (e["domain_userid"], e["domain_sessionid"], e["domain_sessionidx"]) == (
        "duid-1", "sid-1", 3,
    )  # fmt: skip
    assert e["user_ipaddress"] == "127.0.0.1"
    assert e["useragent"].startswith("python-requests/")
    assert e["br_family"] == "Python Requests"
    assert e["contexts"]["data"] == [
        {
            "schema": STANDARD_CONTEXT,
            "data": {
                "environment": "test",
                "source": "usage-ping-python",
                "plan": None,
                "project_id": 7,
                "user_id": 42,
                "extra": {"k": "v"},
            },
        }
    ]
    assert len(e["event_fingerprint"]) == 32
    for field in ("collector_tstamp", "derived_tstamp", "dvce_created_tstamp", "dvce_sent_tstamp"):
        assert e[field].endswith("Z")
    assert struct["rawEvent"]["api"]["version"] == ("tp1" if method == "get" else "tp2")
    assert struct["rawEvent"]["parameters"]["se_ca"] == "issues"

    page = by_type["page_view"]["event"]
    assert page["page_url"].startswith("https://gitlab.example.com/group/project")
    assert (page["page_urlscheme"], page["page_urlhost"], page["page_urlport"]) == (
        "https", "gitlab.example.com", 443,
    )  # fmt: skip
    assert (page["page_urlpath"], page["page_urlquery"], page["page_urlfragment"]) == (
        "/group/project/-/issues", "state=opened", "top",
    )  # fmt: skip
    assert page["page_title"] == "Issues"
    assert page["page_referrer"] == "https://gitlab.example.com/dashboard"
    assert page["refr_urlpath"] == "/dashboard"
    assert by_type["page_view"]["schema"] == (
        "iglu:com.snowplowanalytics.snowplow/page_view/jsonschema/1-0-0"
    )

    click = by_type["unstruct"]
    assert click["schema"] == CLICK
    assert click["contexts"] == [STANDARD_CONTEXT, WEB_PAGE]
    assert click["event"]["unstruct_event"]["data"] == {
        "schema": CLICK,
        "data": {"id": "save", "count": 3},
    }
    assert (click["event"]["event_vendor"], click["event"]["event_name"]) == (
        "com.example",
        "button_click",
    )


def test_micro_filters_as_micro_does(served: str, sent: Sent) -> None:
    """POST /micro/good filters by event type, schema, contexts (all present) and limit."""
    t = tracker(served, "post", sent)
    track_all(t)
    t.flush()
    assert [g["eventType"] for g in micro(served, "good", {"event_type": "struct"})] == ["struct"]
    assert [g["schema"] for g in micro(served, "good", {"schema": CLICK})] == [CLICK]
    both = micro(served, "good", {"contexts": [STANDARD_CONTEXT, WEB_PAGE]})
    assert [g["eventType"] for g in both] == ["unstruct"]
    assert len(micro(served, "good", {"contexts": [STANDARD_CONTEXT]})) == 3
    assert len(micro(served, "good", {"limit": 2})) == 2
    assert micro(served, "good", {"event_type": "transaction"}) == []
    assert micro(served, "reset", {}) == {"total": 0, "good": 0, "bad": 0}
    assert micro(served, "good") == []


@pytest.mark.parametrize("method", ["get", "post"])
def test_events_that_break_their_schemas_arrive_bad_with_the_errors(
    served: str, sent: Sent, method: str
) -> None:
    """A context with a wrong type and an event of an unknown schema: bad, nothing dropped."""
    t = tracker(served, method, sent)
    t.track(StructuredEvent(category="c", action="a", context=[standard(user_id="not-an-int")]))
    t.track(SelfDescribing(SelfDescribingJson("iglu:com.example/unknown/jsonschema/1-0-0", {})))
    t.track(SelfDescribing(SelfDescribingJson(CLICK, {"count": 1})))  # id is required
    t.flush()
    assert sent.ok == 3  # the collector took them (200): trackers must not resend bad events
    assert micro(served, "all") == {"total": 3, "good": 0, "bad": 3}
    errors = sorted(" ".join(b["errors"]) for b in micro(served, "bad"))
    assert "'not-an-int' is not of type 'integer', 'null'" in errors[2]
    assert "iglu:com.example/unknown/jsonschema/1-0-0: the schema is not known" in errors[1]
    assert "'id' is a required property" in errors[0]
    bad = micro(served, "bad", {"version": "tp1" if method == "get" else "tp2", "limit": 1})
    assert len(bad) == 1
    assert bad[0]["rawEvent"]["parameters"]["e"] in {"se", "ue"}


def test_a_retried_batch_is_stored_once(served: str, sent: Sent) -> None:
    """The same events sent twice (as a tracker retries them, with a new stm) are stored once."""
    t = tracker(served, "post", sent)
    t.track(StructuredEvent(category="c", action="a"))
    t.track(StructuredEvent(category="c", action="b"))
    t.flush()
    assert micro(served, "all")["good"] == 2
    raw = [g["rawEvent"]["parameters"] for g in micro(served, "good")]
    time.sleep(0.01)
    for params in raw:
        params["stm"] = str(int(params["stm"]) + 5000)
    body = {
        "schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
        "data": raw,
    }
    assert httpx.post(f"{served}/com.snowplowanalytics.snowplow/tp2", json=body).text == "ok"
    assert micro(served, "all") == {"total": 2, "good": 2, "bad": 0}
