"""Every counter store behaves the same: Redis, Redis Cluster and SQLite."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from usage_ping.store import (
    CounterStore,
    CrossSlotError,
    HIncr,
    Incr,
    PfAdd,
    SQLiteStore,
    StoreError,
    hash_tag,
)
from usage_ping.store.redis import RedisStore


def test_counters_increment_and_read(store: CounterStore) -> None:
    """INCRBY adds, missing keys read as None, several keys read in one call."""
    store.apply([Incr("usage_wiki_create"), Incr("usage_wiki_create", 4), Incr("usage_x", -2)])
    assert store.get(["usage_wiki_create", "usage_missing", "usage_x"]) == [5, None, -2]
    assert store.get([]) == []


def test_hash_counters(store: CounterStore) -> None:
    """HINCRBY per field; hgetall returns ints, {} for a missing hash."""
    store.apply([HIncr("usage_snippets", "create"), HIncr("usage_snippets", "create", 2),
                 HIncr("usage_snippets", "update")])  # fmt: skip
    assert store.hgetall("usage_snippets") == {"create": 3, "update": 1}
    assert store.hgetall("usage_nothing") == {}


def test_small_sets_count_exactly(store: CounterStore) -> None:
    """A handful of values is counted exactly; repeats count once."""
    store.apply([PfAdd("{search}-w1", ("alice", "bob", "alice")), PfAdd("{search}-w1", ("carol",))])
    assert store.pfcount(["{search}-w1"]) == 3
    assert store.pfcount(["{search}-never"]) == 0
    assert store.pfcount([]) == 0


def test_large_sets_are_estimated_within_two_percent(store: CounterStore) -> None:
    """20,000 distinct users, added in slices, estimated within 2 %."""
    users = [f"user-{i}" for i in range(20_000)]
    store.apply(PfAdd("{ide}-w1", tuple(users[i : i + 2_500])) for i in range(0, 20_000, 2_500))
    assert abs(store.pfcount(["{ide}-w1"]) / 20_000 - 1) < 0.02


def test_union_of_keys_sharing_a_tag(store: CounterStore) -> None:
    """PFCOUNT over several keys of one slot counts the union."""
    store.apply([
        PfAdd("{users}_search-d1", tuple(f"u{i}" for i in range(0, 600))),
        PfAdd("{users}_search-d2", tuple(f"u{i}" for i in range(400, 1_000))),
    ])  # fmt: skip
    union = store.pfcount(["{users}_search-d1", "{users}_search-d2"])
    assert abs(union / 1_000 - 1) < 0.02


def test_keys_of_different_slots_are_refused_together(store: CounterStore) -> None:
    """Every backend refuses what a cluster could not do, so code tested anywhere works there."""
    store.apply([PfAdd("{a}-x", ("1",)), PfAdd("{b}-x", ("2",))])
    with pytest.raises(CrossSlotError, match="hash-tag"):
        store.pfcount(["{a}-x", "{b}-x"])
    # One by one they are fine, and plain reads may span slots.
    assert store.pfcount(["{a}-x"]) == store.pfcount(["{b}-x"]) == 1
    store.apply([Incr("{a}-n"), Incr("{b}-n", 2)])
    assert store.get(["{a}-n", "{b}-n"]) == [1, 2]


def test_expiry_restarts_on_write_and_expired_keys_start_empty(store: CounterStore) -> None:
    """A ttl restarts the clock at every write; an expired key reads as missing, then restarts."""
    store.apply([PfAdd("{e}-w", ("a", "b"), ttl=1), Incr("{e}-n", 3, ttl=1), Incr("{e}-keep", 1)])
    time.sleep(0.6)
    store.apply([PfAdd("{e}-w", ("c",), ttl=1)])  # restarts the sketch's clock only
    time.sleep(0.7)
    assert store.pfcount(["{e}-w"]) == 3
    assert store.get(["{e}-n", "{e}-keep"]) == [None, 1]
    time.sleep(0.6)
    assert store.pfcount(["{e}-w"]) == 0
    store.apply([PfAdd("{e}-w", ("z",)), Incr("{e}-n", 1)])
    assert store.pfcount(["{e}-w"]) == 1
    assert store.get(["{e}-n"]) == [1]


def test_delete_removes_every_kind(store: CounterStore) -> None:
    """delete() clears counters, hashes and sketches."""
    store.apply([Incr("k1"), HIncr("k2", "f"), PfAdd("k3", ("v",))])
    store.delete(["k1", "k2", "k3"])
    assert store.get(["k1"]) == [None]
    assert store.hgetall("k2") == {}
    assert store.pfcount(["k3"]) == 0


def test_empty_write_is_a_no_op(store: CounterStore) -> None:
    """Applying nothing touches nothing."""
    store.apply([])
    assert store.get(["anything"]) == [None]


def test_hash_tag_follows_redis_cluster_rules() -> None:
    """The first non-empty {...} is the tag; without one, the whole key."""
    assert hash_tag("{users}_search-2026-47") == "users"
    assert hash_tag("a{b}{c}") == "b"
    assert hash_tag("a{}b{c}") == "a{}b{c}"  # empty braces: Redis hashes the whole key
    assert hash_tag("plain") == "plain"


def test_unreachable_redis_fails_fast_with_store_error() -> None:
    """Nothing listening: a StoreError within the short socket timeout, no hang."""
    store = RedisStore.from_url("redis://127.0.0.1:1/0")
    started = time.perf_counter()
    with pytest.raises(StoreError, match="redis write failed"):
        store.apply([Incr("x")])
    with pytest.raises(StoreError, match="redis read failed"):
        store.pfcount(["x"])
    assert time.perf_counter() - started < 1.0


def _hammer(path: str, worker: int) -> None:
    store = SQLiteStore(path)
    for i in range(200):
        store.apply([Incr("shared"), PfAdd("{u}-w", (f"w{worker}-{i}",))])
    store.close()


def test_sqlite_store_takes_writes_from_several_processes(tmp_path: Path) -> None:
    """Four processes writing at once lose nothing: WAL and one IMMEDIATE transaction per write."""
    path = str(tmp_path / "shared.sqlite3")
    SQLiteStore(path).close()
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_hammer, args=(path, w)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
        assert p.exitcode == 0
    store = SQLiteStore(path)
    assert store.get(["shared"]) == [800]
    assert abs(store.pfcount(["{u}-w"]) / 800 - 1) < 0.02
    store.close()


def test_sqlite_expiry_uses_the_given_clock(tmp_path: Path) -> None:
    """Expiry is computed from the store's clock; expired rows are swept on later writes."""
    now = [1_000.0]
    store = SQLiteStore(tmp_path / "c.sqlite3", clock=lambda: now[0])
    store.apply([PfAdd("{k}-w", ("a",), ttl=10), Incr("n", ttl=10)])
    now[0] += 9.9
    assert store.pfcount(["{k}-w"]) == 1
    now[0] += 0.2
    assert store.pfcount(["{k}-w"]) == 0
    assert store.get(["n"]) == [None]
    now[0] += 100
    store.apply([Incr("other")])  # sweeps expired rows
    rows = store._conn.execute("SELECT count(*) FROM usage_ping_sketches").fetchone()
    assert rows == (0,)
    store.close()
