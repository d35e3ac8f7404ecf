"""Walking an integer range in batches: adaptive size, several connections, halving on timeouts.

Ranges are inclusive at both ends: a batch ``[low, high]`` runs ``col >= low AND col <= high``.

Batch size: a batch should take about half of ``target_time``. After each batch the next size is
scaled toward that aim: at most doubling, and at most halving unless the batch took longer than
``target_time``, in which case the next one shrinks straight to what its rate implies. So a fast
query grows the batches, a slow one shrinks them, and a batch rarely comes near ``target_time``.

Timeouts: each statement runs under ``timeout``. A batch that hits it is split in two halves (the
first never narrower than the floor) and both are retried; a batch no wider than the floor that
still times out fails the whole count.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.pool import NullPool, QueuePool

from usage_ping.errors import BatchTimeoutError, UsagePingError
from usage_ping.fallback import logger, swallow
from usage_ping.sql.dialects import Dialect

__all__ = ["BatchQueryError", "Progress", "RangePlan", "memoized_bounds", "run_batches"]

Progress = Callable[[int, int], None]
"""Called after each batch with (ids covered so far, ids in the whole range)."""


class BatchQueryError(UsagePingError):
    """A batch query failed; says which table, range and SQL."""

    def __init__(self, table: str, low: int, high: int, sql: str, cause: BaseException) -> None:
        super().__init__(f"batch over {table} [{low}, {high}] failed: {cause}; sql: {sql}")
        self.table = table
        self.low = low
        self.high = high
        self.sql = sql


def render_sql(query: sa.Executable, engine: sa.Engine) -> str:
    """The SQL of ``query`` with its values inlined where possible (for logs and exports)."""
    try:
        return str(query.compile(engine, compile_kwargs={"literal_binds": True}))  # type: ignore[attr-defined]
    except Exception:
        return str(query.compile(engine))  # type: ignore[attr-defined]


@dataclass(frozen=True)
class RangePlan:
    """How to walk ``[low, high]`` for one counter call."""

    table: str
    low: int
    high: int
    size: int
    floor: int
    target_time: float
    timeout: float
    parallel: int


class _Ranges:
    """Hands out the next range to whichever connection is free, and adapts the batch size."""

    def __init__(self, plan: RangePlan) -> None:
        self._plan = plan
        self._lock = threading.Lock()
        self._cursor = plan.low
        self.size = plan.size
        self.stopped = False
        self._last: tuple[int, float] | None = None
        self._per_query = False

    def next(self) -> tuple[int, int] | None:
        with self._lock:
            if self.stopped or self._cursor > self._plan.high:
                return None
            low = self._cursor
            high = min(low + self.size - 1, self._plan.high)
            self._cursor = high + 1
            return low, high

    def observe(self, width: int, seconds: float) -> None:
        aim = self._plan.target_time / 2
        with self._lock:
            last, self._last = self._last, (width, seconds)
            if last is not None:
                self._per_query = self._costs_per_query(last, (width, seconds), aim)
            if self._per_query:
                # The time does not follow the width (the plan reads about the same rows for any
                # range, e.g. through an index on a filter column): smaller batches only multiply
                # the queries. Grow while a query stays well inside its timeout; hold otherwise.
                grow = seconds < self._plan.timeout / 4
                self.size = max(self._plan.floor, width * 2 if grow else width)
                return
            proposed = width * aim / max(seconds, 1e-6)
            # Growth is cautious (at most double: the next range may be denser). A batch over
            # target_time shrinks the next one straight to the size its rate implies; one merely
            # over the aim shrinks by at most half.
            lowest = 0.0 if seconds > self._plan.target_time else width / 2
            self.size = max(self._plan.floor, int(min(max(proposed, lowest), width * 2)))

    def _costs_per_query(
        self, before: tuple[int, float], now: tuple[int, float], aim: float
    ) -> bool:
        """Whether the cost is per query rather than per id, judged from two batches."""
        (w0, s0), (w1, s1) = before, now
        if w1 <= w0 * 0.6 and s1 >= s0 * 0.7 and s1 > aim:
            return True  # a much narrower range was not faster
        if w1 >= w0 * 1.6 and s1 >= s0 * 1.4:
            return False  # a much wider range was slower: the cost follows the width again
        return self._per_query

    def shrink(self, width: int) -> None:
        with self._lock:
            self.size = max(self._plan.floor, min(self.size, width))
            self._per_query = False  # a timeout: back to sizing by rate
            self._last = None

    def stop(self) -> None:
        with self._lock:
            self.stopped = True


def pool_capacity(engine: sa.Engine) -> int:
    """How many connections the engine's pool can give us at once."""
    pool = engine.pool
    if isinstance(pool, NullPool):
        return 64
    if isinstance(pool, QueuePool):
        return max(1, pool.size() + max(0, pool._max_overflow))
    return 1  # StaticPool, SingletonThreadPool (in-memory SQLite), AssertionPool


