"""Per-query time limits, halving on timeout, -1 on failure; the caller's connections untouched."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

import usage_ping
from tests.sql.tables import create, events_table, row
from usage_ping.testing import Swallowed


@pytest.fixture
def slow_true(engine: sa.Engine, dialect: str) -> Iterator[Any]:
    """An SQL function ``slow_true(seconds)`` that sleeps per row and returns true."""
    if dialect == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE OR REPLACE FUNCTION slow_true(s float8) RETURNS boolean "
                "LANGUAGE plpgsql VOLATILE AS $$ BEGIN PERFORM pg_sleep(s); RETURN true; END $$"
            )
        yield sa.func.slow_true
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP FUNCTION slow_true(float8)")
    elif dialect == "mariadb":
        yield lambda s: sa.func.sleep(s) == 0
    else:

        def sleep_true(seconds: float) -> int:
            time.sleep(seconds)
            return 1

        @sa.event.listens_for(engine, "connect")
        def register(dbapi_conn: Any, record: Any) -> None:
            dbapi_conn.create_function("slow_true", 1, sleep_true)

        engine.dispose()  # new connections get the function
        yield lambda s: sa.func.slow_true(s) == 1


def _per_row_seconds(engine: sa.Engine, rel: sa.Select[Any], rows: int) -> float:
    """Seconds per row of ``rel``: the fastest of three runs on a warm connection.

    Connecting and a first plan once counted in, and made the per-row cost (and so the timeouts
    the tests derive from it) too large to ever time out on a loaded machine.
    """
    query = sa.select(sa.func.count()).select_from(rel.subquery())
    with engine.connect() as conn:
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            conn.execute(query).scalar()
            timings.append(time.perf_counter() - started)
        return min(timings) / rows


def test_timed_out_batch_is_halved_and_retried(
    engine: sa.Engine, metadata: sa.MetaData, slow_true: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch over the time limit is split in halves that fit, and the count stays exact."""
    # 400 rows spaced 10 ids apart: a 4,000-id batch holds 400 rows, the 1,000-id floor 100.
    t = create(engine, events_table(metadata), [row(i * 10) for i in range(1, 401)])
    rel = sa.select(t).where(slow_true(0.0005))
    per_row = _per_row_seconds(engine, rel.where(t.c.id <= 1000), 100)
    caplog.set_level(logging.INFO, logger="usage_ping")
    result = usage_ping.count(
        engine, rel, batch_size=4_000, parallel=1, target_time=100, timeout=300 * per_row
    )
    assert result == 400
    assert any("retrying in halves" in r.getMessage() for r in caplog.records)


