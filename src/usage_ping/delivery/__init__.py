"""Delivery: the outbox, the transport to the central service, the weekly schedule, export."""

from usage_ping.delivery.lock import LockError, instance_lock
from usage_ping.delivery.outbox import Outbox, OutboxRow
from usage_ping.delivery.schedule import Slot, next_run, splay, weekly_slot
from usage_ping.delivery.submit import DevOpsReport, SubmitResult, devops_report, export, submit
from usage_ping.delivery.transport import Delivered, SendError, Transport

__all__ = [
    "Delivered",
    "DevOpsReport",
    "LockError",
    "Outbox",
    "OutboxRow",
    "SendError",
    "Slot",
    "SubmitResult",
    "Transport",
    "devops_report",
    "export",
    "instance_lock",
    "next_run",
    "splay",
    "submit",
    "weekly_slot",
]
