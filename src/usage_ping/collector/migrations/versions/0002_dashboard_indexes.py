"""Indexes for the dashboards: failed metrics, meta errors, a covering key path index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ping_metrics") as batch_op:
        batch_op.drop_index("ix_ping_metrics_key_path")
        batch_op.create_index("ix_ping_metrics_key_path", ["key_path", "ping_id", "value"])
    op.create_index(
        "ix_ping_metrics_failed",
        "ping_metrics",
        ["ping_id", "key_path"],
        postgresql_where=sa.text("value IN (-1, -2, -3)"),
        sqlite_where=sa.text("value IN (-1, -2, -3)"),
    )
    op.create_index(
        "ix_metric_meta_errors",
        "metric_meta",
        ["key_path", "ping_id"],
        postgresql_where=sa.text("error IS NOT NULL"),
        sqlite_where=sa.text("error IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_metric_meta_errors", table_name="metric_meta")
    op.drop_index("ix_ping_metrics_failed", table_name="ping_metrics")
    with op.batch_alter_table("ping_metrics") as batch_op:
        batch_op.drop_index("ix_ping_metrics_key_path")
        batch_op.create_index("ix_ping_metrics_key_path", ["key_path", "ping_id"])
