"""Event analytics over the good store: volume over time, top events, and funnels.

Every query reads ``snowplow_events`` (:mod:`.tables`) by ``derived_tstamp`` (when the event
happened, as Snowplow derives it) in a half-open window ``[start, end)``, leaves bots out unless
``bots=True`` (``is_bot``, from the user agent: :mod:`.agents`), and runs as one SQL statement, the
same on PostgreSQL and SQLite.

Funnels count *subjects*: with ``per="user"``, a user is the first of ``user_id`` (set by the
tracker: the application's user), ``domain_userid`` (the browser tracker's first-party cookie)
and ``network_userid`` (the collector's ``sp`` cookie; the all-zero id of ``SP-Anonymous``
requests is no one), so a user who logs in part-way counts as two subjects (events are not
stitched); with ``per="session"``, a subject is a ``domain_sessionid`` (events without one are
left out).

A subject reaches step *k* when it did steps 1 … *k* in that order, each strictly later than the
one before, all within ``[start, end)``, and, with a ``window``, every later step at most
``window`` after step 1. Without a window, taking the earliest step 1 and then the earliest of
each following step after the previous one finds every subject that can reach a step; with a
window each step-1 event starts its own attempt (a later start has a later deadline), and a
subject counts once per step if any attempt gets there.

The funnel is one statement (:func:`funnel_query`): a CTE per step, the first holding each
subject's earliest step-1 event (each one with a window), each next one the earliest event of its
step after the previous step's, by a join on the subject. On PostgreSQL every step's events come
from an index-only scan of a covering index (migration 0005); JIT compilation is turned off and
``work_mem`` raised for the rest of the caller's transaction (see ``_query_settings``); 28 days of
10M events take about 1.5 s per user and 1.5 s per session (benchmarks/results/events.md).

Example::

    with engine.connect() as conn:
        result = funnel(
            conn,
            [Step.page("/pricing"), Step.struct("signup", "start"), Step.parse("se:signup/done")],
            datetime(2026, 10, 1, tzinfo=UTC),
            datetime(2026, 10, 29, tzinfo=UTC),
            per="session",
            window=timedelta(hours=1),
        )
    [(s.step.label, s.count, s.from_first) for s in result.steps]
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa

from usage_ping.collector.snowplow.enrich import ANONYMOUS_USER_ID
from usage_ping.collector.snowplow.tables import snowplow_events

__all__ = [
    "INTERVALS",
    "MAX_BUCKETS",
    "MAX_STEPS",
    "Funnel",
    "FunnelStep",
    "Interval",
    "PageCount",
    "Per",
    "Step",
    "StructCount",
    "TopEvents",
    "Volume",
    "buckets",
    "funnel",
    "funnel_query",
    "subject",
    "top_events",
    "volume",
]

Per = Literal["user", "session"]
Interval = Literal["day", "hour"]

MAX_STEPS = 10
"""The most steps a funnel may have."""
MAX_BUCKETS = 2000
"""The most points a volume series may have (about 83 days per hour, 5 years per day)."""
INTERVALS: dict[str, timedelta] = {"day": timedelta(days=1), "hour": timedelta(hours=1)}

_events = snowplow_events.c


# -- steps -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One funnel step: a structured event's category and action, or a page view's URL path.

    ``Step.parse`` reads the API's form: ``se:<category>/<action>`` (split at the first ``/``) or
    ``page:<path>``.
    """

    kind: Literal["se", "page"]
    category: str = ""
    action: str = ""
    path: str = ""

    @classmethod
    def struct(cls, category: str, action: str) -> Step:
        """A structured event step."""
        return cls("se", category=category, action=action)

    @classmethod
    def page(cls, path: str) -> Step:
        """A page view step."""
        return cls("page", path=path)

    @classmethod
    def parse(cls, text: str) -> Step:
        """``se:category/action`` or ``page:/path``.

        Raises:
            ValueError: neither form, or an empty part, or a part too long to be stored.
        """
        kind, colon, rest = text.strip().partition(":")
        if not colon or kind not in ("se", "page"):
            raise ValueError(f"{text[:80]!r}: a step is se:<category>/<action> or page:<path>")
        if "\x00" in rest:
            raise ValueError(f"{text[:80]!r}: a step cannot hold NUL")
        if kind == "page":
            if not rest or len(rest) > 500:
                raise ValueError(f"{text[:80]!r}: the page path must have 1 to 500 characters")
            return cls.page(rest)
        category, slash, action = rest.partition("/")
        if not slash or not category or not action:
            raise ValueError(f"{text[:80]!r}: a struct step is se:<category>/<action>")
        if len(category) > 255 or len(action) > 255:
            raise ValueError(f"{text[:80]!r}: category and action have at most 255 characters")
        return cls.struct(category, action)

    @property
    def label(self) -> str:
        """The step in the API's form (``se:issues/create``, ``page:/pricing``)."""
        return f"se:{self.category}/{self.action}" if self.kind == "se" else f"page:{self.path}"

    def condition(self) -> sa.ColumnElement[bool]:
        """The events that are this step."""
        if self.kind == "se":
            return sa.and_(
                _events.se_category == self.category,
                _events.se_action == self.action,
                _events.event == "struct",
            )
        return sa.and_(_events.page_urlpath == self.path, _events.event == "page_view")


