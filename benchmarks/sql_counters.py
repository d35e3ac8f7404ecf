"""Benchmark: usage_ping's batch SQL counters against plain SQL on PostgreSQL.

Every figure is measured side by side in one run, on generated ``events`` tables of 1M, 5M and 20M
rows (20M is the headline):

1. batch ``count`` vs one plain ``SELECT count(*)``;
2. batch ``distinct_count`` vs one plain ``SELECT count(DISTINCT author_id)``;
3. ``estimate_distinct_count`` (pure SQL and ``hll`` extension paths) vs the exact count: time and
   error, the error also over 10 differently seeded tables of 1M rows;
4. a GitLab-style estimate (512 buckets over md5, 10,000-row batches), for comparison;
5. batch ``sum`` vs one plain ``SELECT sum(weight)``;
6. scaling: each operation's time per million rows at every size.

Plain queries run on their own connection with ``max_parallel_workers_per_gather = 0``; the library
runs with its defaults (2 connections, batches aiming at half of ``target_time`` = 0.1 s). The
slowest single batch query is timed with SQLAlchemy cursor events on the library's engine.

Tables are kept in the database ``usage_ping_bench`` between runs and reused when their marker
(generator version, rows, seed) and row count match, so reruns skip the generation.

Usage::

    python benchmarks/sql_counters.py                 # 1M, 5M, 20M rows, 3 runs each
    python benchmarks/sql_counters.py --rows 1M --runs 1
    python benchmarks/sql_counters.py --quick         # a smoke run in well under a minute
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import os
import platform
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

import usage_ping

GENERATOR_VERSION = 1
"""Bump when the generated data changes: tables with an older marker are regenerated."""

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/usage_ping_bench"
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / ".bench" / "sql_counters.md"
QUICK_OUTPUT = DEFAULT_OUTPUT.with_name("sql_counters-quick.md")
DEFAULT_ROWS = (1_000_000, 5_000_000, 20_000_000)
QUICK_ROWS = 200_000
QUICK_SEEDS = 2

# Targets from the issue.
RATIO_TARGET = 1.0
SLOWEST_TARGET_MS = 100.0
HLL_RATIO_TARGET = 0.25
ERROR_TARGET_PCT = 1.5

GITLAB_BUCKETS = 512
GITLAB_BATCH = 10_000

OK = "✓"
TIMES = "\N{MULTIPLICATION SIGN}"
DASH = "\N{EN DASH}"
MINUS = "\N{MINUS SIGN}"
RHO = "\N{GREEK SMALL LETTER RHO}"
MISS = "MISS"
FAIL = "FAIL"
NA = "n/a"

_started_at = time.perf_counter()


def log(message: str) -> None:
    """A progress line on stderr, with the seconds since the start."""
    print(f"[{time.perf_counter() - _started_at:7.1f}s] {message}", file=sys.stderr, flush=True)


# -- sizes -------------------------------------------------------------------------------------


def parse_rows(text: str) -> int:
    """``"20M"`` -> 20000000, ``"200k"`` -> 200000, ``"1_000"`` -> 1000."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", text.replace("_", ""))
    if match is None:
        raise argparse.ArgumentTypeError(f"not a row count: {text!r} (try 1M, 500k or 20000)")
    number = float(match.group(1))
    unit = {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2).lower()]
    rows = round(number * unit)
    if rows < 1_000:
        raise argparse.ArgumentTypeError(f"at least 1000 rows, got {text!r}")
    return rows


def parse_rows_list(text: str) -> list[int]:
    return sorted({parse_rows(part) for part in text.split(",") if part.strip()})


def size_label(rows: int) -> str:
    if rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}M"
    if rows % 1_000 == 0:
        return f"{rows // 1_000}k"
    return str(rows)


def table_name(rows: int, seed: int) -> str:
    return f"events_{size_label(rows).lower()}_s{seed}"


def author_offset(rows: int, seed: int) -> int:
    """Seed s draws its author ids from its own range, so seeds share no values.

    With a common range, every seeded table held 99.8 % of the same values: the estimates saw
    nearly the same input, and their errors were one sample repeated, not ten. Seed 1 keeps the
    plain range, so the 1M headline table is the same for every seed count.
    """
    return (seed - 1) * rows


def marker(rows: int, seed: int) -> str:
    offset = f" author_offset={author_offset(rows, seed)}" if seed > 1 else ""
    return f"usage_ping bench events generator v{GENERATOR_VERSION} rows={rows} seed={seed}{offset}"


def events_table(name: str) -> sa.Table:
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("author_id", sa.BigInteger),
        sa.Column("project_id", sa.BigInteger),
        sa.Column("created_at", sa.DateTime(timezone=True)),
        sa.Column("weight", sa.Integer),
    )


# -- database setup ----------------------------------------------------------------------------


def ensure_database(url: sa.URL) -> None:
    """Create the bench database if it does not exist yet."""
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": url.database},
            ).first()
            if exists is None:
                log(f"creating database {url.database}")
                conn.exec_driver_sql(f'CREATE DATABASE "{url.database}"')
    finally:
        admin.dispose()


def ensure_extension(engine: sa.Engine, name: str) -> str | None:
    """``CREATE EXTENSION IF NOT EXISTS``; the installed version, or None when unavailable."""
    with engine.connect() as conn:
        try:
            conn.exec_driver_sql(f"CREATE EXTENSION IF NOT EXISTS {name}")
        except sa.exc.DBAPIError as exc:
            log(f"extension {name} is not available: {str(exc.orig).strip()}")
            return None
        version = conn.execute(
            sa.text("SELECT extversion FROM pg_extension WHERE extname = :name"), {"name": name}
        ).scalar()
    return None if version is None else str(version)


def table_is_current(conn: sa.Connection, name: str, rows: int, seed: int) -> bool:
    """The table exists, carries this generator's marker, has its index and ``rows`` rows."""
    comment = conn.execute(
        sa.text("SELECT obj_description(to_regclass(:t), 'pg_class')"), {"t": name}
    ).scalar()
    if comment != marker(rows, seed):
        return False
    has_index = conn.execute(
        sa.text("SELECT 1 FROM pg_indexes WHERE tablename = :t AND indexname = :i"),
        {"t": name, "i": f"{name}_author_id_idx"},
    ).first()
    if has_index is None:
        return False
    found = conn.exec_driver_sql(f"SELECT count(*) FROM {name}").scalar()
    return found == rows