@contextmanager
def counting_connection(
    engine: sa.Engine, dialect: Dialect, timeout: float
) -> Iterator[tuple[sa.Connection, Any]]:
    """A pooled connection in autocommit mode with the per-query time limit set.

    Autocommit keeps every batch in its own short transaction, so no snapshot is held open
    across the whole count (which would hold back vacuum on a busy database).
    """
    with engine.connect() as pooled:
        conn = pooled.execution_options(isolation_level="AUTOCOMMIT")
        dialect.prepare(conn)
        limiter = dialect.limiter(conn, timeout)
        try:
            yield conn, limiter
        finally:
            limiter.close()


def run_batches(
    engine: sa.Engine,
    dialect: Dialect,
    plan: RangePlan,
    query_for: Callable[[int, int], sa.Executable],
    consume: Callable[[Sequence[Row[Any]]], None],
    *,
    progress: Progress | None = None,
    on_batch: Callable[[int, int, float], None] | None = None,
) -> None:
    """Run ``query_for(low, high)`` over the plan's range; ``consume`` gets each batch's rows.

    ``consume`` and ``progress`` are called under one lock, so they need no locking of their own.
    Raises :class:`BatchTimeoutError` or :class:`BatchQueryError` when a batch fails for good.
    """
    ranges = _Ranges(plan)
    merge_lock = threading.Lock()
    total = plan.high - plan.low + 1
    covered = 0

    def worker() -> None:
        nonlocal covered
        with counting_connection(engine, dialect, plan.timeout) as (conn, limiter):
            while (first := ranges.next()) is not None:
                pending = [first]
                while pending:
                    if ranges.stopped:
                        return
                    low, high = pending.pop()
                    query = query_for(low, high)
                    started = time.perf_counter()
                    try:
                        limiter.arm()
                        rows = conn.execute(query).all()
                    except sa.exc.DBAPIError as exc:
                        width = high - low + 1
                        if not limiter.is_timeout(exc):
                            raise BatchQueryError(
                                plan.table, low, high, render_sql(query, engine), exc
                            ) from exc
                        if width <= plan.floor:
                            raise BatchTimeoutError(
                                plan.table, low, high, render_sql(query, engine)
                            ) from exc
                        half = max(plan.floor, width // 2)
                        logger.info(
                            "usage_ping: batch over %s [%d, %d] timed out; retrying in halves",
                            plan.table,
                            low,
                            high,
                        )
                        ranges.shrink(half)
                        pending.append((low + half, high))
                        pending.append((low, low + half - 1))
                        continue
                    seconds = time.perf_counter() - started
                    ranges.observe(high - low + 1, seconds)
                    with merge_lock:
                        consume(rows)
                        covered += high - low + 1
                        if on_batch is not None:
                            on_batch(low, high, seconds)
                        if progress is not None:
                            with swallow("progress callback"):
                                progress(covered, total)

    workers = max(1, min(plan.parallel, -(-total // plan.size)))
    if workers == 1:
        worker()
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="usage_ping-batch") as pool:
        futures = [pool.submit(worker) for _ in range(workers)]
        error: BaseException | None = None
        for future in futures:
            exc = future.exception()
            if exc is not None and error is None:
                error = exc
                ranges.stop()
        if error is not None:
            raise error


# -- bounds ------------------------------------------------------------------------------------

_bounds_cache: ContextVar[dict[tuple[str, ...], tuple[Any, Any]] | None] = ContextVar(
    "usage_ping_bounds_cache", default=None
)


@contextmanager
def memoized_bounds() -> Iterator[None]:
    """Within this block, the min/max of a relation's range is queried once and reused.

    The payload builder opens one for each run, so metrics over the same table share one
    ``SELECT min(id), max(id)``. Nested blocks share the outer cache.

    Example:
        >>> with memoized_bounds():  # doctest: +SKIP
        ...     issues = count(engine, Issue)
        ...     weight = sum(engine, Issue, Issue.weight)  # reuses the bounds of Issue
    """
    if _bounds_cache.get() is not None:
        yield
        return
    token = _bounds_cache.set({})
    try:
        yield
    finally:
        _bounds_cache.reset(token)


_key_locks: dict[tuple[str, ...], threading.Lock] = {}
_key_locks_guard = threading.Lock()


def cached_bounds(key: tuple[str, ...], compute: Callable[[], tuple[Any, Any]]) -> tuple[Any, Any]:
    """The bounds for ``key`` from the run's cache, computed once even by concurrent metrics."""
    cache = _bounds_cache.get()
    if cache is None:
        return compute()
    if key in cache:
        return cache[key]
    with _key_locks_guard:
        lock = _key_locks.setdefault(key, threading.Lock())
    with lock:
        if key not in cache:
            cache[key] = compute()
    return cache[key]
