"""One sender per instance: a non-blocking lock held in (or next to) the host's database.

An instance may run many processes that could each send the weekly ping: several cron entries,
a web app with an in-process scheduler in every worker, a Kubernetes CronJob that overlaps with
its previous run. :func:`instance_lock` lets exactly one of them go ahead; the others see
``False`` and do nothing. It never waits: a process that loses simply skips this run.

The mechanism follows the host's database, so every process that shares the database shares the
lock, with nothing else to deploy:

- **PostgreSQL**: a session-level advisory lock, ``pg_try_advisory_lock(key)``, where ``key`` is a
  stable signed 64-bit hash of the lock name (the first eight bytes of its SHA-256). It is taken
  on a dedicated connection (in autocommit, so no transaction stays open while the payload is
  built) that is kept checked out of the pool for the whole block, then released with
  ``pg_advisory_unlock``. Advisory locks belong to the database, so two databases on one server do
  not block each other. Needs a real session: behind PgBouncer in transaction mode the lock does
  not hold.
- **MariaDB / MySQL**: ``GET_LOCK(name, 0)`` / ``RELEASE_LOCK(name)`` on a dedicated connection,
  likewise. These locks are server-wide, so the name is qualified by the current database
  (``<database>.<name>``, hashed when longer than MySQL's 64 characters) to keep two instances on
  one server apart.
- **SQLite**: an exclusive non-blocking ``fcntl.flock`` on a lock file next to the database file,
  ``<db file>.usage_ping-<name>.lock``; for an in-memory database, ``usage_ping-<name>.lock`` in
  ``lock_dir`` (default: :func:`tempfile.gettempdir`). The file is left in place after release:
  deleting it would let a later process lock a new file while another still holds the old one.
  ``flock`` works through the open file, so two opens in one process exclude each other too.
  POSIX only.

Why a dead holder never blocks the instance: each mechanism belongs to something the operating
system or the database server cleans up. A process that is killed (even with ``kill -9``) has its
sockets and file descriptors closed by the kernel; the database server sees the connection drop
and releases the session's advisory lock or ``GET_LOCK`` lock, and the kernel drops the
``flock``. There is no lease to expire and no row to clean up. (A whole machine that vanishes,
by power loss or a cut network, is noticed when the server's TCP keepalive or ``wait_timeout``
ends its session; a child forked while the SQLite lock is held shares the open file, and with it
the lock, until it exits.)

The flip side: if the lock's connection drops while the block runs (the server restarts, an
``idle_session_timeout`` or ``wait_timeout`` shorter than the block ends it), the lock is gone
and another process may start. Callers that must not act twice should also record what they did
(the outbox does, and the central service deduplicates on uuid and ``recorded_at``).

Each call takes its own connection or file, so a second call in the same process, even nested in
the first, gets ``False``. The lock only excludes; "at most once a day" is the caller's to check
(GitLab's 24-hour lease did both).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa

from usage_ping.errors import UsagePingError

__all__ = [
    "DEFAULT_LOCK_NAME",
    "LockError",
    "advisory_key",
    "instance_lock",
    "lock_file_path",
]

logger = logging.getLogger("usage_ping.delivery")

DEFAULT_LOCK_NAME = "usage_ping_submit"
"""The lock that guards building and sending the weekly ping."""

_T = TypeVar("_T")

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_MYSQL_MAX_NAME = 64
_LABELS = {
    "postgresql": "PostgreSQL",
    "mysql": "MariaDB/MySQL",
    "mariadb": "MariaDB/MySQL",
    "sqlite": "SQLite",
}


class LockError(UsagePingError):
    """The lock could not be tried at all: the database is unreachable, or the dialect unsupported.

    Raised instead of yielding, so a caller never mistakes "cannot tell" for "the lock is mine".

    Attributes:
        dialect: the engine's dialect name (``postgresql``, ``mysql``, ``mariadb``, ``sqlite``…).
    """

    def __init__(self, dialect: str, message: str) -> None:
        super().__init__(message)
        self.dialect = dialect


@contextmanager
def instance_lock(
    engine: sa.Engine, name: str = DEFAULT_LOCK_NAME, *, lock_dir: Path | None = None
) -> Iterator[bool]:
    """Try, without waiting, to hold the lock ``name`` of the instance that ``engine`` belongs to.

    Yields ``True`` when this call holds the lock for the whole block (it is released when the
    block exits, also by an exception), ``False`` when another holder has it: the caller then
    does nothing. See the module docstring for the mechanism per database.

    Args:
        engine: the host's database; every process that uses the same database shares the lock.
        name: the lock's name: 1-64 characters of letters, digits, ``_``, ``.`` and ``-``.
        lock_dir: where SQLite in-memory databases keep the lock file (default: the system's
            temporary directory); unused otherwise.

    Raises:
        LockError: the database cannot be reached or the lock cannot be tried (the message names
            the dialect); nothing is yielded then.
        ValueError: a bad ``name``.

    Example:
        >>> with instance_lock(engine) as mine:  # doctest: +SKIP
        ...     if mine:
        ...         send_weekly_ping()
    """
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"lock name must be 1-64 characters of letters, digits, '_', '.' and '-', got {name!r}"
        )
    dialect = engine.dialect.name
    if dialect == "postgresql":
        held = _postgresql_lock(engine, name)
    elif dialect in ("mysql", "mariadb"):
        held = _mysql_lock(engine, name)
    elif dialect == "sqlite":
        held = _sqlite_lock(engine, name, lock_dir)
    else:
        raise LockError(
            dialect,
            f"no instance lock for the {dialect} dialect "
            "(supported: PostgreSQL, MariaDB/MySQL, SQLite)",
        )
    with held as mine:
        yield mine


def lock_file_path(
    engine: sa.Engine, name: str = DEFAULT_LOCK_NAME, lock_dir: Path | None = None
) -> Path:
    """The file that :func:`instance_lock` locks for an SQLite ``engine``."""
    url = engine.url
    database = url.database or ""
    if database.startswith("file:") and _last(url.query.get("uri")) in ("1", "true"):
        # A URI filename (SQLAlchemy keeps its query, mode=memory included, in url.query).
        database = database[len("file:") :]
        if _last(url.query.get("mode")) == "memory":
            database = ""
    if database in ("", ":memory:"):
        return Path(lock_dir or tempfile.gettempdir()) / f"usage_ping-{name}.lock"
    return Path(os.path.abspath(database) + f".usage_ping-{name}.lock")


def _last(value: str | tuple[str, ...] | None) -> str | None:
    if isinstance(value, tuple):
        return value[-1].lower() if value else None
    return value.lower() if value is not None else None


def _unreachable(engine: sa.Engine, name: str, exc: BaseException) -> LockError:
    dialect = engine.dialect.name
    where = engine.url.render_as_string(hide_password=True)
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return LockError(
        dialect,
        f"cannot try the usage ping lock {name!r} on {_LABELS.get(dialect, dialect)} ({where}): "
        f"{type(exc).__name__}: {first_line}",
    )


def _driver_errors(engine: sa.Engine) -> tuple[type[Exception], ...]:
    """SQLAlchemy's errors, and the driver's: some driver calls (setting autocommit) are not
    wrapped by SQLAlchemy."""
    dbapi_error = getattr(engine.dialect.loaded_dbapi, "Error", None)
    if isinstance(dbapi_error, type) and issubclass(dbapi_error, Exception):
        return (sa.exc.SQLAlchemyError, dbapi_error)
    return (sa.exc.SQLAlchemyError,)


def _try_on_connection(
    engine: sa.Engine, name: str, attempt_lock: Callable[[sa.Connection], _T]
) -> tuple[sa.Connection, _T]:
    """Run ``attempt_lock`` on a connection of its own, in autocommit, and return both.

    The connection stays checked out: the lock belongs to its session. A pooled connection that
    the server has closed since (restart, ``wait_timeout``) fails on first use, sometimes with the
    driver's own error rather than SQLAlchemy's; it is thrown away and one more is tried.
    """
    driver_errors = _driver_errors(engine)
    for attempt in (1, 2):
        try:
            conn = engine.connect()
        except driver_errors as exc:
            raise _unreachable(engine, name, exc) from exc
        try:
            # Autocommit: no transaction stays open (idle in transaction) while the block runs.
            conn.execution_options(isolation_level="AUTOCOMMIT")
            return conn, attempt_lock(conn)
        except driver_errors as exc:
            conn.invalidate()
            conn.close()
            if attempt == 2:
                raise _unreachable(engine, name, exc) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _release(conn: sa.Connection, statement: sa.TextClause, params: dict[str, object]) -> None:
    """Release on the lock's connection; if that fails, closing the session releases it."""
    try:
        released = conn.execute(statement, params).scalar()
    except _driver_errors(conn.engine) as exc:
        logger.warning("releasing the usage ping lock failed (%s); closing its connection", exc)
        released = None
    if released != 1:
        # Not released by the statement (the connection broke, or the lock was no longer
        # ours): drop the session rather than return something lock-holding to the pool.
        conn.invalidate()
    conn.close()


