"""The events page, ``/dashboard/events``: event volume, top events and a funnel form.

Figures come from :mod:`usage_ping.collector.snowplow.analytics` over the last ``days`` days
(default 28) before the dashboards' clock: the volume per day or hour by event type (a stacked
bar chart), the most frequent structured events and viewed pages (tables), and, when steps are
given (``?step=se:issues/create&step=page:/board``, up to :data:`MAX_PAGE_STEPS`, blank ones
ignored), the funnel as a Plotly funnel chart with each step's share of step 1 and of the
previous step. The page uses the operator login and rendering of
:class:`~usage_ping.collector.dashboards.pages.Dashboards` (``app.state.dashboards``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from usage_ping.collector.auth import Session
from usage_ping.collector.dashboards.charts import Chart, bars
from usage_ping.collector.dashboards.pages import Dashboards
from usage_ping.collector.snowplow.analytics import (
    MAX_BUCKETS,
    Funnel,
    Step,
    funnel,
    top_events,
    volume,
)

__all__ = ["EVENTS_PATH", "MAX_PAGE_STEPS", "WINDOWS", "events_page_router", "funnel_chart"]

EVENTS_PATH = "/dashboard/events"
MAX_PAGE_STEPS = 5
DEFAULT_DAYS = 28
MAX_DAYS = 366
WINDOWS: dict[str, tuple[str, timedelta | None]] = {
    "": ("the whole range", None),
    "1h": ("1 hour", timedelta(hours=1)),
    "1d": ("1 day", timedelta(days=1)),
    "7d": ("7 days", timedelta(days=7)),
}
"""The funnel form's windows: value -> (label, window)."""

_FONT = "system-ui, -apple-system, Segoe UI, Roboto, sans-serif"


def _days(text: str | None) -> int:
    if text and text.isdigit() and len(text) < 5:
        return min(max(int(text), 1), MAX_DAYS)
    return DEFAULT_DAYS


def funnel_chart(result: Funnel) -> Chart:
    """The funnel as a Plotly funnel: subjects per step, with the share of step 1 and of the
    previous step on each bar (no data when no one did step 1)."""
    first = result.steps[0].count if result.steps else 0
    labels = [f"{n}. {s.step.label}" for n, s in enumerate(result.steps, start=1)]
    data: list[dict[str, Any]] = []
    if first:
        data.append(
            {
                "type": "funnel",
                "y": labels,
                "x": [s.count for s in result.steps],
                "textinfo": "value+percent initial+percent previous",
                "marker": {"color": "#1f4e79"},
                "connector": {"line": {"color": "#cbd2d9"}},
                "hoverinfo": "y+x+percent initial+percent previous",
            }
        )
    layout = {
        "margin": {"l": 16, "r": 16, "t": 16, "b": 32},
        "font": {"family": _FONT, "size": 12},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "yaxis": {"automargin": True},
        "height": max(260, 70 * len(labels) + 60),
        "showlegend": False,
    }
    who = "users" if result.per == "user" else "sessions"
    return Chart(
        "funnel",
        f"Funnel: {who} reaching each step in order",
        data,
        layout,
        note="Each bar: the subjects that did steps 1 to it in order, its share of step 1 "
        "and of the previous step.",
        empty="No one did step 1 in this range.",
    )


def _page(
    request: Request,
    *,
    days: str | None = None,
    interval: str | None = None,
    step: Annotated[list[str] | None, Query()] = None,
    per: str | None = None,
    window: str | None = None,
    bots: str | None = None,
) -> Response:
    dashboards: Dashboards = request.app.state.dashboards
    session = dashboards.guard(request)
    if not isinstance(session, Session):
        return session
    count = _days(days)
    bucket = "hour" if interval == "hour" and count * 24 <= MAX_BUCKETS else "day"
    subject = "session" if per == "session" else "user"
    window_key = window if window in WINDOWS else ""
    with_bots = bots == "1"
    texts = [t.strip() for t in (step or [])[:MAX_PAGE_STEPS]]
    end = dashboards.clock()
    start = end - timedelta(days=count)
    errors: list[str] = []
    steps: list[Step] = []
    for number, text in enumerate(texts, start=1):
        if not text:
            continue
        try:
            steps.append(Step.parse(text))
        except ValueError as exc:
            errors.append(f"Step {number}: {exc}")
    with dashboards.engine.connect() as conn:
        found = volume(conn, start, end, interval=bucket, bots=with_bots)  # type: ignore[arg-type]
        top = top_events(conn, start, end, limit=15, bots=with_bots)
        result = (
            funnel(
                conn,
                steps,
                start,
                end,
                per=subject,  # type: ignore[arg-type]
                window=WINDOWS[window_key][1],
                bots=with_bots,
            )
            if steps and not errors
            else None
        )
    labels = [
        moment.strftime("%Y-%m-%d" if bucket == "day" else "%Y-%m-%d %H:00")
        for moment in found.buckets
    ]
    charts = [
        bars(
            "event-volume",
            f"Events per {bucket} (UTC), by event type",
            labels,
            found.series,
            y_title="events",
            stacked=True,
            note=f"{found.total:,} events" + ("" if with_bots else ", bots left out") + ".",
        )
    ]
    if result is not None:
        charts.append(funnel_chart(result))
    suggestions = [s.step.label for s in top.struct] + [p.step.label for p in top.pages]
    form_steps = texts + [""] * (MAX_PAGE_STEPS - len(texts))
    return dashboards.render(
        request,
        "events.html",
        session=session,
        status=422 if errors else 200,
        charts=charts,
        days=count,
        interval=bucket,
        top=top,
        funnel=result,
        form_steps=form_steps,
        suggestions=suggestions,
        per=subject,
        window=window_key,
        windows=WINDOWS,
        bots=with_bots,
        errors=errors,
        start=start,
        end=end,
    )


def events_page_router() -> APIRouter:
    """The events page's route (mount it after the dashboards: it uses
    ``app.state.dashboards``)."""
    router = APIRouter(include_in_schema=False)
    router.add_api_route(EVENTS_PATH, _page, methods=["GET"])
    return router
