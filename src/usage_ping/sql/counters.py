"""Exact batch counters: ``count``, ``distinct_count`` and ``sum``.

Each walks an integer range in short queries (see :mod:`usage_ping.sql.batching`), adds the
per-batch results exactly, and returns a number, or a ``{group: number}`` dict for a relation with
GROUP BY. Bad arguments raise :class:`~usage_ping.errors.InvalidRelationError` at call time; a
database error, or a range that keeps timing out at the smallest batch, returns
:data:`~usage_ping.fallback.FAILED` (-1) and logs the table, range and SQL to the ``usage_ping``
logger.

Ranges: ``start`` and ``finish`` are **inclusive**: ``start=10, finish=20`` counts ids 10 to 20.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypedDict, Unpack

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.sql.elements import ColumnElement

from usage_ping.errors import InvalidRelationError
from usage_ping.fallback import FAILED, QUERIES_MODE, Fallback, call_safely, logger
from usage_ping.sql.batching import (
    BatchQueryError,
    Progress,
    RangePlan,
    cached_bounds,
    counting_connection,
    pool_capacity,
    render_sql,
    run_batches,
)
from usage_ping.sql.dialects import Dialect, dialect_for
from usage_ping.sql.mode import sql_disabled
from usage_ping.sql.relation import (
    Relation,
    Target,
    is_integer,
    is_numeric,
    resolve,
    resolve_column,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_TARGET_TIME",
    "DEFAULT_TIMEOUT",
    "MIN_BATCH_SIZE",
    "BatchOptions",
    "count",
    "distinct_count",
    "sum",
]

DEFAULT_TARGET_TIME = 0.1
"""Seconds a batch query may take: batches are sized to take about half of it."""
DEFAULT_TIMEOUT = 1.0
"""Seconds after which the database cancels a batch query (which is then halved and retried)."""
DEFAULT_BATCH_SIZE = {
    "count": 100_000,
    "sum": 10_000,
    "distinct_count": 100,
    "estimate": 100_000,
}
"""The first batch's size per operation; later batches adapt to ``target_time``.

``distinct_count`` starts at 100 values because one value of a skewed column can stand for many
rows (a 10,000-value first batch covered 7 % of a 20M-row table in the benchmark); doubling from
there reaches the right size within a few batches."""
MIN_BATCH_SIZE = {"count": 1_000, "sum": 1_000, "distinct_count": 10, "estimate": 1_000}
"""The floor: no batch is smaller, and a ``batch_size`` below it is refused.

