"""Event analytics as read-only JSON, under ``/api/v1/events``: ``events_api_router(settings)``.

The same figures as the events dashboard (:mod:`.analytics`), for BI tools and scripts:

- ``GET /api/v1/events/volume``: events per ``interval`` (``day`` or ``hour``, UTC) by event
  type; every bucket of the range is listed, zeros included.
- ``GET /api/v1/events/top``: the ``limit`` most frequent structured events (category, action)
  and viewed page paths; with ``users=true``, the distinct users of each too (slower).
- ``GET /api/v1/events/funnel``: ordered steps, each a repeated ``step`` parameter,
  ``se:<category>/<action>`` or ``page:<path>`` (``?step=page:/pricing&step=se:signup/start``);
  ``per=user|session``; ``window`` (seconds, or an ISO 8601 duration such as ``PT1H`` or
  ``P7D``) bounds the time from step 1 to every later step. Counts per step and the conversion
  rates from step 1 and from the previous step (null when dividing by zero).

Every route takes ``since`` (default: 28 days before ``until``) and ``until`` (default: now), the
half-open window ``[since, until)`` of ``derived_tstamp`` (no zone: UTC), and ``bots`` (default
false: events of bots left out).

Who may read: a logged-in operator (the dashboards' session cookie, as the page's own requests
send it) or a BI API token (``Authorization: Bearer <token>``, as for the rest of ``/api/v1``:
:mod:`usage_ping.collector.api`). A presented token is always checked; with neither, 401; a
token while no token is configured, 403. Errors are ``{"error": "<message>"}``, 422 for a bad
parameter.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.params import Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

# The BI API's error handling and token checks, shared so that both answer alike.
from usage_ping.collector.api import ApiError, ErrorBody, _ApiRoute, _digests, check_bearer
from usage_ping.collector.settings import ServiceSettings
from usage_ping.collector.snowplow.analytics import (
    MAX_STEPS,
    Step,
    funnel,
    top_events,
    volume,
)

__all__ = ["DEFAULT_DAYS", "events_api_router"]

DEFAULT_DAYS = 28
"""The range when ``since`` is not given: this many days before ``until``."""

_Credentials = Annotated[
    HTTPAuthorizationCredentials | None,
    Depends(
        HTTPBearer(
            auto_error=False,
            scheme_name="api_token",
            description="An API token whose SHA-256 digest is in the service's api_tokens.",
        )
    ),
]
_Since = Annotated[
    datetime | None,
    Query(description="First derived_tstamp included (no zone: UTC); default until - 28 days."),
]
_Until = Annotated[
    datetime | None, Query(description="First derived_tstamp excluded (no zone: UTC); default now.")
]
_Bots = Annotated[bool, Query(description="Count the events of bots too.")]


class VolumeAnswer(BaseModel):
    """Events per bucket and event type."""

    since: datetime
    until: datetime
    interval: Literal["day", "hour"]
    buckets: list[datetime] = Field(description="Each bucket's start (UTC).")
    series: dict[str, list[int]] = Field(
        description="Event type (struct, page_view, unstruct …) -> count per bucket."
    )
    total: int


_USERS = "Distinct users (as funnels count them); null unless users=true."


class StructItem(BaseModel):
    category: str
    action: str
    step: str = Field(description="As a funnel step: se:<category>/<action>.")
    events: int
    users: int | None = Field(description=_USERS)


class PageItem(BaseModel):
    path: str
    step: str = Field(description="As a funnel step: page:<path>.")
    views: int
    users: int | None = Field(description=_USERS)


class TopAnswer(BaseModel):
    """The most frequent structured events and viewed pages."""

    since: datetime
    until: datetime
    struct: list[StructItem]
    pages: list[PageItem]


class FunnelStepItem(BaseModel):
    step: str
    count: int = Field(description="Subjects that did steps 1 to this one, in order.")
    from_first: float | None = Field(description="count / step 1's count.")
    from_previous: float | None = Field(description="count / the previous step's count.")


class FunnelAnswer(BaseModel):
    """A funnel: subjects per step and the conversion rates."""

    since: datetime
    until: datetime
    per: Literal["user", "session"]
    window_seconds: float | None
    steps: list[FunnelStepItem]
    conversion: float | None = Field(description="The last step's count over the first's.")


def _utc(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ApiError(422, f"{name}: {value.isoformat()} is out of range in UTC") from None


def _range(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    end = _utc(until, "until") or datetime.now(UTC)
    start = _utc(since, "since")
    if start is None:
        try:
            start = end - timedelta(days=DEFAULT_DAYS)
        except OverflowError:
            raise ApiError(422, "until: too early for the default 28-day range") from None
    if start >= end:
        raise ApiError(422, f"since ({start.isoformat()}) must be before until ({end.isoformat()})")
    return start, end


def events_api_router(engine: sa.Engine, settings: ServiceSettings) -> APIRouter:
    """The ``/api/v1/events`` routes on the service's database.

    Example::

        app.include_router(events_api_router(engine, settings))
    """
    digests = _digests(settings.api_tokens)

    def require_reader(request: Request, credentials: _Credentials) -> None:
        if credentials is None:
            dashboards = getattr(request.app.state, "dashboards", None)
            if dashboards is not None and dashboards.auth.request_session(request) is not None:
                return
            raise ApiError(
                401,
                "log in to the dashboards, or send a BI API token: Authorization: Bearer <token>",
                {"WWW-Authenticate": "Bearer"},
            )
        check_bearer(credentials, digests)

    router = APIRouter(
        prefix="/api/v1/events",
        tags=["events"],
        route_class=_ApiRoute,
        dependencies=[Depends(require_reader)],
        responses={
            401: {"model": ErrorBody, "description": "Not logged in and no token, or a bad one."},
            403: {"model": ErrorBody, "description": "A token, but none is configured."},
            422: {"model": ErrorBody, "description": "A parameter is not valid."},
        },
    )

    @router.get("/volume", summary="Events per day or hour, by event type")
    def events_volume(
        since: _Since = None,
        until: _Until = None,
        interval: Annotated[
            Literal["day", "hour"], Query(description="Bucket size (UTC).")
        ] = "day",
        bots: _Bots = False,
    ) -> VolumeAnswer:
        start, end = _range(since, until)
        try:
            with engine.connect() as conn:
                found = volume(conn, start, end, interval=interval, bots=bots)
        except ValueError as exc:  # too many buckets
            raise ApiError(422, str(exc)) from None
        return VolumeAnswer(
            since=start,
            until=end,
            interval=interval,
            buckets=found.buckets,
            series=found.series,
            total=found.total,
        )

    @router.get("/top", summary="The most frequent structured events and viewed pages")
    def events_top(
        since: _Since = None,
        until: _Until = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="Items per list.")] = 20,
        users: Annotated[
            bool, Query(description="Count each item's distinct users too (slower).")
        ] = False,
        bots: _Bots = False,
    ) -> TopAnswer:
        start, end = _range(since, until)
        with engine.connect() as conn:
            found = top_events(conn, start, end, limit=limit, users=users, bots=bots)
        return TopAnswer(
            since=start,
            until=end,
            struct=[
                StructItem(
                    category=s.category,
                    action=s.action,
                    step=s.step.label,
                    events=s.events,
                    users=s.users,
                )
                for s in found.struct
            ],
            pages=[
                PageItem(path=p.path, step=p.step.label, views=p.views, users=p.users)
                for p in found.pages
            ],
        )

    @router.get("/funnel", summary="Subjects reaching each of ordered steps, and conversion")
    def events_funnel(
        *,
        step: Annotated[
            list[str],
            Query(
                min_length=1,
                max_length=MAX_STEPS,
                description="Repeated, in order: se:<category>/<action> or page:<path>.",
            ),
        ],
        since: _Since = None,
        until: _Until = None,
        per: Annotated[
            Literal["user", "session"],
            Query(description="user: user_id, else domain_userid, else network_userid."),
        ] = "user",
        window: Annotated[
            timedelta | None,
            Query(description="Longest time from step 1 to a later step (seconds, or PT1H)."),
        ] = None,
        bots: _Bots = False,
    ) -> FunnelAnswer:
        start, end = _range(since, until)
        try:
            steps = [Step.parse(text) for text in step]
        except ValueError as exc:
            raise ApiError(422, f"step: {exc}") from None
        if window is not None and window <= timedelta(0):
            raise ApiError(422, "window: must be positive")
        with engine.connect() as conn:
            found = funnel(conn, steps, start, end, per=per, window=window, bots=bots)
        return FunnelAnswer(
            since=start,
            until=end,
            per=per,
            window_seconds=window.total_seconds() if window is not None else None,
            steps=[
                FunnelStepItem(
                    step=s.step.label,
                    count=s.count,
                    from_first=s.from_first,
                    from_previous=s.from_previous,
                )
                for s in found.steps
            ],
            conversion=found.conversion,
        )

    return router
