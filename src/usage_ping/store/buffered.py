"""A write buffer in front of a counter store, so that tracking costs the host's request little.

``apply`` only appends to a bounded in-memory queue; a background thread drains it every
``flush_interval`` seconds (or as soon as ``max_batch`` operations wait), merges what it can (all
values for one HLL key become one PFADD, increments of one key are summed) and writes the batch in
one round trip. When the queue is full, new operations are dropped and counted, never blocking
the host.

A circuit breaker guards the store: after a failed write the buffer stops writing for
``cooldown`` seconds (doubling on each further failure, up to ``max_cooldown``), drops what is
queued and what arrives meanwhile (counted), and logs the outage once when it opens and once when
the store answers again, not per call.

Reads (``get``, ``pfcount``, ...) go straight to the store.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from usage_ping.store.protocol import CounterStore, HIncr, Incr, Op, PfAdd, WriteDroppedError

__all__ = ["BufferStats", "BufferedStore"]

logger = logging.getLogger("usage_ping.store")


@dataclass
class BufferStats:
    """What the buffer did since it started."""

    submitted: int = 0
    written: int = 0
    dropped_full: int = 0
    dropped_unavailable: int = 0
    failed_writes: int = 0


def merge(ops: Iterable[Op]) -> list[Op]:
    """Fold operations on the same key into one: fewer commands, same result.

    This runs on the writer thread for every queued operation, so it is kept tight.
    """
    values_of: dict[str, set[str]] = {}
    pf_ttl: dict[str, float | None] = {}
    incrs: dict[str, tuple[int, float | None]] = {}
    hincrs: dict[tuple[str, str], int] = {}
    for op in ops:
        if type(op) is PfAdd:
            key = op.key
            values = values_of.get(key)
            if values is None:
                values_of[key] = set(op.values)
                pf_ttl[key] = op.ttl
            else:
                values.update(op.values)
                if op.ttl is not None:
                    pf_ttl[key] = _later(pf_ttl[key], op.ttl)
        elif type(op) is Incr:
            amount, ttl = incrs.get(op.key, (0, None))
            incrs[op.key] = (amount + op.amount, _later(ttl, op.ttl))
        else:
            assert isinstance(op, HIncr)
            hincrs[(op.key, op.field)] = hincrs.get((op.key, op.field), 0) + op.amount
    merged: list[Op] = [PfAdd(k, tuple(v), pf_ttl[k]) for k, v in values_of.items()]
    merged += [Incr(k, amount, ttl) for k, (amount, ttl) in incrs.items()]
    merged += [HIncr(k, f, amount) for (k, f), amount in hincrs.items()]
    return merged


def _later(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


class BufferedStore:
    """Buffers writes to ``store`` and writes them from a background thread.

    Args:
        store: the real store (Redis, Redis Cluster, SQLite).
        max_queue: operations held at most; beyond it new ones are dropped and counted.
        max_batch: operations written per round trip.
        flush_interval: seconds between writes when little is queued.
        cooldown: seconds the circuit stays open after the first failed write.
        max_cooldown: the longest the circuit stays open after repeated failures.

    Example:
        >>> store = BufferedStore(RedisStore.from_url("redis://127.0.0.1:6379/0"))  # doctest: +SKIP
        >>> counter = EventCounter(store, known_events)
        >>> counter.track_event("i_search_total", user_id)  # appends to the queue only
        True
        >>> store.flush(timeout=2.0)  # at exit, or in tests
        True
    """

    def __init__(
        self,
        store: CounterStore,
        *,
        max_queue: int = 100_000,
        max_batch: int = 5_000,
        flush_interval: float = 0.5,
        cooldown: float = 5.0,
        max_cooldown: float = 60.0,
    ) -> None:
        self.store = store
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.flush_interval = flush_interval
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.stats = BufferStats()
        self._queue: deque[Op] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._flush_requested = False
        self._open_until = 0.0
        self._current_cooldown = cooldown
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._started_in = 0  # the pid whose writer thread is running (0: none yet)

    # -- the host's side --------------------------------------------------------------------------

    def apply(self, ops: Iterable[Op]) -> None:
        """Queue ``ops`` without blocking.

        Raises:
            WriteDroppedError: the queue was full or the store is down; the drop is counted in
                :attr:`stats` (callers report "not written" without logging each one).
        """
        if not self.submit(ops):
            raise WriteDroppedError("usage_ping write buffer dropped the write")

    def submit(self, ops: Iterable[Op]) -> bool:
        """Queue ``ops``; False when they were dropped (queue full or store unavailable)."""
        batch = list(ops)
        if not batch:
            return True
        with self._lock:
            self._ensure_thread()
            self.stats.submitted += len(batch)
            if time.monotonic() < self._open_until:
                self.stats.dropped_unavailable += len(batch)
                return False
            if len(self._queue) + len(batch) > self.max_queue:
                self.stats.dropped_full += len(batch)
                return False
            self._queue.extend(batch)
            if len(self._queue) >= self.max_batch:
                self._wake.notify()
        return True

    def flush(self, timeout: float = 5.0) -> bool:
        """Write everything queued now; True when the queue emptied within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._queue:
                self._ensure_thread()
            self._flush_requested = True
            self._wake.notify()
            while self._queue or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.notify()
                self._idle.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Flush, stop the thread and close the store."""
        self.flush(timeout)
        with self._lock:
            self._closed = True
            self._flush_requested = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        self.store.close()

    # -- reads go straight through -----------------------------------------------------------------

    def get(self, keys: Sequence[str]) -> list[int | None]:
        return self.store.get(keys)

    def hgetall(self, key: str) -> dict[str, int]:
        return self.store.hgetall(key)

    def pfcount(self, keys: Sequence[str]) -> int:
        return self.store.pfcount(keys)

    def delete(self, keys: Sequence[str]) -> None:
        self.store.delete(keys)

    # -- the writer thread ------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        """Start the writer (again after a fork: threads do not survive into the child)."""
        if self._started_in == os.getpid():
            return
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._thread = None
            self._queue.clear()
            self._in_flight = 0
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="usage_ping-buffer", daemon=True)
            self._thread.start()
        self._started_in = os.getpid()

    def _due(self) -> bool:
        return self._flush_requested or self._closed or len(self._queue) >= self.max_batch

    def _run(self) -> None:
        while True:
            with self._lock:
                # Gather for flush_interval unless a batch is full or a flush was asked for.
                deadline = time.monotonic() + self.flush_interval
                while not self._due() and (left := deadline - time.monotonic()) > 0:
                    self._wake.wait(left)
                if not self._queue:
                    self._flush_requested = False
                if self._closed and not self._queue:
                    self._idle.notify_all()
                    return
                batch = [
                    self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))
                ]
                self._in_flight = len(batch)
            if batch:
                self._write(batch)
            with self._lock:
                self._in_flight = 0
                if not self._queue:
                    self._idle.notify_all()

    def _write(self, batch: list[Op]) -> None:
        try:
            self.store.apply(merge(batch))
        except Exception as exc:
            with self._lock:
                self.stats.failed_writes += 1
                dropped = len(batch) + len(self._queue)
                self.stats.dropped_unavailable += dropped
                self._queue.clear()
                first = self._open_until == 0.0
                self._open_until = time.monotonic() + self._current_cooldown
                cooldown = self._current_cooldown
                self._current_cooldown = min(self._current_cooldown * 2, self.max_cooldown)
            if first:
                logger.warning(
                    "usage_ping: counter store unavailable (%s: %s); dropping writes for %.0f s, "
                    "then retrying (this is logged once per outage)",
                    type(exc).__name__,
                    exc,
                    cooldown,
                )
            return
        with self._lock:
            self.stats.written += len(batch)
            recovered = self._open_until != 0.0
            self._open_until = 0.0
            self._current_cooldown = self.cooldown
        if recovered:
            logger.warning(
                "usage_ping: counter store is back; %d writes were dropped while it was down",
                self.stats.dropped_unavailable,
            )
