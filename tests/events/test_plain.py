"""Plain counters (INCR and hash) and redis_usage_data on every store: Redis, Cluster and SQLite."""

from __future__ import annotations

import time
from typing import Any

import pytest

from usage_ping.events.counter import EventError, UnknownEventError
from usage_ping.events.plain import (
    Counter,
    CounterDefinitionError,
    HashCounter,
    HasTotals,
    redis_usage_data,
)
from usage_ping.fallback import FAILED
from usage_ping.store import CounterStore, StoreError
from usage_ping.store.redis import RedisStore
from usage_ping.testing import Swallowed

WIKI_EVENTS = ["create", "update", "delete"]
DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens there: connecting fails at once

CounterClass = type[Counter] | type[HashCounter]
both_kinds = pytest.mark.parametrize("kind", [Counter, HashCounter], ids=["incr", "hash"])


@both_kinds
def test_increments_and_totals(store: CounterStore, kind: CounterClass) -> None:
    """Increments add up per event; totals name every known event, 0 for untouched ones."""
    wiki = kind(store, "wiki_pages", WIKI_EVENTS, strict=True)
    assert wiki.increment("create") is True
    assert wiki.increment("create", 4) is True
    assert wiki.increment("delete") is True
    assert wiki.read("create") == 5
    assert wiki.read("update") == 0
    assert wiki.totals() == {"wiki_pages_create": 5, "wiki_pages_update": 0, "wiki_pages_delete": 1}
    assert list(wiki.totals()) == wiki.metric_names()  # declared order


@both_kinds
def test_counters_with_other_prefixes_or_kinds_do_not_share_values(
    store: CounterStore, kind: CounterClass
) -> None:
    """Another prefix, or the other kind of counter with the same prefix, counts on its own."""
    wiki = kind(store, "wiki_pages", WIKI_EVENTS, strict=True)
    other_prefix = kind(store, "wiki", ["pages_create", "create"], strict=True)
    other_kind = (HashCounter if kind is Counter else Counter)(store, "wiki_pages", WIKI_EVENTS)
    wiki.increment("create", 2)
    assert other_prefix.totals() == {"wiki_pages_create": 0, "wiki_create": 0}
    assert other_kind.totals()["wiki_pages_create"] == 0


def test_counter_keys_are_plain_and_one_per_event(store: CounterStore) -> None:
    """Counter keys carry no hash tag, and totals read them all in one ``get``."""
    wiki = Counter(store, "wiki_pages", WIKI_EVENTS, strict=True)
    assert wiki.key("update") == "usage_ping:counter:wiki_pages:update"
    wiki.increment("update", 3)
    assert store.get([wiki.key(e) for e in WIKI_EVENTS]) == [None, 3, None]
    with pytest.raises(UnknownEventError):
        wiki.key("rename")


def test_hash_counter_keeps_one_hash_and_ignores_unknown_fields(store: CounterStore) -> None:
    """A hash counter's events are fields of one hash; fields of removed events are left out."""
    pod_logs = HashCounter(store, "pod_logs", ["requests", "errors"], strict=True)
    assert pod_logs.key == "usage_ping:hash_counter:pod_logs"
    pod_logs.increment("requests", 2)
    older = HashCounter(store, "pod_logs", ["requests", "retired"], strict=True)
    older.increment("retired")
    assert store.hgetall(pod_logs.key) == {"requests": 2, "retired": 1}
    assert pod_logs.totals() == {"pod_logs_requests": 2, "pod_logs_errors": 0}


@both_kinds
@pytest.mark.parametrize("amount", [0, -1, True, 1.5, "2"])
def test_strict_mode_raises_on_unknown_events_and_bad_amounts(
    store: CounterStore, kind: CounterClass, amount: Any
) -> None:
    """In strict mode an unknown event or an amount that is not a positive int raises."""
    wiki = kind(store, "wiki_pages", WIKI_EVENTS, strict=True)
    with pytest.raises(UnknownEventError, match="rename"):
        wiki.increment("rename")
    with pytest.raises(EventError, match="positive integer"):
        wiki.increment("create", amount)
    with pytest.raises(UnknownEventError):
        wiki.read("rename")
    assert wiki.read("create") == 0


