"""One run of the weekly job: build (at most once a day), store in the outbox, send what is pending.

:func:`submit` is what ``usage-ping submit`` (cron, systemd timers, Kubernetes CronJobs) and the
in-process scheduler call. It holds the instance lock for the whole run, so two processes that
start at the same moment produce one payload: the second finds the lock taken and does nothing.

Order matters for reliability: the payload is committed to the outbox before any byte is sent,
and ``sent_at`` is recorded only after the service answered with a ``usage_data_id``. A crash
between the two leaves the row pending, the next run sends it again, and the service, which
deduplicates on uuid + recorded_at, stores it once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from usage_ping.delivery.lock import instance_lock
from usage_ping.delivery.outbox import OutboxRow
from usage_ping.delivery.transport import SendError, Transport
from usage_ping.fallback import logger

if TYPE_CHECKING:
    from usage_ping.instance import UsagePing

__all__ = ["DevOpsReport", "SubmitResult", "devops_report", "export", "submit"]

Status = Literal["disabled", "busy", "sent", "failed", "nothing to send"]


@dataclass
class SubmitResult:
    """What a run did."""

    status: Status
    built: OutboxRow | None = None
    sent: list[OutboxRow] = field(default_factory=list)
    failed: list[tuple[OutboxRow, str]] = field(default_factory=list)

    def describe(self) -> str:
        """One line for logs and the command line."""
        if self.status in ("disabled", "busy", "nothing to send"):
            reasons = {
                "disabled": "usage ping is disabled: nothing built or sent",
                "busy": "another process of this instance is submitting: nothing done",
                "nothing to send": "already built today and nothing pending",
            }
            return reasons[self.status]
        parts = []
        if self.built is not None:
            parts.append(f"built the payload recorded at {self.built.recorded_at:%Y-%m-%d %H:%M}")
        if self.sent:
            ids = ", ".join(str(r.usage_data_id) for r in self.sent)
            parts.append(f"sent {len(self.sent)} (usage_data_id {ids})")
        for row, error in self.failed:
            parts.append(f"could not send the payload of {row.recorded_at:%Y-%m-%d}: {error}")
        return "; ".join(parts)


def _start_of_day(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date(), time.min, tzinfo=UTC)


def submit(
    ping: UsagePing, transport: Transport | None = None, *, build: bool = True
) -> SubmitResult:
    """Build today's payload if none was built yet, then send every pending payload.

    Args:
        ping: the instance.
        transport: how to reach the central service (default: ``ping.transport()``).
        build: build a payload when none was built today (False: only send what is pending).

    Returns:
        What happened. Errors of sending are recorded in the outbox and returned, not raised;
        an error of building (the database is down, the dictionary is invalid) raises.
    """
    if not ping.enabled:
        return SubmitResult("disabled")
    with instance_lock(ping.engine) as held:
        if not held:
            return SubmitResult("busy")
        outbox = ping.outbox
        pruned = outbox.prune()
        if pruned:
            logger.info("pruned %d outbox rows past the retention period", pruned)
        result = SubmitResult("nothing to send")
        if build and outbox.built_since(_start_of_day(ping.clock())) is None:
            payload = ping.build()
            if payload is None:  # switched off meanwhile
                return SubmitResult("disabled")
            result.built = outbox.add(payload)
        pending = outbox.pending()
        if not pending:
            return result
        own = transport is None
        transport = transport or ping.transport()
        try:
            for row in pending:
                _send(ping, transport, row, result)
        finally:
            if own:
                transport.close()
        result.status = "failed" if result.failed else "sent"
        return result


def _send(ping: UsagePing, transport: Transport, row: OutboxRow, result: SubmitResult) -> None:
    outbox = ping.outbox
    try:
        delivered = transport.send(row.body)
    except SendError as exc:
        outbox.mark_failed(
            row.id, error=exc.last_error, attempts=exc.attempts, give_up=not exc.retryable
        )
        result.failed.append((outbox.get(row.id), exc.last_error))
        transport.report_error(
            {
                "uuid": ping.state.uuid,
                "hostname": ping.facts().hostname,
                "version": ping.settings.version,
                "recorded_at": row.payload().get("recorded_at"),
                "message": exc.last_error,
                "attempts": exc.attempts,
            }
        )
        return
    outbox.mark_sent(
        row.id,
        usage_data_id=delivered.usage_data_id,
        response=delivered.response,
        attempts=delivered.attempts,
    )
    result.sent.append(outbox.get(row.id))
    payload = row.payload()
    transport.post_metadata(
        {
            "uuid": payload.get("uuid"),
            "recorded_at": payload.get("recorded_at"),
            "metrics": payload.get("meta", {}).get("metrics", []),
        }
    )


def export(ping: UsagePing, out: Path) -> OutboxRow | None:
    """Write the payload an air-gapped instance cannot send to ``out``, exactly as it would be sent.

    Uses the pending payload built today if there is one, else builds one (and stores it in the
    outbox). The row is marked exported, so it is not also sent automatically. Returns None
    (and writes nothing) when usage ping is disabled.
    """
    if not ping.enabled:
        return None
    with instance_lock(ping.engine) as held:
        if not held:
            raise RuntimeError("another process of this instance is submitting; try again")
        outbox = ping.outbox
        row = outbox.built_since(_start_of_day(ping.clock()))
        if row is None or not row.pending:
            payload = ping.build()
            if payload is None:
                return None
            row = outbox.add(payload)
        out.write_bytes(row.body)
        outbox.mark_exported(row.id)
        return outbox.get(row.id)


@dataclass(frozen=True)
class DevOpsReport:
    """The DevOps score that came back with a delivered payload."""

    recorded_at: datetime
    usage_data_id: int | None
    score: float | None
    features: list[tuple[str, float | None, float | None, float | None]]
    """(feature, leader, instance, percentage) per score feature; None where the instance did not
    report the feature (it is then left out of the score)."""


def devops_report(row: OutboxRow) -> DevOpsReport | None:
    """The ``conv_index`` block of a delivered payload's response, or None without one."""
    block: Any = (row.response or {}).get("conv_index")
    if not isinstance(block, dict):
        return None

    def number(value: Any) -> float | None:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if ok else None

    features = []
    for key in sorted(block):
        if not key.startswith("percentage_"):
            continue
        name = key.removeprefix("percentage_")
        leader = number(block.get(f"leader_{name}"))
        features.append((name, leader, number(block.get(f"instance_{name}")), number(block[key])))
    score = block.get("score")
    if not isinstance(score, int | float):
        known = [f[3] for f in features if f[3] is not None]
        score = sum(known) / len(known) if known else None
    return DevOpsReport(row.recorded_at, row.usage_data_id, score, features)
