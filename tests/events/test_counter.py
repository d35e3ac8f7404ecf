"""track_event and unique_events on every store: Redis, Redis Cluster and SQLite."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from typing import Any

import pytest

from usage_ping.events import (
    AggregationMismatchError,
    CategoryMismatchError,
    EventCounter,
    EventError,
    FeatureFlags,
    InvalidContextError,
    InvalidValueError,
    KnownEvent,
    KnownEvents,
    SlotMismatchError,
    UnknownEventError,
)
from usage_ping.store import CounterStore
from usage_ping.store.redis import RedisStore
from usage_ping.testing import Swallowed

EVENTS = KnownEvents([
    KnownEvent("i_search_total", "search", "weekly", redis_slot="search"),
    KnownEvent("i_search_advanced", "search", "weekly", redis_slot="search"),
    KnownEvent("g_edit_by_web_ide", "ide_edit", "daily", redis_slot="edit"),
    KnownEvent("g_edit_by_sfe", "ide_edit", "daily", redis_slot="edit"),
    KnownEvent("p_lonely", "lonely", "weekly"),
    KnownEvent("i_other_slot", "search", "weekly", redis_slot="elsewhere"),
    KnownEvent("i_search_daily", "search", "daily", redis_slot="search"),
    KnownEvent("i_flagged", "flags", "weekly", feature_flag="new_thing"),
    KnownEvent("g_edit_review", "review", "daily", redis_slot="edit"),
])  # fmt: skip


def at(year: int, month: int, day: int) -> datetime:
    """Noon UTC on that day."""
    return datetime(year, month, day, 12, tzinfo=UTC)


@pytest.fixture
def counter(store: CounterStore) -> EventCounter:
    return EventCounter(store, EVENTS, contexts=["free", "premium"], strict=True)


def test_weekly_event_counted_in_the_last_complete_week_across_new_year(
    counter: EventCounter,
) -> None:
    """Values tracked in ISO week 2020-W53 are the weekly count on 2021-01-04 (GitLab gave -1)."""
    counter.track_event("i_search_total", ["u1", "u2"], time=at(2020, 12, 31))
    counter.track_event("i_search_total", "u3", time=at(2021, 1, 3))
    counter.track_event("i_search_total", "u4", time=at(2021, 1, 4))  # current week: not counted
    assert counter.count("i_search_total", "weekly", date(2021, 1, 4)) == 3
    assert counter.count("i_search_total", "monthly", date(2021, 1, 4)) == 3
    assert counter.count("i_search_total", "weekly", date(2021, 1, 11)) == 1


def test_daily_event_windows_are_complete_days(counter: EventCounter) -> None:
    """7 and 28 complete days before today; today itself is not counted."""
    counter.track_event("g_edit_by_web_ide", "a", time=at(2024, 2, 29))
    counter.track_event("g_edit_by_web_ide", "b", time=at(2024, 2, 10))
    counter.track_event("g_edit_by_web_ide", "c", time=at(2024, 3, 1))
    assert counter.count("g_edit_by_web_ide", "weekly", date(2024, 3, 1)) == 1
    assert counter.count("g_edit_by_web_ide", "monthly", date(2024, 3, 1)) == 2
    assert counter.unique_events("g_edit_by_web_ide", date(2024, 2, 1), date(2024, 3, 1)) == 3


def test_union_of_events_counts_each_value_once(counter: EventCounter) -> None:
    """unique_events over several events of one slot is the union."""
    counter.track_event("i_search_total", ["a", "b", "c"], time=at(2026, 11, 10))
    counter.track_event("i_search_advanced", ["c", "d"], time=at(2026, 11, 11))
    both = ["i_search_total", "i_search_advanced"]
    assert counter.unique_events(both, date(2026, 11, 9), date(2026, 11, 15)) == 4


def test_events_that_cannot_be_counted_together_are_refused(counter: EventCounter) -> None:
    """Different slot, category or aggregation: each a clear error."""
    day, later = date(2026, 11, 9), date(2026, 11, 15)
    with pytest.raises(SlotMismatchError):
        counter.unique_events(["i_search_total", "i_other_slot"], day, later)
    with pytest.raises(CategoryMismatchError):
        counter.unique_events(["g_edit_by_web_ide", "g_edit_review"], day, later)
    with pytest.raises(AggregationMismatchError):
        counter.unique_events(["i_search_total", "i_search_daily"], day, later)
    with pytest.raises(UnknownEventError):
        counter.unique_events(["i_nope"], day, later)
    with pytest.raises(EventError, match="no complete ISO week"):
        counter.unique_events("i_search_total", date(2026, 11, 10), date(2026, 11, 15))


def test_category_totals_only_where_events_can_be_united(counter: EventCounter) -> None:
    """Totals for categories with several events of one slot and aggregation, not otherwise."""
    counter.track_event("g_edit_by_web_ide", ["a", "b"], time=at(2026, 11, 19))
    counter.track_event("g_edit_by_sfe", ["b", "c"], time=at(2026, 11, 20))
    totals = counter.totals(date(2026, 11, 21))
    assert totals["ide_edit"] == {
        "g_edit_by_web_ide_weekly": 2,
        "g_edit_by_web_ide_monthly": 2,
        "g_edit_by_sfe_weekly": 2,
        "g_edit_by_sfe_monthly": 2,
        "ide_edit_total_unique_counts_weekly": 3,
        "ide_edit_total_unique_counts_monthly": 3,
    }
    assert "lonely_total_unique_counts_weekly" not in totals["lonely"]
    assert not any(k.startswith("search_total") for k in totals["search"])  # mixed slots


def test_contexts_count_separately_and_must_be_allowed(counter: EventCounter) -> None:
    """A context (e.g. a plan) has keys of its own; one outside the allowed list is refused."""
    counter.track_event_in_context("i_search_total", "a", "premium")
    assert counter.track_event_in_context("i_search_total", "b", "") is False
    with pytest.raises(InvalidContextError, match="gold"):
        counter.track_event("i_search_total", "c", context="gold")
    today = datetime.now(UTC).date()
    assert counter.unique_events("i_search_daily", today, today) == 0
    week = counter.keys(["i_search_total"], date(2026, 11, 9), date(2026, 11, 15), "premium")
    assert ":premium:" in week[0]


@pytest.mark.parametrize(
    "values", [True, None, 1.5, {"a": 1}, b"id", [""], ["x" * 256], [["nested"]], object()]
)
def test_bad_values_raise_in_strict_mode(counter: EventCounter, values: Any) -> None:
    """Booleans, floats, None, empty or over-long strings, nested lists: InvalidValueError."""
    with pytest.raises(InvalidValueError):
        counter.track_event("i_search_total", values)


def test_integers_and_255_character_values_are_fine(counter: EventCounter) -> None:
    """Ids may be ints or strings up to 255 characters; an empty list tracks nothing."""
    assert counter.track_event("i_search_total", [1, 2, "x" * 255], time=at(2026, 11, 10))
    assert counter.track_event("i_search_total", [], time=at(2026, 11, 10)) is False
    assert counter.unique_events("i_search_total", date(2026, 11, 9), date(2026, 11, 15)) == 3


@pytest.mark.swallows
def test_production_mode_logs_and_drops_mistakes(
    store: CounterStore, swallowed: list[Swallowed]
) -> None:
    """Without strict, unknown events and bad values return False and are logged, not raised."""
    counter = EventCounter(store, EVENTS)
    assert counter.track_event("i_unknown", "a") is False
    assert counter.track_event("i_search_total", True) is False
    assert [type(s.exception) for s in swallowed] == [UnknownEventError, InvalidValueError]


def test_feature_flag_and_counting_switch_gate_tracking(store: CounterStore) -> None:
    """A flagged event tracks only with its flag on; counting off tracks nothing at all."""
    flags = FeatureFlags()
    counting = [True]
    counter = EventCounter(store, EVENTS, flags=flags, counting=lambda: counting[0], strict=True)
    assert counter.track_event("i_flagged", "a") is False
    flags.set("new_thing", True)
    assert counter.track_event("i_flagged", "a") is True
    counting[0] = False
    assert counter.track_event("i_search_total", "a") is False


@pytest.mark.swallows
def test_store_down_costs_little_and_never_raises(swallowed: list[Swallowed]) -> None:
    """With nothing listening, track_event returns False fast, even in strict mode."""
    counter = EventCounter(RedisStore.from_url("redis://127.0.0.1:1/0"), EVENTS, strict=True)
    started = time.perf_counter()
    assert counter.track_event("i_search_total", "a") is False
    assert time.perf_counter() - started < 1.0
    assert len(swallowed) == 1


def test_flag_values_come_from_host_then_definitions_then_default() -> None:
    """Host values win over definition defaults, which win over the global default."""
    flags = FeatureFlags({"a": False}, defaults={"a": True, "b": True}, default=False)
    assert (flags.enabled("a"), flags.enabled("b"), flags.enabled("c")) == (False, True, False)
    flags.set("c", True)
    assert flags.enabled("c")


def test_flags_load_from_the_host_database(engine: Any, metadata: Any) -> None:
    """A (name, enabled) table of the host's database; a missing table means defaults only."""
    import sqlalchemy as sa

    assert FeatureFlags.from_table(engine, defaults={"x": True}).enabled("x")
    table = sa.Table(
        "usage_ping_feature_flags",
        metadata,
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
    )
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            table.insert(), [{"name": "x", "enabled": False}, {"name": "y", "enabled": True}]
        )
    flags = FeatureFlags.from_table(engine, defaults={"x": True})
    assert (flags.enabled("x"), flags.enabled("y"), flags.enabled("z")) == (False, True, False)
