"""Property: a batch counter equals the plain SQL query, for random tables, filters and sizes."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import usage_ping
from tests.sql.tables import events_table, plain, plain_grouped

rows_strategy = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=30_000),  # id: sparse, with gaps
        st.one_of(st.none(), st.integers(min_value=0, max_value=400)),  # author_id
        st.one_of(st.none(), st.integers(min_value=-50, max_value=50)),  # weight
        st.integers(min_value=0, max_value=3),  # project_id
    ),
    max_size=150,
    unique_by=lambda r: r[0],
)


@given(
    rows=rows_strategy,
    threshold=st.integers(min_value=-60, max_value=60),
    batch_size=st.integers(min_value=1_000, max_value=40_000),
    distinct_batch=st.integers(min_value=10, max_value=500),
    parallel=st.integers(min_value=1, max_value=3),
    bounds=st.tuples(
        st.one_of(st.none(), st.integers(min_value=0, max_value=30_000)),
        st.one_of(st.none(), st.integers(min_value=0, max_value=30_000)),
    ).filter(lambda b: b[0] is None or b[1] is None or b[0] <= b[1]),
)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_batch_results_equal_plain_sql(
    engine: sa.Engine,
    rows: list[tuple[int, Any, Any, int]],
    threshold: int,
    batch_size: int,
    distinct_batch: int,
    parallel: int,
    bounds: tuple[int | None, int | None],
) -> None:
    """count, distinct_count and sum (plain and grouped) match one unbatched query."""
    metadata = sa.MetaData()
    t = events_table(metadata, "prop_events")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(t.delete())
        if rows:
            conn.execute(
                t.insert(),
                [{"id": i, "author_id": a, "weight": w, "project_id": p} for i, a, w, p in rows],
            )
    start, finish = bounds
    rel = sa.select(t).where(sa.or_(t.c.weight > threshold, t.c.weight.is_(None)))
    opts: dict[str, Any] = {"start": start, "finish": finish, "parallel": parallel}

    in_ids = rel
    if start is not None:
        in_ids = in_ids.where(t.c.id >= start)
    if finish is not None:
        in_ids = in_ids.where(t.c.id <= finish)
    sub = in_ids.subquery()
    assert usage_ping.count(engine, rel, batch_size=batch_size, **opts) == plain(
        engine, sa.select(sa.func.count()).select_from(sub)
    )
    assert usage_ping.sum(engine, rel, t.c.weight, batch_size=batch_size, **opts) == (
        plain(engine, sa.select(sa.func.coalesce(sa.func.sum(sub.c.weight), 0)))
    )
    grouped = rel.group_by(t.c.project_id)
    assert usage_ping.count(engine, grouped, batch_size=batch_size, **opts) == plain_grouped(
        engine, sa.select(sub.c.project_id, sa.func.count()).group_by(sub.c.project_id)
    )

    # distinct_count walks author_id, so start/finish bound author_id values here.
    in_values = rel
    if start is not None:
        in_values = in_values.where(t.c.author_id >= start)
    if finish is not None:
        in_values = in_values.where(t.c.author_id <= finish)
    vsub = in_values.subquery()
    assert usage_ping.distinct_count(
        engine, rel, t.c.author_id, batch_size=distinct_batch, **opts
    ) == plain(engine, sa.select(sa.func.count(sa.distinct(vsub.c.author_id))))
