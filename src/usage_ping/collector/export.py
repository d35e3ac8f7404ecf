"""Parquet export of the stored pings, for any warehouse or dataframe library.

:func:`export_parquet` writes two files into a directory, each covering the pings recorded in
``[since, until)`` (all pings without bounds):

- ``metrics.parquet``: one row per flat metric of a ping (:data:`METRICS_SCHEMA`): ``ping_id``,
  ``uuid``, ``recorded_at`` (UTC timestamp), ``version``, ``edition``, ``installation_type``,
  ``key_path``, ``value``; ordered by ping id, then key path.
- ``pings.parquet``: one row per ping with its facts and DevOps score (:data:`PINGS_SCHEMA`).

One file per call, not one per ISO week: a warehouse that loads weekly calls it with that week as
``since``/``until``, and the HTTP endpoint can send a single file. Rows are read from the
database as a stream (``stream_results`` with ``yield_per``: a server-side cursor on PostgreSQL)
and written ``batch_rows`` at a time, one Parquet row group per batch, zstd-compressed, so memory
stays bounded by the batch whatever the size of the export.

Example::

    paths = export_parquet(engine, "exports/2026-W47", since=monday, until=next_monday)
    pyarrow.parquet.read_table(paths[0]).to_pandas()
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import sqlalchemy as sa

from usage_ping.collector.storage import key_paths, ping_metrics, pings

__all__ = [
    "METRICS_SCHEMA",
    "PARQUET_MEDIA_TYPE",
    "PINGS_SCHEMA",
    "Written",
    "export_parquet",
    "write_metrics",
    "write_pings",
]

logger = logging.getLogger("usage_ping.collector")

PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"

_TIMESTAMP = pa.timestamp("us", tz="UTC")

METRICS_SCHEMA = pa.schema(
    [
        pa.field("ping_id", pa.int64(), nullable=False),
        pa.field("uuid", pa.string(), nullable=False),
        pa.field("recorded_at", _TIMESTAMP, nullable=False),
        pa.field("version", pa.string()),
        pa.field("edition", pa.string()),
        pa.field("installation_type", pa.string()),
        pa.field("key_path", pa.string(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
    ]
)
"""The columns of ``metrics.parquet``."""

PINGS_SCHEMA = pa.schema(
    [
        pa.field("ping_id", pa.int64(), nullable=False),
        pa.field("uuid", pa.string(), nullable=False),
        pa.field("recorded_at", _TIMESTAMP, nullable=False),
        pa.field("received_at", _TIMESTAMP, nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("hostname", pa.string()),
        pa.field("version", pa.string()),
        pa.field("edition", pa.string()),
        pa.field("installation_type", pa.string()),
        pa.field("active_user_count", pa.int64()),
        pa.field("score", pa.float64()),
    ]
)
"""The columns of ``pings.parquet``."""


@dataclass(frozen=True)
class Written:
    """A file the export wrote: its path, its rows and its size in bytes."""

    path: Path
    rows: int
    bytes: int


def _naive_utc(column: sa.ColumnElement[datetime]) -> sa.ColumnElement[datetime]:
    """The column as stored (naive UTC), which pyarrow reads as UTC: no per-row conversion."""
    return sa.type_coerce(column, sa.DateTime()).label(column.key)


def _in_range(
    query: sa.Select[Any], since: datetime | None, until: datetime | None
) -> sa.Select[Any]:
    if since is not None:
        query = query.where(pings.c.recorded_at >= since)
    if until is not None:
        query = query.where(pings.c.recorded_at < until)
    return query


def _write(
    engine: sa.Engine, query: sa.Select[Any], schema: pa.Schema, path: Path, batch_rows: int
) -> Written:
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, not {batch_rows}")
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with (
        pq.ParquetWriter(path, schema, compression="zstd") as writer,
        engine.connect() as conn,
    ):
        result = conn.execution_options(stream_results=True, yield_per=batch_rows).execute(query)
        for batch in result.partitions():
            writer.write_table(_table(batch, schema), row_group_size=batch_rows)
            rows += len(batch)
    written = Written(path, rows, path.stat().st_size)
    logger.info("exported %d rows (%d bytes) to %s", written.rows, written.bytes, path)
    return written


def _table(batch: Sequence[Sequence[Any]], schema: pa.Schema) -> pa.Table:
    columns: Iterable[Sequence[Any]] = zip(*batch, strict=True)
    return pa.Table.from_arrays(
        [pa.array(column, type=field.type) for column, field in zip(columns, schema, strict=True)],
        schema=schema,
    )


def write_metrics(
    engine: sa.Engine,
    path: Path | str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    batch_rows: int = 100_000,
) -> Written:
    """Write the flat metrics of the pings recorded in ``[since, until)`` to one Parquet file."""
    query = _in_range(
        sa.select(
            ping_metrics.c.ping_id,
            pings.c.uuid,
            _naive_utc(pings.c.recorded_at),
            pings.c.version,
            pings.c.edition,
            pings.c.installation_type,
            key_paths.c.path.label("key_path"),
            ping_metrics.c.value,
        )
        .join(pings, pings.c.id == ping_metrics.c.ping_id)
        .join(key_paths, key_paths.c.id == ping_metrics.c.key_path_id)
        .order_by(ping_metrics.c.ping_id, key_paths.c.path),
        since,
        until,
    )
    return _write(engine, query, METRICS_SCHEMA, Path(path), batch_rows)


def write_pings(
    engine: sa.Engine,
    path: Path | str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    batch_rows: int = 100_000,
) -> Written:
    """Write one row per ping recorded in ``[since, until)`` (facts and score) to a Parquet file."""
    query = _in_range(
        sa.select(
            pings.c.id,
            pings.c.uuid,
            _naive_utc(pings.c.recorded_at),
            _naive_utc(pings.c.received_at),
            pings.c.source,
            pings.c.hostname,
            pings.c.version,
            pings.c.edition,
            pings.c.installation_type,
            pings.c.active_user_count,
            pings.c.score,
        ).order_by(pings.c.id),
        since,
        until,
    )
    return _write(engine, query, PINGS_SCHEMA, Path(path), batch_rows)


def export_parquet(
    engine: sa.Engine,
    out_dir: Path | str,
    since: datetime | None = None,
    until: datetime | None = None,
    batch_rows: int = 100_000,
) -> list[Path]:
    """Write ``metrics.parquet`` and ``pings.parquet`` into ``out_dir`` (created if needed).

    Args:
        engine: the service's database.
        out_dir: the directory; files of an earlier export there are replaced.
        since: the first ``recorded_at`` included (aware datetime; None: from the first ping).
        until: the first ``recorded_at`` excluded (None: up to the last ping).
        batch_rows: rows read and written at a time (one row group each).

    Returns:
        The paths of the metrics file and of the pings file.
    """
    directory = Path(out_dir)
    options: dict[str, Any] = {"since": since, "until": until, "batch_rows": batch_rows}
    metrics = write_metrics(engine, directory / "metrics.parquet", **options)
    pings_file = write_pings(engine, directory / "pings.parquet", **options)
    return [metrics.path, pings_file.path]
