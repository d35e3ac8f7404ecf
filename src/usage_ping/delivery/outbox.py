"""The outbox: every built payload is stored before it is sent, and kept until it is delivered.

A payload is written to ``raw_usage_data`` (in the host's database) exactly as it will be sent,
the moment it is built. Sending reads it from there, so a payload survives a crash between build
and send, a central service that is down for days, or a host that is off when its week comes:
the next run sends what is still pending. Its identity is ``recorded_at`` (unique here; the
central service deduplicates on uuid + recorded_at), so a payload sent twice — a crash after the
service answered but before ``sent_at`` was recorded — is stored once there.

Rows record the attempts, the last error, whether the service refused the payload for good (a
4xx other than 408/429: sending the same bytes again cannot help), the ``usage_data_id`` and the
whole response (with the DevOps score). Rows older than the retention period are pruned.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from usage_ping.payload.serialize import to_json
from usage_ping.state import migrate, outbox_table

__all__ = ["DEFAULT_RETENTION", "Outbox", "OutboxRow"]

DEFAULT_RETENTION = timedelta(days=90)
"""How long rows are kept after they were built."""


@dataclass(frozen=True)
class OutboxRow:
    """One stored payload."""

    id: int
    recorded_at: datetime
    body: bytes
    created_at: datetime
    sent_at: datetime | None
    exported_at: datetime | None
    attempts: int
    last_error: str | None
    given_up: bool
    usage_data_id: int | None
    response: dict[str, Any] | None

    @property
    def pending(self) -> bool:
        """Whether the next run should (re)send it."""
        return self.sent_at is None and self.exported_at is None and not self.given_up

    def payload(self) -> dict[str, Any]:
        """The stored payload as a dict."""
        data: dict[str, Any] = json.loads(self.body)
        return data


def _row(found: sa.Row[Any]) -> OutboxRow:
    return OutboxRow(
        id=found.id,
        recorded_at=found.recorded_at,
        body=found.payload.encode(),
        created_at=found.created_at,
        sent_at=found.sent_at,
        exported_at=found.exported_at,
        attempts=found.attempts,
        last_error=found.last_error,
        given_up=bool(found.given_up),
        usage_data_id=found.usage_data_id,
        response=json.loads(found.response) if found.response else None,
    )


def parse_recorded_at(text: str) -> datetime:
    """The payload's ``recorded_at`` (ISO 8601, ``Z`` allowed) as an aware UTC datetime."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"recorded_at {text!r} has no time zone")
    return moment.astimezone(UTC)


class Outbox:
    """Built payloads in the host's database.

    Args:
        engine: the host's database (the table is created on first use).
        retention: rows older than this (by ``created_at``) are pruned.
        clock: the current time (UTC), replaceable in tests.
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        retention: timedelta = DEFAULT_RETENTION,
        clock: Any = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.retention = retention
        self.clock = clock
        migrate(engine)

    def add(self, payload: dict[str, Any]) -> OutboxRow:
        """Store a built payload (serialized once, exactly as it will be sent)."""
        recorded_at = parse_recorded_at(payload["recorded_at"])
        body = to_json(payload)
        with self.engine.begin() as conn:
            result = conn.execute(
                outbox_table.insert().values(
                    recorded_at=recorded_at,
                    payload=body,
                    created_at=self.clock(),
                    attempts=0,
                    given_up=False,
                )
            )
            key = result.inserted_primary_key
        assert key is not None
        return self.get(int(key[0]))

    def get(self, row_id: int) -> OutboxRow:
        """One row by id (KeyError if there is none)."""
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(outbox_table).where(outbox_table.c.id == row_id)).first()
        if found is None:
            raise KeyError(f"no outbox row {row_id}")
        return _row(found)

    def rows(self) -> list[OutboxRow]:
        """Every row, oldest payload first."""
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(outbox_table).order_by(outbox_table.c.recorded_at))
            return [_row(r) for r in found]

    def pending(self) -> list[OutboxRow]:
        """Payloads still to send, oldest first (missed weeks are sent, not skipped)."""
        query = (
            sa.select(outbox_table)
            .where(
                outbox_table.c.sent_at.is_(None),
                outbox_table.c.exported_at.is_(None),
                outbox_table.c.given_up.is_(False),
            )
            .order_by(outbox_table.c.recorded_at)
        )
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query)]

    def latest(self) -> OutboxRow | None:
        """The most recently built payload."""
        query = sa.select(outbox_table).order_by(outbox_table.c.recorded_at.desc()).limit(1)
        with self.engine.connect() as conn:
            found = conn.execute(query).first()
        return None if found is None else _row(found)

    def last_sent(self) -> OutboxRow | None:
        """The most recently delivered payload (its response holds the DevOps score)."""
        query = (
            sa.select(outbox_table)
            .where(outbox_table.c.sent_at.is_not(None))
            .order_by(outbox_table.c.sent_at.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            found = conn.execute(query).first()
        return None if found is None else _row(found)

    def built_since(self, moment: datetime) -> OutboxRow | None:
        """The latest payload built at or after ``moment``, if any."""
        query = (
            sa.select(outbox_table)
            .where(outbox_table.c.created_at >= moment)
            .order_by(outbox_table.c.created_at.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            found = conn.execute(query).first()
        return None if found is None else _row(found)

    def _update(self, row_id: int, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(outbox_table.update().where(outbox_table.c.id == row_id).values(**values))

    def mark_sent(
        self, row_id: int, *, usage_data_id: int, response: dict[str, Any], attempts: int
    ) -> None:
        """Record a delivery: when, the service's id for it, and its whole response."""
        self._update(
            row_id,
            sent_at=self.clock(),
            usage_data_id=usage_data_id,
            response=to_json(response),
            attempts=outbox_table.c.attempts + attempts,
            last_error=None,
        )

    def mark_failed(self, row_id: int, *, error: str, attempts: int, give_up: bool) -> None:
        """Record a failed send; ``give_up`` when the service refused the payload for good."""
        self._update(
            row_id,
            attempts=outbox_table.c.attempts + attempts,
            last_error=error[:500],
            given_up=give_up,
        )

    def mark_exported(self, row_id: int) -> None:
        """Record that the payload left by hand (an export for an air-gapped host)."""
        self._update(row_id, exported_at=self.clock())

    def prune(self) -> int:
        """Delete rows built before the retention period; returns how many went."""
        cutoff = self.clock() - self.retention
        with self.engine.begin() as conn:
            result = conn.execute(outbox_table.delete().where(outbox_table.c.created_at < cutoff))
        return int(result.rowcount)
