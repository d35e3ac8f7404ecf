"""Event analytics on PostgreSQL and SQLite: funnels on a hand-made event set, volume and top
events, the ``/api/v1/events`` routes and the events page."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.browser import Watched
from tests.collector.test_auth import OPERATORS, PASSWORD, login
from tests.collector.test_dashboards import parse, points
from tests.serving import serve
from usage_ping.collector.api import hash_token
from usage_ping.collector.app import create_app
from usage_ping.collector.settings import ServiceSettings
from usage_ping.collector.snowplow.analytics import (
    ANALYTICS_WORK_MEM,
    Step,
    funnel,
    top_events,
    volume,
)
from usage_ping.collector.snowplow.enrich import ANONYMOUS_USER_ID
from usage_ping.collector.snowplow.tables import snowplow_events
from usage_ping.collector.storage import migrate

pytestmark = pytest.mark.dialects("postgresql", "sqlite")

T0 = datetime(2026, 11, 2, tzinfo=UTC)
"""The start of the funnels' range (a Monday)."""
END = T0 + timedelta(days=28)
NOW = END
TOKEN = "events-api-token"

A = Step.struct("issues", "create")
B = Step.page("/board")
C = Step.struct("issues", "close")


def _at(days: float = 0, hours: float = 0) -> datetime:
    return T0 + timedelta(days=days, hours=hours)


def row(
    moment: datetime,
    step: Step,
    *,
    uid: str | None = None,
    duid: str | None = None,
    sid: str | None = None,
    nuid: str | None = None,
    bot: bool = False,
) -> dict[str, Any]:
    """A stored good event: the step's fields, the subject's ids, the rest minimal."""
    return {
        "event_fingerprint": uuid.uuid4().hex,
        "event_id": str(uuid.uuid4()),
        "collector_tstamp": moment,
        "derived_tstamp": moment,
        "app_id": "app",
        "platform": "web",
        "event": "struct" if step.kind == "se" else "page_view",
        "event_name": "event" if step.kind == "se" else "page_view",
        "event_schema": "",
        "se_category": step.category or None,
        "se_action": step.action or None,
        "page_urlhost": None if step.kind == "se" else "example.com",
        "page_urlpath": step.path or None,
        "user_id": uid,
        "domain_userid": duid,
        "domain_sessionid": sid,
        "network_userid": nuid if nuid is not None else str(uuid.uuid4()),
        "is_bot": bot,
        "contexts": "[]",
        "enriched": "{}",
        "raw": "{}",
    }


def events() -> list[dict[str, Any]]:
    """The hand-made set, steps A (se:issues/create), B (page:/board), C (se:issues/close).

    - u1 (session s1): A, B, C an hour apart: reaches 3.
    - u2 (s2): B, A, C: B came before A, so it reaches 1 only (order matters).
    - u3: A, B in session s3a, C two days later in s3b: 3 per user, 2 with a 1-day window;
      per session s3a reaches 2 and s3b none.
    - u4 (s4): A, B, C, all as a bot: left out unless bots are counted.
    - d5 (no user_id, domain_userid d5, s5): A and B at the same moment: B is not later: 1.
    - an SP-Anonymous visitor (network id all zeros, no other id): A: no one, not counted.
    - u7 (s7): A on day 0, A again on day 3, B and C an hour and two after it: 3 even with a
      1-day window (the second A starts an attempt that makes it).
    - u8: A before the range, B and C in it: 0.
    - u9 (s9): A in the range, B after its end: 1.
    - n10 (only a network id, s10): A, B, C: 3 per user (the network id), 3 per session.
    """
    return [
        row(_at(hours=1), A, uid="u1", sid="s1"),
        row(_at(hours=2), B, uid="u1", sid="s1"),
        row(_at(hours=3), C, uid="u1", sid="s1"),
        row(_at(hours=1), B, uid="u2", sid="s2"),
        row(_at(hours=2), A, uid="u2", sid="s2"),
        row(_at(hours=3), C, uid="u2", sid="s2"),
        row(_at(hours=1), A, uid="u3", duid="d3", sid="s3a"),
        row(_at(hours=2), B, uid="u3", duid="d3", sid="s3a"),
        row(_at(days=2, hours=2), C, uid="u3", duid="d3", sid="s3b"),
        row(_at(hours=1), A, uid="u4", sid="s4", bot=True),
        row(_at(hours=2), B, uid="u4", sid="s4", bot=True),
        row(_at(hours=3), C, uid="u4", sid="s4", bot=True),
        row(_at(hours=5), A, duid="d5", sid="s5"),
        row(_at(hours=5), B, duid="d5", sid="s5"),
        row(_at(hours=1), A, nuid=ANONYMOUS_USER_ID),
        row(_at(hours=1), A, uid="u7", sid="s7"),
        row(_at(days=3), A, uid="u7", sid="s7"),
        row(_at(days=3, hours=1), B, uid="u7", sid="s7"),
        row(_at(days=3, hours=2), C, uid="u7", sid="s7"),
        row(_at(hours=-1), A, uid="u8", sid="s8"),
        row(_at(hours=1), B, uid="u8", sid="s8"),
        row(_at(hours=2), C, uid="u8", sid="s8"),
        row(_at(days=27, hours=23), A, uid="u9", sid="s9"),
        row(END + timedelta(minutes=1), B, uid="u9", sid="s9"),
        row(_at(days=10), A, nuid="n10", sid="s10"),
        row(_at(days=10, hours=1), B, nuid="n10", sid="s10"),
        row(_at(days=10, hours=2), C, nuid="n10", sid="s10"),
    ]