@pytest.mark.swallows
def test_batch_still_too_slow_at_the_floor_returns_minus_one(
    engine: sa.Engine,
    metadata: sa.MetaData,
    slow_true: Any,
    swallowed: list[Swallowed],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At the floor the counter gives up with -1 and logs the table, range and SQL."""
    t = create(engine, events_table(metadata), [row(i * 10) for i in range(1, 401)])
    rel = sa.select(t).where(slow_true(0.0005))
    per_row = _per_row_seconds(engine, rel.where(t.c.id <= 1000), 100)
    result = usage_ping.count(engine, rel, batch_size=2_000, parallel=1, timeout=30 * per_row)
    assert result == usage_ping.FAILED == -1
    [failure] = swallowed
    assert isinstance(failure.exception, usage_ping.BatchTimeoutError)
    assert failure.exception.table == "events"
    assert failure.exception.high - failure.exception.low + 1 <= 1_000
    logged = [r for r in caplog.records if r.name == "usage_ping" and r.levelno == logging.WARNING]
    assert logged
    message = logged[-1].getMessage()
    assert "events" in message
    assert "slow_true" in message or "sleep" in message  # the SQL
    assert f"[{failure.exception.low}, {failure.exception.high}]" in message


@pytest.mark.swallows
def test_database_error_returns_minus_one(
    engine: sa.Engine, metadata: sa.MetaData, swallowed: list[Swallowed]
) -> None:
    """A relation the database rejects (here: a table that does not exist) gives -1."""
    missing = events_table(metadata, "never_created")
    assert usage_ping.count(engine, missing) == -1
    assert usage_ping.sum(engine, missing, missing.c.weight) == -1
    assert usage_ping.distinct_count(engine, missing, missing.c.author_id) == -1
    assert usage_ping.count(engine, sa.select(missing).group_by(missing.c.weight)) == -1
    assert len(swallowed) == 4
    assert all(isinstance(s.exception, sa.exc.DBAPIError) for s in swallowed)


@pytest.fixture
def fails_above(engine: sa.Engine, dialect: str) -> Iterator[Any]:
    """An SQL function ``fails_above(id, limit)`` that raises a database error when id > limit."""
    if dialect == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE FUNCTION fails_above(i bigint, n bigint) RETURNS boolean LANGUAGE plpgsql "
                "AS $$ BEGIN IF i > n THEN RAISE EXCEPTION 'row is broken'; END IF; "
                "RETURN true; END $$"
            )
    elif dialect == "mariadb":
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE FUNCTION fails_above(i BIGINT, n BIGINT) RETURNS BOOLEAN DETERMINISTIC "
                "BEGIN IF i > n THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'row is broken'; "
                "END IF; RETURN TRUE; END"
            )
    else:

        def fails(i: int, n: int) -> int:
            if i > n:
                raise ValueError("row is broken")
            return 1

        @sa.event.listens_for(engine, "connect")
        def register(dbapi_conn: Any, record: Any) -> None:
            dbapi_conn.create_function("fails_above", 2, fails)

        engine.dispose()
    yield lambda col, n: sa.func.fails_above(col, n, type_=sa.Boolean)
    if dialect != "sqlite":
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP FUNCTION fails_above")


@pytest.mark.swallows
def test_database_error_inside_a_batch_names_the_range(
    engine: sa.Engine, metadata: sa.MetaData, swallowed: list[Swallowed], fails_above: Any
) -> None:
    """An error raised by one batch query gives -1 and is logged with that batch's range."""
    t = create(engine, events_table(metadata), [row(i) for i in range(1, 3_000)])
    rel = sa.select(t).where(fails_above(t.c.id, 2_000))
    kwargs: dict[str, Any] = {"start": 1, "finish": 2_999, "parallel": 1, "target_time": 1e-6}
    assert usage_ping.count(engine, rel, batch_size=1_000, **kwargs) == -1
    [failure] = swallowed
    assert isinstance(failure.exception, usage_ping.BatchQueryError)
    assert failure.exception.low >= 1_000
    assert failure.exception.table == "events"
    assert "fails_above" in failure.exception.sql


def _timeout_setting(conn: sa.Connection, dialect: str) -> Any:
    if dialect == "postgresql":
        return conn.exec_driver_sql(
            "SELECT current_setting('statement_timeout'), "
            "current_setting('max_parallel_workers_per_gather'), current_setting('jit'), "
            "current_setting('plan_cache_mode')"
        ).one()
    if dialect == "mariadb":
        return conn.exec_driver_sql("SELECT @@session.max_statement_time").scalar()
    return None


def test_pooled_connections_get_their_settings_back(
    engine: sa.Engine, metadata: sa.MetaData, dialect: str
) -> None:
    """The counter's session settings never stay on a connection returned to the pool."""
    t = create(engine, events_table(metadata), [row(i) for i in range(1, 100)])
    one = sa.create_engine(engine.url, pool_size=1, max_overflow=0)
    try:
        if dialect == "postgresql":

            @sa.event.listens_for(one, "connect")
            def host_setting(dbapi_conn: Any, record: Any) -> None:
                with dbapi_conn.cursor() as cur:
                    cur.execute("SET statement_timeout = '7s'")
                    cur.execute("SET max_parallel_workers_per_gather = 1")
                    cur.execute("SET jit = on")
                    cur.execute("SET plan_cache_mode = force_generic_plan")
                dbapi_conn.commit()

        with one.connect() as conn:
            before = _timeout_setting(conn, dialect)
        assert usage_ping.count(one, t, timeout=0.25, parallel=1) == 99
        with one.connect() as conn:
            assert _timeout_setting(conn, dialect) == before
            if dialect == "postgresql":
                assert tuple(before) == ("7s", "1", "on", "force_generic_plan")
            if dialect == "sqlite":
                # The progress handler is gone: a long statement is not interrupted.
                raw: Any = conn.connection.driver_connection
                started = time.perf_counter()
                raw.execute(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                    "WHERE i < 3000000) SELECT count(*) FROM n"
                ).fetchone()
                assert time.perf_counter() - started > 0.25
    finally:
        one.dispose()


@pytest.mark.swallows
def test_open_transaction_on_callers_connection_is_not_disturbed(
    engine: sa.Engine, metadata: sa.MetaData, dialect: str, slow_true: Any
) -> None:
    """A caller mid-transaction keeps it: counts (even failing ones) use their own connections."""
    t = create(engine, events_table(metadata), [row(i) for i in range(1, 101)])
    with engine.connect() as caller:
        caller.execute(t.insert(), [row(1_000)])  # uncommitted
        assert caller.in_transaction()
        assert usage_ping.count(engine, t) == 100  # the uncommitted row is not seen
        slow = sa.select(t).where(slow_true(0.01))
        assert usage_ping.count(engine, slow, timeout=0.05, batch_size=1_000) == -1
        assert usage_ping.count(engine, t, finish=10, batch=False) == 10
        assert caller.in_transaction()
        assert caller.execute(sa.select(sa.func.count()).select_from(t)).scalar() == 101
        caller.commit()
    assert usage_ping.count(engine, t) == 101


@pytest.mark.dialects("postgresql")
def test_batches_run_without_parallel_workers_or_jit(
    engine: sa.Engine, metadata: sa.MetaData
) -> None:
    """Inside a count: no parallel workers, no JIT, a plan per batch, our statement_timeout."""
    t = create(engine, events_table(metadata), [row(i) for i in range(1, 51)])
    setting = sa.func.current_setting
    rel = sa.select(t).where(
        setting("max_parallel_workers_per_gather") == "0",
        setting("jit") == "off",
        setting("plan_cache_mode") == "force_custom_plan",
        setting("statement_timeout") == "250ms",
    )
    assert usage_ping.count(engine, rel, timeout=0.25) == 50
