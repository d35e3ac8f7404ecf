"""``seed``: fill the demo platform's tables with realistic, skewed data, fast.

Scale N means about N x 10,000 rows in all (see :mod:`usage_ping.demo.generate` for the shares,
the 90-day timeline and the skew): ``seed(engine, 1)`` writes about ten thousand rows in a second
or two, ``seed(engine, 1000)`` ten million (about a minute and a half on PostgreSQL). Seeding
replaces the demo's tables (it drops them first, so the feature flags go back to their defaults)
and leaves every other table alone, the library's included. Every seeded user's password is
:data:`DEMO_PASSWORD`; ``root`` is the administrator.

Example:
    >>> report = seed(sa.create_engine("sqlite:///demo.sqlite3"), 1)  # doctest: +SKIP
    >>> print(report.describe())
    10,008 rows in 23 tables in 0.4 s (25,000 rows/s; rows written in 0.3 s) on sqlite
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import sqlalchemy as sa

from usage_ping.demo import models
from usage_ping.demo.columns import Chunk, Column
from usage_ping.demo.config import FEATURE_FLAGS
from usage_ping.demo.generate import Generator, TableJob, table_rows
from usage_ping.demo.writers import writer_for

__all__ = ["DEMO_PASSWORD", "SeedProgress", "SeedReport", "planned_rows", "seed"]

DEMO_PASSWORD = "demo-password"
"""The password of every seeded user (``root`` is the administrator)."""

Stage = Literal["rows", "indexes"]
SeedProgress = Callable[[Stage, str, int], None]
"""Called as ``progress("rows", table, rows_just_written)`` while rows are written, then
``progress("indexes", table, 1)`` as each table's indexes are built."""


@dataclass(frozen=True)
class SeedReport:
    """What :func:`seed` wrote, and how fast."""

    dialect: str
    scale: int
    rows: dict[str, int]
    """Rows written per table."""
    load_seconds: float
    """Seconds until the last row was written."""
    seconds: float
    """Seconds in all, indexes and constraints included."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent writing each table's rows."""

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def rows_per_second(self) -> float:
        """Rows per second over the whole seed (indexes included)."""
        return self.total_rows / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        """One line: rows, tables, seconds and rows per second."""
        return (
            f"{self.total_rows:,} rows in {len(self.rows)} tables in {self.seconds:.1f} s "
            f"({self.rows_per_second:,.0f} rows/s; rows written in {self.load_seconds:.1f} s) "
            f"on {self.dialect}"
        )


def planned_rows(scale: int) -> dict[str, int]:
    """Rows :func:`seed` writes per table at ``scale``, in the order it writes them."""
    rows = table_rows(scale)
    planned = {"users": rows["users"] + 2}  # the support and alert bots
    planned.update((name, count) for name, count in rows.items() if name != "users")
    fixed = _fixed(datetime.now(UTC), rows["users"], 0)
    planned.update((name, _rows(chunk)) for name, chunk in fixed.items())
    return planned


def _column(kind: Literal["int", "bool", "stamp", "date", "text"], values: list[object]) -> Column:
    dtype = {"int": np.int64, "stamp": np.int64, "date": np.int64, "bool": np.bool_}.get(kind)
    if dtype is None:
        array = np.empty(len(values), dtype=object)
        array[:] = values
        return Column(kind, array)
    return Column(kind, np.array(values, dtype=dtype))