@pytest.fixture
def stored(engine: sa.Engine) -> sa.Engine:
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(snowplow_events.insert(), events())
    return engine


def counts(engine: sa.Engine, steps: list[Step], **options: Any) -> list[int]:
    with engine.connect() as conn:
        return [s.count for s in funnel(conn, steps, T0, END, **options).steps]


# -- funnels -----------------------------------------------------------------------------------


def test_a_user_reaches_a_step_only_after_the_steps_before_it_in_order(stored: sa.Engine) -> None:
    """Per user: u1, u3, u7 and n10 do A, B, C in order; u2 (B before A), d5 (B at the same
    moment as A), u9 (B after the range) stop at A; u8's A is before the range; bots and the
    anonymous visitor are no one."""
    assert counts(stored, [A, B, C]) == [7, 4, 4]
    assert counts(stored, [A]) == [7]
    assert counts(stored, [C, A]) == [6, 0]  # every A came before its subject's C


def test_the_window_bounds_the_time_from_step_1(stored: sa.Engine) -> None:
    """With a 1-day window u3 (C two days after A) stops at B; u7 still makes it from its second
    A; the window includes its end (C exactly 2 h after A); a window wide enough changes
    nothing."""
    assert counts(stored, [A, B, C], window=timedelta(days=1)) == [7, 4, 3]
    assert counts(stored, [A, B, C], window=timedelta(hours=2)) == [7, 4, 3]
    assert counts(stored, [A, B, C], window=timedelta(minutes=119)) == [7, 4, 0]
    assert counts(stored, [A, B, C], window=timedelta(minutes=30)) == [7, 0, 0]
    assert counts(stored, [A, B, C], window=timedelta(days=30)) == [7, 4, 4]


def test_per_session_counts_sessions(stored: sa.Engine) -> None:
    """Per session: s3a reaches B but its C is in s3b; events without a session are left out."""
    assert counts(stored, [A, B, C], per="session") == [7, 4, 3]
    with stored.connect() as conn:
        result = funnel(conn, [A, B, C], T0, END, per="session")
    assert [s.from_first for s in result.steps] == [1.0, 4 / 7, 3 / 7]
    assert [s.from_previous for s in result.steps] == [1.0, 4 / 7, 3 / 4]
    assert result.conversion == 3 / 7


@pytest.mark.dialects("postgresql")
def test_postgresql_runs_a_funnel_without_jit_and_with_more_work_mem(stored: sa.Engine) -> None:
    """JIT off and work_mem raised for the caller's transaction only, then the defaults again."""

    def settings(conn: sa.Connection) -> tuple[str, str]:
        return (
            conn.exec_driver_sql("SHOW jit").scalar_one(),
            conn.exec_driver_sql("SHOW work_mem").scalar_one(),
        )

    with stored.connect() as conn:
        before = settings(conn)
        conn.commit()
        with conn.begin():
            funnel(conn, [A, B, C], T0, END, per="session")
            assert settings(conn) == ("off", ANALYTICS_WORK_MEM)
        assert settings(conn) == before