``distinct_count`` walks the values of the counted column, where one value may stand for many rows,
so its floor is lower."""

Value = int | float
Result = Value | dict[Any, Value]


class BatchOptions(TypedDict, total=False):
    """Keyword arguments that every SQL counter takes.

    Attributes:
        batch: False runs one plain query (still under ``timeout``, within ``start``/``finish``).
        start: the first value of the walked column to count, inclusive; default its minimum.
        finish: the last value of the walked column to count, inclusive; default its maximum.
        batch_size: the first batch's width; later batches adapt to ``target_time``
            (defaults in :data:`DEFAULT_BATCH_SIZE`, floors in :data:`MIN_BATCH_SIZE`).
        parallel: connections running batches at once; default 2 on PostgreSQL and MariaDB
            (at most the pool's size), 1 on SQLite.
        target_time: seconds a batch may take; batches aim at half of it (default 0.1).
        timeout: seconds after which the database cancels a batch, which is then halved and
            retried down to the floor (default 1.0).
        progress: called as ``progress(covered, total)`` after each batch, from the counting
            threads but never two at a time.
    """

    batch: bool
    start: int | None
    finish: int | None
    batch_size: int | None
    parallel: int | None
    target_time: float
    timeout: float
    progress: Progress | None


def _plain(value: Any) -> Value:
    if value is None:
        return 0
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, int | float):
        return value
    return float(value)


def _check_bound(name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRelationError(f"{name} must be an integer, got {value!r}")
    if value < 0:
        raise InvalidRelationError(f"{name} must not be negative, got {value}")


@dataclass(frozen=True)
class Call:
    """One counter call, validated: everything needed to run it."""

    operation: str
    engine: sa.Engine
    dialect: Dialect
    target: Target
    batch_column: ColumnElement[Any]
    batch: bool
    start: int | None
    finish: int | None
    batch_size: int
    parallel: int
    target_time: float
    timeout: float
    progress: Progress | None
    size_given: bool = False
    blocks: bool = False
    """Walk the primary table's physical blocks (PostgreSQL TID ranges) instead of its key.

    A sequential read of a block range costs about half of an index range scan per row, but a row
    that a concurrent UPDATE moves to a later block can be read twice. Only estimates use it:
    a HyperLogLog register ignores a value seen twice."""

    @property
    def description(self) -> str:
        return f"{self.operation} {self.target.name}"

    def _qualified_table(self) -> str:
        return self.engine.dialect.identifier_preparer.format_table(self.target.table)

    def bounds(self) -> tuple[int, int] | None:
        """The inclusive range to walk, or None when there is nothing to count."""
        if self.blocks:
            return self._block_bounds()
        low, high = self.start, self.finish
        if low is None or high is None:
            found_low, found_high = self._found_bounds()
            if found_low is None or found_high is None:
                return None
            low = found_low if low is None else low
            high = found_high if high is None else high
        if low > high:
            return None
        return int(low), int(high)

    def _block_bounds(self) -> tuple[int, int] | None:
        query = sa.text(
            "SELECT pg_relation_size(CAST(:table AS regclass)) "
            "/ current_setting('block_size')::bigint"
        )
        with counting_connection(self.engine, self.dialect, self.timeout) as (conn, limiter):
            limiter.arm()
            blocks = conn.execute(query, {"table": self._qualified_table()}).scalar_one()
        return (0, int(blocks) - 1) if blocks else None

    def _found_bounds(self) -> tuple[Any, Any]:
        col = self.batch_column
        query = self.target.select(sa.func.min(col), sa.func.max(col)).group_by(None)
        compiled = query.compile(self.engine)
        key = (str(id(self.engine)), str(compiled), repr(sorted(compiled.params.items())))

        def compute() -> tuple[Any, Any]:
            with counting_connection(self.engine, self.dialect, self.timeout) as (conn, limiter):
                limiter.arm()
                try:
                    low, high = conn.execute(query).one()
                except sa.exc.DBAPIError as exc:
                    # The filtered min/max can be slow; the bare table's uses the index and is a
                    # superset of the range, which is still exact (the filter runs per batch).
                    if not (
                        limiter.is_timeout(exc)
                        and self.target.filtered
                        and isinstance(col, sa.Column)
                    ):
                        raise
                    logger.info(
                        "usage_ping: min/max of filtered %s timed out; using the table's",
                        self.target.name,
                    )
                    limiter.arm()
                    bare = sa.select(sa.func.min(col), sa.func.max(col)).select_from(col.table)
                    low, high = conn.execute(bare).one()
            return low, high

        return cached_bounds(key, compute)

    def plan(self, low: int, high: int) -> RangePlan:
        return RangePlan(
            table=self.target.name,
            low=low,
            high=high,
            size=self.batch_size,
            floor=1 if self.blocks else MIN_BATCH_SIZE[self.operation],
            target_time=self.target_time,
            timeout=self.timeout,
            parallel=self.parallel,
        )

    def in_range(self, query: sa.Select[Any], low: int | None, high: int | None) -> sa.Select[Any]:
        """``query`` limited to ``low <= batch column <= high`` (None: no limit on that side)."""
        if self.blocks:
            ctid: ColumnElement[Any] = sa.literal_column(f"{self._qualified_table()}.ctid")
            # Whole blocks: from the first tuple of block `low` up to the first of `high + 1`.
            if low is not None:
                query = query.where(ctid >= sa.literal_column(f"'({int(low)},0)'::tid"))
            if high is not None:
                query = query.where(ctid < sa.literal_column(f"'({int(high) + 1},0)'::tid"))
            return query
        if low is not None:
            query = query.where(self.batch_column >= low)
        if high is not None:
            query = query.where(self.batch_column <= high)
        return query

    def run(
        self,
        query_for: Callable[[int | None, int | None], sa.Executable],
        consume: Callable[[Sequence[Row[Any]]], None],
    ) -> None:
        """Run ``query_for(low, high)`` over the range in batches, or once when ``batch=False``."""
        if not self.batch:
            consume(self._run_plain(query_for(self.start, self.finish)))
            return
        bounds = self.bounds()
        if bounds is not None:
            run_batches(
                self.engine,
                self.dialect,
                self.plan(*bounds),
                query_for,
                consume,
                progress=self.progress,
            )

    def _run_plain(self, query: sa.Executable) -> Sequence[Row[Any]]:
        """One unbatched query under the time limit."""
        with counting_connection(self.engine, self.dialect, self.timeout) as (conn, limiter):
            limiter.arm()
            try:
                return conn.execute(query).all()
            except sa.exc.DBAPIError as exc:
                raise BatchQueryError(
                    self.target.name, -1, -1, render_sql(query, self.engine), exc
                ) from exc


def prepare(
    operation: str,
    engine: sa.Engine,
    relation: Relation,
    batch_column: Callable[[Target], ColumnElement[Any]],
    options: BatchOptions,
) -> Call:
    """Validate a counter call's arguments; raises InvalidRelationError on bad input."""
    unknown = set(options) - set(BatchOptions.__annotations__)
    if unknown:
        raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(unknown))}")
    batch = options.get("batch", True)
    start = options.get("start")
    finish = options.get("finish")
    batch_size = options.get("batch_size")
    parallel = options.get("parallel")
    target_time = options.get("target_time", DEFAULT_TARGET_TIME)
    timeout = options.get("timeout", DEFAULT_TIMEOUT)
    if not isinstance(engine, sa.Engine):
        raise InvalidRelationError(
            f"engine must be a sqlalchemy Engine, got {type(engine).__name__}"
        )
    dialect = dialect_for(engine)
    target = resolve(relation)
    column = batch_column(target)
    _check_bound("start", start)
    _check_bound("finish", finish)
    if start is not None and finish is not None and start > finish:
        raise InvalidRelationError(f"start ({start}) is after finish ({finish})")
    floor = MIN_BATCH_SIZE[operation]
    if batch_size is None:
        batch_size = DEFAULT_BATCH_SIZE[operation]
    elif isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < floor:
        raise InvalidRelationError(
            f"batch_size must be an integer of at least {floor} for {operation}, got {batch_size!r}"
        )
    if parallel is None:
        parallel = min(dialect.default_parallel, pool_capacity(engine))
    elif isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise InvalidRelationError(f"parallel must be a positive integer, got {parallel!r}")
    if not target_time > 0 or not timeout > 0:
        raise InvalidRelationError("target_time and timeout must be positive numbers of seconds")
    return Call(
        operation=operation,
        engine=engine,
        dialect=dialect,
        target=target,
        batch_column=column,
        batch=batch,
        start=start,
        finish=finish,
        batch_size=batch_size,
        parallel=parallel,
        target_time=target_time,
        timeout=timeout,
        progress=options.get("progress"),
        size_given=options.get("batch_size") is not None,
    )