def _fixed(now: datetime, humans: int, seed_value: int) -> dict[str, Chunk]:
    """The one-row settings, the licenses and the feature flags."""
    start = int(now.timestamp()) - 90 * 86_400
    start_day = start // 86_400
    seats = max(25, -(-humans // 25) * 25)  # the user count rounded up to 25
    settings: Chunk = {
        "id": _column("int", [1]),
        "signup_enabled": _column("bool", [True]),
        "gravatar_enabled": _column("bool", [True]),
        "container_registry_enabled": _column("bool", [True]),
        "service_desk_enabled": _column("bool", [True]),
        "default_project_visibility": _column("int", [0]),
        "password_authentication_enabled": _column("bool", [True]),
        "session_expire_minutes": _column("int", [10_080]),
        "updated_at": _column("stamp", [start + 86_400]),
        "created_at": _column("stamp", [start]),
    }
    licenses: Chunk = {
        "id": _column("int", [1, 2]),
        "plan": _column("text", ["premium", "ultimate"]),
        "licensee_name": _column("text", ["Dana Demo", "Dana Demo"]),
        "licensee_email": _column("text", ["dana@demo.example.com"] * 2),
        "licensee_company": _column("text", ["Demo Corp"] * 2),
        "user_count": _column("int", [25, seats]),
        "starts_at": _column("date", [start_day - 30, start_day]),
        "expires_at": _column("date", [start_day, start_day + 365]),
        "trial": _column("bool", [True, False]),
        "license_key": _column("text", [f"demo-trial-{seed_value}", f"demo-license-{seed_value}"]),
        "created_at": _column("stamp", [start - 30 * 86_400, start]),
    }
    flags: Chunk = {
        "name": _column("text", list(FEATURE_FLAGS)),
        "enabled": _column("bool", list(FEATURE_FLAGS.values())),
    }
    return {
        models.application_settings.name: settings,
        models.licenses.name: licenses,
        models.feature_flags.name: flags,
    }


def _demo_password_hash() -> str:
    from usage_ping.collector.auth import hash_password

    return hash_password(DEMO_PASSWORD)


def seed(
    engine: sa.Engine,
    scale: int,
    *,
    seed: int = 0,
    now: datetime | None = None,
    progress: SeedProgress | None = None,
    password_hash: str | None = None,
) -> SeedReport:
    """Replace the demo's tables with about ``scale * 10,000`` generated rows.

    Args:
        engine: the host database (PostgreSQL with psycopg, MariaDB/MySQL or SQLite).
        scale: 1 for about ten thousand rows, 1000 for about ten million.
        seed: the same seed, scale and ``now`` give the same rows on every database.
        now: rows are dated in the 90 days before it (default: the current time).
        progress: told about rows written and indexes built (see :data:`SeedProgress`).
        password_hash: every user's ``password_hash`` (default: a scrypt hash of
            :data:`DEMO_PASSWORD`, as :func:`usage_ping.collector.auth.verify_password` checks).

    Returns:
        What was written and how fast.

    Raises:
        ValueError: a scale below 1, or a database the demo does not seed.
    """
    started = time.perf_counter()
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    generator = Generator(
        scale, seed=seed, now=moment, password_hash=password_hash or _demo_password_hash()
    )
    writer = writer_for(engine)
    report = progress or (lambda stage, table, amount: None)
    models.metadata.drop_all(engine)
    tables = models.metadata.tables
    jobs = generator.jobs()
    for name, chunk in _fixed(moment, generator.humans, seed).items():
        jobs.append(TableJob(name, _rows(chunk), _once(chunk)))
    rows: dict[str, int] = {}
    timings: dict[str, float] = {}
    with writer:
        for job in jobs:
            began = time.perf_counter()
            rows[job.name] = writer.write(
                tables[job.name], job.chunks(), lambda table, n: report("rows", table, n)
            )
            timings[job.name] = time.perf_counter() - began
        loaded = time.perf_counter() - started
    writer.finish(lambda table: report("indexes", table, 1))
    return SeedReport(
        dialect=engine.dialect.name,
        scale=scale,
        rows=rows,
        load_seconds=loaded,
        seconds=time.perf_counter() - started,
        timings=timings,
    )


def _once(chunk: Chunk) -> Callable[[], Iterator[Chunk]]:
    def chunks() -> Iterator[Chunk]:
        yield chunk

    return chunks


def _rows(chunk: Chunk) -> int:
    return len(next(iter(chunk.values())).values)