def advisory_key(name: str) -> int:
    """The PostgreSQL advisory lock key of ``name``: a stable signed 64-bit integer."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big", signed=True)


@contextmanager
def _postgresql_lock(engine: sa.Engine, name: str) -> Iterator[bool]:
    params: dict[str, object] = {"key": advisory_key(name)}
    statement = sa.text("SELECT pg_try_advisory_lock(CAST(:key AS BIGINT))")
    conn, got = _try_on_connection(
        engine, name, lambda conn: conn.execute(statement, params).scalar()
    )
    if not got:
        conn.close()
        yield False
        return
    try:
        yield True
    finally:
        _release(conn, sa.text("SELECT pg_advisory_unlock(CAST(:key AS BIGINT))"), params)


def _mysql_lock_name(database: object, name: str) -> str:
    """``name`` qualified by the database, within MySQL's 64 characters."""
    qualified = f"{database}.{name}" if database else name
    if len(qualified) <= _MYSQL_MAX_NAME:
        return qualified
    return "usage_ping." + hashlib.sha256(qualified.encode("utf-8")).hexdigest()[:53]


@contextmanager
def _mysql_lock(engine: sa.Engine, name: str) -> Iterator[bool]:
    def attempt_lock(conn: sa.Connection) -> tuple[str, object]:
        # The lock's name needs the connection's database: ask that session, then lock.
        database = conn.execute(sa.text("SELECT DATABASE()")).scalar()
        qualified = _mysql_lock_name(database, name)
        got = conn.execute(sa.text("SELECT GET_LOCK(:name, 0)"), {"name": qualified}).scalar()
        return qualified, got

    conn, (qualified, got) = _try_on_connection(engine, name, attempt_lock)
    params: dict[str, object] = {"name": qualified}
    if got is None:
        # NULL: the server could not try the lock (out of memory, the thread killed).
        conn.invalidate()
        conn.close()
        raise LockError(
            engine.dialect.name,
            f"cannot try the usage ping lock {name!r} on MariaDB/MySQL: GET_LOCK returned NULL",
        )
    if not got:
        conn.close()
        yield False
        return
    try:
        yield True
    finally:
        _release(conn, sa.text("SELECT RELEASE_LOCK(:name)"), params)


@contextmanager
def _sqlite_lock(engine: sa.Engine, name: str, lock_dir: Path | None) -> Iterator[bool]:
    try:
        import fcntl
    except ImportError as exc:  # pragma: no cover - Windows
        raise LockError("sqlite", "the SQLite instance lock needs fcntl.flock (POSIX)") from exc
    path = lock_file_path(engine, name, lock_dir)
    try:
        # Read-only is enough for flock, and lets processes of other users share the file. Open
        # an existing file without O_CREAT: Linux's protected_regular refuses O_CREAT on another
        # user's file in a sticky directory such as /tmp.
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError as exc:
        raise LockError(
            "sqlite",
            f"cannot try the usage ping lock {name!r} on SQLite: cannot open the lock file "
            f"{path} ({type(exc).__name__}: {exc.strerror or exc})",
        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            got = True
        except BlockingIOError:
            got = False
        except OSError as exc:
            raise LockError(
                "sqlite",
                f"cannot try the usage ping lock {name!r} on SQLite: flock on {path} failed "
                f"({type(exc).__name__}: {exc.strerror or exc})",
            ) from exc
        try:
            yield got
        finally:
            if got:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
