"""The outbox on PostgreSQL, MariaDB and SQLite: stored exactly, pending in order, pruned."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from usage_ping.delivery.outbox import Outbox, parse_recorded_at

NOW = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)


def _payload(recorded_at: str, **extra: Any) -> dict[str, Any]:
    return {"uuid": "u-1", "recorded_at": recorded_at, "counts": {"issues": 3}, **extra}


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_a_payload_is_stored_exactly_as_it_will_be_sent(engine: sa.Engine) -> None:
    """The body is the serialized payload, byte for byte; non-ASCII and big payloads survive."""
    outbox = Outbox(engine, clock=Clock(NOW))
    big = {f"metric_{i}": i for i in range(20_000)}  # ~400 KB: past MariaDB's 64 KB TEXT
    payload = _payload("2026-11-21T09:30:00.123Z", settings={"name": "Zürich 東京"}, counts=big)
    row = outbox.add(payload)
    assert row.body == json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    assert row.payload() == payload
    assert row.recorded_at == datetime(2026, 11, 21, 9, 30, 0, 123000, tzinfo=UTC)
    assert row.created_at == NOW
    assert row.pending
    assert row.attempts == 0


def test_recorded_at_is_unique(engine: sa.Engine) -> None:
    """The same payload cannot be stored twice."""
    outbox = Outbox(engine, clock=Clock(NOW))
    outbox.add(_payload("2026-11-21T09:30:00.000Z"))
    with pytest.raises(sa.exc.IntegrityError):
        outbox.add(_payload("2026-11-21T09:30:00.000Z"))


def test_pending_sent_failed_given_up_exported(engine: sa.Engine) -> None:
    """Only rows neither sent, exported nor given up are pending, oldest payload first."""
    outbox = Outbox(engine, clock=Clock(NOW))
    rows = [outbox.add(_payload(f"2026-11-{d:02d}T03:00:00.000Z")) for d in (14, 7, 21, 1)]
    assert [r.recorded_at.day for r in outbox.pending()] == [1, 7, 14, 21]
    outbox.mark_sent(rows[0].id, usage_data_id=41, response={"conv_index": {}}, attempts=2)
    outbox.mark_failed(rows[1].id, error="HTTP 400", attempts=1, give_up=True)
    outbox.mark_failed(rows[2].id, error="HTTP 503", attempts=5, give_up=False)
    outbox.mark_exported(rows[3].id)
    assert [r.recorded_at.day for r in outbox.pending()] == [21]
    sent = outbox.get(rows[0].id)
    assert (sent.sent_at, sent.usage_data_id, sent.attempts) == (NOW, 41, 2)
    assert sent.response == {"conv_index": {}}
    failed = outbox.get(rows[2].id)
    assert (failed.last_error, failed.attempts, failed.given_up) == ("HTTP 503", 5, False)
    outbox.mark_failed(rows[2].id, error="HTTP 502", attempts=3, give_up=False)
    assert outbox.get(rows[2].id).attempts == 8
    assert outbox.last_sent() == sent
    latest = outbox.latest()
    assert latest is not None
    assert latest.recorded_at.day == 21


def test_built_since_and_prune(engine: sa.Engine) -> None:
    """Rows built before the retention period are deleted; built_since finds today's."""
    clock = Clock(NOW - timedelta(days=100))
    outbox = Outbox(engine, retention=timedelta(days=90), clock=clock)
    outbox.add(_payload("2026-08-13T03:00:00.000Z"))
    clock.now = NOW
    today = outbox.add(_payload("2026-11-21T09:30:00.000Z"))
    assert outbox.built_since(datetime(2026, 11, 21, tzinfo=UTC)) == today
    assert outbox.built_since(datetime(2026, 11, 22, tzinfo=UTC)) is None
    assert outbox.prune() == 1
    assert [r.id for r in outbox.rows()] == [today.id]


def test_parse_recorded_at() -> None:
    """Z and offsets become aware UTC; a time without zone is refused."""
    assert parse_recorded_at("2026-11-21T09:30:00.5Z") == datetime(
        2026, 11, 21, 9, 30, 0, 500000, tzinfo=UTC
    )
    assert parse_recorded_at("2026-11-21T10:30:00+01:00").hour == 9
    with pytest.raises(ValueError, match="no time zone"):
        parse_recorded_at("2026-11-21T09:30:00")
