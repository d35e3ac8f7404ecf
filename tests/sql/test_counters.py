"""Exact batch counters on PostgreSQL, MariaDB and SQLite."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import usage_ping
from tests.sql.tables import (
    PROJECTS,
    create,
    events_table,
    plain,
    plain_grouped,
    projects_table,
    row,
)


def test_empty_table_counts_zero(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """Every counter of an empty table is 0 (and {} when grouped), without batching."""
    t = create(engine, events_table(metadata), [])
    assert usage_ping.count(engine, t) == 0
    assert usage_ping.distinct_count(engine, t, t.c.author_id) == 0
    assert usage_ping.sum(engine, t, t.c.weight) == 0
    assert usage_ping.count(engine, sa.select(t).group_by(t.c.project_id)) == {}


def test_one_row_table(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """A single row is counted once by every counter."""
    t = create(engine, events_table(metadata), [row(42, author_id=9, weight=4)])
    assert usage_ping.count(engine, t) == 1
    assert usage_ping.distinct_count(engine, t, t.c.author_id) == 1
    assert usage_ping.sum(engine, t, t.c.weight) == 4


def test_gaps_in_ids_are_counted_exactly_across_many_batches(
    engine: sa.Engine, metadata: sa.MetaData
) -> None:
    """Sparse ids spread over many batches still add up to the plain count."""
    ids = [i * i for i in range(1, 400)]  # gaps growing up to ~800 ids
    t = create(engine, events_table(metadata), [row(i) for i in ids])
    assert usage_ping.count(engine, t, batch_size=1_000) == len(ids)
    assert usage_ping.sum(engine, t, t.c.weight, batch_size=1_000) == sum(i % 5 for i in ids)


def test_nulls_in_counted_column_are_skipped(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """count(column), distinct_count and sum ignore NULLs, as SQL does."""
    rows = [row(i, author_id=None if i % 4 == 0 else i % 13, weight=None if i % 3 else i)
            for i in range(1, 3000)]  # fmt: skip
    t = create(engine, events_table(metadata), rows)
    assert usage_ping.count(engine, t, t.c.author_id, batch_size=1_000) == plain(
        engine, sa.select(sa.func.count(t.c.author_id))
    )
    assert usage_ping.distinct_count(engine, t, t.c.author_id, batch_size=10) == 13
    assert usage_ping.sum(engine, t, "weight", batch_size=1_000) == plain(
        engine, sa.select(sa.func.sum(t.c.weight))
    )


def test_sum_of_only_nulls_is_zero(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """A sum over rows whose column is all NULL is 0, not None."""
    t = create(engine, events_table(metadata), [row(i, weight=None) for i in range(1, 10)])
    assert usage_ping.sum(engine, t, t.c.weight) == 0


def test_sum_of_decimal_column(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """Numeric columns sum exactly; integral totals come back as int, others as float."""
    rows = [row(i, score=Decimal("1.25")) for i in range(1, 9)]
    t = create(engine, events_table(metadata), rows)
    assert usage_ping.sum(engine, t, t.c.score) == 10
    rows2 = [row(i, score=Decimal("0.5")) for i in range(10, 13)]
    with engine.begin() as conn:
        conn.execute(t.insert(), rows2)
    assert usage_ping.sum(engine, t, t.c.score) == pytest.approx(11.5)


def test_filters_and_joins_match_plain_sql(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """A filtered, joined relation counts what the same plain query counts."""
    t = create(engine, events_table(metadata), [row(i) for i in range(1, 5000)])
    projects = create(engine, projects_table(metadata), PROJECTS)
    rel = (
        sa.select(t)
        .join(projects, projects.c.id == t.c.project_id)
        .where(projects.c.archived.is_(False), t.c.weight > 1)
    )
    sub = rel.subquery()
    assert usage_ping.count(engine, rel, batch_size=1_000) == plain(
        engine, sa.select(sa.func.count()).select_from(sub)
    )
    assert usage_ping.distinct_count(engine, rel, "events.author_id", batch_size=10) == plain(
        engine, sa.select(sa.func.count(sa.distinct(sub.c.author_id)))
    )
    assert usage_ping.sum(engine, rel, t.c.weight, batch_size=1_000) == plain(
        engine, sa.select(sa.func.sum(sub.c.weight))
    )


def test_grouped_relation_returns_dict(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """GROUP BY gives {group: value}, summed per key across batches, NULL groups included."""
    rows = [row(i, project_id=None if i % 10 == 0 else i % 3) for i in range(1, 5000)]
    t = create(engine, events_table(metadata), rows)
    grouped = sa.select(t).group_by(t.c.project_id)
    truth = plain_grouped(
        engine, sa.select(t.c.project_id, sa.func.count()).group_by(t.c.project_id)
    )
    assert usage_ping.count(engine, grouped, batch_size=1_000) == truth
    assert usage_ping.distinct_count(engine, grouped, t.c.author_id, batch_size=10) == (
        dict.fromkeys(truth, 7)
    )
    sums = plain_grouped(
        engine, sa.select(t.c.project_id, sa.func.sum(t.c.weight)).group_by(t.c.project_id)
    )
    assert usage_ping.sum(engine, grouped, t.c.weight, batch_size=1_000) == {
        k: int(v) for k, v in sums.items()
    }


def test_grouped_by_two_columns_uses_tuple_keys(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """Several GROUP BY columns give tuple keys."""
    t = create(engine, events_table(metadata), [row(i) for i in range(1, 100)])
    result = usage_ping.count(engine, sa.select(t).group_by(t.c.project_id, t.c.weight))
    assert isinstance(result, dict)
    assert result[(1, 1)] == plain(
        engine, sa.select(sa.func.count()).where(t.c.project_id == 1, t.c.weight == 1)
    )
    assert sum(result.values()) == 99


def test_start_and_finish_are_inclusive(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """start and finish both belong to the range; one past either edge drops that row."""
    t = create(engine, events_table(metadata), [row(i) for i in range(10, 21)])
    assert usage_ping.count(engine, t, start=10, finish=20) == 11
    assert usage_ping.count(engine, t, start=15, finish=15) == 1
    assert usage_ping.count(engine, t, start=11, finish=19) == 9
    assert usage_ping.count(engine, t, start=21) == 0
    assert usage_ping.count(engine, t, finish=9) == 0
    assert usage_ping.count(engine, t, start=0, finish=10) == 1
    assert usage_ping.count(engine, t, start=20, finish=10_000) == 1
    assert usage_ping.distinct_count(engine, t, t.c.author_id, start=2, finish=3) == 2


def test_orm_model_and_attributes(engine: sa.Engine) -> None:
    """ORM models and their attributes work as relation and column."""

    class Base(DeclarativeBase):
        pass

    class Issue(Base):
        __tablename__ = "issues"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        author_id: Mapped[int | None]
        weight: Mapped[int]
        state: Mapped[str] = mapped_column(sa.String(10))

    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(Issue),
            [
                {"id": i, "author_id": i % 4, "weight": 2, "state": "opened" if i % 2 else "closed"}
                for i in range(1, 101)
            ],
        )
    assert usage_ping.count(engine, Issue) == 100
    assert usage_ping.count(engine, sa.select(Issue).where(Issue.state == "opened")) == 50
    assert usage_ping.distinct_count(engine, Issue, Issue.author_id) == 4
    assert usage_ping.sum(engine, Issue, Issue.weight) == 200
    assert usage_ping.count(engine, sa.select(Issue).group_by(Issue.state)) == {
        "opened": 50,
        "closed": 50,
    }


def test_unbatched_mode_runs_one_plain_query(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """batch=False gives the same answers with one query each."""
    t = create(engine, events_table(metadata), [row(i) for i in range(1, 500)])
    assert usage_ping.count(engine, t, batch=False) == 499
    assert usage_ping.distinct_count(engine, t, t.c.title, batch=False) == 11
    assert usage_ping.sum(engine, t, t.c.weight, batch=False) == sum(i % 5 for i in range(1, 500))


def test_parallel_connections_give_exact_results(
    engine: sa.Engine, metadata: sa.MetaData, dialect: str
) -> None:
    """Batches spread over several connections still add up exactly."""
    t = create(engine, events_table(metadata), [row(i) for i in range(1, 20_001)])
    in_use = 0
    most = 0

    @sa.event.listens_for(engine, "checkout")
    def checkout(*args: Any) -> None:
        nonlocal in_use, most
        in_use += 1
        most = max(most, in_use)

    @sa.event.listens_for(engine, "checkin")
    def checkin(*args: Any) -> None:
        nonlocal in_use
        in_use -= 1

    # Tiny target_time keeps batches at the floor; a progress callback that waits (up to 2 s)
    # for the third connection keeps the first from finishing everything before the others have
    # connected, however slowly the server accepts connections.
    def slow(covered: int, total: int) -> None:
        deadline = time.monotonic() + 2
        while most < 3 and time.monotonic() < deadline:
            time.sleep(0.005)

    assert (
        usage_ping.count(engine, t, batch_size=1_000, parallel=3, target_time=1e-6, progress=slow)
        == 20_000
    )
    assert most == 3
    assert usage_ping.sum(engine, t, t.c.weight, batch_size=1_000, parallel=2) == sum(
        i % 5 for i in range(1, 20_001)
    )


def test_default_parallelism_follows_dialect_and_pool(engine: sa.Engine, dialect: str) -> None:
    """Two connections on database servers, one on SQLite, never more than the pool holds."""
    from usage_ping.sql.counters import prepare

    metadata = sa.MetaData()
    t = events_table(metadata)
    call = prepare("count", engine, t, lambda target: target.pk, {})
    assert call.parallel == (1 if dialect == "sqlite" else 2)
    single = sa.create_engine(engine.url, poolclass=sa.pool.StaticPool)
    call = prepare("count", single, t, lambda target: target.pk, {})
    assert call.parallel == 1
    single.dispose()


def test_progress_reports_covered_ids_up_to_total(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """progress(covered, total) rises after every batch and ends at the range's width."""
    t = create(engine, events_table(metadata), [row(i) for i in range(1, 5_001)])
    seen: list[tuple[int, int]] = []
    usage_ping.count(
        engine,
        t,
        batch_size=1_000,
        parallel=1,
        target_time=100,
        progress=lambda c, n: seen.append((c, n)),
    )
    assert len(seen) >= 3
    assert [c for c, _ in seen] == sorted(c for c, _ in seen)
    assert seen[-1] == (5_000, 5_000)
    assert {n for _, n in seen} == {5_000}