def test_bots_are_left_out_unless_asked_for(stored: sa.Engine) -> None:
    """u4 is a bot: counted only with bots=True."""
    assert counts(stored, [A, B, C], bots=True) == [8, 5, 5]
    assert counts(stored, [A, B, C], per="session", bots=True) == [8, 5, 4]


def test_a_funnel_without_anyone_has_no_rates(stored: sa.Engine) -> None:
    """Nobody did step 1: counts 0 and rates None."""
    with stored.connect() as conn:
        result = funnel(conn, [Step.page("/nowhere"), A], T0, END)
    assert [(s.count, s.from_first, s.from_previous) for s in result.steps] == [
        (0, None, None),
        (0, None, None),
    ]


def test_a_step_may_come_back(stored: sa.Engine) -> None:
    """A, B, A: nobody did A again after B; A, A: u7 did A twice."""
    assert counts(stored, [A, B, A]) == [7, 4, 0]
    assert counts(stored, [A, A]) == [7, 1]  # u7's two As


@pytest.mark.parametrize(
    ("text", "step"),
    [
        ("se:issues/create", Step.struct("issues", "create")),
        ("se:a/b/c", Step.struct("a", "b/c")),
        ("page:/board", Step.page("/board")),
        ("page:/a:b", Step.page("/a:b")),
    ],
)
def test_steps_parse_from_their_labels(text: str, step: Step) -> None:
    """se:<category>/<action> splits at the first slash; page:<path> takes the rest."""
    assert Step.parse(text) == step
    assert Step.parse(step.label) == step


@pytest.mark.parametrize("text", ["", "se:", "se:issues", "se:/create", "page:", "url:/x", "/x"])
def test_bad_steps_are_refused(text: str) -> None:
    """Anything else is a ValueError naming the forms."""
    with pytest.raises(ValueError, match=r"step|page path"):
        Step.parse(text)


def test_bad_funnels_are_refused(stored: sa.Engine) -> None:
    """No step, too many, an empty range or a naive time."""
    with stored.connect() as conn:
        with pytest.raises(ValueError, match="1 to 10 steps"):
            funnel(conn, [], T0, END)
        with pytest.raises(ValueError, match="1 to 10 steps"):
            funnel(conn, [A] * 11, T0, END)
        with pytest.raises(ValueError, match="after start"):
            funnel(conn, [A], END, T0)
        with pytest.raises(ValueError, match="naive"):
            funnel(conn, [A], T0.replace(tzinfo=None), END)
        with pytest.raises(ValueError, match="positive"):
            funnel(conn, [A, B], T0, END, window=timedelta(0))


# -- volume and top events ---------------------------------------------------------------------


def test_volume_counts_events_per_day_by_type(stored: sa.Engine) -> None:
    """Every day of the range is a bucket; bots and events outside the range are left out."""
    with stored.connect() as conn:
        found = volume(conn, T0, END)
        with_bots = volume(conn, T0, END, bots=True)
        hourly = volume(conn, T0, T0 + timedelta(hours=6), interval="hour")
    assert len(found.buckets) == 28
    assert found.buckets[0] == T0
    assert found.buckets[-1] == T0 + timedelta(days=27)
    # 27 rows: 3 of the bot, u8's A before the range, u9's B after it.
    assert found.total == 22
    assert with_bots.total == 25
    assert found.series["struct"][0] == 9
    assert found.series["page_view"][0] == 5
    assert found.series["struct"][3] == 2  # u7's A and C on day 3
    assert found.series["struct"][27] == 1  # u9's A
    assert list(found.series) == ["struct", "page_view"]
    assert hourly.buckets == [T0 + timedelta(hours=h) for h in range(6)]
    assert hourly.series["struct"] == [0, 4, 2, 2, 0, 1]


def test_volume_refuses_too_many_buckets(stored: sa.Engine) -> None:
    """A year per hour is too many points."""
    with stored.connect() as conn, pytest.raises(ValueError, match="at most 2000 points"):
        volume(conn, T0, T0 + timedelta(days=365), interval="hour")


