"""Benchmark: usage_ping's event tracking (``track_event``, ``unique_events``) on Redis and SQLite.

Every figure is measured side by side in one run, against the local Redis (database 14, flushed at
the start and at the end), a private ``redis-server`` that is stopped on purpose, a 3-node Redis
Cluster started for the run, and SQLite files in a temporary directory:

1. throughput: values per second through ``EventCounter(BufferedStore(RedisStore))``, one value
   and 100 values per call, timed from the first call until ``flush()`` returns (so the writes are
   included); an unbuffered ``EventCounter(RedisStore)``; raw redis-py ``PFADD`` one call per
   value; and ``redis-benchmark`` PFADD as the server's ceiling (``-c 50``, ``-c 50 -P 16``,
   ``-c 1``). The 50 % target is judged against the un-pipelined ``-c 50`` ceiling;
2. latency added to the host's thread per ``track_event`` call (``perf_counter_ns`` around each
   call): buffered with Redis up, buffered with Redis stopped (circuit open), and unbuffered for
   contrast;
3. ``unique_events`` over 10 events x 28 daily keys (one PFCOUNT over 280 keys) on the local
   Redis, the cluster and SQLite;
4. the SQLite store: values per second (unbuffered and buffered) and the unique-count error.

``redis-benchmark -t pfadd`` is not a test in redis-benchmark 7.0 (it prints nothing), so the
ceiling uses the custom-command form ``PFADD bench:{k} __rand_int__`` with ``-r 10000000``.

Usage::

    python benchmarks/event_tracking.py             # the full run (a few minutes)
    python benchmarks/event_tracking.py --quick     # a smoke run in well under 30 s
    python benchmarks/event_tracking.py --profile 50000   # also cProfile the track_event path
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import io
import logging
import math
import os
import platform
import pstats
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import redis

import usage_ping
from usage_ping.events.counter import EventCounter
from usage_ping.events.definitions import KnownEvent, KnownEvents
from usage_ping.store import CounterStore, SQLiteStore
from usage_ping.store.buffered import BufferedStore, BufferStats
from usage_ping.store.redis import RedisStore

DEFAULT_URL = "redis://127.0.0.1:6379/14"
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / ".bench" / "event_tracking.md"

# Targets from the issue.
THROUGHPUT_TARGET = 0.50  # of the redis-benchmark PFADD ceiling (-c 50, no pipelining)
REFERENCE_CEILINGS = {"-c 50": 168_000.0, "-c 50 -P 16": 1_870_000.0, "-c 1": 56_400.0}
"""redis-benchmark PFADD rps on this kind of machine, idle (shared/reference/baselines.md, e.)."""
P99_TARGET_US = 100.0
SQLITE_ERROR_TARGET_PCT = 2.0

SLOT = "bench"
BATCH = 100  # values per call in the "many values per call" runs
UNIQUE_EVENTS = 10
UNIQUE_DAYS = 28
BENCH_RANDOM_RANGE = 10_000_000

OK = "met"
MISS = "MISS"
NA = "n/a"
DASH = "\N{EN DASH}"
TIMES = "\N{MULTIPLICATION SIGN}"
MU = "\N{MICRO SIGN}"

_started_at = time.perf_counter()


def log(message: str) -> None:
    """A progress line on stderr, with the seconds since the start."""
    print(f"[{time.perf_counter() - _started_at:7.1f}s] {message}", file=sys.stderr, flush=True)


# -- settings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    url: str
    values: int
    batch_values: int
    raw_values: int
    unbuffered_values: int
    repeats: int
    latency_calls: int
    unbuffered_latency_calls: int
    down_calls: int
    down_budget: float
    unique_calls: int
    per_key: int
    pool: int
    sqlite_values: int
    bench_requests: int
    bench_requests_c1: int
    cluster: bool
    profile: int
    quick: bool


FULL = Settings(
    url=DEFAULT_URL,
    values=200_000,
    batch_values=200_000,
    raw_values=20_000,
    unbuffered_values=20_000,
    repeats=3,
    latency_calls=50_000,
    unbuffered_latency_calls=5_000,
    down_calls=1_000,
    down_budget=20.0,
    unique_calls=200,
    per_key=1_000,
    pool=100_000,
    sqlite_values=200_000,
    bench_requests=1_000_000,
    bench_requests_c1=300_000,
    cluster=True,
    profile=0,
    quick=False,
)

QUICK = Settings(
    url=DEFAULT_URL,
    values=20_000,
    batch_values=20_000,
    raw_values=2_000,
    unbuffered_values=2_000,
    repeats=1,
    latency_calls=5_000,
    unbuffered_latency_calls=500,
    down_calls=100,
    down_budget=2.0,
    unique_calls=20,
    per_key=100,
    pool=10_000,
    sqlite_values=5_000,
    bench_requests=100_000,
    bench_requests_c1=20_000,
    cluster=True,
    profile=0,
    quick=True,
)


# -- the events --------------------------------------------------------------------------------


def make_events() -> KnownEvents:
    """Throughput/latency events and the 10 daily events counted together, all in slot bench."""
    names = [
        "warmup",
        "tp_single",
        "tp_batch",
        "tp_unbuffered",
        "lat_up",
        "lat_unbuffered",
        "lat_down",
        "lat_down_unbuffered",
        "sqlite_unbuffered",
        "sqlite_buffered",
        "profile",
    ]
    names += [f"ue_{i}" for i in range(UNIQUE_EVENTS)]
    return KnownEvents(
        KnownEvent(name, category="bench", aggregation="daily", redis_slot=SLOT) for name in names
    )


EVENTS = make_events()


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def value_block(start: int, count: int) -> list[int]:
    """``count`` distinct integer ids (user ids, say) from ``start``."""
    return list(range(start, start + count))


def chunks(values: list[int], size: int) -> list[list[int]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def error_pct(estimate: int, exact: int) -> float:
    return (estimate - exact) / exact * 100 if exact else 0.0


# -- CPU contention --------------------------------------------------------------------------


def _machine_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat; None where it does not exist."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    numbers = [int(f) for f in fields]
    idle = numbers[3] + (numbers[4] if len(numbers) > 4 else 0)
    return sum(numbers) - idle, sum(numbers)


def _redis_cpu(client: redis.Redis) -> float:
    info: Any = client.info("cpu")
    return float(info.get("used_cpu_user", 0.0)) + float(info.get("used_cpu_sys", 0.0))


class CpuMeter:
    """How busy the cores were during the run, and how much of it was not this benchmark
    (this process, its children such as redis-benchmark, and the Redis under test)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.wall = time.monotonic()
        self.machine = _machine_jiffies()
        self.ours = self._ours()
        self.redis = _redis_cpu(client)

    @staticmethod
    def _ours() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def summary(self) -> str:
        wall = time.monotonic() - self.wall
        machine = _machine_jiffies()
        ours = (self._ours() - self.ours) / wall
        served = (_redis_cpu(self.client) - self.redis) / wall
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        if machine is None or self.machine is None or machine[1] == self.machine[1]:
            return f"CPU: this benchmark {ours:.2f} cores; load average {load}"
        cores = os.cpu_count() or 1
        busy = (machine[0] - self.machine[0]) / (machine[1] - self.machine[1]) * cores
        others = max(0.0, busy - ours - served)
        warning = " (other work competed for the cores)" if others > 0.25 else ""
        return (
            f"CPU over the run ({wall:.0f} s): {busy:.2f} of {cores} cores busy on average: this "
            f"benchmark and its children {ours:.2f}, Redis on {self.client_port()} {served:.2f}, "
            f"everything else {others:.2f}{warning}; load average now {load}"
        )

    def client_port(self) -> str:
        return str(self.client.connection_pool.connection_kwargs.get("port", "?"))


