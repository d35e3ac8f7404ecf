"""The read-only JSON API for BI tools, under ``/api/v1``: ``api_router(engine, settings)``.

Every endpoint needs an API token, sent as ``Authorization: Bearer <token>``. The service keeps
only SHA-256 hex digests of its tokens (:func:`hash_token`); with none configured the API is off
and answers 403 saying how to add one; a missing or unknown token gets 401.

Endpoints (all ``GET``; errors are ``{"error": "<message>"}`` like the rest of the service):

- ``/api/v1/instances``: instances with their facts and latest ping, by uuid; filters
  ``version``, ``edition``, ``installation_type`` (exact) and ``seen_since`` (a ping received
  at or after it).
- ``/api/v1/instances/{uuid}``: one instance with its latest ping and that ping's score block.
- ``/api/v1/instances/{uuid}/pings``: its pings, oldest ``recorded_at`` first.
- ``/api/v1/pings/{id}``: one ping: its raw payload and the response it got.
- ``/api/v1/metrics/{key_path}/series``: a metric's value in each ping recorded in
  ``[since, until)``, oldest first, optionally of one instance (``uuid``). With
  ``aggregate=weekly``: per ISO week (UTC, Monday to Sunday, weeks without data left out) the
  count of instances, and the mean, median and 90th percentile of their values, each instance
  counted once with its latest value of the week. Percentiles interpolate linearly between
  ranks (numpy's default, as the DevOps score's leaders). Across all instances, whole weeks are
  kept in ``dashboard_weeks`` once computed, and computed again when a ping recorded in them
  arrives later.
- ``/api/v1/export/metrics.parquet``: the flat metrics of ``[since, until)`` as one Parquet file
  (:mod:`usage_ping.collector.export`).

Lists come in pages of ``limit`` items (1 to 1000, default 100) with a ``next_cursor`` to pass
back as ``cursor`` (null on the last page). Cursors are keyset positions: a page costs the same
at any depth, and pings stored meanwhile do not shift the pages. Times are ISO 8601; a time
without a zone is taken as UTC. Bad parameters get 422 naming the parameter; an unknown
instance, ping or metric gets 404. Queries are the same on PostgreSQL and SQLite.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import hmac
import json
import math
import re
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.params import Path as PathParam
from fastapi.params import Query
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from usage_ping.collector.export import PARQUET_MEDIA_TYPE, write_metrics
from usage_ping.collector.key_paths import key_path_id
from usage_ping.collector.settings import ServiceSettings
from usage_ping.collector.storage import (
    ON_CONFLICT_INSERTS,
    dashboard_weeks,
    instances,
    ping_metrics,
    pings,
)

__all__ = [
    "MAX_LIMIT",
    "ApiError",
    "Tokens",
    "api_router",
    "check_bearer",
    "hash_token",
]

MAX_LIMIT = 1000
"""The most items one page holds."""

Tokens = Collection[str] | Callable[[], Iterable[str]]
"""SHA-256 hex digests of the valid API tokens, or a function returning them (read per request)."""

_DIGEST = re.compile(r"[0-9a-f]{64}")
_NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL: refused as 422, never sent to the DB


def hash_token(token: str) -> str:
    """The SHA-256 hex digest of an API token, as the service's configuration lists it.

    Example::

        >>> hash_token("s3cret")[:16]
        '4e738ca5563c06cf'
    """
    return hashlib.sha256(token.encode()).hexdigest()


class ApiError(Exception):
    """An answer other than 200: its status, message and headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _describe(errors: Iterable[Any]) -> str:
    """Pydantic's validation errors as one line: ``limit: Input should be ... (got '5000')``."""
    parts = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ())]
        where = ".".join(loc[1:]) or ".".join(loc) or "request"
        text = f"{where}: {error.get('msg', 'invalid')}"
        given = error.get("input")
        if isinstance(given, str | int | float) and not isinstance(given, bool):
            shown = repr(given)
            text += f" (got {shown[:60] + '…' if len(shown) > 60 else shown})"
        parts.append(text)
    return "; ".join(parts)


