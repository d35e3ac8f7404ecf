"""Errors raised by usage-ping.

Definitions and bad arguments fail loudly with these; counting, building, tracking and sending
never let them reach the host application (see :mod:`usage_ping.fallback`).
"""

from __future__ import annotations

__all__ = ["BatchTimeoutError", "InvalidRelationError", "UsagePingError"]


class UsagePingError(Exception):
    """Base class of every error that usage-ping raises on purpose."""


class InvalidRelationError(UsagePingError, ValueError):
    """A counter was called with arguments it cannot count: raised at call time.

    Examples: a relation without a single integer primary key, ``sum`` of a text column, an
    inverted range, a batch size below the floor, ``distinct_count`` of the primary key.
    """


class BatchTimeoutError(UsagePingError):
    """A batch kept hitting the per-query time limit after being halved down to the floor."""

    def __init__(self, table: str, low: int, high: int, sql: str) -> None:
        super().__init__(
            f"batch over {table} [{low}, {high}] timed out at the smallest batch size; sql: {sql}"
        )
        self.table = table
        self.low = low
        self.high = high
        self.sql = sql
