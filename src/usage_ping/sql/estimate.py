"""Distinct-count estimates: HyperLogLog registers computed in SQL per batch, merged in Python.

Each batch (over the primary key) hashes the counted column with a 64-bit hash in the database
and returns, per register ``hash & (2^14 - 1)``, the smallest residual ``hash >> 14``. Python keeps
the per-register minimum over all batches; the smallest residual has the largest HLL rank, so this
is the same sketch HLL would build, for the price of a ``min()`` aggregate. On PostgreSQL the pairs
come back packed into one ``bytea`` per batch, so that almost nothing is parsed on the client.

Where the PostgreSQL ``hll`` extension is installed in the database it is used instead (detected
at run time): ``hll_add_agg`` at log2m=14 per batch, its registers decoded here.

Either way the result is an :class:`~usage_ping.sql.sketch.HllSketch`, estimated with Ertl's
improved estimator (0.81 % standard error, no bias at small or large cardinalities).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from typing import Any, Unpack

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.sql.elements import ColumnElement

from usage_ping.errors import BatchTimeoutError, InvalidRelationError
from usage_ping.fallback import ESTIMATE_FAILED, FAILED, QUERIES_MODE, Fallback, call_safely
from usage_ping.sql.batching import BatchQueryError, counting_connection
from usage_ping.sql.counters import BatchOptions, Call, prepare
from usage_ping.sql.mode import sql_disabled
from usage_ping.sql.relation import Relation, Target, is_integer, resolve_column
from usage_ping.sql.sketch import DEFAULT_PRECISION, HllSketch, U64Array

__all__ = ["estimate_distinct_count", "estimate_distinct_sketch"]

P = DEFAULT_PRECISION
M = 1 << P
Q = 64 - P
_EMPTY = np.uint64(1 << Q)  # larger than any residual: rank 0


def _const(value: int) -> ColumnElement[int]:
    return sa.literal_column(str(value), sa.BigInteger)


class _Minima:
    """Per-register smallest residual over all batches, shared by the counting threads."""

    def __init__(self) -> None:
        self.values: U64Array = np.full(M, _EMPTY, dtype=np.uint64)
        self._lock = threading.Lock()

    def merge(self, buckets: U64Array, residuals: U64Array) -> None:
        index = buckets.astype(np.intp)
        with self._lock:
            self.values[index] = np.minimum(self.values[index], residuals)

    def ceiling(self) -> int | None:
        """A residual at or above this cannot lower any register (None: no such bound yet).

        It is the largest register minimum so far. Rows at or above it are filtered out before
        the GROUP BY, which is most of the cost: once the sketch has seen n distinct values,
        only about ln(16384) * 16384 / n of new rows get through (8 % at 2M). The ceiling only
        falls, so one read by a thread while another merges is still a safe bound.
        """
        with self._lock:
            highest = int(self.values.max())
        return None if highest >= int(_EMPTY) else highest


def _packed_query(registers: sa.Select[Any]) -> sa.Select[Any]:
    """PostgreSQL: the (register, residual) pairs packed as big-endian int8s in one bytea."""
    sub = registers.subquery("registers")
    packed = sub.c.b.bitwise_lshift(_const(Q)).bitwise_or(sub.c.r)
    return sa.select(sa.func.string_agg(sa.func.int8send(packed), sa.literal_column("''::bytea")))


def _decode_pg_hll(text: str) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """Registers of a FULL pg-hll value (storage spec v1), from its ``\\x…`` text form."""
    raw = bytes.fromhex(text[2:] if text.startswith("\\x") else text)
    kind = raw[0] & 0x0F
    if kind == 1:  # EMPTY
        return np.zeros(M, dtype=np.uint8)
    if kind != 4:
        raise ValueError(f"expected a FULL hll value, got type {kind}")
    regwidth = (raw[1] >> 5) + 1
    log2m = raw[1] & 0x1F
    if log2m != P:
        raise ValueError(f"expected log2m={P}, got {log2m}")
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8, offset=3))[: M * regwidth]
    weights = (1 << np.arange(regwidth - 1, -1, -1)).astype(np.uint8)
    registers: np.ndarray[Any, np.dtype[np.uint8]] = (
        (bits.reshape(M, regwidth) * weights).sum(axis=1).astype(np.uint8)
    )
    return registers


_TID_RANGE_SCAN = (14,)  # PostgreSQL 14 added TID Range Scans
_FIRST_BLOCKS = 128  # about 100,000 narrow rows; later batches adapt


def _postgres_features(call: Call) -> tuple[bool, bool]:
    """Whether the database has the hll extension, and whether it can scan TID ranges."""
    with counting_connection(call.engine, call.dialect, call.timeout) as (conn, limiter):
        limiter.arm()
        found = conn.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'hll'")).first()
        version = conn.dialect.server_version_info or ()
    return found is not None, tuple(version) >= _TID_RANGE_SCAN


def _sketch(call: Call, column: ColumnElement[Any], use_hll_extension: bool | None) -> HllSketch:
    has_hll, tid_ranges = (
        _postgres_features(call) if call.dialect.name == "postgresql" else (False, False)
    )
    use_ext = has_hll if use_hll_extension is None else use_hll_extension
    # Without a range or size from the caller (which are in key values), walk blocks instead.
    keyed = call.start is not None or call.finish is not None or call.size_given
    if tid_ranges and call.batch and not keyed:
        call = dataclasses.replace(call, blocks=True, batch_size=_FIRST_BLOCKS)
    consume: Callable[[Sequence[Row[Any]]], None]
    finish: Callable[[], HllSketch]
    minima = _Minima()

    if use_ext:
        if is_integer(column):
            hashval = sa.func.hll_hash_bigint(sa.cast(column, sa.BigInteger))
        else:
            hashval = sa.func.hll_hash_text(sa.cast(column, sa.Text))
        # expthresh 0 and sparseon 0: always the FULL representation, which we decode.
        agg = sa.func.hll_add_agg(hashval, P, 5, 0, 0)
        ext_query = call.target.select(sa.cast(agg, sa.Text)).where(column.is_not(None))
        registers = np.zeros(M, dtype=np.uint8)

        def consume(rows: Sequence[Row[Any]]) -> None:
            for (value,) in rows:
                if value is not None:
                    np.maximum(registers, _decode_pg_hll(value), out=registers)

        def finish() -> HllSketch:
            return HllSketch("postgresql:hll", P, registers)

    else:
        if call.dialect.name == "postgresql":

            def consume(rows: Sequence[Row[Any]]) -> None:
                for (blob,) in rows:
                    if blob:
                        packed = np.frombuffer(bytes(blob), dtype=">u8").astype(np.uint64)
                        minima.merge(packed >> np.uint64(Q), packed & np.uint64((1 << Q) - 1))

        else:

            def consume(rows: Sequence[Row[Any]]) -> None:
                if rows:
                    pairs = np.array([tuple(r) for r in rows], dtype=np.uint64)
                    minima.merge(pairs[:, 0], pairs[:, 1])

        def finish() -> HllSketch:
            return HllSketch.from_residual_minima(call.dialect.hash_family, minima.values, P)

    def for_range(low: int | None, high: int | None) -> sa.Select[Any]:
        if use_ext:
            return call.in_range(ext_query, low, high)
        inner = _register_query_in_range(call, column, low, high, minima.ceiling())
        return _packed_query(inner) if call.dialect.name == "postgresql" else inner

    call.run(for_range, consume)
    return finish()


def _residual(hashed: ColumnElement[int]) -> ColumnElement[int]:
    return hashed.bitwise_rshift(_const(P)).bitwise_and(_const((1 << Q) - 1))


def _register_query_in_range(
    call: Call,
    column: ColumnElement[Any],
    low: int | None,
    high: int | None,
    ceiling: int | None = None,
) -> sa.Select[Any]:
    """Per register: its number ``b`` and smallest residual ``r``, for one batch.

    Rows whose residual is at or above ``ceiling`` cannot change the sketch and are skipped.
    """
    rows = call.target.select(call.dialect.hash64(column).label("h")).where(column.is_not(None))
    if ceiling is not None:
        rows = rows.where(_residual(call.dialect.hash64(column)) < _const(ceiling))
    hashed = call.in_range(rows, low, high).subquery("hashed")
    bucket = hashed.c.h.bitwise_and(_const(M - 1))
    residual = _residual(hashed.c.h)
    return sa.select(bucket.label("b"), sa.func.min(residual).label("r")).group_by(bucket)


def _prepare_estimate(
    engine: sa.Engine,
    relation: Relation,
    column: Any,
    use_hll_extension: bool | None,
    options: BatchOptions,
) -> tuple[Call, ColumnElement[Any]]:
    dialect_name = getattr(getattr(engine, "dialect", None), "name", None)
    if use_hll_extension and dialect_name != "postgresql":
        raise InvalidRelationError("the hll extension is a PostgreSQL extension")
    counted: list[ColumnElement[Any]] = []

    def batch_column(target: Target) -> ColumnElement[Any]:
        if target.group_by:
            raise InvalidRelationError(
                "estimate_distinct_count does not take grouped relations; "
                "estimate each group with its own filter"
            )
        counted.append(target.pk if column is None else resolve_column(target, column))
        return target.pk

    call = prepare("estimate", engine, relation, batch_column, options)
    return call, counted[0]


def _failure_code(exc: Exception) -> Fallback:
    """-1 when the database failed (as for exact counters), -2 when the estimate itself did."""
    if isinstance(exc, BatchQueryError | BatchTimeoutError | sa.exc.SQLAlchemyError):
        return FAILED
    return ESTIMATE_FAILED


def estimate_distinct_sketch(
    engine: sa.Engine,
    relation: Relation,
    column: Any = None,
    *,
    use_hll_extension: bool | None = None,
    **options: Unpack[BatchOptions],
) -> HllSketch | Fallback:
    """Like :func:`estimate_distinct_count`, but return the mergeable sketch itself.

    Sketches of the same database and column type merge with ``|`` (union) and serialize with
    :meth:`HllSketch.to_bytes`, so unions across metrics and time frames need no new queries.
    Returns a :class:`Fallback` code instead when counting failed (-3 in the non-SQL mode).
    """
    if sql_disabled():
        return QUERIES_MODE
    call, counted = _prepare_estimate(engine, relation, column, use_hll_extension, options)
    return call_safely(
        lambda: _sketch(call, counted, use_hll_extension),
        fallback=FAILED,
        fallback_for=_failure_code,
        description=call.description,
        context={"table": call.target.name, "operation": "estimate_distinct_count"},
    )


def estimate_distinct_count(
    engine: sa.Engine,
    relation: Relation,
    column: Any = None,
    *,
    use_hll_extension: bool | None = None,
    on_sketch: Callable[[HllSketch], None] | None = None,
    **options: Unpack[BatchOptions],
) -> int | Fallback:
    """Estimate the number of distinct non-NULL values of ``column`` (default: the primary key).

    HyperLogLog with 2^14 registers and a 64-bit hash computed in the database, batched over the
    primary key; standard error about 0.8 %. Any column type works. Name metrics that use it with
    an ``_estimated`` suffix.

    Args:
        use_hll_extension: None uses the PostgreSQL ``hll`` extension when it is installed in the
            database; False never does; True requires it.
        on_sketch: called with the merged :class:`HllSketch`, e.g. to store it for unions later.
        **options: as for :func:`~usage_ping.count` (see :class:`BatchOptions`).

    Returns:
        The estimate; -1 when the database failed, -2 when the estimate failed otherwise.

    Example:
        >>> estimate_distinct_count(engine, Note, Note.author_id)  # doctest: +SKIP
        18233
    """
    if sql_disabled():
        return QUERIES_MODE
    call, counted = _prepare_estimate(engine, relation, column, use_hll_extension, options)

    def run() -> int:
        sketch = _sketch(call, counted, use_hll_extension)
        if on_sketch is not None:
            on_sketch(sketch)
        return round(sketch.estimate())

    return call_safely(
        run,
        fallback=FAILED,
        fallback_for=_failure_code,
        description=call.description,
        context={"table": call.target.name, "operation": "estimate_distinct_count"},
    )