def generate_table(conn: sa.Connection, name: str, rows: int, seed: int) -> None:
    """Generate ``name`` with ``rows`` rows from ``setseed(seed)``, in SQL."""
    authors = max(1, rows // 10)
    projects = max(1, rows // 1_000)
    started = time.perf_counter()
    log(f"{name}: generating {rows:,} rows (seed {seed}, generator v{GENERATOR_VERSION})")
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    conn.exec_driver_sql(
        f"CREATE TABLE {name} (id bigserial, author_id bigint, project_id bigint, "
        "created_at timestamptz, weight int)"
    )
    conn.exec_driver_sql("SET maintenance_work_mem = '1GB'")
    conn.exec_driver_sql(f"SELECT setseed({seed / 1000})")
    # One statement, evaluated row after row in one backend: the same seed gives the same rows.
    conn.exec_driver_sql(
        f"INSERT INTO {name} (id, author_id, project_id, created_at, weight) "
        "SELECT g, "
        f"((random() ^ 2) * {authors})::bigint + 1 + {author_offset(rows, seed)}, "
        f"(random() * {projects})::bigint + 1, "
        "timestamptz '2020-01-01 00:00:00+00' + (g * 3 + random() * 3) * interval '1 second', "
        "CASE WHEN random() < 0.1 THEN NULL ELSE (random() * 10)::int END "
        f"FROM generate_series(1, {rows}) AS g"
    )
    log(f"{name}: inserted in {time.perf_counter() - started:.1f} s; adding the primary key")
    conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), {rows})")
    conn.exec_driver_sql(f"ALTER TABLE {name} ADD PRIMARY KEY (id)")
    log(f"{name}: index on author_id")
    conn.exec_driver_sql(f"CREATE INDEX {name}_author_id_idx ON {name} (author_id)")
    log(f"{name}: VACUUM ANALYZE")
    conn.exec_driver_sql(f"VACUUM (ANALYZE) {name}")
    conn.exec_driver_sql(f"COMMENT ON TABLE {name} IS '{marker(rows, seed)}'")
    conn.exec_driver_sql("RESET maintenance_work_mem")
    log(f"{name}: ready in {time.perf_counter() - started:.1f} s")


def ensure_table(engine: sa.Engine, rows: int, seed: int, regenerate: bool) -> str:
    name = table_name(rows, seed)
    with engine.connect() as conn:
        if not regenerate and table_is_current(conn, name, rows, seed):
            log(f"{name}: reusing ({rows:,} rows, generator v{GENERATOR_VERSION})")
        else:
            generate_table(conn, name, rows, seed)
    return name


def prewarm(engine: sa.Engine, name: str, has_prewarm: bool) -> None:
    """Read the table and its indexes into the OS cache, so that no contender pays for it."""
    with engine.connect() as conn:
        if has_prewarm:
            for relation in (name, f"{name}_pkey", f"{name}_author_id_idx"):
                conn.execute(sa.text("SELECT pg_prewarm(:r, 'read')"), {"r": relation})
        else:
            conn.exec_driver_sql(f"SELECT count(*) FROM {name}").scalar()


@dataclass(frozen=True)
class RelationSize:
    name: str
    rows: int
    heap_bytes: int
    index_bytes: int


def relation_size(engine: sa.Engine, name: str, rows: int) -> RelationSize:
    with engine.connect() as conn:
        heap, index = conn.execute(
            sa.text("SELECT pg_table_size(:t), pg_indexes_size(:t)"), {"t": name}
        ).one()
    return RelationSize(name, rows, int(heap), int(index))


# -- timing queries ----------------------------------------------------------------------------

_STARTED_KEY = "usage_ping_bench_started"
_BOOKKEEPING = re.compile(
    r"set_config|current_setting|pg_extension|^\s*(SET|SHOW|RESET)\b|pg_catalog\.version", re.I
)
_BOUNDS = re.compile(r"^\s*SELECT\s+min\(.*\bmax\(", re.I | re.S)


def classify(statement: str) -> str:
    """``batch``, ``bounds`` (min/max or block count) or ``other`` (settings and detection).

    Batches walk key ranges (``col >= a AND col <= b``) or, for estimates on PostgreSQL, block
    ranges (``ctid >= '(a,0)'::tid AND ctid < '(b,0)'::tid``).
    """
    if "pg_relation_size" in statement:
        return "bounds"
    if "ctid >= " in statement and "ctid < " in statement:
        return "batch"
    if _BOOKKEEPING.search(statement):
        return "other"
    if _BOUNDS.search(statement) and "WHERE" not in statement.upper():
        return "bounds"
    if " >= " in statement and " <= " in statement:
        return "batch"
    return "other"


@dataclass
class QueryStats:
    """What the library ran during one call."""

    batches: int = 0
    batch_seconds: float = 0.0
    slowest: float = 0.0
    slowest_sql: str = ""
    slowest_params: Any = None
    bounds_seconds: float = 0.0
    timeouts: int = 0
    errors: int = 0