def test_top_events_rank_struct_events_and_pages(stored: sa.Engine) -> None:
    """By events, with distinct users (bots out; the anonymous visitor is no user)."""
    with stored.connect() as conn:
        top = top_events(conn, T0, END, users=True)
        one = top_events(conn, T0, END, limit=1, bots=True)
        plain = top_events(conn, T0, END)
    assert [(s.category, s.action, s.events, s.users) for s in top.struct] == [
        ("issues", "create", 9, 7),
        ("issues", "close", 6, 6),
    ]
    assert [(p.path, p.views, p.users) for p in top.pages] == [("/board", 7, 7)]
    assert [(s.category, s.action, s.events) for s in one.struct] == [("issues", "create", 10)]
    assert top.struct[0].step == A
    assert [(s.events, s.users) for s in plain.struct] == [(9, None), (6, None)]
    assert [(p.views, p.users) for p in plain.pages] == [(7, None)]


# -- the API -----------------------------------------------------------------------------------


@pytest.fixture
def app_client(stored: sa.Engine) -> Iterator[TestClient]:
    settings = ServiceSettings(
        secret_key="a-test-secret-key-of-some-length",
        operators=OPERATORS,
        api_tokens=(hash_token(TOKEN),),
    )
    app = create_app(settings, engine=stored)
    app.state.dashboards.clock = lambda: NOW
    with TestClient(app) as client:
        yield client


BEARER = {"Authorization": f"Bearer {TOKEN}"}
RANGE = {"since": T0.isoformat(), "until": END.isoformat()}


def test_the_api_answers_the_funnel(app_client: TestClient) -> None:
    """Steps as repeated parameters; counts and rates as the function computes them."""
    answer = app_client.get(
        "/api/v1/events/funnel",
        params={**RANGE, "step": ["se:issues/create", "page:/board", "se:issues/close"]},
        headers=BEARER,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [s["count"] for s in body["steps"]] == [7, 4, 4]
    assert [s["step"] for s in body["steps"]] == [
        "se:issues/create",
        "page:/board",
        "se:issues/close",
    ]
    assert body["steps"][1]["from_first"] == pytest.approx(4 / 7)
    assert body["conversion"] == pytest.approx(4 / 7)
    windowed = app_client.get(
        "/api/v1/events/funnel",
        params={
            **RANGE,
            "step": ["se:issues/create", "page:/board", "se:issues/close"],
            "per": "session",
            "window": "P1D",
        },
        headers=BEARER,
    ).json()
    assert [s["count"] for s in windowed["steps"]] == [7, 4, 3]
    assert windowed["window_seconds"] == 86400


def test_the_api_answers_volume_and_top_events(app_client: TestClient) -> None:
    """The same figures as the functions."""
    found = app_client.get("/api/v1/events/volume", params=RANGE, headers=BEARER)
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["total"] == 22
    assert len(body["buckets"]) == 28
    assert body["series"]["struct"][0] == 9
    top = app_client.get(
        "/api/v1/events/top", params={**RANGE, "limit": 5, "users": "true"}, headers=BEARER
    )
    assert top.status_code == 200
    assert top.json()["pages"] == [
        {"path": "/board", "step": "page:/board", "views": 7, "users": 7}
    ]
    assert top.json()["struct"][0]["step"] == "se:issues/create"


@pytest.mark.parametrize(
    "params",
    [
        {"step": "se:issues"},
        {"step": "nope"},
        {},
        {"step": ["page:/a"] * 11},
        {"step": "page:/a", "per": "household"},
        {"step": "page:/a", "window": "forever"},
        {"step": "page:/a", "window": "0"},
        {"step": "page:/a", "since": END.isoformat(), "until": T0.isoformat()},
    ],
)
def test_the_api_refuses_bad_funnel_parameters(
    app_client: TestClient, params: dict[str, Any]
) -> None:
    """422 with an error message."""
    answer = app_client.get("/api/v1/events/funnel", params=params, headers=BEARER)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]


def test_the_api_refuses_too_many_hours(app_client: TestClient) -> None:
    """A year per hour: 422."""
    answer = app_client.get(
        "/api/v1/events/volume",
        params={"interval": "hour", "since": "2025-01-01T00:00:00Z", "until": "2026-01-01"},
        headers=BEARER,
    )
    assert answer.status_code == 422
    assert "at most 2000 points" in answer.json()["error"]