# -- library log -------------------------------------------------------------------------------


class LibraryLog(logging.Handler):
    """Takes the ``usage_ping`` logger's records: formats each (as a host's handler would, so
    its cost stays in the measured calls) and keeps a count and the first few messages."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.records = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        self.records += 1
        if len(self.first) < 3:
            self.first.append(text.splitlines()[0][:300])

    def reset(self) -> tuple[int, list[str]]:
        found = (self.records, self.first)
        self.records, self.first = 0, []
        return found


@contextmanager
def library_log() -> Iterator[LibraryLog]:
    """Route the ``usage_ping`` logger to a :class:`LibraryLog` (not to stderr) for the run."""
    logger = logging.getLogger("usage_ping")
    handler = LibraryLog()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


# -- servers -----------------------------------------------------------------------------------


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, *, with_bus: bool) -> list[int]:
    """Free loopback ports (and their cluster bus ports, port + 10000, if ``with_bus``)."""
    found: list[int] = []
    port = 26_000 + os.getpid() % 3_000
    while len(found) < count and port < 29_500:
        if _port_free(port) and (not with_bus or _port_free(port + 10_000)):
            found.append(port)
        port += 1
    if len(found) < count:
        raise RuntimeError("no free loopback ports found in 26000-29500")
    return found


def wait_until(ready: Callable[[], bool], seconds: float = 15.0, what: str = "redis") -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if ready():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not become ready within {seconds:.0f} s")
        time.sleep(0.05)


def ping(port: int) -> bool:
    client = redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    finally:
        client.close()


def is_down(port: int) -> bool:
    try:
        ping(port)
    except redis.ConnectionError:
        return True
    return False


def start_redis(port: int, workdir: Path, *extra: str) -> None:
    subprocess.run(
        [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1",
            "--dir", str(workdir), "--save", "", "--appendonly", "no",
            "--daemonize", "yes", "--logfile", str(workdir / f"{port}.log"), *extra,
        ],
        check=True,
        timeout=30,
    )  # fmt: skip


def shutdown_redis(port: int) -> None:
    """Stop the server on ``port`` (one this benchmark started); a server already gone is fine."""
    subprocess.run(
        ["redis-cli", "-p", str(port), "shutdown", "nosave"],
        capture_output=True,
        check=False,
        timeout=15,
    )


def cluster_state(port: int) -> str:
    client = redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        info: object = client.cluster("info")  # redis-py parses CLUSTER INFO into a dict
    finally:
        client.close()
    return str(info.get("cluster_state", "")) if isinstance(info, dict) else ""


@contextmanager
def redis_cluster(workdir: Path) -> Iterator[str]:
    """A 3-master Redis Cluster on loopback ports; yields a node's URL; always shut down."""
    ports = free_ports(3, with_bus=True)
    workdir.mkdir(parents=True, exist_ok=True)
    started: list[int] = []
    try:
        for port in ports:
            start_redis(
                port,
                workdir,
                "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
            )  # fmt: skip
            started.append(port)
        for port in ports:
            wait_until(lambda p=port: ping(p), what=f"cluster node {port}")  # type: ignore[misc]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        for port in ports:
            wait_until(
                lambda p=port: cluster_state(p) == "ok",  # type: ignore[misc]
                what=f"cluster state on {port}",
            )
        log(f"cluster up on ports {', '.join(map(str, ports))}")
        yield f"redis://127.0.0.1:{ports[0]}"
    finally:
        for port in started:
            shutdown_redis(port)
        log("cluster shut down")


# -- measurements ------------------------------------------------------------------------------


@dataclass
class Throughput:
    """One way of writing ``values`` distinct values, repeated.

    ``values`` are offered per run; ``written`` counts those that reached the store (a full
    buffer queue drops the rest), so rates and errors are taken on what was written.
    """

    label: str
    values: int
    calls: int
    seconds: list[float] = field(default_factory=list)
    written: list[int] = field(default_factory=list)
    estimates: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    note: str = ""

    def add(self, seconds: float, written: int, estimate: int, accepted: int) -> None:
        self.seconds.append(seconds)
        self.written.append(written)
        self.estimates.append(estimate)
        self.accepted.append(accepted)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def offered_rate(self) -> float:
        return self.values / self.median if self.seconds else 0.0

    @property
    def rate(self) -> float:
        """Values written per second: the median run's."""
        if not self.seconds:
            return 0.0
        return statistics.median(w / s for w, s in zip(self.written, self.seconds, strict=True))

    @property
    def dropped(self) -> int:
        return sum(self.values - w for w in self.written)

    @property
    def worst_error(self) -> float | None:
        if not self.estimates:
            return None
        pairs = zip(self.estimates, self.written, strict=True)
        return max((error_pct(e, w) for e, w in pairs), key=abs)

    @property
    def false_trues(self) -> int:
        """Values for which track_event returned True although they were dropped."""
        return sum(max(0, a - w) for a, w in zip(self.accepted, self.written, strict=True))


