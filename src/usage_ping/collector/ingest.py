"""Receiving a ping: check it, store it once, flatten it, score it, answer.

A ping is a JSON object that must carry ``uuid``, ``recorded_at`` (ISO 8601 with a zone) and
``version``; everything else is free-form, so GitLab-shaped payloads are accepted as they are.
It is stored once per ``(uuid, recorded_at)``: a resend (the instance did not get the first
answer) gets the very same response, ``usage_data_id`` included, and stores nothing new.
"""

from __future__ import annotations

import functools
import json
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from usage_ping.collector.durations import pack
from usage_ping.collector.flatten import flatten, meta_rows
from usage_ping.collector.key_paths import KeyPathIds
from usage_ping.collector.score import Leaders, conv_index, instance_values
from usage_ping.collector.settings import ScoreCard
from usage_ping.collector.storage import (
    ON_CONFLICT_INSERTS,
    instances,
    metric_errors,
    ping_meta,
    ping_metrics,
    pings,
)
from usage_ping.delivery.outbox import parse_recorded_at
from usage_ping.payload.serialize import to_json

__all__ = ["Ingestor", "InvalidPingError", "Stored"]


class InvalidPingError(ValueError):
    """The document is not a ping; the message says which field is wrong."""


@dataclass(frozen=True)
class _Rows:
    """What a ping adds besides itself, key paths as ids: its flat ``(key path, value)`` rows,
    its durations packed for ``ping_meta`` (None: it has none), its ``metric_errors`` rows."""

    metrics: list[tuple[int, float]]
    durations: tuple[bytes, bytes] | None
    errors: list[dict[str, Any]]


@dataclass(frozen=True)
class Stored:
    """The outcome: the response to send and whether this request stored a new ping."""

    response: dict[str, Any]
    created: bool
    ping_id: int


def _text(document: dict[str, Any], key: str, limit: int) -> str | None:
    value = document.get(key)
    if value is None:
        return None
    return str(value).replace("\x00", "")[:limit]


def _bounded(value: int | None) -> int | None:
    return value if value is not None and abs(value) < 2**62 else None


# PostgreSQL's binary COPY format, written here rather than row by row through psycopg's
# ``write_row``: ~500 rows per ping made that call a large share of the service's time. A row
# is its field count, then each field as its byte length and its big-endian value (-1: NULL).
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
_TRAILER = b"\xff\xff"
_METRIC_ROW = struct.Struct(">hiqiiid").pack  # 3 fields: ping id (int8), key path id (int4), value


