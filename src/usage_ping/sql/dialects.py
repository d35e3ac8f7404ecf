"""What differs between PostgreSQL, MariaDB/MySQL and SQLite: time limits and hashing in SQL.

Each batch query runs under a per-query time limit: PostgreSQL's ``statement_timeout``, MariaDB's
``max_statement_time`` (MySQL's ``max_execution_time``), and an SQLite progress handler that
interrupts a statement past its deadline. The limit is set on the counter's own pooled connection
and put back as it was before the connection returns to the pool.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from usage_ping.sql.relation import is_integer
from usage_ping.sql.sketch import hash64

__all__ = ["Dialect", "Limiter", "dialect_for"]

_SQLITE_HASH = "usage_ping_hash64"
_TWO63 = 1 << 63


class Limiter(Protocol):
    """A per-query time limit on one connection."""

    def arm(self) -> None:
        """Start the clock for the next statement."""

    def is_timeout(self, exc: sa.exc.DBAPIError) -> bool:
        """Whether ``exc`` is this limit cancelling a statement."""

    def close(self) -> None:
        """Put the connection's own setting back."""


class Dialect:
    """Base: SQL features shared by the supported databases."""

    name = "generic"
    default_parallel = 1
    hash_family = "generic"

    def limiter(self, conn: Connection, timeout: float) -> Limiter:
        raise NotImplementedError

    def prepare(self, conn: Connection) -> None:
        """Make a connection ready for counting (e.g. register SQL functions)."""

    def hash64(self, column: ColumnElement[Any]) -> ColumnElement[int]:
        """A well-mixed 64-bit integer hash of ``column`` computed by the database."""
        raise NotImplementedError


class _SessionSettingLimiter:
    """A limit held in a session variable, saved and restored around the counter's work."""

    def __init__(self, conn: Connection, read: str, write: str, value: Any) -> None:
        self._conn = conn
        self._write = write
        self._saved = conn.execute(sa.text(read)).scalar()
        conn.execute(sa.text(write), {"v": value})

    def arm(self) -> None:
        return None

    def close(self) -> None:
        if not self._conn.invalidated and not self._conn.closed:
            self._conn.execute(sa.text(self._write), {"v": self._saved})


class _PostgresLimiter:
    """``statement_timeout`` for the limit; no parallel workers, no JIT, a plan per batch.

    Parallel workers and JIT compilation only pay off for long queries: for a 50 ms batch their
    start-up is waste, and workers would take the host's cores from its own queries.

    ``plan_cache_mode = force_custom_plan``: a counter runs one statement many times with new
    range values, and psycopg prepares it server-side after 5 runs; PostgreSQL may then switch to
    a generic plan that cannot see how narrow a batch's range is (measured: a 28-day distinct
    count read 30 % of the table per batch through the time column's index, 4 ms planned for its
    values against 229 ms generic). Planning each batch costs well under a millisecond.

    The settings are read and set in one round trip each, and put back the same way.
    """

    _READ = (
        "SELECT current_setting('statement_timeout'), "
        "current_setting('max_parallel_workers_per_gather'), current_setting('jit'), "
        "current_setting('plan_cache_mode')"
    )
    _WRITE = (
        "SELECT set_config('statement_timeout', :timeout, false), "
        "set_config('max_parallel_workers_per_gather', :workers, false), "
        "set_config('jit', :jit, false), "
        "set_config('plan_cache_mode', :plans, false)"
    )

    def __init__(self, conn: Connection, timeout: float) -> None:
        self._conn = conn
        self._saved = conn.execute(sa.text(self._READ)).one()
        ours = {
            "timeout": f"{max(1, round(timeout * 1000))}ms",
            "workers": "0",
            "jit": "off",
            "plans": "force_custom_plan",
        }
        conn.execute(sa.text(self._WRITE), ours)

    def arm(self) -> None:
        return None

    def close(self) -> None:
        if not self._conn.invalidated and not self._conn.closed:
            timeout, workers, jit, plans = self._saved
            self._conn.execute(
                sa.text(self._WRITE),
                {"timeout": timeout, "workers": workers, "jit": jit, "plans": plans},
            )

    def is_timeout(self, exc: sa.exc.DBAPIError) -> bool:
        return getattr(exc.orig, "sqlstate", None) == "57014"  # query_canceled