class QueryRecorder:
    """Times every statement run on ``engine`` (from any thread) while recording is on.

    The start time is kept in the DBAPI connection's ``info``: each batch worker has its own
    connection, so the two workers never share it.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self._lock = threading.Lock()
        self._stats: QueryStats | None = None
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        event.listen(engine, "handle_error", self._error)

    @contextmanager
    def recording(self) -> Iterator[QueryStats]:
        stats = QueryStats()
        with self._lock:
            self._stats = stats
        try:
            yield stats
        finally:
            with self._lock:
                self._stats = None

    def _before(self, conn: sa.Connection, *_: Any) -> None:
        conn.info[_STARTED_KEY] = time.perf_counter()

    def _after(
        self, conn: sa.Connection, cursor: Any, statement: str, parameters: Any, *_: Any
    ) -> None:
        started = conn.info.pop(_STARTED_KEY, None)
        if started is not None:
            self._add(statement, parameters, time.perf_counter() - started, failed=None)

    def _error(self, ctx: sa.engine.ExceptionContext) -> None:
        if ctx.connection is None or ctx.statement is None:
            return
        started = ctx.connection.info.pop(_STARTED_KEY, None)
        if started is None:
            return
        sqlstate = getattr(ctx.original_exception, "sqlstate", None)
        seconds = time.perf_counter() - started
        self._add(ctx.statement, ctx.parameters, seconds, failed=sqlstate == "57014")

    def _add(self, statement: str, parameters: Any, seconds: float, failed: bool | None) -> None:
        kind = classify(statement)
        with self._lock:
            stats = self._stats
            if stats is None:
                return
            if failed is True:
                stats.timeouts += 1
            elif failed is False:
                stats.errors += 1
            if kind == "bounds":
                stats.bounds_seconds += seconds
            elif kind == "batch":
                stats.batches += 1
                stats.batch_seconds += seconds
                if seconds > stats.slowest:
                    stats.slowest = seconds
                    stats.slowest_sql = statement
                    stats.slowest_params = (
                        dict(parameters) if isinstance(parameters, dict) else parameters
                    )


class ActivityMonitor:
    """Watches for other work on the server while the benchmark measures.

    Every ``interval`` seconds it samples ``pg_stat_activity`` for active queries in other
    databases (a test suite on the same machine, say) and counts the samples per phase, so that a
    reader can tell figures taken on a busy machine from clean ones.
    """

    def __init__(self, url: sa.URL, interval: float = 0.5) -> None:
        self._engine = sa.create_engine(
            url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
        )
        self._database = url.database
        self._interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="bench-monitor", daemon=True)
        self.phase = "setup"
        self.samples: dict[str, int] = {}
        self.busy: dict[str, int] = {}
        self.databases: dict[str, int] = {}

    def __enter__(self) -> ActivityMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._engine.dispose()

    def _run(self) -> None:
        query = sa.text(
            "SELECT coalesce(datname, '?'), count(*) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND state = 'active' "
            "AND pid <> pg_backend_pid() AND datname IS DISTINCT FROM :db GROUP BY 1"
        )
        try:
            with self._engine.connect() as conn:
                while not self._stop.wait(self._interval):
                    found = conn.execute(query, {"db": self._database}).all()
                    with self._lock:
                        phase = self.phase
                        self.samples[phase] = self.samples.get(phase, 0) + 1
                        if found:
                            self.busy[phase] = self.busy.get(phase, 0) + 1
                        for name, _ in found:
                            self.databases[str(name)] = self.databases.get(str(name), 0) + 1
        except sa.exc.SQLAlchemyError as exc:
            log(f"activity monitor stopped: {exc}")

    def summary(self) -> str:
        with self._lock:
            busy = {phase: n for phase, n in self.busy.items() if n}
            if not busy:
                return "other activity on the server during the measurements: none seen"
            phases = ", ".join(
                f"{phase} {n}/{self.samples.get(phase, n)} samples" for phase, n in busy.items()
            )
            names = sorted(self.databases, key=lambda d: -self.databases[d])
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        return (
            f"WARNING: other databases had active queries during the measurements ({phases}; "
            f"databases {shown}): those figures were taken on a busy machine"
        )


class LibraryLog(logging.Handler):
    """Keeps the ``usage_ping`` logger's warnings (failed counters) to explain a FAIL."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.warnings: list[str] = []
        self.timeouts_logged = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            self.warnings.append(message)
            log(f"usage_ping warning: {message[:500]}")
        elif "timed out" in message:
            self.timeouts_logged += 1


# -- measurements ------------------------------------------------------------------------------


@dataclass
class Sample:
    seconds: float
    value: int | None
    stats: QueryStats | None = None


@dataclass
class Series:
    """Repeated samples of one figure."""

    samples: list[Sample] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    @property
    def low(self) -> float:
        return min(s.seconds for s in self.samples)

    @property
    def high(self) -> float:
        return max(s.seconds for s in self.samples)

    @property
    def values(self) -> set[int | None]:
        return {s.value for s in self.samples}

    @property
    def value(self) -> int | None:
        """The result, when every run gave the same one (None otherwise or on failure)."""
        values = self.values
        return next(iter(values)) if len(values) == 1 else None

    def stats(self) -> list[QueryStats]:
        return [s.stats for s in self.samples if s.stats is not None]

    @property
    def slowest(self) -> QueryStats | None:
        found = self.stats()
        return max(found, key=lambda s: s.slowest) if found else None


def as_count(value: object) -> int | None:
    """A counter's result as an int; None for a fallback code (-1, -2) or anything else."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return int(value)


def time_library(recorder: QueryRecorder, call: Callable[[], object]) -> Sample:
    with recorder.recording() as stats:
        started = time.perf_counter()
        value = call()
        seconds = time.perf_counter() - started
    return Sample(seconds, as_count(value), stats)


def time_plain(plain: sa.Engine, sql: str) -> Sample:
    """One plain query on its own connection, parallel workers off."""
    with plain.connect() as conn:
        conn.exec_driver_sql("SET max_parallel_workers_per_gather = 0")
        started = time.perf_counter()
        value = conn.exec_driver_sql(sql).scalar()
        seconds = time.perf_counter() - started
    return Sample(seconds, None if value is None else int(value))


# GitLab's estimate (lib/gitlab/database/postgres_hll): the top 32 bits of md5 of the value's text,
# 512 buckets from the low 9 bits, rho from the smallest masked 31-bit value per bucket.
GITLAB_SQL = """
WITH hashed AS MATERIALIZED (
    SELECT ('X' || md5(author_id::text))::bit(32)::int AS h
    FROM {table}
    WHERE id >= :low AND id < :high AND author_id IS NOT NULL
)
SELECT (h & 511) AS bucket, 31 - floor(log(2, greatest(min(h & 2147483647), 1))) AS rho
FROM hashed
GROUP BY 1
"""


def gitlab_estimate(registers: dict[int, int], m: int = GITLAB_BUCKETS) -> float:
    """GitLab's estimator: raw HLL with alpha_m, linear counting below 2.5·m."""
    empty = m - len(registers)
    alpha = 0.7213 / (1 + 1.079 / m)
    raw = m * m * alpha / (empty + math.fsum(2.0**-rho for rho in registers.values()))
    if empty > 0 and raw < 2.5 * m:
        return m * math.log(m / empty)
    return raw


