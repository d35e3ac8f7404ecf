"""A lighter ingest: no foreign key on a ping's rows, the raw payload compressed with lz4

A ping's ``ping_metrics`` and ``metric_meta`` rows are written in the transaction that stores the
ping, by the ingest alone, so each row has its ping by construction. Checking the foreign key
anyway cost PostgreSQL one lookup and row lock of the ping per row, about 1,000 per ping: a fifth
of its work at ingest (see benchmarks/results/collector.md).

On PostgreSQL built with lz4 (14 and later), the ping's raw payload and response are compressed
with lz4 instead of pglz: pglz took about 2 % of the machine's CPU at ingest. Rows stored before
keep their compression; both read back the same.

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

TABLES = ("ping_metrics", "metric_meta")
_PARTIAL = {
    "ping_metrics": ("ix_ping_metrics_failed", ["ping_id", "key_path"], "value IN (-1, -2, -3)"),
    "metric_meta": ("ix_metric_meta_errors", ["key_path", "ping_id"], "error IS NOT NULL"),
}
"""The tables' partial indexes, made again after SQLite copies a table (it drops the WHERE)."""
_SQLITE_FK = "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"
"""A name for SQLite's unnamed foreign keys, so that a batch operation can drop them."""


def upgrade() -> None:
    bind = op.get_bind()
    for table in TABLES:
        if bind.dialect.name == "sqlite":
            name, columns, where = _PARTIAL[table]
            op.drop_index(name, table_name=table)
            with op.batch_alter_table(
                table, recreate="always", naming_convention={"fk": _SQLITE_FK}
            ) as batch_op:
                batch_op.drop_constraint(f"fk_{table}_ping_id_pings", type_="foreignkey")
            op.create_index(name, table, columns, sqlite_where=sa.text(where))
            continue
        for key in sa.inspect(bind).get_foreign_keys(table):
            if key["referred_table"] == "pings" and key["name"]:
                op.drop_constraint(key["name"], table, type_="foreignkey")
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
    for table in TABLES:
        if bind.dialect.name == "sqlite":
            name, columns, where = _PARTIAL[table]
            op.drop_index(name, table_name=table)
            with op.batch_alter_table(table, recreate="always") as batch_op:
                batch_op.create_foreign_key(
                    f"fk_{table}_ping_id_pings", "pings", ["ping_id"], ["id"], ondelete="CASCADE"
                )
            op.create_index(name, table, columns, sqlite_where=sa.text(where))
            continue
        op.create_foreign_key(
            f"{table}_ping_id_fkey", table, "pings", ["ping_id"], ["id"], ondelete="CASCADE"
        )
