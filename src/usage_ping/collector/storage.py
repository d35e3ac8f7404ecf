"""The central service's tables, and the Alembic migrations that create them.

``pings`` holds each distinct ping (unique on uuid + recorded_at) with its raw payload and the
response it got; ``ping_metrics`` the same ping flattened to ``(ping, key path, value)`` rows for
analytics; ``ping_meta`` the metrics' durations from the ping's ``meta`` block, packed in one
row, and ``metric_errors`` their errors; ``key_paths`` numbers the key paths those rows name (a
few hundred, sent again in every ping);
``instances`` the latest facts per instance; ``ping_errors`` and ``ping_metadata`` what instances
report besides their pings; ``dashboard_weeks`` the dashboards' figures of weeks that have ended.
A ping's rows have no foreign or primary key: the ingest writes them in the transaction that
stores the ping, from a dict, and checking the keys of its ~500 rows was most of PostgreSQL's
work and WAL at ingest; a BRIN index on ``ping_id`` finds a ping's rows (0006). They name their
key path by its id in ``key_paths``: rows and index entries half as wide as with the text (0007).
Durations went from a row per metric to a row per ping (0008).
The schema is created and upgraded by Alembic (:func:`migrate`); PostgreSQL in production, SQLite
as the embedded default.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects import postgresql, sqlite

from usage_ping.state import LONG_TEXT, UTCDateTime

__all__ = [
    "ON_CONFLICT_INSERTS",
    "PING_AFTER_IDLE",
    "dashboard_weeks",
    "instances",
    "key_paths",
    "metadata",
    "metric_errors",
    "migrate",
    "ping_errors",
    "ping_meta",
    "ping_metadata",
    "ping_metrics",
    "pings",
    "service_engine",
]

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

ON_CONFLICT_INSERTS: dict[str, Any] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
"""The dialects whose INSERT has ON CONFLICT (DO NOTHING / DO UPDATE), by name, and their insert
constructs; elsewhere callers fall back to a SELECT then an INSERT or UPDATE."""

metadata = sa.MetaData()


def _by_ping(table: str) -> sa.Index:
    return sa.Index(
        f"ix_{table}_ping_id",
        "ping_id",
        postgresql_using="brin",
        postgresql_with={"pages_per_range": 32, "autosummarize": "on"},
    )


instances = sa.Table(
    "instances",
    metadata,
    sa.Column("uuid", sa.String(64), primary_key=True),
    sa.Column("first_seen", UTCDateTime(), nullable=False),
    sa.Column("last_seen", UTCDateTime(), nullable=False),
    sa.Column("last_ping_id", _ID),
    sa.Column("hostname", sa.String(255)),
    sa.Column("version", sa.String(64)),
    sa.Column("edition", sa.String(32)),
    sa.Column("installation_type", sa.String(64)),
    sa.Index("ix_instances_last_seen", "last_seen"),
)

pings = sa.Table(
    "pings",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("uuid", sa.String(64), nullable=False),
    sa.Column("recorded_at", UTCDateTime(), nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("hostname", sa.String(255)),
    sa.Column("version", sa.String(64)),
    sa.Column("edition", sa.String(32)),
    sa.Column("installation_type", sa.String(64)),
    sa.Column("active_user_count", sa.BigInteger),
    sa.Column("score", sa.Float),
    sa.Column("payload", LONG_TEXT, nullable=False),
    sa.Column("response", sa.Text),
    sa.UniqueConstraint("uuid", "recorded_at", name="uq_pings_uuid_recorded_at"),
    # Covering: a window's first ping id, its weekly counts, and the recorded weeks of the pings
    # received since a moment read the index alone.
    sa.Index(
        "ix_pings_received_at",
        "received_at",
        "id",
        "uuid",
        "version",
        "installation_type",
        "recorded_at",
    ),
    sa.Index("ix_pings_recorded_at", "recorded_at"),
)

key_paths = sa.Table(
    "key_paths",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("path", sa.String(255), nullable=False),
    sa.UniqueConstraint("path", name="uq_key_paths_path"),
)
"""Every key path a ping's rows have named, numbered once and never removed
(:class:`usage_ping.collector.key_paths.KeyPathIds`)."""

ping_metrics = sa.Table(
    "ping_metrics",
    metadata,
    sa.Column("ping_id", _ID, nullable=False),
    sa.Column("key_path_id", sa.Integer, nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    # A ping's rows, found by its id: BRIN on PostgreSQL (rows arrive in ping order), B-tree
    # elsewhere. No primary key: (ping_id, key_path_id) is unique by construction (0006).
    _by_ping("ping_metrics"),
    # Covering: trends and distributions of one key path read the index alone.
    sa.Index("ix_ping_metrics_key_path", "key_path_id", "ping_id", "value"),
    # Metric QA: the few rows that hold a fallback code (-1, -2, -3).
    sa.Index(
        "ix_ping_metrics_failed",
        "ping_id",
        "key_path_id",
        postgresql_where=sa.text("value IN (-1, -2, -3)"),
        sqlite_where=sa.text("value IN (-1, -2, -3)"),
    ),
)

ping_meta = sa.Table(
    "ping_meta",
    metadata,
    sa.Column("ping_id", _ID, primary_key=True, autoincrement=False),
    sa.Column("key_path_ids", sa.LargeBinary, nullable=False),
    sa.Column("durations_ms", sa.LargeBinary, nullable=False),
)
"""The durations of a ping's ``meta`` block, about 500, packed in one row
(:mod:`usage_ping.collector.durations`); the dashboards read them a ping at a time (0008)."""

metric_errors = sa.Table(
    "metric_errors",
    metadata,
    sa.Column("ping_id", _ID, nullable=False),
    sa.Column("key_path_id", sa.Integer, nullable=False),
    sa.Column("error", sa.String(300), nullable=False),
    # Metric QA's drill-down: a key path's errors in a window, and those of given pings.
    sa.Index("ix_metric_errors_key_path", "key_path_id", "ping_id"),
)
"""The errors of a ping's ``meta`` block, a row per failed metric (few)."""

