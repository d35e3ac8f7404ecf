"""Bad arguments fail at call time with InvalidRelationError, before any query runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

import usage_ping
from tests.sql.tables import events_table

metadata = sa.MetaData()
events = events_table(metadata)
no_pk = sa.Table("no_pk", metadata, sa.Column("x", sa.Integer))
composite_pk = sa.Table(
    "composite_pk",
    metadata,
    sa.Column("a", sa.Integer, primary_key=True),
    sa.Column("b", sa.Integer, primary_key=True),
)
text_pk = sa.Table("text_pk", metadata, sa.Column("slug", sa.String(20), primary_key=True))

Counter = Callable[..., Any]
ALL: list[tuple[str, Counter, tuple[Any, ...]]] = [
    ("count", usage_ping.count, ()),
    ("distinct_count", usage_ping.distinct_count, ("author_id",)),
    ("sum", usage_ping.sum, ("weight",)),
    ("estimate", usage_ping.estimate_distinct_count, ()),
]


@pytest.fixture(params=ALL, ids=[name for name, _, _ in ALL])
def counter(request: pytest.FixtureRequest) -> tuple[Counter, tuple[Any, ...]]:
    _, func, args = request.param
    return func, args


@pytest.mark.parametrize(
    ("relation", "message"),
    [
        (no_pk, "single-column primary key"),
        (composite_pk, "single-column primary key"),
        (text_pk, "not an integer"),
        (sa.select(events).limit(5), "LIMIT"),
        (sa.select(events).offset(5), "LIMIT/OFFSET"),
        (sa.select(events.c.author_id).distinct(), "DISTINCT"),
        (
            sa.select(events.c.weight).group_by(events.c.weight).having(sa.func.count() > 1),
            "HAVING",
        ),
        (sa.select(sa.literal(1)), "no table"),
        (sa.select(events.alias("e")), "must select from a table"),
        ("events", "must be a sqlalchemy Table"),
    ],
)
def test_relations_that_cannot_be_batched_are_refused(
    engine: sa.Engine, relation: Any, message: str
) -> None:
    """Each unbatchable relation gets an error naming the reason."""
    with pytest.raises(usage_ping.InvalidRelationError, match=message):
        usage_ping.count(engine, relation)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": -1}, "start must not be negative"),
        ({"finish": -5}, "finish must not be negative"),
        ({"start": 10, "finish": 9}, "after finish"),
        ({"start": 1.5}, "start must be an integer"),
        ({"start": True}, "start must be an integer"),
        ({"batch_size": 5}, "batch_size must be an integer of at least"),
        ({"batch_size": "big"}, "batch_size"),
        ({"parallel": 0}, "parallel must be a positive integer"),
        ({"timeout": 0}, "positive"),
        ({"target_time": -1}, "positive"),
    ],
)
def test_bad_ranges_and_sizes_are_refused(
    engine: sa.Engine,
    counter: tuple[Counter, tuple[Any, ...]],
    kwargs: dict[str, Any],
    message: str,
) -> None:
    """Negative or inverted ranges, sizes below the floor: refused by every counter."""
    func, args = counter
    with pytest.raises(usage_ping.InvalidRelationError, match=message):
        func(engine, events, *args, **kwargs)


def test_floors_are_per_operation(engine: sa.Engine) -> None:
    """The floor is 1,000 ids for count, sum and estimate, 10 values for distinct_count."""
    assert usage_ping.sql.MIN_BATCH_SIZE == {
        "count": 1_000,
        "sum": 1_000,
        "distinct_count": 10,
        "estimate": 1_000,
    }
    with pytest.raises(usage_ping.InvalidRelationError, match="at least 1000"):
        usage_ping.count(engine, events, batch_size=999)
    with pytest.raises(usage_ping.InvalidRelationError, match="at least 10 "):
        usage_ping.distinct_count(engine, events, "author_id", batch_size=9)


def test_sum_of_a_non_numeric_column_is_refused(engine: sa.Engine) -> None:
    """sum needs a numeric column."""
    with pytest.raises(usage_ping.InvalidRelationError, match="numeric"):
        usage_ping.sum(engine, events, events.c.title)


def test_distinct_count_of_the_primary_key_is_refused(engine: sa.Engine) -> None:
    """Every primary key is distinct: that is count()."""
    with pytest.raises(usage_ping.InvalidRelationError, match="use count"):
        usage_ping.distinct_count(engine, events, events.c.id)


def test_batched_distinct_count_needs_an_integer_column(engine: sa.Engine) -> None:
    """Batches walk the counted column, so it must be an integer; the error says what to use."""
    with pytest.raises(usage_ping.InvalidRelationError, match="estimate_distinct_count"):
        usage_ping.distinct_count(engine, events, events.c.title)


def test_unknown_columns_are_refused(engine: sa.Engine) -> None:
    """A column name that is in none of the relation's tables."""
    with pytest.raises(usage_ping.InvalidRelationError, match="no column 'nope'"):
        usage_ping.count(engine, events, "nope")
    with pytest.raises(usage_ping.InvalidRelationError, match="column must be"):
        usage_ping.count(engine, events, 42)


def test_engine_must_be_an_engine(engine: sa.Engine) -> None:
    """A connection or URL in place of the engine is refused."""
    with pytest.raises(usage_ping.InvalidRelationError, match="Engine"):
        usage_ping.count("sqlite://", events)  # type: ignore[arg-type]
    with engine.connect() as conn, pytest.raises(usage_ping.InvalidRelationError, match="Engine"):
        usage_ping.count(conn, events)  # type: ignore[arg-type]


def test_invalid_input_is_a_value_error() -> None:
    """Callers may catch ValueError."""
    assert issubclass(usage_ping.InvalidRelationError, ValueError)


def test_unknown_keyword_arguments_are_refused(engine: sa.Engine) -> None:
    """A misspelt option is a TypeError, not silently ignored."""
    with pytest.raises(TypeError, match="batchsize"):
        usage_ping.count(engine, events, batchsize=5_000)  # type: ignore[call-arg]
