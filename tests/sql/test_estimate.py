"""HyperLogLog distinct estimates computed in SQL, on every dialect and on the pg hll extension."""

from __future__ import annotations

import os
import random
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

import usage_ping
from tests.sql.tables import PROJECTS, create, events_table, plain, projects_table, row
from usage_ping import HllSketch
from usage_ping.testing import Swallowed


def _random_rows(n: int, authors: int, seed: int) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    return [
        row(
            i * 2,
            author_id=None if i % 17 == 0 else rnd.randint(1, authors),
            title=f"title-{rnd.randint(1, authors)}",
        )
        for i in range(1, n + 1)
    ]


def _within(estimate: Any, exact: int, tolerance: float) -> bool:
    return isinstance(estimate, int) and abs(estimate - exact) <= tolerance * exact


def test_estimates_are_close_to_exact_counts(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """Integer, text and primary-key columns are estimated within 3 % (4 standard errors)."""
    t = create(engine, events_table(metadata), _random_rows(20_000, 12_000, seed=1))
    exact_authors = plain(engine, sa.select(sa.func.count(sa.distinct(t.c.author_id))))
    exact_titles = plain(engine, sa.select(sa.func.count(sa.distinct(t.c.title))))
    assert _within(
        usage_ping.estimate_distinct_count(engine, t, t.c.author_id), exact_authors, 0.03
    )
    assert _within(usage_ping.estimate_distinct_count(engine, t, "title"), exact_titles, 0.03)
    assert _within(usage_ping.estimate_distinct_count(engine, t), 20_000, 0.03)


def test_small_cardinalities_are_nearly_exact(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """With far fewer values than registers, the estimator is practically exact (no bias)."""
    t = create(engine, events_table(metadata), [row(i, author_id=i % 50) for i in range(1, 3000)])
    assert usage_ping.estimate_distinct_count(engine, t, t.c.author_id) == 50
    empty = create(engine, events_table(sa.MetaData(), "empty_events"), [])
    assert usage_ping.estimate_distinct_count(engine, empty, empty.c.author_id) == 0


def test_batched_parallel_and_plain_give_identical_sketches(
    engine: sa.Engine, metadata: sa.MetaData
) -> None:
    """Registers are a per-register max, so batching and parallelism cannot change them."""
    t = create(engine, events_table(metadata), _random_rows(6_000, 3_000, seed=2))
    plain_sketch = usage_ping.estimate_distinct_sketch(engine, t, t.c.author_id, batch=False)
    batched = usage_ping.estimate_distinct_sketch(
        engine, t, t.c.author_id, batch_size=1_000, parallel=1, target_time=1e-6
    )
    parallel = usage_ping.estimate_distinct_sketch(
        engine, t, t.c.author_id, batch_size=1_000, parallel=3, target_time=1e-6
    )
    assert isinstance(plain_sketch, HllSketch)
    assert plain_sketch == batched == parallel


def test_sketches_of_parts_merge_into_the_sketch_of_the_whole(
    engine: sa.Engine, metadata: sa.MetaData
) -> None:
    """The union of the sketches of two filters equals the sketch of both, register for register."""
    t = create(engine, events_table(metadata), _random_rows(5_000, 4_000, seed=3))
    low = usage_ping.estimate_distinct_sketch(engine, sa.select(t).where(t.c.weight < 2), "title")
    high = usage_ping.estimate_distinct_sketch(engine, sa.select(t).where(t.c.weight >= 2), "title")
    whole = usage_ping.estimate_distinct_sketch(engine, t, "title")
    assert isinstance(low, HllSketch)
    assert isinstance(high, HllSketch)
    assert low | high == whole
    assert HllSketch.from_bytes((low | high).to_bytes()) == whole


def test_on_sketch_receives_the_sketch_behind_the_number(
    engine: sa.Engine, metadata: sa.MetaData, dialect: str
) -> None:
    """on_sketch gets the merged sketch; its estimate is the returned number."""
    t = create(engine, events_table(metadata), _random_rows(2_000, 1_500, seed=4))
    got: list[HllSketch] = []
    result = usage_ping.estimate_distinct_count(
        engine, t, t.c.author_id, on_sketch=got.append, use_hll_extension=False
    )
    [sketch] = got
    assert int(sketch) == result
    expected_family = {
        "postgresql": "postgresql:hashextended",
        "mariadb": "mysql:md5",
        "sqlite": "usage_ping:splitmix64",
    }[dialect]
    assert sketch.hash_family == expected_family


@pytest.mark.dialects("sqlite")
def test_sqlite_sketch_merges_with_sketches_built_in_python(
    engine: sa.Engine, metadata: sa.MetaData
) -> None:
    """SQLite hashes with the same function as HllSketch.add: the registers agree exactly."""
    rows = _random_rows(3_000, 2_000, seed=5)
    t = create(engine, events_table(metadata), rows)
    from_sql = usage_ping.estimate_distinct_sketch(engine, t, "title")
    in_python = HllSketch.of(r["title"] for r in rows)
    assert from_sql == in_python


def test_progress_is_reported_for_estimates(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """Estimates report progress like the exact counters."""
    t = create(engine, events_table(metadata), [row(i) for i in range(1, 3_001)])
    seen: list[tuple[int, int]] = []
    usage_ping.estimate_distinct_count(
        engine, t, batch_size=1_000, target_time=1e-6, progress=lambda c, n: seen.append((c, n))
    )
    assert seen[-1] == (3_000, 3_000)


@pytest.mark.swallows
def test_database_error_gives_minus_one_other_errors_minus_two(
    engine: sa.Engine, metadata: sa.MetaData, swallowed: list[Swallowed]
) -> None:
    """-1 when the database fails, -2 when the estimate fails for another reason."""
    missing = events_table(metadata, "never_created")
    assert usage_ping.estimate_distinct_count(engine, missing) == usage_ping.FAILED
    t = create(engine, events_table(sa.MetaData()), [row(i) for i in range(1, 10)])

    def broken(sketch: HllSketch) -> None:
        raise RuntimeError("cannot store the sketch")

    assert usage_ping.estimate_distinct_count(engine, t, on_sketch=broken) == (
        usage_ping.ESTIMATE_FAILED
    )
    assert [type(s.exception) for s in swallowed][1] is RuntimeError


def test_grouped_relation_is_refused(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """Estimates do not take GROUP BY: a clear error at call time."""
    t = events_table(metadata)
    with pytest.raises(usage_ping.InvalidRelationError, match="grouped"):
        usage_ping.estimate_distinct_count(engine, sa.select(t).group_by(t.c.weight))


@pytest.mark.dialects("sqlite", "mariadb")
def test_hll_extension_is_refused_outside_postgresql(engine: sa.Engine) -> None:
    """Asking for the PostgreSQL extension on another database is a call-time error."""
    t = events_table(sa.MetaData())
    with pytest.raises(usage_ping.InvalidRelationError, match="PostgreSQL"):
        usage_ping.estimate_distinct_count(engine, t, use_hll_extension=True)


# -- the PostgreSQL hll extension ---------------------------------------------------------------


@contextmanager
def hll_extension(engine: sa.Engine) -> Iterator[None]:
    """The hll extension, installed in the test database for the block and dropped after it."""
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS hll")
    except sa.exc.DBAPIError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the hll extension is not installed: {exc}")
        pytest.skip("the PostgreSQL hll extension is not installed (postgresql-15-hll)")
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP EXTENSION hll")


@pytest.mark.dialects("postgresql")
def test_hll_extension_is_detected_and_used(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """Without the extension the pure-SQL path runs; once installed, the extension's."""
    t = create(engine, events_table(metadata), _random_rows(20_000, 12_000, seed=6))
    exact = plain(engine, sa.select(sa.func.count(sa.distinct(t.c.author_id))))
    pure = usage_ping.estimate_distinct_sketch(engine, t, t.c.author_id)
    assert isinstance(pure, HllSketch)
    assert pure.hash_family == "postgresql:hashextended"
    with hll_extension(engine):
        with_ext = usage_ping.estimate_distinct_sketch(engine, t, t.c.author_id)
        forced_pure = usage_ping.estimate_distinct_sketch(
            engine, t, t.c.author_id, use_hll_extension=False
        )
        titles = usage_ping.estimate_distinct_count(engine, t, "title")
        exact_titles = plain(engine, sa.select(sa.func.count(sa.distinct(t.c.title))))
    assert isinstance(with_ext, HllSketch)
    assert with_ext.hash_family == "postgresql:hll"
    assert forced_pure == pure
    assert _within(round(with_ext.estimate()), exact, 0.03)
    assert _within(titles, exact_titles, 0.03)


@pytest.mark.dialects("postgresql")
def test_decoded_hll_registers_match_the_extension(
    engine: sa.Engine, metadata: sa.MetaData
) -> None:
    """Our decoding of the extension's registers agrees with its own cardinality and union."""
    t = create(engine, events_table(metadata), _random_rows(4_000, 100_000, seed=7))
    with hll_extension(engine):
        with engine.connect() as conn:
            theirs = conn.exec_driver_sql(
                "SELECT hll_cardinality(hll_add_agg(hll_hash_bigint(author_id), 14, 5, 0, 0)) "
                "FROM events"
            ).scalar()
        ours = usage_ping.estimate_distinct_count(
            engine, t, t.c.author_id, batch_size=1_000, target_time=1e-6
        )
    # Same registers, different estimators (theirs switches to linear counting here).
    assert isinstance(ours, int)
    assert ours == pytest.approx(theirs, rel=0.01)


def test_unbatched_estimate_honours_start_and_finish(
    engine: sa.Engine, metadata: sa.MetaData
) -> None:
    """batch=False with a range gives the same sketch as the batched walk of that range."""
    t = create(engine, events_table(metadata), _random_rows(3_000, 2_000, seed=8))
    kwargs: dict[str, Any] = {"start": 1_000, "finish": 4_001}
    plain_sketch = usage_ping.estimate_distinct_sketch(engine, t, "title", batch=False, **kwargs)
    batched = usage_ping.estimate_distinct_sketch(engine, t, "title", batch_size=1_000, **kwargs)
    whole = usage_ping.estimate_distinct_sketch(engine, t, "title")
    assert plain_sketch == batched != whole


@pytest.mark.dialects("postgresql")
def test_postgresql_estimates_walk_blocks_and_build_the_same_sketch(
    engine: sa.Engine, metadata: sa.MetaData
) -> None:
    """Without start/finish/batch_size, PostgreSQL walks TID ranges; the registers are the same."""
    t = create(engine, events_table(metadata), _random_rows(20_000, 5_000, seed=9))  # ~170 blocks
    projects = create(engine, projects_table(metadata), PROJECTS)
    rel = sa.select(t).join(projects, projects.c.id == t.c.project_id).where(~projects.c.archived)
    statements: list[str] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    seen: list[tuple[int, int]] = []
    by_blocks = usage_ping.estimate_distinct_sketch(
        engine, rel, "title", target_time=1e-6, progress=lambda c, n: seen.append((c, n))
    )
    assert any("ctid >=" in s for s in statements)
    assert len(seen) >= 2  # the blocks were split between batches
    by_key = usage_ping.estimate_distinct_sketch(engine, rel, "title", batch_size=1_000)
    unbatched = usage_ping.estimate_distinct_sketch(engine, rel, "title", batch=False)
    assert by_blocks == by_key == unbatched
    with hll_extension(engine):
        ext_blocks = usage_ping.estimate_distinct_sketch(engine, rel, "title", target_time=1e-6)
        ext_key = usage_ping.estimate_distinct_sketch(engine, rel, "title", batch_size=1_000)
    assert isinstance(ext_blocks, HllSketch)
    assert ext_blocks.hash_family == "postgresql:hll"
    assert ext_blocks == ext_key


@pytest.mark.dialects("postgresql")
def test_block_walk_of_an_empty_table(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """A table with no blocks estimates 0 without batching."""
    t = create(engine, events_table(metadata), [])
    assert usage_ping.estimate_distinct_count(engine, t, t.c.author_id) == 0


def _fill(engine: sa.Engine, dialect: str, table: str, rows: int) -> None:
    """Insert ids 1..rows with author_id = id * 7, generated inside the database."""
    if dialect == "postgresql":
        source = f"SELECT g, g * 7 FROM generate_series(1, {rows}) AS g"
    elif dialect == "mariadb":
        source = f"SELECT seq, seq * 7 FROM seq_1_to_{rows}"
    else:
        source = (
            f"WITH RECURSIVE n(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM n WHERE g < {rows}) "
            "SELECT g, g * 7 FROM n"
        )
    with engine.begin() as conn:
        conn.exec_driver_sql(f"INSERT INTO {table} (id, author_id) {source}")


def test_rows_above_the_ceiling_are_skipped_without_changing_the_sketch(
    engine: sa.Engine, metadata: sa.MetaData, dialect: str
) -> None:
    """Once every register is set, batches skip rows that cannot lower one: same registers."""
    t = create(engine, events_table(metadata), [])
    _fill(engine, dialect, "events", 400_000)
    statements: list[str] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    # A generous timeout: this test is about the ceiling, not about a loaded machine's latency.
    walked = usage_ping.estimate_distinct_sketch(
        engine, t, t.c.author_id, batch_size=20_000, target_time=1e-6, parallel=2, timeout=30
    )
    ceiling = re.compile(r"1125899906842623\)* < \d+")
    assert any(ceiling.search(s) for s in statements)
    # The reference: one statement over all 400k rows, so it needs more than the 1 s default.
    unbatched = usage_ping.estimate_distinct_sketch(
        engine, t, t.c.author_id, batch=False, timeout=120
    )
    assert walked == unbatched
    assert isinstance(walked, HllSketch)
    assert abs(walked.estimate() / 400_000 - 1) < 0.03