class _ApiRoute(APIRoute):
    """Answers validation and API errors as ``{"error": message}``, as the ingest endpoints do."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response: Response = await handler(request)
            except RequestValidationError as exc:
                return _error(422, _describe(exc.errors()))
            except ApiError as exc:
                return _error(exc.status, exc.message, exc.headers)
            return response

        return route


# -- response models ---------------------------------------------------------------------------


class ErrorBody(BaseModel):
    """What every refused request gets."""

    error: str = Field(description="What was wrong, naming the parameter.")


class PingSummary(BaseModel):
    """A ping in lists: when it was recorded and received, and its DevOps score."""

    id: int
    recorded_at: datetime
    received_at: datetime
    version: str | None
    score: float | None = Field(description="Mean of the feature percentages; null: no feature.")


class Instance(BaseModel):
    """An instance's latest facts (from its most recently recorded ping)."""

    uuid: str
    hostname: str | None
    version: str | None
    edition: str | None
    installation_type: str | None
    first_seen: datetime = Field(description="When its first ping was received.")
    last_seen: datetime = Field(description="When its last ping was received.")
    latest_ping: PingSummary | None


class InstanceDetail(Instance):
    """An instance with the number of its pings and its latest score block."""

    pings: int
    conv_index: dict[str, int | float | None] | None = Field(
        description="The latest ping's answer: usage_data_id, leader_*, instance_*, "
        "percentage_* per feature, and score."
    )


class InstancePage(BaseModel):
    items: list[Instance]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last.")


class PingPage(BaseModel):
    items: list[PingSummary]
    next_cursor: str | None


class PingFacts(BaseModel):
    """A ping's stored facts."""

    id: int
    uuid: str
    recorded_at: datetime
    received_at: datetime
    source: str = Field(description="http (sent) or upload (an exported file uploaded by hand).")
    hostname: str | None
    version: str | None
    edition: str | None
    installation_type: str | None
    active_user_count: int | None
    score: float | None


class Ping(PingFacts):
    """One ping as received, and the response it got."""

    payload: dict[str, Any] = Field(description="As received; NaN and infinities as null.")
    response: dict[str, Any] | None


class SeriesPoint(BaseModel):
    """A metric's value in one ping."""

    ping_id: int
    uuid: str
    recorded_at: datetime
    value: float


class SeriesPage(BaseModel):
    key_path: str
    aggregate: Literal["none"]
    items: list[SeriesPoint]
    next_cursor: str | None


class WeekAggregate(BaseModel):
    """A metric across instances in one ISO week (each instance's latest value of the week)."""

    week: str = Field(description="ISO week, e.g. 2026-W47.", examples=["2026-W47"])
    start: date = Field(description="Its Monday (UTC).")
    count: int = Field(description="Instances with a value this week.")
    avg: float
    median: float
    p90: float


class WeeklyPage(BaseModel):
    key_path: str
    aggregate: Literal["weekly"]
    items: list[WeekAggregate]
    next_cursor: str | None


# -- parameters --------------------------------------------------------------------------------

_Limit = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description=f"Items per page (at most {MAX_LIMIT}).")
]
_Cursor = Annotated[
    str | None,
    Query(max_length=512, description="The `next_cursor` of the previous page."),
]
_Uuid = Annotated[str, PathParam(min_length=1, max_length=64, pattern=_NO_NUL)]
_Since = Annotated[datetime | None, Query(description="First recorded_at included (no zone: UTC).")]
_Until = Annotated[datetime | None, Query(description="First recorded_at excluded (no zone: UTC).")]


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


def _strict_json(text: str) -> Any:
    """Stored JSON (json.dumps writes NaN and Infinity) with those as null, as JSON has them."""
    return json.loads(text, parse_constant=lambda _: None)


def _fact(limit: int) -> Any:
    return Query(max_length=limit, pattern=_NO_NUL, description="Exact match.")