def subject(per: Per) -> sa.ColumnElement[Any]:
    """Who a funnel counts: the user (``user_id``, else ``domain_userid``, else the network user
    id unless anonymous) or the session (``domain_sessionid``); NULL when there is none."""
    if per == "session":
        return sa.func.nullif(_events.domain_sessionid, "")
    if per == "user":
        return sa.func.coalesce(
            sa.func.nullif(_events.user_id, ""),
            sa.func.nullif(_events.domain_userid, ""),
            sa.func.nullif(sa.func.nullif(_events.network_userid, ""), ANONYMOUS_USER_ID),
        )
    raise ValueError(f"per must be 'user' or 'session', not {per!r}")


ANALYTICS_WORK_MEM = "64MB"
"""PostgreSQL's ``work_mem`` for an analytics query: a 28-day funnel per session over 10M events
groups ~400k sessions, which spilled to disk in 21 batches at the default 4MB."""


def _query_settings(conn: sa.Connection) -> None:
    # For the rest of the caller's transaction only (set_config(..., true) is SET LOCAL):
    # - JIT off: PostgreSQL's estimates for these joins and groupings are far too high, so it
    #   compiled them, which cost a third of a 2-second funnel and never paid back;
    # - work_mem raised, so that the groupings and sorts of a large funnel stay in memory.
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.select(
                sa.func.set_config("jit", "off", sa.true()),
                sa.func.set_config("work_mem", ANALYTICS_WORK_MEM, sa.true()),
            )
        )


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{name}: naive datetime {moment}: use an aware (UTC) datetime")
    return moment.astimezone(UTC)


def _window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    start, end = _utc(start, "start"), _utc(end, "end")
    if end <= start:
        raise ValueError(f"end ({end.isoformat()}) must be after start ({start.isoformat()})")
    return start, end


def _in_window(start: datetime, end: datetime, bots: bool) -> list[sa.ColumnElement[bool]]:
    where = [_events.derived_tstamp >= start, _events.derived_tstamp < end]
    if not bots:
        where.append(_events.is_bot == sa.false())
    return where


# -- funnels -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FunnelStep:
    """How many subjects reached a step, and the conversion rates to it (None: from zero)."""

    step: Step
    count: int
    from_first: float | None
    """count / the first step's count."""
    from_previous: float | None
    """count / the previous step's count (the first step: 1.0)."""


@dataclass(frozen=True, slots=True)
class Funnel:
    """A funnel's result."""

    steps: list[FunnelStep]
    start: datetime
    end: datetime
    per: Per
    window: timedelta | None
    bots: bool

    @property
    def conversion(self) -> float | None:
        """The last step's count over the first's."""
        return self.steps[-1].from_first if self.steps else None