def _additive(call: Call, aggregate: ColumnElement[Any]) -> Result:
    """Run an aggregate whose per-batch results add up (COUNT, SUM, disjoint COUNT DISTINCT)."""
    groups = len(call.target.group_by)
    query = call.target.select(*call.target.group_by, aggregate)
    if groups:
        totals: dict[Any, Any] = {}

        def consume(rows: Sequence[Row[Any]]) -> None:
            for row in rows:
                key = row[0] if groups == 1 else tuple(row[:groups])
                value = row[groups]
                if value is not None:
                    totals[key] = totals.get(key, 0) + value

    else:
        total: list[Any] = [0]

        def consume(rows: Sequence[Row[Any]]) -> None:
            for row in rows:
                if row[0] is not None:
                    total[0] += row[0]

    call.run(lambda low, high: call.in_range(query, low, high), consume)
    if groups:
        return {key: _plain(value) for key, value in totals.items()}
    return _plain(total[0])


def _safely(call: Call, aggregate: ColumnElement[Any]) -> Result | Fallback:
    return call_safely(
        lambda: _additive(call, aggregate),
        fallback=FAILED,
        description=call.description,
        context={"table": call.target.name, "operation": call.operation},
    )


def count(
    engine: sa.Engine,
    relation: Relation,
    column: Any = None,
    **options: Unpack[BatchOptions],
) -> Result | Fallback:
    """Count the rows of ``relation`` (or its non-NULL ``column`` values) in short batches.

    Batches walk the primary key of the relation's first table.

    Args:
        engine: the database.
        relation: a ``Table``, an ORM model, or a ``Select`` (filters, joins and GROUP BY kept).
        column: count non-NULL values of this column instead of rows.
        **options: see :class:`BatchOptions`; ``start`` and ``finish`` bound the primary key.

    Returns:
        The count, a ``{group: count}`` dict for a grouped relation, or ``-1`` (FAILED).

    Example:
        >>> count(engine, select(Issue).where(Issue.state == "opened"))  # doctest: +SKIP
        1234
    """
    if sql_disabled():
        return QUERIES_MODE
    call = prepare(
        "count",
        engine,
        relation,
        lambda t: t.pk,
        options,
    )
    if column is None:
        aggregate: ColumnElement[Any] = sa.func.count()
    else:
        aggregate = sa.func.count(resolve_column(call.target, column))
    return _safely(call, aggregate)