@dataclass
class GitlabResult:
    seconds: float
    estimate: int
    batches: int
    slowest: float


def run_gitlab(plain: sa.Engine, name: str) -> GitlabResult:
    """GitLab-style: 10,000-id batches, one after another on one connection."""
    query = sa.text(GITLAB_SQL.format(table=name))
    registers: dict[int, int] = {}
    batches = 0
    slowest = 0.0
    started = time.perf_counter()
    with plain.connect() as conn:
        low, high = conn.exec_driver_sql(f"SELECT min(id), max(id) FROM {name}").one()
        if low is not None and high is not None:
            for start in range(int(low), int(high) + 1, GITLAB_BATCH):
                batch_started = time.perf_counter()
                rows = conn.execute(query, {"low": start, "high": start + GITLAB_BATCH}).all()
                slowest = max(slowest, time.perf_counter() - batch_started)
                batches += 1
                for bucket, rho in rows:
                    b, r = int(bucket), int(rho)
                    if r > registers.get(b, 0):
                        registers[b] = r
    seconds = time.perf_counter() - started
    return GitlabResult(seconds, round(gitlab_estimate(registers)), batches, slowest)


OPERATIONS = ("count", "distinct", "estimate_sql", "estimate_hll", "sum")
PLAIN_SQL = {
    "count": "SELECT count(*) FROM {table}",
    "distinct": "SELECT count(DISTINCT author_id) FROM {table}",
    "sum": "SELECT sum(weight) FROM {table}",
}


def library_calls(engine: sa.Engine, table: sa.Table) -> dict[str, Callable[[], object]]:
    return {
        "count": lambda: usage_ping.count(engine, table),
        "distinct": lambda: usage_ping.distinct_count(engine, table, table.c.author_id),
        "estimate_sql": lambda: usage_ping.estimate_distinct_count(
            engine, table, table.c.author_id, use_hll_extension=False
        ),
        "estimate_hll": lambda: usage_ping.estimate_distinct_count(
            engine, table, table.c.author_id, use_hll_extension=True
        ),
        "sum": lambda: usage_ping.sum(engine, table, table.c.weight),
    }


@dataclass
class SizeResult:
    rows: int
    table: str
    ours: dict[str, Series] = field(default_factory=dict)
    plain: dict[str, Series] = field(default_factory=dict)
    gitlab: GitlabResult | None = None


@dataclass
class SeedResult:
    seed: int
    rows: int
    exact: int | None
    exact_seconds: float
    sql: int | None
    hll: int | None
    gitlab: GitlabResult | None


@dataclass
class Bench:
    engine: sa.Engine
    plain: sa.Engine
    recorder: QueryRecorder
    hll: str | None
    has_prewarm: bool
    gitlab: bool
    monitor: ActivityMonitor

    def operations(self) -> list[str]:
        return [op for op in OPERATIONS if op != "estimate_hll" or self.hll is not None]

    def measure_size(self, rows: int, name: str, runs: int) -> SizeResult:
        label = size_label(rows)
        table = events_table(name)
        calls = library_calls(self.engine, table)
        result = SizeResult(rows, name)
        self.monitor.phase = label
        log(f"[{label}] warming {name} into the cache")
        prewarm(self.engine, name, self.has_prewarm)
        for run in range(1, runs + 1):
            for op in self.operations():
                log(f"[{label}] run {run}/{runs}: {op}")
                if op in PLAIN_SQL:
                    sample = time_plain(self.plain, PLAIN_SQL[op].format(table=name))
                    result.plain.setdefault(op, Series()).samples.append(sample)
                sample = time_library(self.recorder, calls[op])
                result.ours.setdefault(op, Series()).samples.append(sample)
        if self.gitlab:
            log(f"[{label}] GitLab-style estimate (1 run)")
            result.gitlab = run_gitlab(self.plain, name)
        return result

    def measure_seed(self, rows: int, seed: int, name: str) -> SeedResult:
        table = events_table(name)
        calls = library_calls(self.engine, table)
        self.monitor.phase = "seeds"
        log(f"[seed {seed}] exact and estimated distinct author_id of {name}")
        prewarm(self.engine, name, self.has_prewarm)
        exact = time_plain(self.plain, PLAIN_SQL["distinct"].format(table=name))
        sql = time_library(self.recorder, calls["estimate_sql"]).value
        hll = None
        if self.hll is not None:
            hll = time_library(self.recorder, calls["estimate_hll"]).value
        gitlab = run_gitlab(self.plain, name) if self.gitlab else None
        return SeedResult(seed, rows, exact.value, exact.seconds, sql, hll, gitlab)

    def explain(self, statement: str, params: Any) -> list[str]:
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", params).all()
        return [str(row[0]) for row in rows]

    def explain_plain(self, sql: str) -> list[str]:
        with self.plain.connect() as conn:
            conn.exec_driver_sql("SET max_parallel_workers_per_gather = 0")
            rows = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {sql}").all()
        return [str(row[0]) for row in rows]


# -- tables ------------------------------------------------------------------------------------


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        widths = [len(h) for h in self.headers]
        for row in self.rows:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

        def line(cells: Sequence[str]) -> str:
            parts = [
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
            ]
            return "  ".join(parts).rstrip()

        out = [self.title, line(self.headers), "  ".join("-" * w for w in widths)]
        out += [line(row) for row in self.rows]
        out += [f"  * {note}" for note in self.notes]
        return "\n".join(out)

    def markdown(self) -> str:
        out = [f"### {self.title}", ""]
        out.append("| " + " | ".join(self.headers) + " |")
        out.append("|" + "|".join([":---"] + ["---:"] * (len(self.headers) - 1)) + "|")
        out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in self]
        if self.notes:
            out.append("")
            out += [f"- {note}" for note in self.notes]
        return "\n".join(out)

    def __iter__(self) -> Iterator[list[str]]:
        return iter(self.rows)


def secs(seconds: float) -> str:
    return f"{seconds:.3f}"


def spread(series: Series) -> str:
    if len(series.samples) == 1:
        return secs(series.median)
    return f"{secs(series.median)} [{secs(series.low)}{DASH}{secs(series.high)}]"