dashboard_weeks = sa.Table(
    "dashboard_weeks",
    metadata,
    sa.Column("series", sa.String(300), primary_key=True),
    sa.Column("week_start", UTCDateTime(), primary_key=True),
    sa.Column("figures", LONG_TEXT, nullable=False),
)
"""The dashboards' figures of ISO weeks that have ended (final: pings are dated by arrival), as
JSON per series and week, so that every worker and every restart reads them instead of counting
them again (:class:`usage_ping.collector.dashboards.weeks.ClosedWeeks`)."""

ping_errors = sa.Table(
    "ping_errors",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("uuid", sa.String(64)),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Index("ix_ping_errors_uuid", "uuid"),
)

ping_metadata = sa.Table(
    "ping_metadata",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("uuid", sa.String(64)),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("body", LONG_TEXT, nullable=False),
    sa.Index("ix_ping_metadata_uuid", "uuid"),
)


def alembic_config(engine: sa.Engine) -> Config:
    """An Alembic configuration for the service's migrations (shipped in the package)."""
    config = Config()
    location = resources.files("usage_ping.collector").joinpath("migrations")
    config.set_main_option("script_location", str(location))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    config.attributes["engine"] = engine
    return config


def migrate(engine: sa.Engine, revision: str = "head") -> None:
    """Upgrade the service's database to ``revision`` (creating it on first use)."""
    command.upgrade(alembic_config(engine), revision)


PING_AFTER_IDLE = 1.0
"""Seconds a pooled connection may sit unused before it is checked at checkout."""


def service_engine(url: str | sa.URL, *, ping_after_idle: float = PING_AFTER_IDLE) -> sa.Engine:
    """The service's engine: a pooled connection is checked (``SELECT 1``) at checkout only
    when it sat unused for ``ping_after_idle`` seconds, and replaced if the check fails.

    SQLAlchemy's ``pool_pre_ping`` checks at every checkout: one more round trip per ping
    stored, which under load (a connection back in the pool for milliseconds) tells nothing. A
    connection that dies while in steady use fails its statement instead; SQLAlchemy then
    replaces the pool's connections, and the ingest retries such a ping once.
    """
    engine = sa.create_engine(url)
    dialect = engine.dialect

    @sa.event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        record.info["usage_ping_idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("usage_ping_idle_since")
        if since is None or time.monotonic() - since < ping_after_idle:
            return  # new, or back from work a moment ago
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            raise sa.exc.DisconnectionError(f"a pooled connection is gone: {exc}") from exc

    return engine
