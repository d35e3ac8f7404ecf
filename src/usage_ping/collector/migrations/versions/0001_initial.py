"""the initial schema: instances, pings, flat metrics, meta, errors, metadata

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-21 23:35:32.635977
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

import usage_ping.state

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("uuid", sa.String(length=64), nullable=False),
        sa.Column("first_seen", usage_ping.state.UTCDateTime(), nullable=False),
        sa.Column("last_seen", usage_ping.state.UTCDateTime(), nullable=False),
        sa.Column(
            "last_ping_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("hostname", sa.String(length=255), nullable=True),
        sa.Column("version", sa.String(length=64), nullable=True),
        sa.Column("edition", sa.String(length=32), nullable=True),
        sa.Column("installation_type", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("uuid"),
    )
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.create_index("ix_instances_last_seen", ["last_seen"], unique=False)

    op.create_table(
        "ping_errors",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("uuid", sa.String(length=64), nullable=True),
        sa.Column("received_at", usage_ping.state.UTCDateTime(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ping_errors", schema=None) as batch_op:
        batch_op.create_index("ix_ping_errors_uuid", ["uuid"], unique=False)

    op.create_table(
        "ping_metadata",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("uuid", sa.String(length=64), nullable=True),
        sa.Column("received_at", usage_ping.state.UTCDateTime(), nullable=False),
        sa.Column(
            "body",
            sa.Text()
            .with_variant(mysql.LONGTEXT(), "mariadb")
            .with_variant(mysql.LONGTEXT(), "mysql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ping_metadata", schema=None) as batch_op:
        batch_op.create_index("ix_ping_metadata_uuid", ["uuid"], unique=False)

    op.create_table(
        "pings",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("uuid", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", usage_ping.state.UTCDateTime(), nullable=False),
        sa.Column("received_at", usage_ping.state.UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=True),
        sa.Column("version", sa.String(length=64), nullable=True),
        sa.Column("edition", sa.String(length=32), nullable=True),
        sa.Column("installation_type", sa.String(length=64), nullable=True),
        sa.Column("active_user_count", sa.BigInteger(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column(
            "payload",
            sa.Text()
            .with_variant(mysql.LONGTEXT(), "mariadb")
            .with_variant(mysql.LONGTEXT(), "mysql"),
            nullable=False,
        ),
        sa.Column("response", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("uuid", "recorded_at", name="uq_pings_uuid_recorded_at"),
    )
    with op.batch_alter_table("pings", schema=None) as batch_op:
        batch_op.create_index("ix_pings_received_at", ["received_at"], unique=False)
        batch_op.create_index("ix_pings_recorded_at", ["recorded_at"], unique=False)

    op.create_table(
        "metric_meta",
        sa.Column("ping_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key_path", sa.String(length=255), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(["ping_id"], ["pings.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("ping_id", "key_path"),
    )
    op.create_table(
        "ping_metrics",
        sa.Column("ping_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key_path", sa.String(length=255), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["ping_id"], ["pings.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("ping_id", "key_path"),
    )
    with op.batch_alter_table("ping_metrics", schema=None) as batch_op:
        batch_op.create_index("ix_ping_metrics_key_path", ["key_path", "ping_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ping_metrics", schema=None) as batch_op:
        batch_op.drop_index("ix_ping_metrics_key_path")

    op.drop_table("ping_metrics")
    op.drop_table("metric_meta")
    with op.batch_alter_table("pings", schema=None) as batch_op:
        batch_op.drop_index("ix_pings_recorded_at")
        batch_op.drop_index("ix_pings_received_at")

    op.drop_table("pings")
    with op.batch_alter_table("ping_metadata", schema=None) as batch_op:
        batch_op.drop_index("ix_ping_metadata_uuid")

    op.drop_table("ping_metadata")
    with op.batch_alter_table("ping_errors", schema=None) as batch_op:
        batch_op.drop_index("ix_ping_errors_uuid")

    op.drop_table("ping_errors")
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_index("ix_instances_last_seen")

    op.drop_table("instances")