def ratio(ours: float, plain: float) -> str:
    return f"{ours / plain:.2f}{TIMES}" if plain > 0 else NA


def check(passed: bool) -> str:
    return OK if passed else MISS


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def number(value: int | None) -> str:
    return FAIL if value is None else f"{value:,}"


def error_pct(estimate: int | None, exact: int | None) -> float | None:
    if estimate is None or not exact:
        return None
    return (estimate - exact) / exact * 100


def pct(value: float | None) -> str:
    return NA if value is None else f"{value:+.2f}"


def batch_counts(series: Series) -> str:
    counts = [s.batches for s in series.stats()]
    if not counts:
        return NA
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}{DASH}{high}"


def slowest_seconds(series: Series) -> float:
    worst = series.slowest
    return 0.0 if worst is None else worst.slowest


def bounds_ms(series: Series) -> str:
    found = [s.bounds_seconds for s in series.stats()]
    return ms(statistics.median(found)) if found else NA


def timeouts(series: Series) -> int:
    return sum(s.timeouts for s in series.stats())


@dataclass
class Target:
    what: str
    measured: str
    passed: bool | None


class Report:
    def __init__(self, sizes: list[SizeResult], seeds: list[SeedResult], hll: str | None) -> None:
        self.sizes = sizes
        self.seeds = seeds
        self.hll = hll
        self.headline = sizes[-1]
        self.targets: list[Target] = []

    def target(self, what: str, measured: str, passed: bool | None) -> None:
        self.targets.append(Target(what, measured, passed))

    def exact(self, size: SizeResult) -> Series:
        return size.plain["distinct"]

    def count_table(self) -> Table:
        table = Table(
            "1. count(engine, events) vs SELECT count(*) FROM events (parallel workers off)",
            [
                "rows",
                "ours s",
                "plain s",
                "ours/plain",
                f"≤{RATIO_TARGET:.1f}{TIMES}",
                "queries",
                "slowest ms",
                f"≤{SLOWEST_TARGET_MS:.0f} ms",
                "timeouts",
                "bounds ms",
                "result",
            ],
        )
        for size in self.sizes:
            ours, plain = size.ours["count"], size.plain["count"]
            same = ours.value is not None and ours.value == plain.value == size.rows
            table.rows.append(
                [
                    size_label(size.rows),
                    spread(ours),
                    spread(plain),
                    ratio(ours.median, plain.median),
                    check(ours.median <= RATIO_TARGET * plain.median),
                    batch_counts(ours),
                    ms(slowest_seconds(ours)),
                    check(slowest_seconds(ours) * 1000 <= SLOWEST_TARGET_MS),
                    str(timeouts(ours)),
                    bounds_ms(ours),
                    f"{number(ours.value)} {OK if same else FAIL}",
                ]
            )
        h = self.headline
        ours, plain = h.ours["count"], h.plain["count"]
        label = size_label(h.rows)
        self.target(
            f"count ≤ {RATIO_TARGET:.1f}{TIMES} plain at {label}",
            ratio(ours.median, plain.median),
            ours.median <= RATIO_TARGET * plain.median,
        )
        self.target(
            f"count: no batch query over {SLOWEST_TARGET_MS:.0f} ms (all sizes, all runs)",
            f"{ms(max(slowest_seconds(s.ours['count']) for s in self.sizes))} ms",
            all(slowest_seconds(s.ours["count"]) * 1000 <= SLOWEST_TARGET_MS for s in self.sizes),
        )
        table.notes.append(
            "ours = the whole public call: the min/max bounds query, session settings and every "
            "batch on 2 connections; plain = one statement on its own connection"
        )
        table.notes.append(
            f"queries = batch queries per call (min{DASH}max over runs); slowest = the slowest "
            "single batch query over all runs; bounds = the min/max query (median)"
        )
        return table

    def distinct_table(self) -> Table:
        table = Table(
            "2. distinct_count(engine, events, events.c.author_id) vs "
            "SELECT count(DISTINCT author_id) FROM events (parallel workers off)",
            [
                "rows",
                "ours s",
                "plain s",
                "ours/plain",
                f"≤{RATIO_TARGET:.1f}{TIMES}",
                "queries",
                "slowest ms",
                f"≤{SLOWEST_TARGET_MS:.0f} ms",
                "timeouts",
                "ours",
                "exact",
                "equal",
            ],
        )
        for size in self.sizes:
            ours, plain = size.ours["distinct"], size.plain["distinct"]
            equal = ours.value is not None and ours.value == plain.value
            table.rows.append(
                [
                    size_label(size.rows),
                    spread(ours),
                    spread(plain),
                    ratio(ours.median, plain.median),
                    check(ours.median <= RATIO_TARGET * plain.median),
                    batch_counts(ours),
                    ms(slowest_seconds(ours)),
                    check(slowest_seconds(ours) * 1000 <= SLOWEST_TARGET_MS),
                    str(timeouts(ours)),
                    number(ours.value),
                    number(plain.value),
                    OK if equal else FAIL,
                ]
            )
        h = self.headline
        ours, plain = h.ours["distinct"], h.plain["distinct"]
        label = size_label(h.rows)
        self.target(
            f"distinct_count ≤ {RATIO_TARGET:.1f}{TIMES} plain at {label}",
            ratio(ours.median, plain.median),
            ours.median <= RATIO_TARGET * plain.median,
        )
        self.target(
            f"distinct_count: no batch query over {SLOWEST_TARGET_MS:.0f} ms",
            f"{ms(max(slowest_seconds(s.ours['distinct']) for s in self.sizes))} ms",
            all(
                slowest_seconds(s.ours["distinct"]) * 1000 <= SLOWEST_TARGET_MS for s in self.sizes
            ),
        )
        self.target(
            "distinct_count equals count(DISTINCT) at every size",
            ", ".join(
                OK if s.ours["distinct"].value == s.plain["distinct"].value else FAIL
                for s in self.sizes
            ),
            all(
                s.ours["distinct"].value is not None
                and s.ours["distinct"].value == s.plain["distinct"].value
                for s in self.sizes
            ),
        )
        table.notes.append(
            "distinct_count batches over the counted column itself (author_id value ranges, so the "
            "per-batch counts add up exactly): it needs the index on events.author_id, which every "
            "generated table has (events_*_author_id_idx); without it each batch is a full scan"
        )
        return table

    def estimate_table(self) -> Table:
        table = Table(
            "3. estimate_distinct_count(engine, events, events.c.author_id) vs the exact "
            "count(DISTINCT author_id)",
            [
                "rows",
                "path",
                "time s",
                "exact s",
                "ratio",
                "target",
                "ok",
                "queries",
                "slowest ms",
                "estimate",
                "error %",
                f"≤{ERROR_TARGET_PCT}%",
            ],
        )
        paths = [
            ("estimate_sql", "pure SQL", RATIO_TARGET),
            ("estimate_hll", "hll extension", HLL_RATIO_TARGET),
        ]
        for size in self.sizes:
            exact = self.exact(size)
            for op, path, goal in paths:
                series = size.ours.get(op)
                if series is None:
                    table.rows.append(
                        [size_label(size.rows), path, NA, spread(exact), NA, f"≤{goal:.2f}{TIMES}"]
                        + [NA] * 6
                    )
                    continue
                error = error_pct(series.value, exact.value)
                table.rows.append(
                    [
                        size_label(size.rows),
                        path,
                        spread(series),
                        spread(exact),
                        ratio(series.median, exact.median),
                        f"≤{goal:.2f}{TIMES}",
                        check(series.median <= goal * exact.median),
                        batch_counts(series),
                        ms(slowest_seconds(series)),
                        number(series.value),
                        pct(error),
                        NA if error is None else check(abs(error) <= ERROR_TARGET_PCT),
                    ]
                )
        h = self.headline
        label = size_label(h.rows)
        for op, path, goal in paths:
            series = h.ours.get(op)
            if series is None:
                self.target(f"estimate ({path}) ≤ {goal:.2f}{TIMES} exact at {label}", NA, None)
                continue
            self.target(
                f"estimate ({path}) ≤ {goal:.2f}{TIMES} exact at {label}",
                ratio(series.median, self.exact(h).median),
                series.median <= goal * self.exact(h).median,
            )
        if self.hll is None:
            table.notes.append("hll extension: not available in this database (n/a)")
        else:
            table.notes.append(
                f"hll extension {self.hll}: hll_add_agg(hll_hash_bigint(author_id), 14, 5, 0, 0) "
                "per batch, registers merged in Python"
            )
        table.notes.append(
            "exact = the plain count(DISTINCT author_id) of table 2 (one statement, parallel "
            "workers off); the error is measured against its result"
        )
        return table

    def error_table(self) -> Table:
        has_gitlab = all(s.gitlab is not None for s in self.seeds) and bool(self.seeds)
        headers = ["table", "exact", "SQL est", "SQL err %", "hll est", "hll err %"]
        if has_gitlab:
            headers += ["GitLab est", "GitLab err %"]
        seed_rows = size_label(self.seeds[0].rows) if self.seeds else "?"
        table = Table(
            f"3b. Estimate error over {len(self.seeds)} seeded tables of {seed_rows} rows "
            f"(seeds 1..{len(self.seeds)}, fixed in advance) and the "
            f"{size_label(self.headline.rows)} table",
            headers,
        )
        errors: dict[str, list[float]] = {"SQL": [], "hll": [], "GitLab": []}

        def add(
            label: str,
            exact: int | None,
            sql: int | None,
            hll: int | None,
            gitlab: int | None,
        ) -> None:
            row = [label, number(exact)]
            for path, estimate in (("SQL", sql), ("hll", hll), ("GitLab", gitlab)):
                if path == "GitLab" and not has_gitlab:
                    continue
                if path == "hll" and self.hll is None:
                    row += [NA, NA]
                    continue
                error = error_pct(estimate, exact)
                if error is not None:
                    errors[path].append(error)
                row += [number(estimate), pct(error)]
            table.rows.append(row)

        for seed in self.seeds:
            add(
                f"seed {seed.seed} ({table_name(seed.rows, seed.seed)})",
                seed.exact,
                seed.sql,
                seed.hll,
                seed.gitlab.estimate if seed.gitlab is not None else None,
            )
        h = self.headline
        add(
            f"{size_label(h.rows)} ({h.table})",
            self.exact(h).value,
            h.ours["estimate_sql"].value,
            h.ours["estimate_hll"].value if "estimate_hll" in h.ours else None,
            h.gitlab.estimate if h.gitlab is not None else None,
        )
        worst = ["max |error|", ""]
        for path in ("SQL", "hll", "GitLab"):
            if path == "GitLab" and not has_gitlab:
                continue
            found = errors[path]
            worst += ["", f"{max(abs(e) for e in found):.2f}" if found else NA]
        table.rows.append(worst)
        for path, name in (("SQL", "pure SQL"), ("hll", "hll extension")):
            found = errors[path]
            self.target(
                f"estimate ({name}) |error| ≤ {ERROR_TARGET_PCT}% on every seed and "
                f"{size_label(h.rows)}",
                f"max {max(abs(e) for e in found):.2f}%" if found else NA,
                all(abs(e) <= ERROR_TARGET_PCT for e in found) if found else None,
            )
        table.notes.append(
            f"error % = (estimate {MINUS} exact) / exact; max |error| is over every row above; the "
            "estimates are deterministic (hash-based), so one run each"
        )
        if self.seeds:
            first = self.seeds[0]
            table.notes.append(
                "author_id = (random()^2 · rows/10)::bigint + 1 + (seed - 1) · rows: skewed, "
                f"about {(first.exact or 0) / first.rows:.1%} distinct at {seed_rows} rows; each "
                "seed has its own value range, so the seeds are independent samples of the error"
            )
            table.notes.append(
                "with 2^14 registers the standard error is 0.81 %, so 1.5 % is 1.85 standard "
                "errors: each independent table exceeds it with a probability of about 6 %"
            )
        return table

    def gitlab_table(self) -> Table | None:
        if any(s.gitlab is None for s in self.sizes):
            return None
        table = Table(
            "4. GitLab-style estimate (512 buckets, top 32 bits of md5, 10,000-id batches, "
            "one connection): 1 run per size",
            [
                "rows",
                "GitLab s",
                "exact s",
                "GitLab/exact",
                "ours SQL s",
                "GitLab/ours",
                "batches",
                "slowest ms",
                "estimate",
                "error %",
            ],
        )
        for size in self.sizes:
            g = size.gitlab
            assert g is not None
            exact, ours = self.exact(size), size.ours["estimate_sql"]
            table.rows.append(
                [
                    size_label(size.rows),
                    secs(g.seconds),
                    secs(exact.median),
                    ratio(g.seconds, exact.median),
                    secs(ours.median),
                    ratio(g.seconds, ours.median),
                    str(g.batches),
                    ms(g.slowest),
                    number(g.estimate),
                    pct(error_pct(g.estimate, exact.value)),
                ]
            )
        table.notes.append(
            "it is slow (md5 of the text of each value and a numeric log per bucket), so it runs "
            "once per size, not once per run; the estimator is GitLab's: E = m²·0.7213/(1+1.079/m)"
            f" / (V + Σ 2^{MINUS}{RHO}), m·ln(m/V) when V > 0 and E < 2.5·m"
        )
        return table

    def sum_table(self) -> Table:
        table = Table(
            "5. sum(engine, events, events.c.weight) vs SELECT sum(weight) FROM events "
            "(parallel workers off)",
            [
                "rows",
                "ours s",
                "plain s",
                "ours/plain",
                "queries",
                "slowest ms",
                "timeouts",
                "ours",
                "plain",
                "equal",
            ],
        )
        for size in self.sizes:
            ours, plain = size.ours["sum"], size.plain["sum"]
            equal = ours.value is not None and ours.value == plain.value
            table.rows.append(
                [
                    size_label(size.rows),
                    spread(ours),
                    spread(plain),
                    ratio(ours.median, plain.median),
                    batch_counts(ours),
                    ms(slowest_seconds(ours)),
                    str(timeouts(ours)),
                    number(ours.value),
                    number(plain.value),
                    OK if equal else FAIL,
                ]
            )
        self.target(
            "sum equals sum(weight) at every size",
            ", ".join(
                OK if s.ours["sum"].value == s.plain["sum"].value else FAIL for s in self.sizes
            ),
            all(
                s.ours["sum"].value is not None and s.ours["sum"].value == s.plain["sum"].value
                for s in self.sizes
            ),
        )
        return table

    def scaling_table(self) -> Table:
        headers = ["operation"]
        for size in self.sizes:
            label = size_label(size.rows)
            headers += [f"{label} s", "s/M rows"]
        if len(self.sizes) > 1:
            headers.append(
                f"s/M {size_label(self.sizes[-1].rows)} ÷ s/M {size_label(self.sizes[0].rows)}"
            )
        table = Table("6. Scaling: median time and time per million rows", headers)
        lines: list[tuple[str, Callable[[SizeResult], float | None]]] = [
            ("count (ours)", lambda s: s.ours["count"].median),
            ("count(*) (plain)", lambda s: s.plain["count"].median),
            ("distinct_count (ours)", lambda s: s.ours["distinct"].median),
            ("count(DISTINCT) (plain)", lambda s: s.plain["distinct"].median),
            ("estimate, pure SQL", lambda s: s.ours["estimate_sql"].median),
            (
                "estimate, hll extension",
                lambda s: s.ours["estimate_hll"].median if "estimate_hll" in s.ours else None,
            ),
            ("GitLab-style (1 run)", lambda s: s.gitlab.seconds if s.gitlab else None),
            ("sum (ours)", lambda s: s.ours["sum"].median),
            ("sum(weight) (plain)", lambda s: s.plain["sum"].median),
        ]
        for name, get in lines:
            row = [name]
            per_million: list[float] = []
            for size in self.sizes:
                seconds = get(size)
                if seconds is None:
                    row += [NA, NA]
                    continue
                per = seconds / (size.rows / 1_000_000)
                per_million.append(per)
                row += [secs(seconds), secs(per)]
            if len(self.sizes) > 1:
                growth = len(per_million) == len(self.sizes) and per_million[0] > 0
                row.append(f"{per_million[-1] / per_million[0]:.2f}" if growth else NA)
            table.rows.append(row)
        if len(self.sizes) > 1:
            table.notes.append(
                "the last column is 1.00 when the time grows linearly with the rows; above 1 it "
                "grows faster (e.g. a sort that spills to disk), below 1 slower"
            )
        return table

    def targets_table(self) -> Table:
        table = Table("Targets", ["target", "measured", "status"])
        for t in self.targets:
            status = NA if t.passed is None else (OK if t.passed else MISS)
            table.rows.append([t.what, t.measured, status])
        return table

    def tables(self) -> list[Table]:
        found = [
            self.count_table(),
            self.distinct_table(),
            self.estimate_table(),
            self.error_table(),
        ]
        gitlab = self.gitlab_table()
        if gitlab is not None:
            found.append(gitlab)
        found += [self.sum_table(), self.scaling_table(), self.targets_table()]
        return found


