"""The event stores: good and bad events, in the service's database (migrations 0004, 0005).

``snowplow_events`` holds each good event once (unique on ``event_fingerprint``: a tracker's
retry of a stored event is ignored) as its enriched JSON (``enriched``: the atomic fields that
are not null) and Micro's ``rawEvent`` (``raw``), plus the
columns that funnel and volume queries filter and order by, each indexed with ``derived_tstamp``
(when the event happened):

- ``(derived_tstamp)``: volume over time;
- ``(event_name, derived_tstamp)``: volume per event;
- ``(se_category, se_action, derived_tstamp)``: funnel steps by category and action;
- ``(page_urlpath, derived_tstamp)``: funnel steps by page;
- ``(user_id | domain_userid | domain_sessionid, derived_tstamp)``: one user's or session's
  events in order.

On PostgreSQL the first, third and fourth also carry (``INCLUDE``, migration 0005) what the
analytics queries (:mod:`.analytics`) read besides: the subjects' ids, ``is_bot`` and ``event``,
so that those queries are index-only scans rather than a heap fetch per event.

Those columns hold at most 255 characters (``page_urlpath`` 500, so that the indexes fit
PostgreSQL's index row size); the event JSON keeps the whole value. ``snowplow_bad_events`` keeps
every payload or event that could not be enriched: the collector's record of the request, the
event's fields when they could be read, and the errors.

Writes are one INSERT per request that skips known fingerprints (``ON CONFLICT DO NOTHING`` on
PostgreSQL and SQLite, ``INSERT IGNORE`` on MariaDB). On PostgreSQL it is one short statement
with one array per column, ``INSERT … SELECT * FROM unnest(%b::text[], …)``, sent in binary
(nothing to escape): its text never changes, so psycopg parses it once and the server keeps it
prepared, whatever the number of rows. (A multi-row ``VALUES`` list is a statement of hundreds of
parameters that psycopg parses again on every request: that cost more than the rest of the
request.) On the other databases the rows go through SQLAlchemy's "insertmanyvalues" as one
``INSERT … VALUES (…), (…) … RETURNING id``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from usage_ping.collector.storage import metadata
from usage_ping.state import LONG_TEXT, UTCDateTime

__all__ = ["BadRow", "EventStore", "bad_events", "good_row", "snowplow_events"]

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_SUBJECTS = ["user_id", "domain_userid", "network_userid", "domain_sessionid", "is_bot"]

snowplow_events = sa.Table(
    "snowplow_events",
    metadata,
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
    sa.Index(
        "ix_snowplow_events_derived", "derived_tstamp", postgresql_include=["event", "is_bot"]
    ),
    sa.Index("ix_snowplow_events_name", "event_name", "derived_tstamp"),
    sa.Index(
        "ix_snowplow_events_struct",
        "se_category",
        "se_action",
        "derived_tstamp",
        postgresql_include=["event", *_SUBJECTS],
    ),
    sa.Index(
        "ix_snowplow_events_page",
        "page_urlpath",
        "derived_tstamp",
        postgresql_include=["event", *_SUBJECTS],
    ),
    sa.Index("ix_snowplow_events_user", "user_id", "derived_tstamp"),
    sa.Index("ix_snowplow_events_domain_user", "domain_userid", "derived_tstamp"),
    sa.Index("ix_snowplow_events_session", "domain_sessionid", "derived_tstamp"),
)

bad_events = sa.Table(
    "snowplow_bad_events",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("collector_tstamp", UTCDateTime(), nullable=False),
    sa.Column("vendor", sa.String(255), nullable=False),
    sa.Column("version", sa.String(16), nullable=False),
    sa.Column("errors", LONG_TEXT, nullable=False),
    sa.Column("payload", LONG_TEXT, nullable=False),
    sa.Column("raw", LONG_TEXT),
    sa.Index("ix_snowplow_bad_events_collector", "collector_tstamp"),
)


def _text(value: Any, limit: int) -> str | None:
    """A column-safe string: cut to ``limit``, without NUL or lone surrogates."""
    if value is None:
        return None
    text = str(value)[:limit]
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_json = _ENCODER.encode


def good_row(
    event: dict[str, Any],
    raw: dict[str, Any],
    *,
    collector: datetime,
    derived: datetime,
    schema: str,
    contexts: Sequence[str],
    is_bot: bool,
) -> dict[str, Any]:
    """The ``snowplow_events`` row of an enriched event."""
    return {
        "event_fingerprint": event["event_fingerprint"],
        "event_id": event["event_id"],
        "collector_tstamp": collector,
        "derived_tstamp": derived,
        "app_id": _text(event["app_id"], 255),
        "platform": _text(event["platform"], 16),
        "event": event["event"],
        "event_name": _text(event["event_name"], 255),
        "event_schema": _text(schema, 10_000),
        "se_category": _text(event["se_category"], 255),
        "se_action": _text(event["se_action"], 255),
        "page_urlhost": _text(event["page_urlhost"], 255),
        "page_urlpath": _text(event["page_urlpath"], 500),
        "user_id": _text(event["user_id"], 255),
        "domain_userid": _text(event["domain_userid"], 128),
        "domain_sessionid": _text(event["domain_sessionid"], 128),
        "network_userid": _text(event["network_userid"], 128),
        "is_bot": is_bot,
        "contexts": _json(list(contexts)),
        "enriched": _json({k: v for k, v in event.items() if v is not None}),
        "raw": _json(raw),
    }


@dataclass(frozen=True, slots=True)
class BadRow:
    """A payload or an event that is kept in the bad store."""

    collector_tstamp: datetime
    version: str
    errors: list[str]
    payload: dict[str, Any]
    """The collector's record of the request (querystring, body, headers …)."""
    raw: dict[str, Any] | None
    vendor: str = "com.snowplowanalytics.snowplow"

    def row(self) -> dict[str, Any]:
        return {
            "collector_tstamp": self.collector_tstamp,
            "vendor": self.vendor,
            "version": self.version,
            "errors": _json(self.errors),
            "payload": _json(self.payload),
            "raw": _json(self.raw) if self.raw is not None else None,
        }


