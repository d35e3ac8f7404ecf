"""A lighter ingest: a ping's rows without foreign or primary key, the raw payload in lz4

A ping's ``ping_metrics`` and ``metric_meta`` rows are written in the transaction that stores the
ping, by the ingest alone, from a dict: each row has its ping, and each (ping, key path) is unique,
by construction. Checking anyway cost PostgreSQL, per ping:

- the foreign keys: one lookup and row lock of the ping per row, about 1,000 (a fifth of its work);
- the primary keys (ping_id, key_path): 1,000 index entries and their WAL records, two thirds of
  the ~1,500 index entries a ping added, while the WAL (about 280 kB a ping) forced a checkpoint
  every few seconds under load.

Rows are found by ping through a BRIN index on ``ping_id`` instead (rows are appended in ping
order, so a ping's rows share a few pages; it costs next to nothing to keep up): the instance
page's key paths, the durations of the latest pings, the Parquet export. SQLite, which has no
BRIN, gets a B-tree index on ``ping_id``; it copies each table to drop its keys.

On PostgreSQL built with lz4 (14 and later) the ping's raw payload and response are compressed
with lz4 instead of pglz (pglz took about 2 % of the machine's CPU at ingest). Rows stored before
keep their compression; both read back the same.

See benchmarks/results/collector.md.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BRIN = {"pages_per_range": 32, "autosummarize": "on"}


def _columns(table: str) -> list[sa.Column[object]]:
    if table == "ping_metrics":
        return [
            sa.Column("ping_id", _ID, nullable=False),
            sa.Column("key_path", sa.String(255), nullable=False),
            sa.Column("value", sa.Float(), nullable=False),
        ]
    return [
        sa.Column("ping_id", _ID, nullable=False),
        sa.Column("key_path", sa.String(255), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("error", sa.String(300), nullable=True),
    ]


_INDEXES: dict[str, list[tuple[str, list[str], str | None]]] = {
    "ping_metrics": [
        ("ix_ping_metrics_key_path", ["key_path", "ping_id", "value"], None),
        ("ix_ping_metrics_failed", ["ping_id", "key_path"], "value IN (-1, -2, -3)"),
    ],
    "metric_meta": [("ix_metric_meta_errors", ["key_path", "ping_id"], "error IS NOT NULL")],
}
"""Each table's indexes before and after (SQLite's copy of a table loses them)."""


def _sqlite_copy(table: str, *, keys: bool) -> None:
    """SQLite: the table copied with (``keys``) or without its primary and foreign keys."""
    for name, _, _ in _INDEXES[table]:
        op.drop_index(name, table_name=table)
    if keys:
        op.drop_index(f"ix_{table}_ping_id", table_name=table)
    shape = sa.Table(table, sa.MetaData(), *_columns(table))
    if keys:
        shape.append_constraint(sa.PrimaryKeyConstraint("ping_id", "key_path"))
        shape.append_constraint(
            sa.ForeignKeyConstraint(["ping_id"], ["pings.id"], ondelete="CASCADE")
        )
    with op.batch_alter_table(table, recreate="always", copy_from=shape):
        pass
    for name, columns, where in _INDEXES[table]:
        op.create_index(name, table, columns, sqlite_where=sa.text(where) if where else None)
    if not keys:
        op.create_index(f"ix_{table}_ping_id", table, ["ping_id"])


def upgrade() -> None:
    bind = op.get_bind()
    for table in ("ping_metrics", "metric_meta"):
        if bind.dialect.name == "sqlite":
            _sqlite_copy(table, keys=False)
            continue
        inspector = sa.inspect(bind)
        for key in inspector.get_foreign_keys(table):
            if key["referred_table"] == "pings" and key["name"]:
                op.drop_constraint(key["name"], table, type_="foreignkey")
        primary = inspector.get_pk_constraint(table).get("name")
        if primary:
            op.drop_constraint(primary, table, type_="primary")
        op.create_index(
            f"ix_{table}_ping_id",
            table,
            ["ping_id"],
            postgresql_using="brin",
            postgresql_with=BRIN,
        )
    if _has_lz4(bind):
        op.execute("ALTER TABLE pings ALTER COLUMN payload SET COMPRESSION lz4")
        op.execute("ALTER TABLE pings ALTER COLUMN response SET COMPRESSION lz4")


def _has_lz4(bind: sa.Connection) -> bool:
    if bind.dialect.name != "postgresql":
        return False
    found = bind.exec_driver_sql(
        "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression'"
        " AND 'lz4' = ANY (enumvals)"
    ).first()
    return found is not None


def downgrade() -> None:
    bind = op.get_bind()
    if _has_lz4(bind):
        op.execute("ALTER TABLE pings ALTER COLUMN payload SET COMPRESSION DEFAULT")
        op.execute("ALTER TABLE pings ALTER COLUMN response SET COMPRESSION DEFAULT")
    for table in ("ping_metrics", "metric_meta"):
        if bind.dialect.name == "sqlite":
            _sqlite_copy(table, keys=True)
            continue
        op.drop_index(f"ix_{table}_ping_id", table_name=table)
        op.create_primary_key(f"{table}_pkey", table, ["ping_id", "key_path"])
        op.create_foreign_key(
            f"{table}_ping_id_fkey", table, "pings", ["ping_id"], ["id"], ondelete="CASCADE"
        )
