"""Weeks' figures kept for the dashboards and the BI API; pings' received_at index covers reads

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import usage_ping.state

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_COVERING = ["received_at", "id", "uuid", "version", "installation_type", "recorded_at"]


def upgrade() -> None:
    op.create_table(
        "dashboard_weeks",
        sa.Column("series", sa.String(length=300), nullable=False),
        sa.Column("week_start", usage_ping.state.UTCDateTime(), nullable=False),
        sa.Column("figures", usage_ping.state.LONG_TEXT, nullable=False),
        sa.PrimaryKeyConstraint("series", "week_start"),
    )
    # A window's first ping id (min(id) over received_at >= start), the overview's and metric
    # QA's weekly counts, and the recorded weeks of recent pings read this index alone.
    with op.batch_alter_table("pings") as batch_op:
        batch_op.drop_index("ix_pings_received_at")
        batch_op.create_index("ix_pings_received_at", _COVERING)


def downgrade() -> None:
    with op.batch_alter_table("pings") as batch_op:
        batch_op.drop_index("ix_pings_received_at")
        batch_op.create_index("ix_pings_received_at", ["received_at"])
    op.drop_table("dashboard_weeks")
