"""A ping's durations in one row: ``ping_meta`` and ``metric_errors`` replace ``metric_meta``

``metric_meta`` took a row per metric of a ping's ``meta`` block, ~500 a ping, to keep a duration
the dashboards read only for the latest 200 pings, and an error that few metrics have. Now a
ping's durations are one ``ping_meta`` row (key path ids and durations packed as big-endian
int32 and float32, see ``usage_ping.collector.durations``) and its errors are ``metric_errors``
rows. Writing a ping's meta went from ~500 rows to one (and one per error).

The upgrade packs each ping's rows in SQL on PostgreSQL (``int4send``/``float4send``), in Python
on SQLite; the downgrade unpacks them in Python. Metric entries with neither a duration nor an
error had nothing to keep and are not restored.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from itertools import groupby
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BRIN = {"pages_per_range": 32, "autosummarize": "on"}
_BATCH = 5_000
_FLOAT32_MAX = 3.4e38


def _create_new() -> None:
    op.create_table(
        "ping_meta",
        sa.Column("ping_id", _ID, primary_key=True, autoincrement=False),
        sa.Column("key_path_ids", sa.LargeBinary(), nullable=False),
        sa.Column("durations_ms", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "metric_errors",
        sa.Column("ping_id", _ID, nullable=False),
        sa.Column("key_path_id", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(300), nullable=False),
    )


def _packed(bind: sa.Connection) -> Iterator[list[dict[str, object]]]:
    """SQLite: ``ping_meta`` rows packed from ``metric_meta``, in batches."""
    rows = bind.execute(
        sa.text(
            "SELECT ping_id, key_path_id, duration_ms FROM metric_meta"
            " WHERE duration_ms IS NOT NULL ORDER BY ping_id, key_path_id"
        )
    )
    batch: list[dict[str, object]] = []
    for ping_id, entries in groupby(rows, key=lambda row: row[0]):
        pairs = [(row[1], min(max(row[2], -_FLOAT32_MAX), _FLOAT32_MAX)) for row in entries]
        batch.append(
            {
                "ping_id": ping_id,
                "key_path_ids": struct.pack(f">{len(pairs)}i", *(k for k, _ in pairs)),
                "durations_ms": struct.pack(f">{len(pairs)}f", *(d for _, d in pairs)),
            }
        )
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def upgrade() -> None:
    bind = op.get_bind()
    _create_new()
    if bind.dialect.name == "postgresql":
        op.execute(
            "INSERT INTO ping_meta (ping_id, key_path_ids, durations_ms)"
            " SELECT ping_id,"
            " string_agg(int4send(key_path_id), ''::bytea ORDER BY key_path_id),"
            # float4 refuses what it cannot hold: clipped to its range, the tiniest made 0
            " string_agg(float4send(CASE WHEN abs(duration_ms) < 1.2e-38 THEN 0"
            " ELSE greatest(least(duration_ms, 3.4e38), -3.4e38) END::float4),"
            " ''::bytea ORDER BY key_path_id)"
            " FROM metric_meta WHERE duration_ms IS NOT NULL GROUP BY ping_id ORDER BY ping_id"
        )
    else:
        insert = sa.table(
            "ping_meta", sa.column("ping_id"), sa.column("key_path_ids"), sa.column("durations_ms")
        ).insert()
        for batch in list(_packed(bind)):  # read first: SQLite's cursor and inserts interleave
            bind.execute(insert, batch)
    op.execute(
        "INSERT INTO metric_errors (ping_id, key_path_id, error)"
        " SELECT ping_id, key_path_id, error FROM metric_meta WHERE error IS NOT NULL"
        " ORDER BY ping_id"
    )
    op.create_index("ix_metric_errors_key_path", "metric_errors", ["key_path_id", "ping_id"])
    op.drop_table("metric_meta")


def downgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "metric_meta",
        sa.Column("ping_id", _ID, nullable=False),
        sa.Column("key_path_id", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("error", sa.String(300), nullable=True),
    )
    errors: dict[tuple[int, int], str] = {
        (row[0], row[1]): row[2]
        for row in bind.execute(sa.text("SELECT ping_id, key_path_id, error FROM metric_errors"))
    }
    packed = bind.execute(
        sa.text("SELECT ping_id, key_path_ids, durations_ms FROM ping_meta ORDER BY ping_id")
    ).all()
    rows: list[dict[str, Any]] = []
    for ping_id, ids, durations in packed:
        count = min(len(ids), len(durations)) // 4
        keys = struct.unpack(f">{count}i", bytes(ids)[: count * 4])
        values = struct.unpack(f">{count}f", bytes(durations)[: count * 4])
        for key, value in zip(keys, values, strict=True):
            rows.append(
                {
                    "ping_id": ping_id,
                    "key_path_id": key,
                    "duration_ms": value,
                    "error": errors.pop((ping_id, key), None),
                }
            )
    rows += [
        {"ping_id": p, "key_path_id": k, "duration_ms": None, "error": e}
        for (p, k), e in errors.items()
    ]
    rows.sort(key=lambda row: (row["ping_id"], row["key_path_id"]))
    table = sa.table(
        "metric_meta",
        sa.column("ping_id"),
        sa.column("key_path_id"),
        sa.column("duration_ms"),
        sa.column("error"),
    )
    for start in range(0, len(rows), _BATCH):
        bind.execute(table.insert(), rows[start : start + _BATCH])
    if bind.dialect.name == "postgresql":
        op.create_index(
            "ix_metric_meta_ping_id",
            "metric_meta",
            ["ping_id"],
            postgresql_using="brin",
            postgresql_with=BRIN,
        )
    else:
        op.create_index("ix_metric_meta_ping_id", "metric_meta", ["ping_id"])
    clause = sa.text("error IS NOT NULL")
    op.create_index(
        "ix_metric_meta_errors",
        "metric_meta",
        ["key_path_id", "ping_id"],
        postgresql_where=clause,
        sqlite_where=clause,
    )
    op.drop_table("metric_errors")
    op.drop_table("ping_meta")