@pytest.mark.swallows
def test_failing_progress_callback_does_not_break_the_count(
    engine: sa.Engine, metadata: sa.MetaData, swallowed: list[Any]
) -> None:
    """An exception in the host's progress callback is swallowed; the count goes on."""
    t = create(engine, events_table(metadata), [row(i) for i in range(1, 3_001)])

    def broken(covered: int, total: int) -> None:
        raise RuntimeError("progress bar crashed")

    assert usage_ping.count(engine, t, batch_size=1_000, progress=broken) == 3_000
    assert swallowed
    assert all(isinstance(s.exception, RuntimeError) for s in swallowed)


def test_bounds_are_queried_once_per_relation_within_a_run(
    engine: sa.Engine, metadata: sa.MetaData
) -> None:
    """Inside memoized_bounds(), metrics over the same relation share one min/max query."""
    t = create(engine, events_table(metadata), [row(i) for i in range(1, 100)])
    statements: list[str] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    def bounds_queries() -> int:
        return sum(1 for s in statements if "min(" in s.lower() and "max(" in s.lower())

    with usage_ping.memoized_bounds():
        assert usage_ping.count(engine, t) == 99
        assert usage_ping.sum(engine, t, t.c.weight) == sum(i % 5 for i in range(1, 100))
        assert usage_ping.count(engine, t, t.c.author_id) == 99
        assert bounds_queries() == 1
        # A different relation (another filter) has bounds of its own.
        usage_ping.count(engine, sa.select(t).where(t.c.weight > 2))
        assert bounds_queries() == 2
    usage_ping.count(engine, t)  # outside the run: no cache
    assert bounds_queries() == 3