# -- header ------------------------------------------------------------------------------------


def header_lines(
    engine: sa.Engine,
    hll: str | None,
    sizes: list[RelationSize],
    runs: int,
    url: sa.URL,
) -> list[str]:
    with engine.connect() as conn:
        version = conn.exec_driver_sql("SHOW server_version").scalar()
        settings = {
            name: conn.exec_driver_sql(f"SHOW {name}").scalar()
            for name in ("shared_buffers", "work_mem", "jit", "max_parallel_workers_per_gather")
        }

    def version_of(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "?"

    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"usage_ping SQL counters benchmark, {now}",
        f"PostgreSQL {version} on {url.host}:{url.port}, database {url.database}; "
        f"cores: {os.cpu_count()} ({platform.machine()}); "
        f"hll extension: {hll if hll else 'not available'}",
        "server settings: "
        + ", ".join(f"{name}={value}" for name, value in settings.items())
        + " (plain queries set max_parallel_workers_per_gather=0)",
        f"usage_ping {usage_ping.__version__}, SQLAlchemy {sa.__version__}, "
        f"psycopg {version_of('psycopg')}, Python {platform.python_version()}",
        "library settings: defaults (target_time 0.1 s, timeout 1 s, parallel 2 connections)",
        f"runs: {runs} per figure, shown as median [min{DASH}max] in seconds; "
        "the GitLab-style estimate runs once per size",
        "tables (heap + indexes):",
    ]
    for size in sizes:
        lines.append(
            f"  {size.name}: {size.rows:,} rows, {size.heap_bytes / 2**20:,.0f} MB heap + "
            f"{size.index_bytes / 2**20:,.0f} MB indexes (pkey, author_id)"
        )
    return lines


