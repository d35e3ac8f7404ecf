"""The Snowplow collector's good and bad event stores

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from usage_ping.state import LONG_TEXT, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "snowplow_events",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("event_fingerprint", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("collector_tstamp", UTCDateTime(), nullable=False),
        sa.Column("derived_tstamp", UTCDateTime(), nullable=False),
        sa.Column("app_id", sa.String(255)),
        sa.Column("platform", sa.String(16)),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("event_name", sa.String(255)),
        sa.Column("event_schema", sa.Text),
        sa.Column("se_category", sa.String(255)),
        sa.Column("se_action", sa.String(255)),
        sa.Column("page_urlhost", sa.String(255)),
        sa.Column("page_urlpath", sa.String(500)),
        sa.Column("user_id", sa.String(255)),
        sa.Column("domain_userid", sa.String(128)),
        sa.Column("domain_sessionid", sa.String(128)),
        sa.Column("network_userid", sa.String(128)),
        sa.Column("is_bot", sa.Boolean, nullable=False),
        sa.Column("contexts", sa.Text, nullable=False),
        sa.Column("enriched", LONG_TEXT, nullable=False),
        sa.Column("raw", LONG_TEXT, nullable=False),
        sa.UniqueConstraint("event_fingerprint", name="uq_snowplow_events_fingerprint"),
    )
    for name, columns in (
        ("ix_snowplow_events_derived", ["derived_tstamp"]),
        ("ix_snowplow_events_name", ["event_name", "derived_tstamp"]),
        ("ix_snowplow_events_struct", ["se_category", "se_action", "derived_tstamp"]),
        ("ix_snowplow_events_page", ["page_urlpath", "derived_tstamp"]),
        ("ix_snowplow_events_user", ["user_id", "derived_tstamp"]),
        ("ix_snowplow_events_domain_user", ["domain_userid", "derived_tstamp"]),
        ("ix_snowplow_events_session", ["domain_sessionid", "derived_tstamp"]),
    ):
        op.create_index(name, "snowplow_events", columns)
    op.create_table(
        "snowplow_bad_events",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("collector_tstamp", UTCDateTime(), nullable=False),
        sa.Column("vendor", sa.String(255), nullable=False),
        sa.Column("version", sa.String(16), nullable=False),
        sa.Column("errors", LONG_TEXT, nullable=False),
        sa.Column("payload", LONG_TEXT, nullable=False),
        sa.Column("raw", LONG_TEXT),
    )
    op.create_index("ix_snowplow_bad_events_collector", "snowplow_bad_events", ["collector_tstamp"])


def downgrade() -> None:
    op.drop_table("snowplow_bad_events")
    op.drop_table("snowplow_events")