@dataclass
class Ceiling:
    """One redis-benchmark PFADD run."""

    label: str
    options: str
    requests: int
    rps: float | None
    p50_ms: str = NA
    p99_ms: str = NA
    error: str = ""


@dataclass
class Latency:
    label: str
    samples_ns: list[int]
    note: str = ""
    stats: BufferStats | None = None
    detail: str = ""
    gc: str = ""

    def quantile_us(self, q: float) -> float:
        ordered = sorted(self.samples_ns)
        if not ordered:
            return math.nan
        index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
        return ordered[index] / 1_000

    @property
    def max_us(self) -> float:
        return max(self.samples_ns) / 1_000 if self.samples_ns else math.nan

    @property
    def mean_us(self) -> float:
        return statistics.fmean(self.samples_ns) / 1_000 if self.samples_ns else math.nan


@dataclass
class UniqueCount:
    label: str
    keys: int
    exact: int
    estimate: int | None
    seconds: list[float] = field(default_factory=list)
    setup_seconds: float = 0.0
    error: str = ""


@dataclass
class SQLiteRun:
    label: str
    values: int
    seconds: float
    estimate: int
    stats: BufferStats | None = None


def snapshot(stats: BufferStats) -> BufferStats:
    return replace(stats)


def delete_today(counter: EventCounter, name: str, start: dt.date) -> None:
    counter.store.delete(counter.keys([name], start, today()))


def count_since(counter: EventCounter, name: str, start: dt.date) -> int:
    """Distinct values of ``name`` from ``start`` to today (a run that crosses midnight UTC)."""
    return counter.unique_events(name, start, today())