def _insert_metrics(conn: sa.Connection, ping_id: int, rows: list[tuple[int, float]]) -> None:
    """Insert a ping's ``(key path id, value)`` rows: one binary COPY on PostgreSQL (psycopg),
    else one executemany.

    A ping has hundreds of metrics: as single INSERTs (even pipelined) they took most of the
    ingest time; COPY sends them in one statement, inside the ping's transaction.
    """
    if not rows:
        return
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        driver = conn.connection.driver_connection
        assert driver is not None
        row = _METRIC_ROW
        data = b"".join([row(3, 8, ping_id, 4, key, 8, value) for key, value in rows])
        with (
            driver.cursor() as cursor,
            cursor.copy(
                "COPY ping_metrics (ping_id, key_path_id, value) FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            copy.write(_SIGNATURE + data + _TRAILER)
        return
    conn.execute(
        ping_metrics.insert(),
        [{"ping_id": ping_id, "key_path_id": key, "value": value} for key, value in rows],
    )


# The hot path's statements are built once, their values passed as parameters: building them
# per ping (and SQLAlchemy's cache key of each) was a measurable share of a ping's time.
_INSERT_PING = pings.insert()
_INSERT_META = ping_meta.insert()
_INSERT_ERROR = metric_errors.insert()
_SET_RESPONSE = (
    pings.update()
    .where(pings.c.id == sa.bindparam("ping"))
    .values(response=sa.bindparam("response"), score=sa.bindparam("score"))
)
_SAME_PING = sa.and_(
    pings.c.uuid == sa.bindparam("uuid"), pings.c.recorded_at == sa.bindparam("recorded_at")
)
_SELECT_EXISTING = sa.select(pings.c.id, pings.c.response).where(_SAME_PING)
_ONE = sa.select(sa.literal(1).label("one")).subquery("one")
_PROBE = sa.select(
    pings.c.id,
    pings.c.response,
    sa.func.nextval(sa.func.pg_get_serial_sequence("pings", "id")).label("next_id"),
).select_from(_ONE.outerjoin(pings, _SAME_PING))
"""PostgreSQL: the stored ping if this is a resend, and an id for a new one, in one round trip
(a resend wastes an id: ids may have gaps)."""
_FACTS = ("hostname", "version", "edition", "installation_type")


def _upsert_statement(dialect: str) -> Any:
    """The instance's INSERT ... ON CONFLICT DO UPDATE for ``dialect`` (None: it has none).

    The row is made, or its last_seen moved on, and its latest facts replaced unless the
    instance's current latest ping was recorded after this one (an old ping sent late).
    """
    upsert = ON_CONFLICT_INSERTS.get(dialect)
    if upsert is None:
        return None
    statement = upsert(instances)
    # The row in conflict's own latest ping. Named as literal SQL: an INSERT offers no FROM to
    # correlate with, so instances.c.last_ping_id made the subquery join every instance with its
    # latest ping, and any instance's later ping kept this one's facts (and was slow).
    later = sa.exists().where(
        pings.c.id == sa.literal_column("instances.last_ping_id"),
        pings.c.recorded_at > sa.bindparam("ping_recorded_at", type_=pings.c.recorded_at.type),
    )
    return statement.on_conflict_do_update(
        index_elements=[instances.c.uuid],
        set_={
            "last_seen": statement.excluded.last_seen,
            **{
                name: sa.case((later, instances.c[name]), else_=statement.excluded[name])
                for name in ("last_ping_id", *_FACTS)
            },
        },
    )


_UPSERT_STATEMENTS = {dialect: _upsert_statement(dialect) for dialect in ON_CONFLICT_INSERTS}


def _utf8(body: bytes | None) -> str | None:
    """The body as text if it is UTF-8 (a leading byte order mark dropped), else None.

    Parsed JSON holds no raw NUL (it is not allowed outside strings and must be escaped inside),
    so the text fits a text column; serializing the document again cost ~0.3 ms a ping.
    """
    if body is None:
        return None
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return None
    return text.removeprefix("\ufeff")


def check(document: Any) -> tuple[str, datetime]:
    """The ping's identity; raises InvalidPingError naming the field."""
    if not isinstance(document, dict):
        raise InvalidPingError(f"a ping is a JSON object, not {type(document).__name__}")
    uuid = document.get("uuid")
    if not isinstance(uuid, str) or not 0 < len(uuid.strip()) <= 64 or "\x00" in uuid:
        raise InvalidPingError("uuid: required, a string of 1 to 64 characters (no NUL)")
    version = document.get("version")
    if not isinstance(version, str) or not version.strip() or "\x00" in version:
        raise InvalidPingError("version: required, a non-empty string (no NUL)")
    recorded_at = document.get("recorded_at")
    if not isinstance(recorded_at, str):
        raise InvalidPingError("recorded_at: required, an ISO 8601 date and time with a zone")
    try:
        moment = parse_recorded_at(recorded_at)
    except (ValueError, OverflowError) as exc:  # Overflow: a time at the calendar's ends
        raise InvalidPingError(f"recorded_at: {exc}") from None
    return uuid.strip(), moment


class Ingestor:
    """Stores pings in the service's database and scores them."""

    def __init__(self, engine: sa.Engine, card: ScoreCard) -> None:
        self.engine = engine
        self.card = card
        self.leaders = Leaders(card)
        self.key_path_ids = KeyPathIds(engine)

    @staticmethod
    def _probe(
        conn: sa.Connection, uuid: str, recorded_at: datetime
    ) -> tuple[Stored | None, int | None]:
        """The stored ping if this is a resend, else (PostgreSQL) an id for the new one."""
        if conn.dialect.name != "postgresql":
            return Ingestor._existing(conn, uuid, recorded_at), None
        found = conn.execute(_PROBE, {"uuid": uuid, "recorded_at": recorded_at}).one()
        if found.id is not None:
            return Stored(json.loads(found.response or "{}"), created=False, ping_id=found.id), None
        return None, int(found.next_id)

    @staticmethod
    def _existing(conn: sa.Connection, uuid: str, recorded_at: datetime) -> Stored | None:
        found = conn.execute(_SELECT_EXISTING, {"uuid": uuid, "recorded_at": recorded_at}).first()
        if found is None:
            return None
        return Stored(json.loads(found.response or "{}"), created=False, ping_id=found.id)

    def ingest(self, document: Any, *, source: str = "http", body: bytes | None = None) -> Stored:
        """Store the ping (once) and return the response; raises InvalidPingError for bad input.

        ``body``: the JSON text the document was parsed from, stored as the raw payload when it
        is UTF-8 (else the document is serialized again).
        """
        uuid, recorded_at = check(document)
        flat = flatten(document)
        meta = meta_rows(document)
        write = functools.partial(
            self._write,
            document,
            uuid=uuid,
            recorded_at=recorded_at,
            flat=flat,
            meta=meta,
            source=source,
            body=body,
        )
        try:
            return write()
        except sa.exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            # The connection died in use (the database restarted): the pool has been renewed
            # and nothing was stored, so once more on a new connection.
            return write()

    def _write(
        self,
        document: dict[str, Any],
        *,
        uuid: str,
        recorded_at: datetime,
        flat: dict[str, float],
        meta: dict[str, tuple[float | None, str | None]],
        source: str,
        body: bytes | None,
    ) -> Stored:
        # Numbered before the ping's transaction, in one of their own if any is new (KeyPathIds).
        ids = self.key_path_ids.ids(flat.keys(), meta.keys())
        rows = _Rows(
            metrics=[(ids[key], value) for key, value in flat.items()],
            durations=pack(
                [ids[key] for key, (ms, _) in meta.items() if ms is not None],
                [ms for ms, _ in meta.values() if ms is not None],
            ),
            errors=[
                {"key_path_id": ids[key], "error": error}
                for key, (_, error) in meta.items()
                if error is not None
            ],
        )
        try:
            # One transaction: the check for a resend, then the ping, its rows and its instance.
            with self.engine.begin() as conn:
                existing, ping_id = self._probe(conn, uuid, recorded_at)
                if existing is not None:
                    return existing
                return self._store(
                    conn,
                    document,
                    ping_id=ping_id,
                    flat=flat,
                    rows=rows,
                    uuid=uuid,
                    recorded_at=recorded_at,
                    source=source,
                    text=_utf8(body),
                )
        except sa.exc.IntegrityError:
            # The same ping arrived twice at once: the other request stored it.
            with self.engine.connect() as conn:
                existing = self._existing(conn, uuid, recorded_at)
            if existing is None:
                raise
            return existing

    def _store(
        self,
        conn: sa.Connection,
        document: dict[str, Any],
        *,
        flat: dict[str, float],
        rows: _Rows,
        uuid: str,
        recorded_at: datetime,
        source: str,
        ping_id: int | None,
        text: str | None = None,
    ) -> Stored:
        now = datetime.now(UTC)
        users = document.get("active_user_count")
        active_users = users if isinstance(users, int) and not isinstance(users, bool) else None
        leaders = self.leaders.get(conn, now)
        values = instance_values(flat, self.card)
        row: dict[str, Any] = {
            "uuid": uuid,
            "recorded_at": recorded_at,
            "received_at": now,
            "source": source,
            "hostname": _text(document, "hostname", 255),
            "version": _text(document, "version", 64),
            "edition": _text(document, "edition", 32),
            "installation_type": _text(document, "installation_type", 64),
            "active_user_count": _bounded(active_users),
            "payload": to_json(document) if text is None else text,
        }
        if ping_id is not None:
            # The id first (PostgreSQL), so that the ping is inserted with its response: one
            # INSERT instead of an INSERT and an UPDATE of the same row.
            response = {"conv_index": conv_index(ping_id, values, leaders)}
            conn.execute(
                _INSERT_PING,
                {
                    **row,
                    "id": ping_id,
                    "response": to_json(response),
                    "score": response["conv_index"]["score"],
                },
            )
        else:
            ping_id = int(conn.execute(_INSERT_PING, row).inserted_primary_key[0])  # type: ignore[index]
            response = {"conv_index": conv_index(ping_id, values, leaders)}
            conn.execute(
                _SET_RESPONSE,
                {
                    "ping": ping_id,
                    "response": to_json(response),
                    "score": response["conv_index"]["score"],
                },
            )
        _insert_metrics(conn, ping_id, rows.metrics)
        if rows.durations is not None:
            key_path_ids, durations_ms = rows.durations
            conn.execute(
                _INSERT_META,
                {"ping_id": ping_id, "key_path_ids": key_path_ids, "durations_ms": durations_ms},
            )
        if rows.errors:
            conn.execute(_INSERT_ERROR, [{"ping_id": ping_id, **error} for error in rows.errors])
        self._upsert_instance(conn, document, uuid, ping_id, recorded_at=recorded_at, now=now)
        return Stored(response, created=True, ping_id=ping_id)

    @staticmethod
    def _upsert_instance(
        conn: sa.Connection,
        document: dict[str, Any],
        uuid: str,
        ping_id: int,
        *,
        recorded_at: datetime,
        now: datetime,
    ) -> None:
        facts = {
            "hostname": _text(document, "hostname", 255),
            "version": _text(document, "version", 64),
            "edition": _text(document, "edition", 32),
            "installation_type": _text(document, "installation_type", 64),
        }
        statement = _UPSERT_STATEMENTS.get(conn.dialect.name)
        if statement is not None:
            conn.execute(
                statement,
                {
                    "uuid": uuid,
                    "first_seen": now,
                    "last_seen": now,
                    "last_ping_id": ping_id,
                    "ping_recorded_at": recorded_at,
                    **facts,
                },
            )
            return
        current = conn.execute(
            sa.select(instances.c.last_ping_id, pings.c.recorded_at)
            .select_from(instances)
            .outerjoin(pings, pings.c.id == instances.c.last_ping_id)
            .where(instances.c.uuid == uuid)
        ).first()
        if current is None:
            try:
                with conn.begin_nested():
                    conn.execute(
                        instances.insert().values(
                            uuid=uuid, first_seen=now, last_seen=now, last_ping_id=ping_id, **facts
                        )
                    )
                return
            except sa.exc.IntegrityError:
                pass  # another ping of this instance made the row meanwhile: update it
        newer = current is None or current.recorded_at is None or recorded_at >= current.recorded_at
        values: dict[str, Any] = {"last_seen": now}
        if newer:  # an old ping sent late does not replace the latest facts
            values.update(last_ping_id=ping_id, **facts)
        conn.execute(instances.update().where(instances.c.uuid == uuid).values(**values))
