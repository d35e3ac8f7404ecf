"""The time window of a dashboard: the last N ISO weeks (UTC), bucketed in portable SQL.

Weeks are bucketed with a ``CASE`` over the week starts (``received_at >= monday_k``), which
every database runs the same way and which keeps the range condition on ``received_at`` usable
by ``ix_pings_received_at``. Queries over ``ping_metrics`` and ``metric_errors`` are also bounded
by :func:`first_ping_id`: every ping received since the window's start has an id at least that
large, so ``ping_id >= first`` never drops a row, and because ids grow with arrival time it turns
the scan of those tables' ``ping_id`` indexes into a short range.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Generic, TypeVar

import sqlalchemy as sa

from usage_ping.collector.storage import ON_CONFLICT_INSERTS, dashboard_weeks, pings

__all__ = [
    "GRACE",
    "MAX_WEEKS",
    "ClosedWeeks",
    "Codec",
    "Weeks",
    "first_ping_id",
    "parse_weeks",
]

T = TypeVar("T")

MAX_WEEKS = 520
"""Windows longer than ten years are cut to it."""


def parse_weeks(raw: str | None, default: int) -> int:
    """A ``weeks`` query parameter as a number of weeks in 1..MAX_WEEKS (``default`` if bad)."""
    if raw is None or not raw.strip().isdigit():
        return default
    return min(MAX_WEEKS, max(1, int(raw)))


@dataclass(frozen=True)
class Weeks:
    """``count`` ISO weeks (Monday 00:00 UTC), oldest first; the last one contains ``now``."""

    now: datetime
    starts: tuple[datetime, ...]

    @classmethod
    def ending(cls, now: datetime, count: int) -> Weeks:
        """The ``count`` weeks up to and including the current one."""
        now = now.astimezone(UTC)
        monday = datetime.combine(now.date() - timedelta(days=now.weekday()), datetime.min.time())
        current = monday.replace(tzinfo=UTC)
        return cls(now, tuple(current - timedelta(weeks=k) for k in range(count - 1, -1, -1)))

    def tail(self, first: int) -> Weeks:
        """The weeks from index ``first`` on."""
        return Weeks(self.now, self.starts[first:])

    @property
    def start(self) -> datetime:
        """The first moment of the window."""
        return self.starts[0]

    @property
    def count(self) -> int:
        """The number of weeks."""
        return len(self.starts)

    @property
    def labels(self) -> list[str]:
        """Each week's Monday as an ISO date (Plotly reads these as dates)."""
        return [start.date().isoformat() for start in self.starts]

    def index(self, moment: datetime) -> int | None:
        """The week ``moment`` falls in (None before the window)."""
        if moment < self.start:
            return None
        return min(self.count - 1, (moment - self.start) // timedelta(weeks=1))

    def bucket(self, column: sa.ColumnElement[datetime]) -> sa.ColumnElement[int]:
        """``0 .. count-1``: the week of ``column`` (rows before the window give NULL)."""
        whens = [
            (column >= start, sa.literal(k, sa.Integer))
            for k, start in reversed(list(enumerate(self.starts)))
        ]
        return sa.case(*whens, else_=sa.null())

    def iso_label(self, k: int) -> str:
        """``2026-W47`` for week ``k``."""
        year, week, _ = date.isocalendar(self.starts[k].date())
        return f"{year}-W{week:02d}"


GRACE = timedelta(hours=1)
"""A week counts as final this long after it ended (pings still being committed land in it)."""

_MISSING = object()


@dataclass(frozen=True)
class Codec(Generic[T]):
    """How a series' weekly value is kept in ``dashboard_weeks``: to and from JSON data."""

    encode: Callable[[T], Any]
    decode: Callable[[Any], T]


class ClosedWeeks:
    """Figures of weeks that have ended: in the process, and in the database when given one.

    ``received_at`` is the moment the service stored a ping, so nothing new can arrive in a week
    that has ended: its figures are final. A page computes the current week and the weeks it has
    not seen yet, and takes the others from here, so its cost follows one week of pings instead
    of the whole window. Each worker process keeps its own copy (bounded, least recently used
    out first); with an ``engine``, series that have a :class:`Codec` are also kept in the
    ``dashboard_weeks`` table, so that the other workers, and the process after a restart, read
    a week's figures instead of counting them again (at 520,000 pings, counting 26 weeks took
    300-400 ms, reading them a few milliseconds).
    """

    def __init__(self, max_entries: int = 50_000, *, engine: sa.Engine | None = None) -> None:
        self.max_entries = max_entries
        self.engine = engine
        self._entries: OrderedDict[tuple[Hashable, datetime], Any] = OrderedDict()
        self._lock = threading.Lock()

    def series(
        self,
        key: Hashable,
        weeks: Weeks,
        compute: Callable[[Weeks], list[T]],
        codec: Codec[T] | None = None,
    ) -> list[T]:
        """One value per week of ``weeks``: cached ones, then ``compute(weeks.tail(first))``.

        ``compute`` gets the weeks from the first one not cached on (always at least the current
        week) and returns one value per week; values of final weeks are kept (in the database
        too with a ``codec``). Values are shared between requests: callers must not change them.
        """
        cached: list[T] = []
        with self._lock:
            for start in weeks.starts:
                value = self._entries.get((key, start), _MISSING)
                if value is _MISSING:
                    break
                self._entries.move_to_end((key, start))
                cached.append(value)
        final = weeks.now - GRACE
        stored = (
            self.engine is not None
            and codec is not None
            and len(_series(key)) <= dashboard_weeks.c.series.type.length  # type: ignore[attr-defined]
        )
        if stored and any(s + timedelta(weeks=1) <= final for s in weeks.starts[len(cached) :]):
            assert codec is not None
            found = self._load(key, weeks.tail(len(cached)), final, codec)
            with self._lock:
                for start, value in zip(weeks.starts[len(cached) :], found, strict=False):
                    self._entries[(key, start)] = value
            cached += found
        part = weeks.tail(len(cached))
        fresh = compute(part) if part.count else []
        done = [
            (start, value)
            for start, value in zip(part.starts, fresh, strict=True)
            if start + timedelta(weeks=1) <= final
        ]
        with self._lock:
            for start, value in done:
                self._entries[(key, start)] = value
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        if stored and done:
            assert codec is not None
            self._save(key, done, codec)
        return cached + fresh

    def _load(self, key: Hashable, part: Weeks, final: datetime, codec: Codec[T]) -> list[T]:
        """The stored values of the final weeks of ``part``, from its first week on, up to the
        first week not stored."""
        assert self.engine is not None
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(dashboard_weeks.c.week_start, dashboard_weeks.c.figures).where(
                    dashboard_weeks.c.series == _series(key),
                    dashboard_weeks.c.week_start >= part.start,
                    dashboard_weeks.c.week_start <= final - timedelta(weeks=1),
                )
            ).all()
        by_start = {row.week_start: row.figures for row in rows}
        found: list[T] = []
        for start in part.starts:
            if start not in by_start:
                break
            found.append(codec.decode(json.loads(by_start[start])))
        return found

    def _save(self, key: Hashable, done: list[tuple[datetime, T]], codec: Codec[T]) -> None:
        """Store final weeks; a week another worker stored meanwhile is left as it is (the same
        figures: the week is final)."""
        assert self.engine is not None
        rows = [
            {
                "series": _series(key),
                "week_start": start,
                "figures": json.dumps(codec.encode(value), separators=(",", ":")),
            }
            for start, value in done
        ]
        with self.engine.begin() as conn:
            upsert = ON_CONFLICT_INSERTS.get(conn.dialect.name)
            if upsert is not None:
                conn.execute(upsert(dashboard_weeks).on_conflict_do_nothing(), rows)
                return
        for row in rows:  # other databases: one row at a time, duplicates refused
            try:
                with self.engine.begin() as conn:
                    conn.execute(dashboard_weeks.insert(), row)
            except sa.exc.IntegrityError:
                pass

    def clear(self) -> None:
        """Forget every week (after pings were deleted or rewritten in the database)."""
        with self._lock:
            self._entries.clear()
        if self.engine is not None:
            with self.engine.begin() as conn:
                conn.execute(dashboard_weeks.delete())


def _series(key: Hashable) -> str:
    """A cache key as the text of ``dashboard_weeks.series``: ``overview``, ``["trend", "k"]``."""
    return key if isinstance(key, str) else json.dumps(key, ensure_ascii=False)


def first_ping_id(conn: sa.Connection, since: datetime) -> int | None:
    """The smallest id of the pings received since ``since`` (None: there are none).

    Reads the range of ``ix_pings_received_at`` (received_at, id, ...) alone. The ``+ 0`` keeps
    PostgreSQL from answering min(id) by walking the primary key from the oldest ping until one
    is in the window: it expects the window's pings to be spread over all ids, but ids follow
    arrival, so that walk read every older ping (300 ms at 520,000 pings).
    """
    found = conn.execute(
        sa.select(sa.func.min(pings.c.id + 0)).where(pings.c.received_at >= since)
    ).scalar()
    return None if found is None else int(found)
