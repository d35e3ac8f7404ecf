"""Key paths by number: ``key_paths``, and ``key_path_id`` in a ping's rows instead of the text

A ping sends the same few hundred key paths (30 to 60 characters each) as every other ping, and
each was stored as text in every ``ping_metrics`` and ``metric_meta`` row and in the key path
index. Named by a 4-byte id instead, the rows and index entries are about half as wide: writing
a ping's 500 metric rows took PostgreSQL about 1.5 ms less, and the tables 45 % less space
(benchmarks/results/collector.md). The ids are numbered in ``key_paths``, which keeps each path
once and is never pruned.

Both tables are copied (renamed, refilled through a join with ``key_paths`` in ping order, so that
the BRIN index on ``ping_id`` stays tight, and their indexes built again); the downgrade copies
them back with the text.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BRIN = {"pages_per_range": 32, "autosummarize": "on"}
TABLES = ("ping_metrics", "metric_meta")


def _columns(table: str, key: str) -> list[sa.Column[object]]:
    named = (
        sa.Column(key, sa.Integer(), nullable=False)
        if key == "key_path_id"
        else sa.Column(key, sa.String(255), nullable=False)
    )
    rest = (
        [sa.Column("value", sa.Float(), nullable=False)]
        if table == "ping_metrics"
        else [
            sa.Column("duration_ms", sa.Float(), nullable=True),
            sa.Column("error", sa.String(300), nullable=True),
        ]
    )
    return [sa.Column("ping_id", _ID, nullable=False), named, *rest]


def _indexes(table: str, key: str) -> list[tuple[str, list[str], str | None]]:
    if table == "ping_metrics":
        return [
            ("ix_ping_metrics_key_path", [key, "ping_id", "value"], None),
            ("ix_ping_metrics_failed", ["ping_id", key], "value IN (-1, -2, -3)"),
        ]
    return [("ix_metric_meta_errors", [key, "ping_id"], "error IS NOT NULL")]


def _copy(table: str, *, to_ids: bool) -> None:
    """``table`` copied with its key path as an id (``to_ids``) or as text."""
    bind = op.get_bind()
    old_key, new_key = ("key_path", "key_path_id") if to_ids else ("key_path_id", "key_path")
    for name, _, _ in _indexes(table, old_key):
        op.drop_index(name, table_name=table)
    op.drop_index(f"ix_{table}_ping_id", table_name=table)
    previous = f"{table}_before_0007" if to_ids else f"{table}_at_0007"
    op.rename_table(table, previous)
    op.create_table(table, *_columns(table, new_key))
    rest = "value" if table == "ping_metrics" else "duration_ms, error"
    match = "k.path = o.key_path" if to_ids else "k.id = o.key_path_id"
    taken = "k.id" if to_ids else "k.path"
    op.execute(
        f"INSERT INTO {table} (ping_id, {new_key}, {rest}) "
        f"SELECT o.ping_id, {taken}, {', '.join(f'o.{c}' for c in rest.split(', '))} "
        f"FROM {previous} o JOIN key_paths k ON {match} ORDER BY o.ping_id"
    )
    op.drop_table(previous)
    if bind.dialect.name == "postgresql":
        op.create_index(
            f"ix_{table}_ping_id", table, ["ping_id"], postgresql_using="brin", postgresql_with=BRIN
        )
    else:
        op.create_index(f"ix_{table}_ping_id", table, ["ping_id"])
    for name, columns, where in _indexes(table, new_key):
        clause = sa.text(where) if where else None
        op.create_index(name, table, columns, postgresql_where=clause, sqlite_where=clause)


def upgrade() -> None:
    op.create_table(
        "key_paths",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("path", sa.String(255), nullable=False),
        sa.UniqueConstraint("path", name="uq_key_paths_path"),
    )
    op.execute(
        "INSERT INTO key_paths (path) SELECT key_path FROM ping_metrics"
        " UNION SELECT key_path FROM metric_meta ORDER BY 1"
    )
    for table in TABLES:
        _copy(table, to_ids=True)


def downgrade() -> None:
    for table in TABLES:
        _copy(table, to_ids=False)
    op.drop_table("key_paths")