_GOOD_COLUMNS = [c.name for c in snowplow_events.columns if c.name != "id"]


def _pg_array_type(column: sa.Column[Any]) -> str:
    if isinstance(column.type, sa.Boolean):
        return "boolean[]"
    if isinstance(column.type, UTCDateTime):
        return "timestamp[]"
    return "text[]"


_PG_INSERT_GOOD = (
    f"INSERT INTO snowplow_events ({', '.join(_GOOD_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"%b::{_pg_array_type(snowplow_events.c[name])}" for name in _GOOD_COLUMNS)
    + ") ON CONFLICT (event_fingerprint) DO NOTHING"
)
"""The good rows as one array per column (see the module's description)."""


def _pg_good_arrays(good: Sequence[dict[str, Any]]) -> tuple[list[Any], ...]:
    arrays = []
    for name in _GOOD_COLUMNS:
        values = [row[name] for row in good]
        if name in ("collector_tstamp", "derived_tstamp"):  # UTCDateTime: naive UTC
            values = [v.astimezone(UTC).replace(tzinfo=None) for v in values]
        arrays.append(values)
    return tuple(arrays)


class EventStore:
    """Writes and reads the good and bad stores."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        dialect = engine.dialect.name
        self._arrays = dialect == "postgresql"
        if dialect == "postgresql":
            self._insert_good: Any = postgresql.insert(snowplow_events).on_conflict_do_nothing(
                index_elements=["event_fingerprint"]
            )
        elif dialect == "sqlite":
            self._insert_good = sqlite.insert(snowplow_events).on_conflict_do_nothing(
                index_elements=["event_fingerprint"]
            )
        else:
            self._insert_good = snowplow_events.insert().prefix_with("IGNORE")
        # RETURNING makes SQLAlchemy batch the rows into one multi-row INSERT (insertmanyvalues)
        self._insert_good = self._insert_good.returning(snowplow_events.c.id)

    def save(self, good: Sequence[dict[str, Any]], bad: Sequence[BadRow]) -> int:
        """Stores good rows (known fingerprints skipped) and bad rows, in one transaction.

        Returns:
            How many good rows were new.
        """
        if not good and not bad:
            return 0
        stored = 0
        with self.engine.begin() as conn:
            if good and self._arrays:
                result = conn.exec_driver_sql(_PG_INSERT_GOOD, _pg_good_arrays(good))
                stored = result.rowcount
            elif good:
                stored = len(conn.execute(self._insert_good, list(good)).all())
            if bad:
                conn.execute(bad_events.insert(), [b.row() for b in bad])
        return stored

    def counts(self) -> tuple[int, int]:
        """How many good and bad events are stored."""
        with self.engine.connect() as conn:
            good = conn.execute(sa.select(sa.func.count()).select_from(snowplow_events))
            bad = conn.execute(sa.select(sa.func.count()).select_from(bad_events))
            return int(good.scalar_one()), int(bad.scalar_one())

    def reset(self) -> None:
        """Deletes every stored event, good and bad."""
        with self.engine.begin() as conn:
            conn.execute(snowplow_events.delete())
            conn.execute(bad_events.delete())

    def good(
        self,
        *,
        event_type: str | None = None,
        schema: str | None = None,
        contexts: Sequence[str] = (),
        limit: int | None = None,
    ) -> list[tuple[str, str, str, str, str]]:
        """Good events, newest first: ``(raw, event_type, schema, contexts, enriched)`` JSON."""
        query = sa.select(
            snowplow_events.c.raw,
            snowplow_events.c.event,
            snowplow_events.c.event_schema,
            snowplow_events.c.contexts,
            snowplow_events.c.enriched,
        ).order_by(snowplow_events.c.id.desc())
        if event_type is not None:
            query = query.where(snowplow_events.c.event == event_type)
        if schema is not None:
            query = query.where(snowplow_events.c.event_schema == schema)
        for uri in contexts:  # a cheap pre-filter, checked exactly below
            query = query.where(
                snowplow_events.c.contexts.contains(json.dumps(uri), autoescape=True)
            )
        if limit is not None and not contexts:
            query = query.limit(limit)
        wanted = set(contexts)
        found: list[tuple[str, str, str, str, str]] = []
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                if wanted and not wanted <= set(json.loads(row.contexts)):
                    continue
                found.append((row.raw, row.event, row.event_schema, row.contexts, row.enriched))
                if limit is not None and len(found) >= limit:
                    break
        return found

    def bad(
        self, *, vendor: str | None = None, version: str | None = None, limit: int | None = None
    ) -> list[tuple[str, str | None, str]]:
        """Bad events, newest first: ``(payload, raw, errors)`` JSON."""
        query = sa.select(bad_events.c.payload, bad_events.c.raw, bad_events.c.errors).order_by(
            bad_events.c.id.desc()
        )
        if vendor is not None:
            query = query.where(bad_events.c.vendor == vendor)
        if version is not None:
            query = query.where(bad_events.c.version == version)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [(r.payload, r.raw, r.errors) for r in conn.execute(query)]
