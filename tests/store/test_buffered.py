"""The write buffer: batches and merges writes, never blocks, and breaks the circuit on outages."""

from __future__ import annotations

import logging
import multiprocessing
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from usage_ping.store import CounterStore, HIncr, Incr, PfAdd
from usage_ping.store.buffered import BufferedStore, merge
from usage_ping.store.redis import RedisStore


def test_buffered_writes_arrive_after_flush(store: CounterStore) -> None:
    """Queued writes reach each kind of store once flushed, merged or not."""
    buffered = BufferedStore(store, flush_interval=10)
    for i in range(300):
        buffered.apply([PfAdd("{u}-w", (f"user{i % 100}",), ttl=60), Incr("n"), HIncr("h", "f")])
    assert buffered.flush(5)
    assert abs(buffered.pfcount(["{u}-w"]) - 100) <= 2  # Redis HLL is near-exact at 100
    assert buffered.get(["n"]) == [300]
    assert buffered.hgetall("h") == {"f": 300}
    assert buffered.stats.written == 900
    assert buffered.stats.dropped_full == buffered.stats.dropped_unavailable == 0


def test_merge_folds_operations_on_one_key() -> None:
    """All values of one HLL key become one PFADD; increments are summed; the longest ttl wins."""
    merged = merge([
        PfAdd("k", ("a", "b"), ttl=10), PfAdd("k", ("b", "c"), ttl=20), PfAdd("j", ("x",)),
        Incr("n", 2), Incr("n", 3, ttl=5), HIncr("h", "f"), HIncr("h", "f", 4), HIncr("h", "g"),
    ])  # fmt: skip
    normalised = [
        PfAdd(op.key, tuple(sorted(op.values)), op.ttl) if isinstance(op, PfAdd) else op
        for op in merged
    ]
    assert normalised == [
        PfAdd("k", ("a", "b", "c"), ttl=20),
        PfAdd("j", ("x",), ttl=None),
        Incr("n", 5, ttl=5),
        HIncr("h", "f", 5),
        HIncr("h", "g", 1),
    ]


def test_full_queue_drops_new_writes_and_counts_them(tmp_path: Path) -> None:
    """Beyond max_queue, submit returns False at once and the drop is counted."""
    from usage_ping.store import SQLiteStore

    buffered = BufferedStore(SQLiteStore(tmp_path / "s.sqlite3"), max_queue=10, flush_interval=60)
    # The writer waits flush_interval unless max_batch (5,000) operations are queued.
    accepted = [buffered.submit([Incr("n")]) for _ in range(15)]
    assert accepted.count(True) == 10
    assert buffered.stats.dropped_full == 5
    buffered.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A redis-server of this test's own, which the test may stop and start again."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    yield port, tmp_path
    subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], capture_output=True,
                   check=False)  # fmt: skip


def _start(port: int, workdir: Path) -> None:
    subprocess.run(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--daemonize", "yes", "--dir", str(workdir)],
        check=True,
    )  # fmt: skip
    for _ in range(100):
        try:
            if redis.Redis(port=port).ping():
                return
        except redis.RedisError:
            time.sleep(0.05)
    raise TimeoutError("redis did not start")


def test_circuit_opens_on_outage_logs_once_and_closes_when_redis_is_back(
    own_redis: tuple[int, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """Redis stopped: writes are dropped and counted, one log line; restarted: writes resume."""
    port, workdir = own_redis
    _start(port, workdir)
    caplog.set_level(logging.WARNING, logger="usage_ping")
    buffered = BufferedStore(
        RedisStore.from_url(f"redis://127.0.0.1:{port}/0"), flush_interval=0.05, cooldown=0.3
    )
    buffered.submit([Incr("n")])
    assert buffered.flush(2)
    subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], check=True)

    buffered.submit([Incr("n")])  # accepted, then its write fails and opens the circuit
    buffered.flush(2)
    assert buffered.stats.failed_writes >= 1
    refused = [buffered.submit([Incr("n")]) for _ in range(1_000)]
    assert refused.count(False) >= 990  # dropped at once while the circuit is open
    outage_logs = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(outage_logs) == 1

    _start(port, workdir)
    time.sleep(0.7)  # past the cooldown (doubled at most once here)
    assert buffered.submit([Incr("n", 10)])
    assert buffered.flush(2)
    assert redis.Redis(port=port).get("n") == b"10"
    assert any("is back" in r.getMessage() for r in caplog.records)
    assert buffered.stats.dropped_unavailable >= 991
    buffered.close()


def _child(url: str) -> None:
    buffered = CHILD_STATE["store"]
    assert isinstance(buffered, BufferedStore)
    buffered.submit([Incr("from_child")])
    raise SystemExit(0 if buffered.flush(5) else 1)


CHILD_STATE: dict[str, object] = {}


def test_writer_thread_restarts_in_a_forked_child() -> None:
    """After fork the child gets a writer of its own (threads do not survive fork)."""
    url = "redis://127.0.0.1:6379/13"
    try:
        redis.Redis.from_url(url).flushdb()
    except redis.RedisError as exc:
        pytest.skip(f"no local redis: {exc}")
    buffered = BufferedStore(RedisStore.from_url(url), flush_interval=0.05)
    buffered.submit([Incr("from_parent")])
    assert buffered.flush(2)
    CHILD_STATE["store"] = buffered
    child = multiprocessing.get_context("fork").Process(target=_child, args=(url,))
    child.start()
    child.join(20)
    assert child.exitcode == 0
    assert buffered.get(["from_parent", "from_child"]) == [1, 1]
    buffered.close()


def test_dropped_writes_are_not_reported_as_tracked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A full queue makes track_event and increment return False, without a log line per call."""
    from usage_ping.events import Counter, EventCounter, KnownEvent, KnownEvents
    from usage_ping.store import SQLiteStore, WriteDroppedError

    buffered = BufferedStore(SQLiteStore(tmp_path / "s.sqlite3"), max_queue=3, flush_interval=60)
    events = EventCounter(buffered, KnownEvents([KnownEvent("i_x", "c", "weekly")]), strict=True)
    plain = Counter(buffered, "wiki", ["create"], strict=True)
    caplog.set_level(logging.DEBUG, logger="usage_ping")
    tracked = [events.track_event("i_x", "a") for _ in range(5)]
    assert tracked == [True, True, True, False, False]
    assert plain.increment("create") is False
    assert buffered.stats.dropped_full == 3
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    with pytest.raises(WriteDroppedError):
        buffered.apply([Incr("n")])
    buffered.close()