@both_kinds
@pytest.mark.swallows
def test_production_mode_logs_and_drops_mistakes(
    store: CounterStore, kind: CounterClass, swallowed: list[Swallowed]
) -> None:
    """Without strict, an unknown event or bad amount returns False and is reported, not raised."""
    wiki = kind(store, "wiki_pages", WIKI_EVENTS)
    assert wiki.increment("rename") is False
    assert wiki.increment("create", 0) is False
    not_a_name: Any = ["create"]
    assert wiki.increment(not_a_name) is False
    assert [type(s.exception) for s in swallowed] == [
        UnknownEventError,
        EventError,
        UnknownEventError,
    ]
    assert swallowed[0].description == "increment wiki_pages_rename"
    assert wiki.totals() == dict.fromkeys(wiki.metric_names(), 0)


@both_kinds
@pytest.mark.parametrize(
    ("prefix", "events", "message"),
    [
        ("Wiki", WIKI_EVENTS, "prefix 'Wiki'"),
        ("wiki-pages", WIKI_EVENTS, "prefix 'wiki-pages'"),
        ("", WIKI_EVENTS, "prefix ''"),
        ("1wiki", WIKI_EVENTS, "prefix '1wiki'"),
        ("wiki{x}", WIKI_EVENTS, "prefix 'wiki{x}'"),
        ("wiki", ["create", "up:date"], "event of wiki 'up:date'"),
        ("wiki", ["create", "Update"], "event of wiki 'Update'"),
        ("wiki", ["create", 1], "event of wiki 1"),
        ("wiki", [], "no events"),
        ("wiki", "create", "not the string"),
    ],
)
def test_bad_definitions_raise_at_definition_time(
    store: CounterStore, kind: CounterClass, prefix: str, events: Any, message: str
) -> None:
    """A prefix or event outside ^[a-z][a-z0-9_]*$, no events or a bare string raise ValueError."""
    with pytest.raises(CounterDefinitionError, match=message):
        kind(store, prefix, events)
    assert issubclass(CounterDefinitionError, ValueError)


@both_kinds
def test_duplicate_events_are_refused(store: CounterStore, kind: CounterClass) -> None:
    """Declaring an event twice is a definition error that names the duplicates."""
    with pytest.raises(CounterDefinitionError, match="more than once: create, delete"):
        kind(store, "wiki_pages", ["delete", "create", "update", "create", "delete"])


@both_kinds
def test_redis_usage_data_of_a_working_counter_is_its_totals(
    store: CounterStore, kind: CounterClass
) -> None:
    """On a working store redis_usage_data gives the counter's totals and a callable's value."""
    wiki = kind(store, "wiki_pages", WIKI_EVENTS, strict=True)
    wiki.increment("update", 2)
    assert isinstance(wiki, HasTotals)
    assert redis_usage_data(wiki) == {
        "wiki_pages_create": 0,
        "wiki_pages_update": 2,
        "wiki_pages_delete": 0,
    }
    assert redis_usage_data(lambda: wiki.read("update")) == 2


@both_kinds
@pytest.mark.swallows
def test_redis_usage_data_of_a_dead_store_is_minus_one_per_metric(
    kind: CounterClass, swallowed: list[Swallowed]
) -> None:
    """With nothing listening, every metric of the counter is -1, fast, and the error is logged."""
    wiki = kind(RedisStore.from_url(DEAD_REDIS), "wiki_pages", WIKI_EVENTS, strict=True)
    started = time.perf_counter()
    assert redis_usage_data(wiki) == {
        "wiki_pages_create": -1,
        "wiki_pages_update": -1,
        "wiki_pages_delete": -1,
    }
    assert all(v is FAILED for v in redis_usage_data(wiki).values())
    assert redis_usage_data(lambda: wiki.read("create")) == -1
    assert wiki.increment("create") is False  # a dead store never raises, even when strict
    assert time.perf_counter() - started < 2.0
    assert [type(s.exception) for s in swallowed] == [StoreError] * 4
    assert swallowed[0].description == f"redis_usage_data {wiki!r}"


@pytest.mark.swallows
def test_redis_usage_data_of_a_raising_callable_is_minus_one(swallowed: list[Swallowed]) -> None:
    """A callable that raises gives -1, and its error is reported under its name."""

    def pod_log_requests() -> int:
        raise RuntimeError("boom")

    assert redis_usage_data(pod_log_requests) is FAILED
    assert len(swallowed) == 1
    assert isinstance(swallowed[0].exception, RuntimeError)
    assert "pod_log_requests" in swallowed[0].description


def test_redis_usage_data_reraises_in_tests_without_the_swallows_mark() -> None:
    """Unmarked tests see the swallowed error raised, so telemetry bugs are not hidden."""
    with pytest.raises(ZeroDivisionError):
        redis_usage_data(lambda: 1 // 0)