class PostgreSQL(Dialect):
    name = "postgresql"
    default_parallel = 2
    hash_family = "postgresql:hashextended"

    def limiter(self, conn: Connection, timeout: float) -> Limiter:
        return _PostgresLimiter(conn, timeout)

    def hash64(self, column: ColumnElement[Any]) -> ColumnElement[int]:
        # PostgreSQL's own 64-bit hash functions (used by hash partitioning): fast C, well mixed.
        if is_integer(column):
            return sa.func.hashint8extended(sa.cast(column, sa.BigInteger), 0, type_=sa.BigInteger)
        return sa.func.hashtextextended(sa.cast(column, sa.Text), 0, type_=sa.BigInteger)


class _MariaDBLimiter(_SessionSettingLimiter):
    def __init__(self, conn: Connection, timeout: float) -> None:
        super().__init__(
            conn,
            "SELECT @@session.max_statement_time",
            "SET SESSION max_statement_time = :v",
            timeout,
        )

    def is_timeout(self, exc: sa.exc.DBAPIError) -> bool:
        args: tuple[Any, ...] = getattr(exc.orig, "args", ())
        return bool(args) and args[0] == 1969  # ER_STATEMENT_TIMEOUT


class _MySQLLimiter(_SessionSettingLimiter):
    def __init__(self, conn: Connection, timeout: float) -> None:
        super().__init__(
            conn,
            "SELECT @@session.max_execution_time",
            "SET SESSION max_execution_time = :v",
            max(1, round(timeout * 1000)),
        )

    def is_timeout(self, exc: sa.exc.DBAPIError) -> bool:
        args: tuple[Any, ...] = getattr(exc.orig, "args", ())
        return bool(args) and args[0] in (3024, 1317)  # query timeout, query interrupted


class MariaDB(Dialect):
    name = "mariadb"
    default_parallel = 2
    hash_family = "mysql:md5"

    def limiter(self, conn: Connection, timeout: float) -> Limiter:
        if conn.dialect.name == "mysql" and not getattr(conn.dialect, "is_mariadb", False):
            return _MySQLLimiter(conn, timeout)
        return _MariaDBLimiter(conn, timeout)

    def hash64(self, column: ColumnElement[Any]) -> ColumnElement[int]:
        # The first 64 bits of MD5, as an unsigned BIGINT: the fastest well-mixed 64-bit hash
        # that MariaDB and MySQL both have built in.
        hexdigest = sa.func.left(sa.func.md5(column), 16)
        return sa.cast(sa.func.conv(hexdigest, 16, 10), mysql.BIGINT(unsigned=True))


class _SQLiteLimiter:
    def __init__(self, conn: Connection, timeout: float) -> None:
        raw: Any = conn.connection.driver_connection
        self._raw = raw
        self._timeout = timeout
        self._deadline = time.monotonic() + timeout
        self.fired = False
        # Every 100 VM instructions: fine enough to stop slow per-row work in small tables,
        # cheap enough (one Python call per ~100 instructions) not to slow large scans.
        self._raw.set_progress_handler(self._check, 100)

    def _check(self) -> int:
        if time.monotonic() > self._deadline:
            self.fired = True
            return 1
        return 0

    def arm(self) -> None:
        self.fired = False
        self._deadline = time.monotonic() + self._timeout

    def is_timeout(self, exc: sa.exc.DBAPIError) -> bool:
        return self.fired and "interrupted" in str(exc.orig)

    def close(self) -> None:
        self._raw.set_progress_handler(None, 0)


def _sqlite_hash(value: Any) -> int | None:
    if value is None:
        return None
    h = hash64(value)
    return h - (1 << 64) if h >= _TWO63 else h  # SQLite integers are signed


class SQLite(Dialect):
    name = "sqlite"
    default_parallel = 1
    hash_family = "usage_ping:splitmix64"

    def limiter(self, conn: Connection, timeout: float) -> Limiter:
        return _SQLiteLimiter(conn, timeout)

    def prepare(self, conn: Connection) -> None:
        raw: Any = conn.connection.driver_connection
        raw.create_function(_SQLITE_HASH, 1, _sqlite_hash, deterministic=True)

    def hash64(self, column: ColumnElement[Any]) -> ColumnElement[int]:
        return sa.func.usage_ping_hash64(column, type_=sa.BigInteger)


_DIALECTS: dict[str, type[Dialect]] = {
    "postgresql": PostgreSQL,
    "mysql": MariaDB,
    "mariadb": MariaDB,
    "sqlite": SQLite,
}


def dialect_for(engine: sa.Engine) -> Dialect:
    """The dialect support for ``engine``; raises ``ValueError`` for an unsupported database."""
    try:
        return _DIALECTS[engine.dialect.name]()
    except KeyError:
        raise ValueError(
            f"usage_ping counters support PostgreSQL, MariaDB/MySQL and SQLite, "
            f"not {engine.dialect.name}"
        ) from None