def _epoch_us(column: Any) -> sa.ColumnElement[int]:
    # SQLite keeps UTCDateTime as 'YYYY-MM-DD HH:MM:SS.ffffff' (SQLAlchemy always writes the six
    # digits): whole seconds from strftime, microseconds from the text, exactly.
    seconds = sa.cast(sa.func.strftime("%s", column), sa.BigInteger)
    micros = sa.cast(sa.func.substr(column, 21, 6), sa.BigInteger)
    return seconds * 1_000_000 + micros


def _within(
    dialect: str, later: sa.ColumnElement[Any], first: sa.ColumnElement[Any], window: timedelta
) -> sa.ColumnElement[bool]:
    """``later <= first + window``, in the dialect's date arithmetic."""
    micros = window // timedelta(microseconds=1)
    if dialect == "sqlite":
        return _epoch_us(later) - _epoch_us(first) <= micros
    if dialect in ("mysql", "mariadb"):
        return later <= sa.func.timestampadd(sa.literal_column("MICROSECOND"), micros, first)
    return later <= first + sa.literal(window, sa.Interval())


def funnel_query(
    dialect: str,
    steps: list[Step],
    start: datetime,
    end: datetime,
    *,
    per: Per = "user",
    window: timedelta | None = None,
    bots: bool = False,
) -> sa.Select[Any]:
    """The funnel as one statement: a row with the count of subjects at each step.

    One CTE per step: step 1's events per subject (their earliest, or each one with a window),
    then for each step the earliest of its events after the previous step's time (a join on the
    subject, which PostgreSQL runs as a hash join over each step's events, read through the
    ``(se_category, se_action, derived_tstamp)`` or ``(page_urlpath, derived_tstamp)`` index).
    """
    who = subject(per)
    where = _in_window(start, end, bots)

    def events_of(step: Step, name: str) -> sa.CTE:
        return (
            sa.select(who.label("subj"), _events.derived_tstamp.label("t"))
            .where(step.condition(), *where, who.is_not(None))
            .cte(name)
        )

    first = events_of(steps[0], "e1")
    if window is None:
        reached = (
            sa.select(first.c.subj, sa.func.min(first.c.t).label("t1"))
            .group_by(first.c.subj)
            .subquery()
        )
        reached_cte = sa.select(reached.c.subj, reached.c.t1, reached.c.t1.label("t")).cte("s1")
    else:
        reached_cte = (
            sa.select(first.c.subj, first.c.t.label("t1"), first.c.t.label("t"))
            .distinct()
            .cte("s1")
        )
    levels = [reached_cte]
    for number, step in enumerate(steps[1:], start=2):
        previous = levels[-1]
        found = events_of(step, f"e{number}")
        on = [found.c.subj == previous.c.subj, found.c.t > previous.c.t]
        if window is not None:
            on.append(_within(dialect, found.c.t, previous.c.t1, window))
        levels.append(
            sa.select(previous.c.subj, previous.c.t1, sa.func.min(found.c.t).label("t"))
            .select_from(previous.join(found, sa.and_(*on)))
            .group_by(previous.c.subj, previous.c.t1)
            .cte(f"s{number}")
        )
    counts = []
    for number, level in enumerate(levels, start=1):
        counted = sa.func.count() if window is None else sa.func.count(level.c.subj.distinct())
        counts.append(sa.select(counted).select_from(level).scalar_subquery().label(f"n{number}"))
    return sa.select(*counts)