def explain_section(bench: Bench, size: SizeResult) -> list[str]:
    """EXPLAIN ANALYZE of each operation's slowest batch query (rerun once, warm)."""
    label = size_label(size.rows)
    out = [f"Plans of the slowest batch query per operation at {label} (EXPLAIN ANALYZE, rerun):"]
    for op in bench.operations():
        worst = size.ours[op].slowest
        if worst is None or not worst.slowest_sql:
            continue
        params = worst.slowest_params if isinstance(worst.slowest_params, dict) else None
        out.append("")
        out.append(f"{op}: slowest {ms(worst.slowest)} ms, params {params}")
        out.append(f"  SQL: {' '.join(worst.slowest_sql.split())}")
        try:
            out += [f"  {line}" for line in bench.explain(worst.slowest_sql, params)]
        except sa.exc.DBAPIError as exc:
            out.append(f"  EXPLAIN failed: {str(exc.orig).strip()}")
    sql = PLAIN_SQL["distinct"].format(table=size.table)
    out.append("")
    out.append(f"plain: {sql} (parallel workers off)")
    out += [f"  {line}" for line in bench.explain_plain(sql)]
    return out


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark usage_ping's batch SQL counters against plain SQL on PostgreSQL.",
    )
    parser.add_argument(
        "--rows",
        type=parse_rows_list,
        default=list(DEFAULT_ROWS),
        help="table sizes, e.g. 1M,5M,20M (the default; the largest is the headline)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (default 3)")
    parser.add_argument(
        "--seeds", type=int, default=10, help="seeded tables for the estimate error (default 10)"
    )
    parser.add_argument(
        "--seed-rows",
        type=parse_rows,
        default=1_000_000,
        help="rows of each seeded table (default 1M)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {size_label(QUICK_ROWS)} rows, 1 run, {QUICK_SEEDS} seeded tables",
    )
    parser.add_argument("--url", default=DEFAULT_URL, help=f"database URL (default {DEFAULT_URL})")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="markdown copy of the tables (default .bench/sql_counters.md, "
        "or .bench/sql_counters-quick.md with --quick)",
    )
    parser.add_argument(
        "--no-gitlab", action="store_true", help="skip the (slow) GitLab-style estimate"
    )
    parser.add_argument(
        "--no-explain", action="store_true", help="skip the plans of the slowest batch queries"
    )
    parser.add_argument(
        "--regenerate", action="store_true", help="drop and regenerate the tables even if current"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rows = [QUICK_ROWS]
        args.runs = 1
        args.seeds = QUICK_SEEDS
        args.seed_rows = QUICK_ROWS
    if args.output is None:
        args.output = QUICK_OUTPUT if args.quick else DEFAULT_OUTPUT
    if args.runs < 1 or args.seeds < 0:
        parser.error("--runs must be at least 1 and --seeds at least 0")
    if not args.rows:
        parser.error("--rows needs at least one size")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    url = sa.make_url(args.url)
    rows_list: list[int] = args.rows
    library_log = LibraryLog()
    usage_logger = logging.getLogger("usage_ping")
    usage_logger.addHandler(library_log)
    usage_logger.setLevel(logging.INFO)

    ensure_database(url)
    engine = sa.create_engine(url)
    # Plain queries and the GitLab-style loop get their own engine, out of the recorder's sight.
    plain = sa.create_engine(url, isolation_level="AUTOCOMMIT", pool_size=1)
    setup = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        hll = ensure_extension(setup, "hll")
        has_prewarm = ensure_extension(setup, "pg_prewarm") is not None
        main_tables = {rows: ensure_table(setup, rows, 1, args.regenerate) for rows in rows_list}
        seed_tables = {
            seed: ensure_table(setup, args.seed_rows, seed, args.regenerate)
            for seed in range(1, args.seeds + 1)
        }
        with ActivityMonitor(url) as monitor:
            bench = Bench(
                engine, plain, QueryRecorder(engine), hll, has_prewarm, not args.no_gitlab, monitor
            )
            sizes = [bench.measure_size(rows, main_tables[rows], args.runs) for rows in rows_list]
            seeds = [
                bench.measure_seed(args.seed_rows, seed, name) for seed, name in seed_tables.items()
            ]
            monitor.phase = "plans"
            report = Report(sizes, seeds, hll)
            tables = report.tables()
            plans = [] if args.no_explain else explain_section(bench, sizes[-1])

        relations = [relation_size(setup, main_tables[rows], rows) for rows in rows_list]
        relations += [
            relation_size(setup, name, args.seed_rows)
            for name in seed_tables.values()
            if name not in main_tables.values()
        ]
        header = header_lines(setup, hll, relations, args.runs, url)
        header.insert(1, monitor.summary())
    finally:
        engine.dispose()
        plain.dispose()
        setup.dispose()

    failures = [f"usage_ping logged: {w[:300]}" for w in library_log.warnings]
    text = "\n\n".join(["\n".join(header), *(t.text() for t in tables)])
    if plans:
        text += "\n\n" + "\n".join(plans)
    if failures:
        text += "\n\n" + "\n".join(failures)
    print(text)

    markdown = [
        "# usage_ping SQL counters benchmark",
        "",
        *(f"  - {line.strip()}" if line.startswith("  ") else f"- {line}" for line in header[1:]),
        "",
        f"_{header[0]}_",
    ]
    markdown += ["", *("\n\n".join(t.markdown() for t in tables).splitlines())]
    if plans:
        markdown += ["", "### Plans", "", "```", *plans, "```"]
    if failures:
        markdown += ["", "### Failures", "", *(f"- {f}" for f in failures)]
    output: Path = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(markdown) + "\n", encoding="utf-8")
    log(f"wrote {output}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