@pytest.mark.parametrize("path", ["volume", "top", "funnel?step=page:/board"])
def test_the_api_needs_a_token_or_an_operator(app_client: TestClient, path: str) -> None:
    """No token and no session: 401; a wrong token: 401; an operator's session: 200."""
    url = f"/api/v1/events/{path}"
    assert app_client.get(url).status_code == 401
    wrong = app_client.get(url, headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "the API token is not valid"
    assert app_client.get(url, headers=BEARER).status_code == 200
    assert login(app_client).status_code == 303
    assert app_client.get(url).status_code == 200


def test_a_token_without_configured_tokens_is_refused(stored: sa.Engine) -> None:
    """With no API token configured, a presented token gets 403."""
    with TestClient(create_app(ServiceSettings(), engine=stored)) as client:
        answer = client.get("/api/v1/events/volume", headers=BEARER)
    assert answer.status_code == 403
    assert "no API token is configured" in answer.json()["error"]


# -- the page ----------------------------------------------------------------------------------

FUNNEL_QUERY = "?step=se:issues/create&step=page:/board&step=se:issues/close&step="


def test_the_page_needs_a_login(app_client: TestClient) -> None:
    """Without a session: sent to the login form."""
    answer = app_client.get("/dashboard/events", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login?next=")


def test_the_page_shows_volume_top_events_and_a_funnel(app_client: TestClient) -> None:
    """The volume chart always, the funnel chart with steps; both with points; the tables."""
    assert login(app_client).status_code == 303
    plain = app_client.get("/dashboard/events")
    assert plain.status_code == 200
    page = parse(plain.text)
    assert page.chart_divs == ["event-volume"]
    assert points(page.figures["event-volume"])
    assert 'href="/dashboard/events" aria-current="page"' in plain.text
    assert "<code>issues</code>" in plain.text
    assert "<code>/board</code>" in plain.text

    answer = app_client.get(f"/dashboard/events{FUNNEL_QUERY}&per=session&window=1d")
    assert answer.status_code == 200
    page = parse(answer.text)
    assert page.chart_divs == ["event-volume", "funnel"]
    figure = page.figures["funnel"]
    assert figure["data"][0]["type"] == "funnel"
    assert figure["data"][0]["x"] == [7, 4, 3]
    assert "42.9 %" in answer.text  # 3 of 7 sessions
    assert any("plotly.min.js" in url for url in page.urls)


def test_the_page_explains_a_bad_step(app_client: TestClient) -> None:
    """A step that does not parse: 422 with the message, no funnel."""
    assert login(app_client).status_code == 303
    answer = app_client.get("/dashboard/events?step=se:issues")
    assert answer.status_code == 422
    assert "Step 1" in answer.text
    assert parse(answer.text).chart_divs == ["event-volume"]


# -- in a browser ------------------------------------------------------------------------------


@pytest.fixture
def served(stored: sa.Engine) -> Iterator[str]:
    settings = ServiceSettings(
        secret_key="a-browser-test-secret-key-of-some-length", operators=OPERATORS
    )
    app = create_app(settings, engine=stored)
    app.state.dashboards.clock = lambda: NOW
    with serve(app) as url:
        yield url


_DRAWN = """
() => Array.from(document.querySelectorAll('[data-chart]')).map((el) => ({
  key: el.dataset.chart,
  plotted: el.classList.contains('js-plotly-plot'),
  svg: el.querySelectorAll('svg.main-svg').length,
  traces: Array.isArray(el.data) ? el.data.length : 0,
}))
"""


def test_the_funnel_form_draws_a_funnel_in_a_browser(
    served: str, watched_page: Watched, dialect: str
) -> None:
    """Log in, fill in three steps, submit: the volume and funnel charts are drawn Plotly plots,
    the console and network report nothing wrong; a screenshot is kept."""
    page = watched_page.page
    page.goto(f"{served}/dashboard/events")
    assert "/login" in page.url
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("form[action='/login'] button")
    assert page.url == f"{served}/dashboard/events"
    steps = page.locator("#funnel-form input[name=step]")
    assert steps.count() == 5
    steps.nth(0).fill("se:issues/create")
    steps.nth(1).fill("page:/board")
    steps.nth(2).fill("se:issues/close")
    with page.expect_navigation():
        page.click("#funnel-form button[type=submit]")
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length == 2")
    drawn = page.evaluate(_DRAWN)
    assert [d["key"] for d in drawn] == ["event-volume", "funnel"]
    assert all(d["plotted"] and d["svg"] >= 1 and d["traces"] >= 1 for d in drawn), drawn
    assert page.locator("#funnel-steps tbody tr").count() == 3
    watched_page.screenshot(f"{dialect}-dashboard-events-funnel")
    assert watched_page.problems == []