def distinct_count(
    engine: sa.Engine,
    relation: Relation,
    column: Any,
    **options: Unpack[BatchOptions],
) -> Result | Fallback:
    """Count the distinct non-NULL values of an integer ``column``, exactly, in short batches.

    Batches walk the values of ``column`` itself, so each batch counts a disjoint set of values
    and the per-batch counts add up exactly. ``start`` and ``finish`` bound those values
    (inclusive). The column should be indexed: each batch is a range scan on it. For the primary
    key use :func:`count`; for non-integer columns use ``estimate_distinct_count`` or
    ``batch=False``.

    Other arguments and the result are as for :func:`count`.

    Example:
        >>> distinct_count(engine, Issue, Issue.author_id)  # doctest: +SKIP
        87
    """
    if sql_disabled():
        return QUERIES_MODE

    def counted(target: Target) -> ColumnElement[Any]:
        col = resolve_column(target, column)
        if isinstance(col, sa.Column) and col is target.pk:
            raise InvalidRelationError(
                f"distinct_count of the primary key {target.name}.{col.name} is a plain count: "
                "use count(engine, relation)"
            )
        if options.get("batch", True) and not is_integer(col):
            raise InvalidRelationError(
                f"distinct_count batches over the counted column, which must be an integer; "
                f"{col} is {col.type}: use estimate_distinct_count or batch=False"
            )
        return col

    call = prepare(
        "distinct_count",
        engine,
        relation,
        counted,
        options,
    )
    return _safely(call, sa.func.count(sa.distinct(call.batch_column)))


def sum(  # the public name follows the guide's counter names
    engine: sa.Engine,
    relation: Relation,
    column: Any,
    **options: Unpack[BatchOptions],
) -> Result | Fallback:
    """Sum a numeric ``column`` of ``relation`` in short batches over the primary key.

    NULLs are skipped; an empty relation sums to 0. Integer sums are exact ints; other numeric
    columns give a float unless the total is integral. Other arguments and the result are as for
    :func:`count`.

    Example:
        >>> sum(engine, Issue, Issue.weight)  # doctest: +SKIP
        4410
    """
    if sql_disabled():
        return QUERIES_MODE
    holder: list[ColumnElement[Any]] = []

    def summed(target: Target) -> ColumnElement[Any]:
        col = resolve_column(target, column)
        if not is_numeric(col):
            raise InvalidRelationError(f"sum needs a numeric column; {col} is {col.type}")
        holder.append(col)
        return target.pk

    call = prepare(
        "sum",
        engine,
        relation,
        summed,
        options,
    )
    return _safely(call, sa.func.sum(holder[0]))