class GcWatch:
    """The garbage collector's pauses (generation, nanoseconds) while the block runs: a gen-2
    collection stops every thread for milliseconds and shows up as the slowest calls."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, int]] = []
        self._started = 0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter_ns()
        else:
            self.pauses.append((int(info["generation"]), time.perf_counter_ns() - self._started))

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self) -> str:
        if not self.pauses:
            return "no GC"
        parts = []
        for generation in (0, 1, 2):
            found = [ns for g, ns in self.pauses if g == generation]
            if found:
                parts.append(f"gen{generation} {TIMES}{len(found)} (max {max(found) / 1e6:.1f} ms)")
        return "GC " + ", ".join(parts)


class Bench:
    def __init__(self, settings: Settings, log_handler: LibraryLog, workdir: Path) -> None:
        self.s = settings
        self.log = log_handler
        self.workdir = workdir
        self.redis = redis.Redis.from_url(settings.url)
        self.next_value = 1_000_000

    def fresh_values(self, count: int) -> list[int]:
        values = value_block(self.next_value, count)
        self.next_value += count
        return values

    def buffered_counter(self) -> tuple[EventCounter, BufferedStore]:
        buffered = BufferedStore(RedisStore.from_url(self.s.url))
        return EventCounter(buffered, EVENTS), buffered

    # -- 1. throughput ---------------------------------------------------------------------------

    def warm_up(self) -> None:
        counter, buffered = self.buffered_counter()
        for value in self.fresh_values(2_000):
            counter.track_event("warmup", value)
        buffered.flush(10.0)
        buffered.close()
        raw = redis.Redis.from_url(self.s.url)
        for value in self.fresh_values(500):
            raw.pfadd("usage_ping:bench:warmup", value)
        raw.close()

    def buffered_throughput(self, name: str, label: str, total: int, per_call: int) -> Throughput:
        result = Throughput(label, total, math.ceil(total / per_call))
        for run in range(self.s.repeats):
            counter, buffered = self.buffered_counter()
            start = today()
            delete_today(counter, name, start)
            values = self.fresh_values(total)
            items: Sequence[int | list[int]] = values if per_call == 1 else chunks(values, per_call)
            track = counter.track_event
            accepted = 0
            started = time.perf_counter()
            for item in items:
                accepted += track(name, item)
            flushed = buffered.flush(120.0)
            elapsed = time.perf_counter() - started
            stats = snapshot(buffered.stats)
            # Each op holds per_call values (the last one fewer when per_call does not divide).
            dropped = min(total, (stats.dropped_full + stats.dropped_unavailable) * per_call)
            result.add(
                elapsed, total - dropped, count_since(counter, name, start), accepted * per_call
            )
            buffered.close()
            if not flushed:
                result.note = "flush() timed out; "
            log(f"{label} run {run + 1}: {elapsed:.3f} s, {total / elapsed:,.0f} values/s, {stats}")
        runs_dropping = sum(w < total for w in result.written)
        if result.dropped:
            result.note += (
                f"queue full in {runs_dropping} of {len(result.written)} runs; track_event "
                f"returned True for {result.false_trues:,} dropped values"
            )
        return result

    def unbuffered_throughput(self) -> Throughput:
        total = self.s.unbuffered_values
        label = "track_event, unbuffered RedisStore, 1 value/call"
        result = Throughput(label, total, total, note="1 pipeline (PFADD+EXPIRE) per call")
        store = RedisStore.from_url(self.s.url)
        counter = EventCounter(store, EVENTS)
        for run in range(self.s.repeats):
            start = today()
            delete_today(counter, "tp_unbuffered", start)
            values = self.fresh_values(total)
            track = counter.track_event
            started = time.perf_counter()
            for value in values:
                track("tp_unbuffered", value)
            elapsed = time.perf_counter() - started
            result.add(elapsed, total, count_since(counter, "tp_unbuffered", start), total)
            log(f"{label} run {run + 1}: {elapsed:.3f} s, {total / elapsed:,.0f} values/s")
        store.close()
        return result

    def raw_throughput(self) -> Throughput:
        total = self.s.raw_values
        label = "raw redis-py PFADD, 1 value/call, no pipeline"
        result = Throughput(label, total, total, note="redis.Redis().pfadd(key, v)")
        client = redis.Redis.from_url(self.s.url)
        key = "usage_ping:bench:raw"
        for run in range(self.s.repeats):
            client.delete(key)
            values = self.fresh_values(total)
            pfadd = client.pfadd
            started = time.perf_counter()
            for value in values:
                pfadd(key, value)
            elapsed = time.perf_counter() - started
            result.add(elapsed, total, int(client.pfcount(key)), total)
            log(f"{label} run {run + 1}: {elapsed:.3f} s, {total / elapsed:,.0f} values/s")
        client.close()
        return result

    def ceilings(self) -> list[Ceiling]:
        host, port, db = self.url_parts()
        runs = [
            ("-c 50", ["-c", "50"], self.s.bench_requests),
            ("-c 50 -P 16", ["-c", "50", "-P", "16"], self.s.bench_requests),
            ("-c 1", ["-c", "1"], self.s.bench_requests_c1),
        ]
        found: list[Ceiling] = []
        exe = shutil.which("redis-benchmark")
        for label, options, requests in runs:
            if exe is None:
                found.append(Ceiling(label, " ".join(options), requests, None, error="missing"))
                continue
            command = [
                exe, "-h", host, "-p", str(port), "--dbnum", str(db), "-n", str(requests),
                "-r", str(BENCH_RANDOM_RANGE), *options, "--csv", "PFADD", "bench:{k}",
                "__rand_int__",
            ]  # fmt: skip
            try:
                done = subprocess.run(
                    command, capture_output=True, text=True, timeout=120, check=True
                )
            except (subprocess.SubprocessError, OSError) as exc:
                found.append(Ceiling(label, " ".join(options), requests, None, error=str(exc)))
                continue
            found.append(parse_benchmark_csv(label, " ".join(options), requests, done.stdout))
            log(f"redis-benchmark PFADD {label}: {found[-1].rps or 0:,.0f} rps")
            self.redis.delete("bench:{k}")
        return found

    def url_parts(self) -> tuple[str, int, int]:
        kwargs = self.redis.connection_pool.connection_kwargs
        return (
            str(kwargs.get("host", "127.0.0.1")),
            int(kwargs.get("port", 6379)),
            int(kwargs.get("db", 0)),
        )

    # -- 2. latency ------------------------------------------------------------------------------

    @staticmethod
    def time_calls(
        counter: EventCounter, name: str, values: Sequence[int], budget: float | None = None
    ) -> list[int]:
        """Nanoseconds per ``track_event`` call; stops early when ``budget`` seconds are spent."""
        samples: list[int] = []
        append = samples.append
        track = counter.track_event
        clock = time.perf_counter_ns
        stop = None if budget is None else clock() + int(budget * 1e9)
        for value in values:
            started = clock()
            track(name, value)
            ended = clock()
            append(ended - started)
            if stop is not None and ended > stop:
                break
        return samples

    def timer_overhead(self) -> Latency:
        clock = time.perf_counter_ns
        samples = []
        for _ in range(self.s.latency_calls):
            started = clock()
            samples.append(clock() - started)
        return Latency("perf_counter_ns() pair alone (timer overhead)", samples)

    def latency_up(self) -> list[Latency]:
        counter, buffered = self.buffered_counter()
        # The writer thread and connection exist before the timed calls, as in a running host.
        counter.track_event("warmup", 0)
        buffered.flush(10.0)
        before = snapshot(buffered.stats)
        values = self.fresh_values(self.s.latency_calls)
        with GcWatch() as up_gc:
            samples = self.time_calls(counter, "lat_up", values)
        buffered.flush(60.0)
        stats = snapshot(buffered.stats)
        written = stats.written - before.written
        dropped = stats.dropped_full + stats.dropped_unavailable
        buffered.close()
        up = Latency(
            "buffered, Redis up, 1 value/call",
            samples,
            f"written {written:,}, dropped {dropped:,}",
            stats,
            gc=up_gc.summary(),
        )
        log(f"latency buffered up: p99 {up.quantile_us(0.99):.1f} {MU}s")

        store = RedisStore.from_url(self.s.url)
        plain = EventCounter(store, EVENTS)
        plain.track_event("warmup", 0)
        values = self.fresh_values(self.s.unbuffered_latency_calls)
        with GcWatch() as direct_gc:
            direct = self.time_calls(plain, "lat_unbuffered", values)
        store.close()
        return [
            up,
            Latency(
                "unbuffered RedisStore, Redis up (contrast)",
                direct,
                "1 round trip per call",
                gc=direct_gc.summary(),
            ),
        ]

    def latency_down(self) -> list[Latency]:
        """A private redis-server, stopped on purpose: the shared Redis is never touched."""
        port = free_ports(1, with_bus=False)[0]
        url = f"redis://127.0.0.1:{port}/0"
        start_redis(port, self.workdir)
        try:
            wait_until(lambda: ping(port), what=f"private redis-server on {port}")
            buffered = BufferedStore(RedisStore.from_url(url))
            counter = EventCounter(buffered, EVENTS)
            for value in self.fresh_values(100):
                counter.track_event("lat_down", value)
            buffered.flush(10.0)
            log(f"private redis-server on {port}: tracked 100, {buffered.stats}")
            shutdown_redis(port)
            wait_until(lambda: is_down(port), what=f"redis-server on {port} to stop")
            self.log.reset()
            counter.track_event("lat_down", 1)
            opening = time.perf_counter()
            buffered.flush(30.0)
            opened_in = time.perf_counter() - opening
            before = snapshot(buffered.stats)
            values = self.fresh_values(self.s.latency_calls)
            with GcWatch() as down_gc:
                samples = self.time_calls(counter, "lat_down", values)
            after = snapshot(buffered.stats)
            logged, first = self.log.reset()
            dropped = after.dropped_unavailable - before.dropped_unavailable
            queued = len(samples) - dropped
            note = f"dropped {dropped:,}, queued {queued:,}"
            detail = (
                f"the flush whose write failed and opened the circuit took "
                f"{opened_in * 1000:.1f} ms (failed writes: {after.failed_writes}); then "
                f"{dropped:,} of {len(samples):,} timed calls were dropped by the open circuit "
                f"and {queued:,} queued; {logged} log record(s) in all"
            )
            if first:
                detail += f", the first: `{first[0][:160]}`"
            down = Latency(
                "buffered, Redis stopped (circuit open)",
                samples,
                note,
                after,
                detail=detail,
                gc=down_gc.summary(),
            )
            log(f"latency circuit open: p99 {down.quantile_us(0.99):.1f} {MU}s; {detail}")
            buffered.close(1.0)

            store = RedisStore.from_url(url)
            plain = EventCounter(store, EVENTS)
            values = self.fresh_values(self.s.down_calls)
            with GcWatch() as direct_gc:
                direct = self.time_calls(
                    plain, "lat_down_unbuffered", values, budget=self.s.down_budget
                )
            logged, first = self.log.reset()
            store.close()
            note = f"{logged:,} log records"
            detail = (
                f"{len(direct):,} calls (capped at {self.s.down_calls:,} calls or "
                f"{self.s.down_budget:.0f} s); each call tries to connect (refused at once on "
                f"loopback; a host that does not answer would cost the 0.25 s connect timeout) "
                f"and logs the failure with its traceback"
            )
            unbuffered = Latency(
                "unbuffered RedisStore, Redis stopped (contrast)",
                direct,
                note,
                detail=detail,
                gc=direct_gc.summary(),
            )
            log(f"latency unbuffered down: p99 {unbuffered.quantile_us(0.99):.1f} {MU}s")
        finally:
            shutdown_redis(port)
        return [down, unbuffered]

    # -- 3. unique_events ------------------------------------------------------------------------

    def unique_data(
        self,
    ) -> tuple[list[str], dt.date, dt.date, dict[tuple[str, dt.date], list[int]]]:
        """10 events x 28 days of ``per_key`` ids each, drawn from a pool (so they overlap)."""
        rng = random.Random(20261121)
        names = [f"ue_{i}" for i in range(UNIQUE_EVENTS)]
        end = today() - dt.timedelta(days=1)
        start = end - dt.timedelta(days=UNIQUE_DAYS - 1)
        data: dict[tuple[str, dt.date], list[int]] = {}
        for name in names:
            for offset in range(UNIQUE_DAYS):
                day = start + dt.timedelta(days=offset)
                data[(name, day)] = rng.sample(range(1, self.s.pool + 1), self.s.per_key)
        return names, start, end, data

    def unique_on(self, label: str, store: CounterStore) -> UniqueCount:
        names, start, end, data = self.unique_data()
        exact = len({v for values in data.values() for v in values})
        counter = EventCounter(store, EVENTS)
        keys = counter.keys(names, start, end)
        store.delete(keys)
        began = time.perf_counter()
        for (name, day), values in data.items():
            noon = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
            if not counter.track_event(name, values, time=noon):
                raise RuntimeError(f"{label}: setup write of {name} {day} failed")
        setup = time.perf_counter() - began
        estimate = counter.unique_events(names, start, end)  # warm
        result = UniqueCount(label, len(keys), exact, estimate, setup_seconds=setup)
        for _ in range(self.s.unique_calls):
            started = time.perf_counter()
            counter.unique_events(names, start, end)
            result.seconds.append(time.perf_counter() - started)
        log(
            f"unique_events on {label}: {len(keys)} keys, median "
            f"{statistics.median(result.seconds) * 1000:.2f} ms, {estimate:,} vs exact {exact:,}"
        )
        return result

    def unique_counts(self) -> list[UniqueCount]:
        found = []
        local = RedisStore.from_url(self.s.url)
        found.append(self.unique_on("Redis (local, db 14)", local))
        local.close()
        if self.s.cluster:
            try:
                with redis_cluster(self.workdir / "cluster") as url:
                    cluster = RedisStore.from_url(url, cluster=True)
                    try:
                        found.append(self.unique_on("Redis Cluster (3 masters)", cluster))
                    finally:
                        cluster.close()
            except (OSError, subprocess.SubprocessError, TimeoutError, redis.RedisError) as exc:
                found.append(UniqueCount("Redis Cluster (3 masters)", 0, 0, None, error=str(exc)))
                log(f"cluster failed: {exc}")
        sqlite = SQLiteStore(self.workdir / "unique.sqlite3")
        found.append(self.unique_on("SQLite", sqlite))
        sqlite.close()
        return found

    # -- 4. SQLite -------------------------------------------------------------------------------

    def sqlite_runs(self) -> list[SQLiteRun]:
        total = self.s.sqlite_values
        found = []
        store = SQLiteStore(self.workdir / "unbuffered.sqlite3")
        counter = EventCounter(store, EVENTS)
        start = today()
        values = self.fresh_values(total)
        track = counter.track_event
        started = time.perf_counter()
        for value in values:
            track("sqlite_unbuffered", value)
        elapsed = time.perf_counter() - started
        estimate = count_since(counter, "sqlite_unbuffered", start)
        found.append(SQLiteRun("EventCounter(SQLiteStore), 1 value/call", total, elapsed, estimate))
        store.close()
        log(f"sqlite unbuffered: {total / elapsed:,.0f} values/s, {estimate:,} vs {total:,}")

        buffered = BufferedStore(SQLiteStore(self.workdir / "buffered.sqlite3"))
        counter = EventCounter(buffered, EVENTS)
        start = today()
        values = self.fresh_values(total)
        track = counter.track_event
        started = time.perf_counter()
        for value in values:
            track("sqlite_buffered", value)
        buffered.flush(120.0)
        elapsed = time.perf_counter() - started
        estimate = count_since(counter, "sqlite_buffered", start)
        stats = snapshot(buffered.stats)
        found.append(
            SQLiteRun(
                "EventCounter(BufferedStore(SQLiteStore)), 1 value/call",
                total,
                elapsed,
                estimate,
                stats,
            )
        )
        buffered.close()
        log(f"sqlite buffered: {total / elapsed:,.0f} values/s, {estimate:,} vs {total:,}, {stats}")
        return found

    # -- profile ---------------------------------------------------------------------------------

    def profile(self, calls: int) -> list[str]:
        """cProfile of ``calls`` buffered track_event calls (host thread only), top functions."""
        counter, buffered = self.buffered_counter()
        counter.track_event("warmup", 0)
        buffered.flush(10.0)
        values = self.fresh_values(calls)
        profiler = cProfile.Profile()
        track = counter.track_event
        profiler.enable()
        for value in values:
            track("profile", value)
        profiler.disable()
        buffered.flush(60.0)
        buffered.close()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.strip_dirs().sort_stats("tottime").print_stats(18)
        lines = [line.rstrip() for line in out.getvalue().splitlines() if line.strip()]
        total = next((line.strip() for line in lines if "function calls" in line), "")
        start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
        return [
            f"cProfile of {calls:,} buffered track_event calls (host thread only; the writer "
            f"thread is not profiled), by tottime: {total}",
            *(f"  {line}" for line in lines[start:]),
        ]


def parse_benchmark_csv(label: str, options: str, requests: int, stdout: str) -> Ceiling:
    for line in stdout.splitlines():
        cells = [cell.strip('"') for cell in line.strip().split('","')]
        if len(cells) >= 7 and cells[0].startswith("PFADD"):
            return Ceiling(label, options, requests, float(cells[1]), cells[4], cells[6])
    return Ceiling(label, options, requests, None, error=f"no CSV row in: {stdout[-200:]!r}")


# -- tables ------------------------------------------------------------------------------------


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    left: frozenset[int] = frozenset({0})
    """Columns aligned left (text); the others are right-aligned numbers."""

    def add(self, *cells: str) -> None:
        if len(cells) != len(self.headers):
            raise ValueError(f"{self.title}: {len(cells)} cells for {len(self.headers)} columns")
        self.rows.append(list(cells))

    def text(self) -> str:
        widths = [
            max(len(self.headers[i]), *(len(row[i]) for row in self.rows))
            for i in range(len(self.headers))
        ]

        def line(cells: Sequence[str]) -> str:
            parts = [
                cell.ljust(widths[i]) if i in self.left else cell.rjust(widths[i])
                for i, cell in enumerate(cells)
            ]
            return "  ".join(parts).rstrip()

        out = [self.title, line(self.headers), "  ".join("-" * w for w in widths)]
        out += [line(row) for row in self.rows]
        out += [f"  * {note}" for note in self.notes]
        return "\n".join(out)

    def markdown(self) -> str:
        out = [f"### {self.title}", ""]
        out.append("| " + " | ".join(self.headers) + " |")
        out.append(
            "|"
            + "|".join(":---" if i in self.left else "---:" for i in range(len(self.headers)))
            + "|"
        )
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.rows]
        if self.notes:
            out.append("")
            out += [f"- {note}" for note in self.notes]
        return "\n".join(out)


def rate(value: float) -> str:
    return f"{value:,.0f}"


def pct(value: float | None, *, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return NA
    return f"{value:+.2f} %" if signed else f"{value:.1f} %"


def us(value: float) -> str:
    if math.isnan(value):
        return NA
    return f"{value:,.1f}" if value < 10_000 else f"{value:,.0f}"


def seconds_spread(run: Throughput) -> str:
    if len(run.seconds) == 1:
        return f"{run.seconds[0]:.3f}"
    return f"{run.median:.3f} [{min(run.seconds):.3f}{DASH}{max(run.seconds):.3f}]"


def check(passed: bool | None) -> str:
    if passed is None:
        return NA
    return OK if passed else MISS


@dataclass
class Results:
    settings: Settings
    throughput: list[Throughput]
    ceilings: list[Ceiling]
    latencies: list[Latency]
    uniques: list[UniqueCount]
    sqlite: list[SQLiteRun]

    def ceiling(self, label: str) -> float | None:
        for found in self.ceilings:
            if found.label == label:
                return found.rps
        return None

    def of_ceiling(self, ours: float, label: str) -> float | None:
        ceiling = self.ceiling(label)
        return ours / ceiling * 100 if ceiling else None

    def throughput_table(self) -> Table:
        table = Table(
            "1. Values tracked per second (local Redis, one Python process)",
            [
                "path",
                "values",
                "calls",
                "seconds",
                "offered/s",
                "written/s",
                "dropped",
                "% of -c 50",
                "% of -P 16",
                "% of -c 1",
                "PFCOUNT err",
                "notes",
            ],
            left=frozenset({0, 11}),
        )
        for run in self.throughput:
            table.add(
                run.label,
                f"{run.values:,}",
                f"{run.calls:,}",
                seconds_spread(run),
                rate(run.offered_rate),
                rate(run.rate),
                f"{run.dropped:,}",
                pct(self.of_ceiling(run.rate, "-c 50")),
                pct(self.of_ceiling(run.rate, "-c 50 -P 16")),
                pct(self.of_ceiling(run.rate, "-c 1")),
                pct(run.worst_error, signed=True),
                run.note,
            )
        for found in self.ceilings:
            table.add(
                f"redis-benchmark PFADD {found.label} (server ceiling)",
                f"{found.requests:,}",
                f"{found.requests:,}",
                f"{found.requests / found.rps:.3f}" if found.rps else NA,
                "",
                rate(found.rps) if found.rps else NA,
                "",
                "",
                "",
                "",
                NA,
                found.error or f"p50 {found.p50_ms} ms, p99 {found.p99_ms} ms",
            )
        s = self.settings
        table.notes = [
            f"buffered runs are timed from the first call until flush() returns (writes "
            f"included); seconds: median [min{DASH}max] of {s.repeats} run(s)",
            "the 50 % target is judged against the un-pipelined `-c 50` ceiling; `-P 16` (16 "
            "pipelined requests per client) is shown for honesty: a pipelined C client is far "
            "beyond one Python process",
            "redis-benchmark runs `PFADD bench:{k} __rand_int__ -r 10000000 --dbnum 14` (`-t "
            "pfadd` is not a test in redis-benchmark 7.0); it shares the 2 cores with "
            "redis-server, as the Python process does",
            "offered/s: values passed to track_event per second; written/s: values that reached "
            "Redis (offered minus those dropped by a full buffer queue), median run; the "
            "percentages and the target use written/s; dropped: summed over the runs",
            "PFCOUNT err: the worst run's PFCOUNT against the exact number of distinct values "
            "written",
            "reference ceilings on this kind of machine when idle (shared/reference/baselines.md, "
            "e.): "
            + ", ".join(f"{k} {v:,.0f} rps" for k, v in REFERENCE_CEILINGS.items())
            + "; this run measured "
            + ", ".join(
                f"{c.label} {c.rps / REFERENCE_CEILINGS[c.label]:.0%} of it"
                for c in self.ceilings
                if c.rps and c.label in REFERENCE_CEILINGS
            ),
        ]
        return table

    def latency_table(self) -> Table:
        table = Table(
            f"2. Latency added per track_event call on the host's thread ({MU}s)",
            ["path", "calls", "p50", "p90", "p99", "p99.9", "max", "mean", "GC pauses", "notes"],
            left=frozenset({0, 8, 9}),
        )
        for found in self.latencies:
            table.add(
                found.label,
                f"{len(found.samples_ns):,}",
                us(found.quantile_us(0.50)),
                us(found.quantile_us(0.90)),
                us(found.quantile_us(0.99)),
                us(found.quantile_us(0.999)),
                us(found.max_us),
                us(found.mean_us),
                found.gc,
                found.note,
            )
        table.notes = [f"{f.label}: {f.detail}" for f in self.latencies if f.detail]
        table.notes += [
            "calls back to back, each timed with perf_counter_ns(); the buffered writer thread "
            "runs meanwhile in the same process (GIL), as it would in a host",
            "Redis stopped: a private redis-server on a free loopback port, shut down with "
            "`shutdown nosave`; the shared Redis on 6379 is never stopped",
            "library log records go to a handler that formats and discards them (no stderr)",
            "GC pauses: the collector's runs during the timed calls (gc.callbacks); a gen-2 "
            "collection pauses the whole process and is usually the max",
        ]
        return table

    def unique_table(self) -> Table:
        s = self.settings
        table = Table(
            f"3. unique_events: {UNIQUE_EVENTS} events {TIMES} {UNIQUE_DAYS} daily keys "
            "(one PFCOUNT over every key)",
            [
                "store",
                "keys",
                "exact",
                "estimate",
                "error",
                "median ms",
                "p90 ms",
                "min ms",
                "calls",
            ],
        )
        for found in self.uniques:
            if found.error or found.estimate is None:
                table.add(found.label, NA, NA, NA, NA, NA, NA, NA, "failed")
                continue
            ordered = sorted(found.seconds)
            p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
            table.add(
                found.label,
                f"{found.keys:,}",
                f"{found.exact:,}",
                f"{found.estimate:,}",
                pct(error_pct(found.estimate, found.exact), signed=True),
                f"{statistics.median(found.seconds) * 1000:.2f}",
                f"{p90 * 1000:.2f}",
                f"{ordered[0] * 1000:.2f}",
                f"{len(found.seconds):,}",
            )
        table.notes = [
            f"each key holds {s.per_key:,} ids drawn from a pool of {s.pool:,} (so days and "
            f"events overlap); the keys were written with track_event(..., time=day) in "
            f"{UNIQUE_EVENTS * UNIQUE_DAYS} calls; timings after one warm call",
            "all events share slot {bench}, so on the cluster every key lives on one node",
        ]
        table.notes += [f"{f.label} failed: {f.error}" for f in self.uniques if f.error]
        return table

    def sqlite_table(self) -> Table:
        table = Table(
            "4. SQLite store: tracked values per second and unique-count error",
            ["path", "values", "seconds", "values/s", "PFCOUNT", "error", "notes"],
            left=frozenset({0, 6}),
        )
        for run in self.sqlite:
            note = ""
            if run.stats is not None:
                dropped = run.stats.dropped_full + run.stats.dropped_unavailable
                note = f"written {run.stats.written:,}, dropped {dropped:,}"
            table.add(
                run.label,
                f"{run.values:,}",
                f"{run.seconds:.3f}",
                rate(run.values / run.seconds),
                f"{run.estimate:,}",
                pct(error_pct(run.estimate, run.values), signed=True),
                note or "one transaction per call",
            )
        table.notes = [
            "buffered: timed from the first call until flush() returns; SQLite sketches are "
            "Apache DataSketches HLL_4, lg_k 14",
        ]
        return table

    def targets_table(self) -> Table:
        table = Table("Targets", ["target", "measured", "result"], left=frozenset({0, 1}))
        ceiling = self.ceiling("-c 50")
        pipelined = self.ceiling("-c 50 -P 16")
        for run in self.throughput[:2]:
            share = run.rate / ceiling if ceiling else None
            extra = f"; {run.rate / pipelined:.1%} of -P 16" if pipelined else ""
            extra += f"; {run.rate / REFERENCE_CEILINGS['-c 50']:.1%} of the idle reference"
            table.add(
                f"{run.label}: {THROUGHPUT_TARGET:.0%} of redis-benchmark -c 50",
                (
                    f"{rate(run.rate)}/s = {share:.1%} of {rate(ceiling)}/s{extra}"
                    if share is not None and ceiling
                    else NA
                ),
                check(None if share is None else share >= THROUGHPUT_TARGET),
            )
        for run in self.throughput[:2]:
            offered = run.values * len(run.written)
            table.add(
                f"{run.label}: no value dropped (implied: a dropped value is not tracked)",
                f"dropped {run.dropped:,} of {offered:,} offered ({run.dropped / offered:.1%})",
                check(run.dropped == 0),
            )
        for found in self.latencies:
            if not found.label.startswith("buffered"):
                continue
            p99 = found.quantile_us(0.99)
            table.add(
                f"p99 {MU}s per track_event, {found.label} <= {P99_TARGET_US:.0f}",
                f"{p99:.1f} {MU}s",
                check(None if math.isnan(p99) else p99 <= P99_TARGET_US),
            )
        for lite in self.sqlite:
            error = error_pct(lite.estimate, lite.values)
            table.add(
                f"SQLite unique-count error, {lite.label} <= {SQLITE_ERROR_TARGET_PCT:.0f} %",
                pct(error, signed=True),
                check(abs(error) <= SQLITE_ERROR_TARGET_PCT),
            )
        return table

    def tables(self) -> list[Table]:
        return [
            self.throughput_table(),
            self.latency_table(),
            self.unique_table(),
            self.sqlite_table(),
            self.targets_table(),
        ]

    def missed(self) -> list[str]:
        return [row[0] for row in self.targets_table().rows if row[2] == MISS]


# -- header ------------------------------------------------------------------------------------


def version_of(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def header_lines(settings: Settings, client: redis.Redis) -> list[str]:
    info: Any = client.info("server")
    bench_version = "not installed"
    if shutil.which("redis-benchmark"):
        done = subprocess.run(
            ["redis-benchmark", "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        bench_version = done.stdout.strip() or "?"
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    mode = "quick (smoke run)" if settings.quick else "full"
    s = settings
    return [
        f"usage_ping event tracking benchmark, {now}, {mode}",
        f"Redis {info.get('redis_version', '?')} at {settings.url}; {bench_version}; "
        f"cores: {os.cpu_count()} ({platform.machine()}), shared by Redis, redis-benchmark "
        "and Python",
        f"usage_ping {usage_ping.__version__}, redis-py {version_of('redis')}, datasketches "
        f"{version_of('datasketches')}, Python {platform.python_version()}",
        f"sizes: {s.values:,} values per buffered run, {s.raw_values:,} raw PFADD, "
        f"{s.unbuffered_values:,} unbuffered; {s.repeats} run(s) each; latency "
        f"{s.latency_calls:,} calls; unique_events {s.unique_calls} calls; SQLite "
        f"{s.sqlite_values:,} values",
        "library settings: defaults (BufferedStore max_queue 100,000, max_batch 5,000, "
        "flush_interval 0.5 s, cooldown 5 s; RedisStore socket timeout 0.25 s)",
    ]


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> tuple[Settings, Path]:
    parser = argparse.ArgumentParser(
        description="Benchmark usage_ping's track_event and unique_events on Redis and SQLite.",
    )
    parser.add_argument("--url", default=None, help=f"Redis URL (default {DEFAULT_URL})")
    parser.add_argument(
        "--values",
        type=int,
        default=None,
        help=f"distinct values per buffered throughput run and for SQLite "
        f"(default {FULL.values:,})",
    )
    parser.add_argument(
        "--raw-values",
        type=int,
        default=None,
        help=f"values for the raw PFADD and unbuffered runs (default {FULL.raw_values:,})",
    )
    parser.add_argument("--repeats", type=int, default=None, help="runs per throughput figure")
    parser.add_argument(
        "--latency-calls",
        type=int,
        default=None,
        help=f"timed calls per latency row (default {FULL.latency_calls:,})",
    )
    parser.add_argument("--no-cluster", action="store_true", help="skip the 3-node Redis Cluster")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="CALLS",
        help="also cProfile this many buffered track_event calls and print the top functions",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run with small sizes (well under 30 s)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="markdown copy of the tables (default .bench/event_tracking.md)",
    )
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    settings = replace(
        base,
        url=args.url or base.url,
        cluster=not args.no_cluster,
        profile=max(0, args.profile),
    )
    if args.values is not None:
        settings = replace(
            settings, values=args.values, batch_values=args.values, sqlite_values=args.values
        )
    if args.raw_values is not None:
        settings = replace(settings, raw_values=args.raw_values, unbuffered_values=args.raw_values)
    if args.repeats is not None:
        settings = replace(settings, repeats=args.repeats)
    if args.latency_calls is not None:
        settings = replace(settings, latency_calls=args.latency_calls)
    if min(settings.values, settings.raw_values, settings.latency_calls, settings.repeats) < 1:
        parser.error("--values, --raw-values, --latency-calls and --repeats must be positive")
    if settings.values > 5_000_000 or settings.latency_calls > 1_000_000:
        parser.error("keep --values at most 5M and --latency-calls at most 1M")
    return settings, args.output


def run(settings: Settings, handler: LibraryLog, workdir: Path) -> tuple[Results, list[str]]:
    bench = Bench(settings, handler, workdir)
    bench.redis.flushdb()
    try:
        log("warm-up")
        bench.warm_up()
        log("1. throughput")
        throughput = [
            bench.buffered_throughput(
                "tp_single", "track_event, buffered, 1 value/call", settings.values, 1
            ),
            bench.buffered_throughput(
                "tp_batch",
                f"track_event, buffered, {BATCH} values/call",
                settings.batch_values,
                BATCH,
            ),
            bench.unbuffered_throughput(),
            bench.raw_throughput(),
        ]
        ceilings = bench.ceilings()
        log("2. latency")
        latencies = [*bench.latency_up(), *bench.latency_down(), bench.timer_overhead()]
        log("3. unique_events")
        uniques = bench.unique_counts()
        log("4. SQLite")
        sqlite = bench.sqlite_runs()
        profile = bench.profile(settings.profile) if settings.profile else []
    finally:
        bench.redis.flushdb()
        bench.redis.close()
    return Results(settings, throughput, ceilings, latencies, uniques, sqlite), profile


def main(argv: Sequence[str] | None = None) -> int:
    settings, output = parse_args(argv)
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    client = redis.Redis.from_url(settings.url, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        header = header_lines(settings, client)
    except redis.RedisError as exc:
        print(f"Redis at {settings.url} is not reachable: {exc}", file=sys.stderr)
        return 2
    finally:
        client.close()

    client = redis.Redis.from_url(settings.url, socket_timeout=2.0, socket_connect_timeout=2.0)
    meter = CpuMeter(client)
    with library_log() as handler, tempfile.TemporaryDirectory(prefix="event-bench-") as tmp:
        results, profile = run(settings, handler, Path(tmp))
    header.insert(2, meter.summary())
    client.close()
    tables = results.tables()
    missed = results.missed()
    summary = "targets missed: " + ("; ".join(missed) if missed else "none")

    text = "\n\n".join(["\n".join(header), *(t.text() for t in tables), summary])
    if profile:
        text += "\n\n" + "\n".join(profile)
    print(text)

    markdown = ["# usage_ping event tracking benchmark", "", f"_{header[0]}_", ""]
    markdown += [f"- {line}" for line in header[1:]]
    markdown += ["", *"\n\n".join(t.markdown() for t in tables).splitlines(), "", summary]
    if profile:
        markdown += ["", "### Profile", "", "```", *profile, "```"]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(markdown) + "\n", encoding="utf-8")
    log(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
