"""Writing generated chunks into the host database as fast as each dialect allows.

- **PostgreSQL**: each table is created and filled in one transaction with ``COPY ... FREEZE``
  (text format, rows formatted in Python while psycopg's queued writer sends the previous chunk
  from its own thread); its secondary indexes and ``ANALYZE`` then run on a second connection
  while the next table loads; foreign keys are added, and each ``id`` sequence moved past the
  largest id, at the end.
- **SQLite**: ``executemany`` in one transaction per table, with ``synchronous = OFF`` for the
  load; indexes after the rows.
- **MariaDB/MySQL**: ``executemany`` (multi-row ``INSERT``) with foreign key and unique checks
  off for the load; indexes after the rows.

Tables are created here (without their secondary indexes, which are built after the rows, as
bulk loads should); the caller drops old tables first.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.schema import AddConstraint, CreateIndex, CreateTable

from usage_ping.demo.columns import Chunk, Column

__all__ = ["Progress", "StampFormat", "TableWriter", "writer_for"]

Progress = Callable[[str, int], None]
"""Called with a table's name and the rows just written to it."""


class StampFormat:
    """Seconds since the epoch as the text each database reads, through lookup tables.

    Formatting millions of timestamps with ``datetime`` is slow; an hour prefix
    (``2026-11-21 09:``) from a table of hours plus ``MM:SS`` from a table of 3,600 is not.
    """

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self._first = 0
        self._hours = np.empty(0, dtype=object)
        self._minutes = np.array(
            [f"{m:02d}:{s:02d}{suffix}" for m in range(60) for s in range(60)], dtype=object
        )

    def _cover(self, low: int, high: int) -> None:
        first, last = low // 3600, high // 3600
        have = self._first + len(self._hours) - 1
        if len(self._hours) and first >= self._first and last <= have:
            return
        if len(self._hours):
            first, last = min(first, self._first), max(last, have)
        hours = [
            datetime.fromtimestamp(h * 3600, UTC).strftime("%Y-%m-%d %H:")
            for h in range(first, last + 1)
        ]
        self._first, self._hours = first, np.array(hours, dtype=object)

    def format(
        self, seconds: np.ndarray[Any, np.dtype[np.int64]], null: np.ndarray[Any, Any] | None = None
    ) -> list[str]:
        """The timestamps as text; where ``null`` is True the text is meaningless (replaced)."""
        if null is not None:
            if null.all():
                return [""] * len(seconds)
            seconds = np.where(null, seconds[~null][0], seconds)
        if not len(seconds):
            return []
        self._cover(int(seconds.min()), int(seconds.max()))
        text = self._hours[seconds // 3600 - self._first] + self._minutes[seconds % 3600]
        formatted: list[str] = text.tolist()
        return formatted


def _dates(days: np.ndarray[Any, np.dtype[np.int64]]) -> list[str]:
    formatted: list[str] = np.datetime_as_string(days.astype("datetime64[D]")).tolist()
    return formatted


def _rows(chunk: Chunk) -> int:
    return len(next(iter(chunk.values())).values)


def _with_nulls(values: list[Any], column: Column, null: Any) -> list[Any]:
    if column.null is not None:
        for index in np.flatnonzero(column.null).tolist():
            values[index] = null
    return values


def copy_text(chunk: Chunk, stamps: StampFormat) -> str:
    """The chunk in PostgreSQL's COPY text format (the generator writes no tab or backslash)."""
    columns: list[list[str]] = []
    for column in chunk.values():
        values: list[Any]
        if column.kind == "int":
            values = list(map(str, column.values.tolist()))
        elif column.kind == "bool":
            values = np.where(column.values, "t", "f").tolist()
        elif column.kind == "stamp":
            values = stamps.format(column.values, column.null)
        elif column.kind == "date":
            values = _dates(column.values)
        else:
            values = column.values.tolist()
        columns.append(_with_nulls(values, column, "\\N"))
    return "\n".join(map("\t".join, zip(*columns, strict=True))) + "\n"


def python_rows(chunk: Chunk, stamps: StampFormat) -> list[tuple[Any, ...]]:
    """The chunk as DB-API parameter tuples (timestamps and dates as text, NULL as None)."""
    columns: list[list[Any]] = []
    for column in chunk.values():
        values: list[Any]
        if column.kind == "stamp":
            values = stamps.format(column.values, column.null)
        elif column.kind == "date":
            values = _dates(column.values)
        else:
            values = column.values.tolist()
        columns.append(_with_nulls(values, column, None))
    return list(zip(*columns, strict=True))


class TableWriter:
    """Creates tables and writes chunks into them; ``finish`` adds what comes after the rows.

    Use it as a context manager around the writes, then call :meth:`finish`.
    """

    suffix = ""
    """What follows ``HH:MM:SS`` in timestamps written as text."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.tables: list[sa.Table] = []
        self.stamps = StampFormat(self.suffix)
        self._conn: sa.Connection | None = None

    def __enter__(self) -> TableWriter:
        self._conn = self.engine.connect()
        self._prepare(self._conn)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._conn is not None
        self._conn.close()
        self._conn = None

    @property
    def conn(self) -> sa.Connection:
        if self._conn is None:
            raise RuntimeError("use the writer as a context manager")
        return self._conn

    def _prepare(self, conn: sa.Connection) -> None:
        """Session settings for the load."""

    def write(self, table: sa.Table, chunks: Iterable[Chunk], progress: Progress) -> int:
        """Create ``table`` and write every chunk into it; returns the rows written."""
        raise NotImplementedError

    def finish(self, on_table: Callable[[str], None] | None = None) -> None:
        """Build the indexes of the written tables (calling ``on_table`` as each is done)."""
        with self.engine.begin() as conn:
            for table in self.tables:
                for index in sorted(table.indexes, key=lambda i: str(i.name)):
                    conn.execute(CreateIndex(index))
                if on_table is not None:
                    on_table(table.name)


class _ExecuteManyWriter(TableWriter):
    """SQLite and MariaDB: ``executemany`` per chunk, one transaction per table."""

    placeholder = "?"

    def write(self, table: sa.Table, chunks: Iterable[Chunk], progress: Progress) -> int:
        conn = self.conn
        conn.execute(CreateTable(table))
        stamps = self.stamps
        quote = conn.dialect.identifier_preparer.quote
        cursor = conn.connection.cursor()
        written = 0
        try:
            for chunk in chunks:
                names = ", ".join(quote(name) for name in chunk)
                marks = ", ".join([self.placeholder] * len(chunk))
                rows = python_rows(chunk, stamps)
                cursor.executemany(
                    f"INSERT INTO {quote(table.name)} ({names}) VALUES ({marks})", rows
                )
                written += len(rows)
                progress(table.name, len(rows))
        finally:
            cursor.close()
        conn.commit()
        self.tables.append(table)
        return written


class SQLiteWriter(_ExecuteManyWriter):
    placeholder = "?"
    suffix = ".000000"  # SQLAlchemy's storage format: text that compares in time order

    def _prepare(self, conn: sa.Connection) -> None:
        conn.exec_driver_sql("PRAGMA synchronous = OFF")


class MySQLWriter(_ExecuteManyWriter):
    placeholder = "%s"

    def _prepare(self, conn: sa.Connection) -> None:
        conn.exec_driver_sql("SET SESSION foreign_key_checks = 0, unique_checks = 0")

    def finish(self, on_table: Callable[[str], None] | None = None) -> None:
        # One ALTER per table: each DDL statement costs InnoDB tens of milliseconds.
        with self.engine.begin() as conn:
            quote = conn.dialect.identifier_preparer.quote
            for table in self.tables:
                indexes = sorted(table.indexes, key=lambda i: str(i.name))
                if indexes:
                    adds = ", ".join(
                        f"ADD INDEX {quote(str(i.name))} "
                        f"({', '.join(quote(c.name) for c in i.columns)})"
                        for i in indexes
                    )
                    conn.exec_driver_sql(f"ALTER TABLE {quote(table.name)} {adds}")
                if on_table is not None:
                    on_table(table.name)


class PostgreSQLWriter(TableWriter):
    """``COPY FREEZE`` per table; indexes built on a second connection meanwhile."""

    suffix = "+00"

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self._indexer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="demo-seed-index")
        self._pending: list[tuple[str, Future[None]]] = []

    def _prepare(self, conn: sa.Connection) -> None:
        conn.exec_driver_sql("SET synchronous_commit = off")
        conn.commit()

    def write(self, table: sa.Table, chunks: Iterable[Chunk], progress: Progress) -> int:
        from psycopg.copy import QueuedLibpqWriter

        conn = self.conn
        conn.execute(CreateTable(table, include_foreign_key_constraints=[]))
        raw: Any = conn.connection.driver_connection
        stamps = self.stamps
        written = 0
        remaining = iter(chunks)
        first = next(remaining, None)
        if first is not None:
            names = ", ".join(f'"{name}"' for name in first)
            statement = f'COPY "{table.name}" ({names}) FROM STDIN (FREEZE)'
            with (
                raw.cursor() as cursor,
                cursor.copy(statement, writer=QueuedLibpqWriter(cursor)) as copy,
            ):
                for chunk in itertools.chain([first], remaining):
                    copy.write(copy_text(chunk, stamps))
                    rows = _rows(chunk)
                    written += rows
                    progress(table.name, rows)
        conn.commit()
        self.tables.append(table)
        self._pending.append((table.name, self._indexer.submit(self._index, table)))
        return written

    def _index(self, table: sa.Table) -> None:
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SET maintenance_work_mem = '256MB'")
            for index in sorted(table.indexes, key=lambda i: str(i.name)):
                conn.execute(CreateIndex(index))
            conn.exec_driver_sql(f'ANALYZE "{table.name}"')
            pk = table.primary_key.columns.values()
            if len(pk) == 1 and isinstance(pk[0].type, sa.Integer) and pk[0].autoincrement:
                conn.execute(
                    sa.text(
                        "SELECT setval(pg_get_serial_sequence(:t, :c), "
                        f'coalesce((SELECT max("{pk[0].name}") FROM "{table.name}"), 0) + 1, '
                        "false)"
                    ),
                    {"t": f'"{table.name}"', "c": pk[0].name},
                )
            conn.commit()

    def finish(self, on_table: Callable[[str], None] | None = None) -> None:
        try:
            for name, future in self._pending:
                future.result()
                if on_table is not None:
                    on_table(name)
        finally:
            self._indexer.shutdown(wait=True)
        with self.engine.begin() as conn:
            for table in self.tables:
                for constraint in sorted(
                    table.foreign_key_constraints, key=lambda c: str(c.column_keys)
                ):
                    conn.execute(AddConstraint(constraint))

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        super().__exit__(kind, error, traceback)
        if error is not None:
            self._indexer.shutdown(wait=True, cancel_futures=True)


def writer_for(engine: sa.Engine) -> TableWriter:
    """The fastest writer for the engine's database."""
    name = engine.dialect.name
    if name == "postgresql":
        if engine.dialect.driver != "psycopg":
            raise ValueError(
                f"seeding PostgreSQL needs the psycopg driver (postgresql+psycopg://), "
                f"not {engine.dialect.driver}"
            )
        return PostgreSQLWriter(engine)
    if name == "sqlite":
        return SQLiteWriter(engine)
    if name in ("mysql", "mariadb"):
        return MySQLWriter(engine)
    raise ValueError(f"the demo seeds PostgreSQL, MariaDB/MySQL or SQLite, not {name}")