def funnel(
    conn: sa.Connection,
    steps: list[Step],
    start: datetime,
    end: datetime,
    *,
    per: Per = "user",
    window: timedelta | None = None,
    bots: bool = False,
) -> Funnel:
    """How many subjects reached each step in order, and the conversion rates.

    Args:
        conn: a connection to the service's database.
        steps: 1 to :data:`MAX_STEPS` steps, in order (a step may come back: page A, B, A).
        start: the first moment counted (aware).
        end: the first moment not counted (aware).
        per: ``"user"`` or ``"session"`` (see the module's description).
        window: the longest time from step 1 to any later step; None: the whole range.
        bots: count events of bots too.

    Raises:
        ValueError: no step or too many, ``end`` not after ``start``, a naive time, a window
            that is not positive.
    """
    if not 1 <= len(steps) <= MAX_STEPS:
        raise ValueError(f"a funnel has 1 to {MAX_STEPS} steps, not {len(steps)}")
    if window is not None and window <= timedelta(0):
        raise ValueError("the window must be positive")
    start, end = _window(start, end)
    _query_settings(conn)
    query = funnel_query(conn.dialect.name, steps, start, end, per=per, window=window, bots=bots)
    row = conn.execute(query).one()
    counts = [int(n or 0) for n in row]
    first = counts[0]
    results = []
    for index, (step, count) in enumerate(zip(steps, counts, strict=True)):
        previous = counts[index - 1] if index else count
        results.append(
            FunnelStep(
                step=step,
                count=count,
                from_first=count / first if first else None,
                from_previous=count / previous if previous else None,
            )
        )
    return Funnel(results, start, end, per, window, bots)


# -- volume ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Volume:
    """Events per bucket and event type (``struct``, ``page_view``, ``unstruct`` …)."""

    interval: Interval
    buckets: list[datetime]
    """Each bucket's start, every bucket of the range (zeros where nothing happened)."""
    series: dict[str, list[int]]
    """Event type -> the count per bucket, types by their total, largest first."""

    @property
    def total(self) -> int:
        return sum(sum(counts) for counts in self.series.values())


def _floor(moment: datetime, interval: Interval) -> datetime:
    moment = moment.astimezone(UTC)
    if interval == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def _bucket(dialect: str, interval: Interval) -> sa.ColumnElement[Any]:
    column = _events.derived_tstamp
    if dialect == "postgresql":
        return sa.func.date_trunc(interval, column)
    if dialect in ("mysql", "mariadb"):
        pattern = "%Y-%m-%d 00:00:00" if interval == "day" else "%Y-%m-%d %H:00:00"
        return sa.func.date_format(column, pattern)
    return sa.func.substr(column, 1, 10 if interval == "day" else 13)  # SQLite: the text


def _bucket_time(value: Any, interval: Interval) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    text = str(value)
    if len(text) == 10:
        text += " 00"
    return datetime.strptime(text[:13], "%Y-%m-%d %H").replace(tzinfo=UTC)