def _utc(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ApiError(422, f"{name}: {value.isoformat()} is out of range in UTC") from None


def _range(since: datetime | None, until: datetime | None) -> tuple[datetime | None, ...]:
    start, end = _utc(since, "since"), _utc(until, "until")
    if start is not None and end is not None and start > end:
        raise ApiError(422, f"since ({start.isoformat()}) is after until ({end.isoformat()})")
    return start, end


# -- cursors -----------------------------------------------------------------------------------


_NOT_A_CURSOR = "cursor: not a next_cursor this endpoint returned"


def _encode_cursor(kind: str, *position: str | int) -> str:
    raw = json.dumps([kind, *position], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, kind: str, *types: type) -> list[Any]:
    """The position a cursor of this endpoint holds; 422 for anything else."""
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:  # not base64, not UTF-8 or not JSON
        data = None
    if (
        isinstance(data, list)
        and len(data) == len(types) + 1
        and data[0] == kind
        and all(type(v) is t for v, t in zip(data[1:], types, strict=True))
    ):
        return data[1:]
    raise ApiError(422, _NOT_A_CURSOR)


def _cursor_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is not None:
            return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        pass
    raise ApiError(422, _NOT_A_CURSOR)


# -- aggregates --------------------------------------------------------------------------------


def _percentile(ordered: list[float], percent: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), without overflow."""
    position = (len(ordered) - 1) * percent / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    a, b = ordered[low], ordered[high]
    value = a * (1 - fraction) + b * fraction
    return min(max(value, a), b)  # rounding never leaves [a, b]


def _week_aggregate(monday: date, values: Collection[float]) -> WeekAggregate:
    ordered = sorted(values)
    n = len(ordered)
    year, week, _ = monday.isocalendar()
    return WeekAggregate(
        week=f"{year}-W{week:02d}",
        start=monday,
        count=n,
        avg=math.fsum(v / n for v in ordered),  # divided first: no overflow near the float max
        median=_percentile(ordered, 50),
        p90=_percentile(ordered, 90),
    )


def _monday(moment: datetime) -> date:
    day = moment.astimezone(UTC).date()
    return day - timedelta(days=day.weekday())


# -- weekly aggregates kept in the database ----------------------------------------------------

WEEK = timedelta(weeks=1)
GRACE = timedelta(hours=1)
"""Pings being stored are received at most this long before they commit (as the dashboards'
closed weeks assume)."""


def _weeks_of(
    conn: sa.Connection, path_id: int | None, ranges: list[tuple[datetime, datetime]]
) -> list[WeekAggregate | None]:
    """The aggregate of the pings recorded in each ``[start, end)`` of ``ranges`` (ISO weeks, or
    the parts of them in the requested range, in order, none overlapping); None for a range
    where none has the metric (``path_id``: the key path's id).

    One query over all of them: a week at a time, PostgreSQL read the key path's whole index
    range for each week (about 90 ms a week at 10,000 instances x 52 weeks, 52 of them on a
    first request).
    """
    found: list[dict[str, float]] = [{} for _ in ranges]
    if path_id is None or not ranges:
        return [None] * len(ranges)
    starts = [start for start, _ in ranges]
    rows = conn.execute(
        sa.select(pings.c.uuid, pings.c.recorded_at, ping_metrics.c.value)
        .join(ping_metrics, ping_metrics.c.ping_id == pings.c.id)
        .where(
            ping_metrics.c.key_path_id == path_id,
            pings.c.recorded_at >= ranges[0][0],
            pings.c.recorded_at < ranges[-1][1],
        )
        .order_by(pings.c.recorded_at, pings.c.id)
    )
    for uuid, recorded_at, value in rows:
        index = bisect.bisect_right(starts, recorded_at) - 1
        if index >= 0 and recorded_at < ranges[index][1]:
            found[index][uuid] = value  # a later ping of the week replaces an earlier one
    return [
        _week_aggregate(_monday(start), values.values()) if values else None
        for (start, _), values in zip(ranges, found, strict=True)
    ]


def _series_name(key_path: str) -> str:
    return json.dumps(["weekly", key_path], ensure_ascii=False)


def _stored(
    conn: sa.Connection, name: str, first: datetime, last: datetime
) -> dict[datetime, tuple[datetime, WeekAggregate | None]]:
    """Kept weeks of a series: week start -> (when computed, aggregate or None for no data)."""
    kept = {}
    for week_start, figures in conn.execute(
        sa.select(dashboard_weeks.c.week_start, dashboard_weeks.c.figures).where(
            dashboard_weeks.c.series == name,
            dashboard_weeks.c.week_start >= first,
            dashboard_weeks.c.week_start <= last,
        )
    ):
        data = json.loads(figures)
        week = None if data["week"] is None else WeekAggregate.model_validate(data["week"])
        kept[week_start] = (datetime.fromisoformat(data["at"]), week)
    return kept


def _changed_weeks(conn: sa.Connection, since: datetime) -> set[datetime]:
    """Starts of the recorded weeks of the pings received since ``since`` (read from
    ``ix_pings_received_at`` alone)."""
    found = conn.execute(
        sa.select(pings.c.recorded_at).where(pings.c.received_at >= since).distinct()
    ).scalars()
    return {datetime.combine(_monday(moment), time(), UTC) for moment in found}


def _keep(engine: sa.Engine, name: str, computed: list[tuple[datetime, Any]]) -> None:
    """Store (or replace) computed weeks: ``[(week start, {"at": ..., "week": ...})]``."""
    rows = [
        {"series": name, "week_start": start, "figures": json.dumps(figures)}
        for start, figures in computed
    ]
    with engine.begin() as conn:
        upsert = ON_CONFLICT_INSERTS.get(conn.dialect.name)
        if upsert is not None:
            statement = upsert(dashboard_weeks)
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[dashboard_weeks.c.series, dashboard_weeks.c.week_start],
                    set_={"figures": statement.excluded.figures},
                ),
                rows,
            )
            return
        for row in rows:
            conn.execute(
                dashboard_weeks.delete().where(
                    dashboard_weeks.c.series == name,
                    dashboard_weeks.c.week_start == row["week_start"],
                )
            )
        conn.execute(dashboard_weeks.insert(), rows)


def _kept_weeks(
    engine: sa.Engine,
    conn: sa.Connection,
    key_path: str,
    *,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    cursor: str | None,
) -> WeeklyPage:
    """The weekly aggregates across instances, each whole week read from ``dashboard_weeks``
    when kept and still valid, else computed from that week's pings alone and kept.

    A week's aggregate changes only when a ping recorded in it arrives (late pings do): one
    computed at ``at`` is still valid while no ping received since ``at - GRACE`` (every ping not
    yet committed then was received after that) is recorded in the week. Weeks cut by ``since``
    or ``until`` are computed and not kept. The result equals reading every row in order.
    """
    now = datetime.now(UTC)
    bounds = conn.execute(
        sa.select(sa.func.min(pings.c.recorded_at), sa.func.max(pings.c.recorded_at))
    ).one()
    if bounds[0] is None:
        return WeeklyPage(key_path=key_path, aggregate="weekly", items=[], next_cursor=None)
    low, high = bounds[0], bounds[1]
    if since is not None:
        low = max(low, since)
    if until is not None:
        high = min(high, until - timedelta(microseconds=1))
    if cursor is not None:
        (start,) = _decode_cursor(cursor, "weekly", str)
        try:
            low = max(low, datetime.combine(date.fromisoformat(start), time(), UTC))
        except ValueError:
            raise ApiError(422, _NOT_A_CURSOR) from None
    first = datetime.combine(_monday(low), time(), UTC)
    last = datetime.combine(_monday(high), time(), UTC) if high >= low else first - WEEK
    name = _series_name(key_path)
    path_id = key_path_id(conn, key_path)
    keep = len(name) <= dashboard_weeks.c.series.type.length  # type: ignore[attr-defined]
    kept = _stored(conn, name, first, last) if keep and last >= first else {}
    changed = _changed_weeks(conn, min(at for at, _ in kept.values()) - GRACE) if kept else set()
    # The weeks in order: each read from what is kept, or computed (all of those in one query).
    plan: list[tuple[datetime, bool, WeekAggregate | None, tuple[datetime, datetime] | None]] = []
    week_start = first
    while week_start <= last:
        week_end = week_start + WEEK
        whole = (since is None or since <= week_start) and (until is None or until >= week_end)
        found = kept.get(week_start) if whole and week_start not in changed else None
        if found is not None:
            plan.append((week_start, whole, found[1], None))
        else:
            lower = week_start if since is None else max(week_start, since)
            upper = week_end if until is None else min(week_end, until)
            plan.append((week_start, whole, None, (lower, upper)))
        week_start = week_end
    ranges = [span for *_, span in plan if span is not None]
    fresh = iter(_weeks_of(conn, path_id, ranges))
    items: list[WeekAggregate] = []
    computed: list[tuple[datetime, Any]] = []
    next_cursor = None
    for week_start, whole, stored, span in plan:
        week = stored
        if span is not None:
            week = next(fresh)
            if whole and keep:
                figures = None if week is None else week.model_dump(mode="json")
                computed.append((week_start, {"at": now.isoformat(), "week": figures}))
        if week is not None:
            if len(items) == limit:
                next_cursor = _encode_cursor("weekly", week_start.date().isoformat())
                break
            items.append(week)
    if computed:
        _keep(engine, name, computed)
    return WeeklyPage(key_path=key_path, aggregate="weekly", items=items, next_cursor=next_cursor)


# -- the router --------------------------------------------------------------------------------


def _digests(tokens: Tokens) -> list[str]:
    values = [str(t).strip().lower() for t in (tokens() if callable(tokens) else tokens)]
    bad = [v for v in values if not _DIGEST.fullmatch(v)]
    if bad:
        raise ValueError(
            f"api_tokens: {bad[0][:12]!r}… is not a SHA-256 hex digest (64 hex digits); "
            "list hash_token(token), not the token"
        )
    return values


_NO_TOKENS = (
    "the API is off: no API token is configured. Add the SHA-256 hex digest of a token to "
    'api_tokens in the service configuration (printf %s "$TOKEN" | sha256sum), restart, and '
    "send it as Authorization: Bearer <token>"
)


def check_bearer(credentials: HTTPAuthorizationCredentials | None, digests: list[str]) -> None:
    """Raise :class:`ApiError` unless ``credentials`` carry a token whose SHA-256 digest is one
    of ``digests``: 403 when none is configured, 401 without a token or with an unknown one."""
    if not digests:
        raise ApiError(403, _NO_TOKENS)
    if credentials is None:
        raise ApiError(
            401,
            "this API needs a token: send Authorization: Bearer <token>",
            {"WWW-Authenticate": "Bearer"},
        )
    presented = hash_token(credentials.credentials)
    if not any(hmac.compare_digest(presented, digest) for digest in digests):
        raise ApiError(
            401,
            "the API token is not valid",
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )


def api_router(
    engine: sa.Engine, settings: ServiceSettings, tokens: Tokens | None = None
) -> APIRouter:
    """The ``/api/v1`` routes on the service's database.

    Args:
        engine: the service's database.
        settings: the service's configuration; its ``api_tokens`` are used when ``tokens`` is None.
        tokens: SHA-256 hex digests of the valid tokens (:func:`hash_token`), or a function
            returning them on each request; empty: the API answers 403.

    Raises:
        ValueError: a configured value is not a SHA-256 hex digest.

    Example::

        app.include_router(api_router(engine, settings, tokens=[hash_token("s3cret")]))
    """
    source: Tokens = tokens if tokens is not None else settings.api_tokens
    if not callable(source):
        source = _digests(source)

    def require_token(credentials: _Credentials) -> None:
        check_bearer(credentials, _digests(source))

    router = APIRouter(
        prefix="/api/v1",
        tags=["BI API"],
        route_class=_ApiRoute,
        dependencies=[Depends(require_token)],
        responses={
            401: {"model": ErrorBody, "description": "No token, or an unknown one."},
            403: {"model": ErrorBody, "description": "No API token is configured."},
            422: {"model": ErrorBody, "description": "A parameter is not valid."},
        },
    )
    not_found: dict[int | str, dict[str, Any]] = {
        404: {"model": ErrorBody, "description": "Not found."}
    }

    latest = pings.alias("latest")
    instance_columns = (
        instances.c.uuid,
        instances.c.hostname,
        instances.c.version,
        instances.c.edition,
        instances.c.installation_type,
        instances.c.first_seen,
        instances.c.last_seen,
        latest.c.id.label("ping_id"),
        latest.c.recorded_at.label("ping_recorded_at"),
        latest.c.received_at.label("ping_received_at"),
        latest.c.version.label("ping_version"),
        latest.c.score.label("ping_score"),
    )

    def instance(row: sa.Row[Any]) -> dict[str, Any]:
        summary = (
            None
            if row.ping_id is None
            else PingSummary(
                id=row.ping_id,
                recorded_at=row.ping_recorded_at,
                received_at=row.ping_received_at,
                version=row.ping_version,
                score=row.ping_score,
            )
        )
        return {
            "uuid": row.uuid,
            "hostname": row.hostname,
            "version": row.version,
            "edition": row.edition,
            "installation_type": row.installation_type,
            "first_seen": row.first_seen,
            "last_seen": row.last_seen,
            "latest_ping": summary,
        }

    def instance_query() -> sa.Select[Any]:
        return (
            sa.select(*instance_columns)
            .select_from(instances)
            .outerjoin(latest, latest.c.id == instances.c.last_ping_id)
        )

    def known_instance(conn: sa.Connection, uuid: str) -> None:
        found = conn.execute(sa.select(instances.c.uuid).where(instances.c.uuid == uuid)).first()
        if found is None:
            raise ApiError(404, f"no instance has the uuid {uuid!r}")

    @router.get("/instances", summary="Instances, by uuid")
    def list_instances(
        *,
        version: Annotated[str | None, _fact(64)] = None,
        edition: Annotated[str | None, _fact(32)] = None,
        installation_type: Annotated[str | None, _fact(64)] = None,
        seen_since: Annotated[
            datetime | None, Query(description="Only instances with a ping received since then.")
        ] = None,
        limit: _Limit = 100,
        cursor: _Cursor = None,
    ) -> InstancePage:
        query = instance_query().order_by(instances.c.uuid).limit(limit + 1)
        for column, value in (
            (instances.c.version, version),
            (instances.c.edition, edition),
            (instances.c.installation_type, installation_type),
        ):
            if value is not None:
                query = query.where(column == value)
        since = _utc(seen_since, "seen_since")
        if since is not None:
            query = query.where(instances.c.last_seen >= since)
        if cursor is not None:
            (after,) = _decode_cursor(cursor, "instances", str)
            query = query.where(instances.c.uuid > after)
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return InstancePage(
            items=[Instance(**instance(r)) for r in rows],
            next_cursor=_encode_cursor("instances", rows[-1].uuid) if more else None,
        )

    # Registered before /instances/{uuid}: uuids may hold "/" (the path convertor takes them).
    @router.get(
        "/instances/{uuid:path}/pings",
        summary="An instance's pings, oldest first",
        responses=not_found,
    )
    def instance_pings(*, uuid: _Uuid, limit: _Limit = 100, cursor: _Cursor = None) -> PingPage:
        query = (
            sa.select(
                pings.c.id, pings.c.recorded_at, pings.c.received_at, pings.c.version, pings.c.score
            )
            .where(pings.c.uuid == uuid)
            .order_by(pings.c.recorded_at)
            .limit(limit + 1)
        )
        if cursor is not None:
            (after,) = _decode_cursor(cursor, "pings", str)
            query = query.where(pings.c.recorded_at > _cursor_time(after))
        with engine.connect() as conn:
            known_instance(conn, uuid)
            rows = conn.execute(query).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return PingPage(
            items=[PingSummary(**r._mapping) for r in rows],
            # (uuid, recorded_at) is unique: recorded_at alone is the position.
            next_cursor=_encode_cursor("pings", rows[-1].recorded_at.isoformat()) if more else None,
        )

    @router.get(
        "/instances/{uuid:path}",
        summary="An instance, its latest ping and score",
        responses=not_found,
    )
    def get_instance(uuid: _Uuid) -> InstanceDetail:
        with engine.connect() as conn:
            row = conn.execute(
                instance_query()
                .add_columns(latest.c.response.label("ping_response"))
                .where(instances.c.uuid == uuid)
            ).first()
            if row is None:
                raise ApiError(404, f"no instance has the uuid {uuid!r}")
            count = conn.execute(
                sa.select(sa.func.count()).select_from(pings).where(pings.c.uuid == uuid)
            ).scalar_one()
        answer = json.loads(row.ping_response) if row.ping_response else {}
        block = answer.get("conv_index") if isinstance(answer, dict) else None
        return InstanceDetail(
            **instance(row), pings=count, conv_index=block if isinstance(block, dict) else None
        )

    @router.get(
        "/pings/{id}",
        summary="A ping: its raw payload and response",
        response_model=Ping,
        responses=not_found,
    )
    def get_ping(id: Annotated[int, PathParam(ge=1, le=2**63 - 1)]) -> Response:
        with engine.connect() as conn:
            row = conn.execute(sa.select(pings).where(pings.c.id == id)).first()
        if row is None:
            raise ApiError(404, f"no ping has the id {id}")
        # The payload is any JSON object: past pydantic's depth limit (a few hundred levels) it
        # cannot go through a model, so it is encoded with json, as it was stored.
        document = PingFacts.model_validate(row._mapping).model_dump(mode="json")
        document["payload"] = _strict_json(row.payload)
        document["response"] = _strict_json(row.response) if row.response else None
        return Response(
            json.dumps(document, ensure_ascii=False, allow_nan=False),
            media_type="application/json",
        )

    def series_rows(
        conn: sa.Connection,
        key_path: str,
        uuid: str | None,
        since: datetime | None,
        until: datetime | None,
    ) -> sa.Select[Any]:
        path_id = key_path_id(conn, key_path)
        exists = sa.select(ping_metrics.c.ping_id).where(ping_metrics.c.key_path_id == path_id)
        if path_id is None or conn.execute(exists.limit(1)).first() is None:
            raise ApiError(404, f"no ping has the metric {key_path!r}")
        query = (
            sa.select(pings.c.id, pings.c.uuid, pings.c.recorded_at, ping_metrics.c.value)
            .join(ping_metrics, ping_metrics.c.ping_id == pings.c.id)
            .where(ping_metrics.c.key_path_id == path_id)
            .order_by(pings.c.recorded_at, pings.c.id)
        )
        if uuid is not None:
            known_instance(conn, uuid)
            query = query.where(pings.c.uuid == uuid)
        if since is not None:
            query = query.where(pings.c.recorded_at >= since)
        if until is not None:
            query = query.where(pings.c.recorded_at < until)
        return query

    def points(
        key_path: str,
        query: sa.Select[Any],
        conn: sa.Connection,
        limit: int,
        cursor: str | None,
    ) -> SeriesPage:
        if cursor is not None:
            at, ping_id = _decode_cursor(cursor, "series", str, int)
            moment = _cursor_time(at)
            if not 0 <= ping_id < 2**63:
                raise ApiError(422, _NOT_A_CURSOR)
            query = query.where(
                sa.or_(
                    pings.c.recorded_at > moment,
                    sa.and_(pings.c.recorded_at == moment, pings.c.id > ping_id),
                )
            )
        rows = conn.execute(query.limit(limit + 1)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1] if more else None
        return SeriesPage(
            key_path=key_path,
            aggregate="none",
            items=[
                SeriesPoint(ping_id=r.id, uuid=r.uuid, recorded_at=r.recorded_at, value=r.value)
                for r in rows
            ],
            next_cursor=None
            if last is None
            else _encode_cursor("series", last.recorded_at.isoformat(), last.id),
        )

    def weeks(
        key_path: str,
        query: sa.Select[Any],
        conn: sa.Connection,
        limit: int,
        cursor: str | None,
    ) -> WeeklyPage:
        if cursor is not None:
            (start,) = _decode_cursor(cursor, "weekly", str)
            try:
                monday = date.fromisoformat(start)
            except ValueError:
                raise ApiError(422, _NOT_A_CURSOR) from None
            query = query.where(pings.c.recorded_at >= datetime.combine(monday, time(), UTC))
        # Rows come in recorded_at order, so weeks arrive one after the other: only the current
        # week's values are held, and the read stops at the first week past the page.
        result = conn.execution_options(stream_results=True, yield_per=1000).execute(query)
        items: list[WeekAggregate] = []
        current: date | None = None
        values: dict[str, float] = {}
        next_cursor = None

        for row in result:
            monday = _monday(row.recorded_at)
            if monday != current:
                if current is not None:
                    items.append(_week_aggregate(current, values.values()))
                if len(items) == limit:
                    next_cursor = _encode_cursor("weekly", monday.isoformat())
                    break
                current, values = monday, {}
            values[row.uuid] = row.value  # a later ping of the week replaces an earlier one
        else:
            if current is not None:
                items.append(_week_aggregate(current, values.values()))
        result.close()  # the rows past the page are never fetched
        return WeeklyPage(
            key_path=key_path, aggregate="weekly", items=items, next_cursor=next_cursor
        )

    @router.get(
        "/metrics/{key_path:path}/series",
        summary="A metric's values per ping, or per ISO week across instances",
        responses=not_found,
    )
    def metric_series(
        *,
        key_path: Annotated[str, PathParam(min_length=1, max_length=255, pattern=_NO_NUL)],
        since: _Since = None,
        until: _Until = None,
        uuid: Annotated[
            str | None,
            Query(min_length=1, max_length=64, pattern=_NO_NUL, description="One instance."),
        ] = None,
        aggregate: Annotated[
            Literal["none", "weekly"],
            Query(description="weekly: count, avg, median and p90 across instances per week."),
        ] = "none",
        limit: _Limit = 100,
        cursor: _Cursor = None,
    ) -> Annotated[SeriesPage | WeeklyPage, Field(discriminator="aggregate")]:
        start, end = _range(since, until)
        with engine.connect() as conn:
            query = series_rows(conn, key_path, uuid, start, end)
            if aggregate == "weekly" and uuid is None:
                return _kept_weeks(
                    engine, conn, key_path, since=start, until=end, limit=limit, cursor=cursor
                )
            if aggregate == "weekly":
                return weeks(key_path, query, conn, limit, cursor)
            return points(key_path, query, conn, limit, cursor)

    @router.get(
        "/export/metrics.parquet",
        summary="The flat metrics of [since, until) as a Parquet file",
        response_class=FileResponse,
        responses={
            200: {
                "description": "One row per metric and ping: ping_id, uuid, recorded_at, "
                "version, edition, installation_type, key_path, value (zstd).",
                "content": {PARQUET_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def export_metrics(since: _Since = None, until: _Until = None) -> FileResponse:
        start, end = _range(since, until)
        directory = Path(tempfile.mkdtemp(prefix="usage-ping-export-"))
        try:
            written = await run_in_threadpool(
                write_metrics, engine, directory / "metrics.parquet", since=start, until=end
            )
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return FileResponse(
            written.path,
            media_type=PARQUET_MEDIA_TYPE,
            filename="metrics.parquet",
            headers={"X-Export-Rows": str(written.rows)},
            background=BackgroundTask(shutil.rmtree, directory, ignore_errors=True),
        )

    return router