def buckets(start: datetime, end: datetime, interval: Interval) -> list[datetime]:
    """The starts of the buckets that ``[start, end)`` touches.

    Raises:
        ValueError: more than :data:`MAX_BUCKETS` of them, or an unknown interval.
    """
    if interval not in INTERVALS:
        raise ValueError(f"interval must be day or hour, not {interval!r}")
    step = INTERVALS[interval]
    first = _floor(start, interval)
    count = -(-(end - first) // step)
    if count > MAX_BUCKETS:
        raise ValueError(
            f"{count} {interval}s from {start.isoformat()} to {end.isoformat()}: "
            f"at most {MAX_BUCKETS} points (a shorter range, or interval=day)"
        )
    return [first + i * step for i in range(count)]


def volume(
    conn: sa.Connection,
    start: datetime,
    end: datetime,
    *,
    interval: Interval = "day",
    bots: bool = False,
) -> Volume:
    """Events per day or hour (UTC) of ``[start, end)``, by event type.

    Raises:
        ValueError: as :func:`buckets`, ``end`` not after ``start``, or a naive time.
    """
    start, end = _window(start, end)
    starts = buckets(start, end, interval)
    bucket = _bucket(conn.dialect.name, interval).label("bucket")
    query = (
        sa.select(bucket, _events.event, sa.func.count().label("n"))
        .where(*_in_window(start, end, bots))
        .group_by(bucket, _events.event)
    )
    _query_settings(conn)
    position = {moment: index for index, moment in enumerate(starts)}
    series: dict[str, list[int]] = {}
    for row in conn.execute(query):
        counts = series.setdefault(row.event, [0] * len(starts))
        index = position.get(_bucket_time(row.bucket, interval))
        if index is not None:
            counts[index] += int(row.n)
    ordered = sorted(series.items(), key=lambda item: (-sum(item[1]), item[0]))
    return Volume(interval, starts, dict(ordered))


# -- top events --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StructCount:
    """A structured event's category and action, its events and (when asked) distinct users."""

    category: str
    action: str
    events: int
    users: int | None = None

    @property
    def step(self) -> Step:
        return Step.struct(self.category, self.action)


@dataclass(frozen=True, slots=True)
class PageCount:
    """A page path, its page views and (when asked) distinct users."""

    path: str
    views: int
    users: int | None = None

    @property
    def step(self) -> Step:
        return Step.page(self.path)


@dataclass(frozen=True, slots=True)
class TopEvents:
    """The most frequent structured events and viewed pages of a range."""

    struct: list[StructCount]
    pages: list[PageCount]


def top_events(
    conn: sa.Connection,
    start: datetime,
    end: datetime,
    *,
    limit: int = 20,
    users: bool = False,
    bots: bool = False,
) -> TopEvents:
    """The ``limit`` most frequent (category, action) pairs and page paths of ``[start, end)``;
    with ``users``, the distinct users of each too (as funnels count them: :func:`subject`),
    which costs a grouping by user of every event of the range (about 4 s for 28 days of 10M
    events, where the counts alone take 1).

    Raises:
        ValueError: ``end`` not after ``start``, a naive time, a limit below 1.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    start, end = _window(start, end)
    _query_settings(conn)
    where = _in_window(start, end, bots)
    struct_keys = [_events.se_category, _events.se_action]
    struct_where = [*where, _events.event == "struct", _events.se_category.is_not(None)]
    page_keys = [_events.page_urlpath]
    page_where = [*where, _events.event == "page_view", _events.page_urlpath.is_not(None)]
    struct = [
        StructCount(key[0], key[1] or "", n, distinct)
        for key, n, distinct in _ranked(conn, struct_keys, struct_where, limit, users)
    ]
    pages = [
        PageCount(key[0], n, distinct)
        for key, n, distinct in _ranked(conn, page_keys, page_where, limit, users)
    ]
    return TopEvents(struct=struct, pages=pages)


def _ranked(
    conn: sa.Connection,
    keys: list[sa.Column[Any]],
    where: list[sa.ColumnElement[bool]],
    limit: int,
    users: bool,
) -> list[tuple[tuple[Any, ...], int, int | None]]:
    """``(key values, events, distinct users or None)`` of the ``limit`` most frequent keys."""
    if not users:
        n = sa.func.count().label("n")
        query = sa.select(*keys, n).where(*where).group_by(*keys)
        query = query.order_by(n.desc(), *keys).limit(limit)
        return [(tuple(row[:-1]), int(row.n), None) for row in conn.execute(query)]
    # Events per (key, user) first, then per key: a hash aggregate, where count(DISTINCT)
    # would sort every event of the range.
    who = subject("user").label("subj")
    per_user = (
        sa.select(*keys, who, sa.func.count().label("n"))
        .where(*where)
        .group_by(*keys, who)
        .subquery()
    )
    grouped = [per_user.c[key.name] for key in keys]
    total = sa.func.sum(per_user.c.n).label("n")
    query = (
        sa.select(*grouped, total, sa.func.count(per_user.c.subj).label("users"))
        .group_by(*grouped)
        .order_by(total.desc(), *grouped)
        .limit(limit)
    )
    return [(tuple(row[:-2]), int(row.n), int(row.users)) for row in conn.execute(query)]
