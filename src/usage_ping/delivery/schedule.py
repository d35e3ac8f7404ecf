"""The weekly slot at which an instance sends its usage ping, derived from its uuid.

Why: thousands of self-managed instances send one ping a week. If they all sent at the same
minute (say Sunday 00:00, or whenever ``cron`` happens to wake them) the central service would
take the whole week's load in one burst and sit idle the rest of the time. Each instance
therefore gets its own minute of the week, and the minutes of all instances are spread evenly
over the 10,080 minutes of a week.

GitLab's approach (``config/settings.rb``): three hashes of the uuid, ``MD5(uuid + "minute") %
60``, ``MD5(uuid + "hour") % 24`` and ``MD5(uuid) % 7`` (SHA-256 in newer versions), assembled
into a cron line ``"m h * * dow"``; the worker then sleeps a random 0-60 s before sending. Earlier
versions picked a random 10-minute window at a random hour on Sundays, which put every instance on
one day of the week.

Ours: **one** SHA-256 of the uuid (normalised: surrounding whitespace stripped, lower case, so
``"0B6D…"`` and ``"0b6d…"`` are the same instance), read as a 256-bit integer, modulo 10,080,
is the instance's minute of the week (Monday 00:00 UTC = 0). Weekday, hour and minute follow
from it. The result is the same in every process and on every machine (no ``hash()``, no
randomness), and for random (v4) uuids every minute of the week is equally likely: the modulo
bias of a 256-bit integer is below 2**-242. :func:`splay` then adds a random delay of up to a
minute, so that instances that share a minute do not all connect at its first second.

Every time here is UTC. A :meth:`Slot.cron` line is in UTC too, while a plain crontab runs in the
machine's local time: use ``CRON_TZ=UTC`` (cronie), ``timeZone: Etc/UTC`` in a Kubernetes
CronJob, or ``OnCalendar=… UTC`` in a systemd timer.

Example:
    >>> slot = weekly_slot("0b6d2f3c-8a1e-4c4b-9d7e-2f3a4b5c6d7e")
    >>> slot.cron()
    '38 15 * * 5'
    >>> slot.describe()
    'Fridays at 15:38 UTC'
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["MINUTES_PER_WEEK", "Slot", "next_run", "splay", "weekly_slot"]

MINUTES_PER_WEEK = 7 * 24 * 60
"""10,080: the number of slots an instance can fall into."""

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class Slot:
    """A minute of the week, in UTC, at which a weekly job runs.

    Args:
        weekday: 0 = Monday … 6 = Sunday, as :meth:`datetime.weekday` counts.
        hour: 0-23.
        minute: 0-59.

    Example:
        >>> Slot(weekday=1, hour=3, minute=17).describe()
        'Tuesdays at 03:17 UTC'
        >>> Slot(weekday=6, hour=0, minute=5).cron()
        '5 0 * * 0'
    """

    weekday: int
    hour: int
    minute: int

    def __post_init__(self) -> None:
        for field, value, top in (
            ("weekday", self.weekday, 6),
            ("hour", self.hour, 23),
            ("minute", self.minute, 59),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
                raise ValueError(f"Slot.{field} must be an integer in [0, {top}], got {value!r}")

    @classmethod
    def from_minute_of_week(cls, minute_of_week: int) -> Slot:
        """The slot at ``minute_of_week`` minutes after Monday 00:00 UTC (0 ≤ it < 10,080)."""
        if not 0 <= minute_of_week < MINUTES_PER_WEEK:
            raise ValueError(
                f"minute of the week must be in [0, {MINUTES_PER_WEEK}), got {minute_of_week}"
            )
        day, rest = divmod(minute_of_week, 24 * 60)
        return cls(weekday=day, hour=rest // 60, minute=rest % 60)

    @property
    def minute_of_week(self) -> int:
        """Minutes after Monday 00:00 UTC."""
        return (self.weekday * 24 + self.hour) * 60 + self.minute

    def cron(self) -> str:
        """The slot as a cron line's five time fields, ``"M H * * D"``, in UTC.

        Cron counts weekdays from Sunday: 0 (or 7) = Sunday, 1 = Monday … 6 = Saturday. So
        ``weekday`` 0 (Monday) becomes ``1`` and ``weekday`` 6 (Sunday) becomes ``0``.
        """
        return f"{self.minute} {self.hour} * * {(self.weekday + 1) % 7}"

    def describe(self) -> str:
        """The slot for people, e.g. ``"Tuesdays at 03:17 UTC"``."""
        return f"{_WEEKDAYS[self.weekday]}s at {self.hour:02d}:{self.minute:02d} UTC"


def weekly_slot(instance_uuid: str) -> Slot:
    """The instance's weekly slot: SHA-256 of its uuid, modulo the minutes of a week.

    Stable across processes, machines and Python versions; uniform over the week for random
    uuids. The uuid is stripped and lower-cased first (the same uuid in upper case is the same
    instance).

    Example:
        >>> weekly_slot("0b6d2f3c-8a1e-4c4b-9d7e-2f3a4b5c6d7e")
        Slot(weekday=4, hour=15, minute=38)
    """
    normalised = instance_uuid.strip().lower()
    if not normalised:
        raise ValueError("an instance uuid is needed to derive the weekly slot, got an empty one")
    digest = hashlib.sha256(normalised.encode("utf-8")).digest()
    return Slot.from_minute_of_week(int.from_bytes(digest, "big") % MINUTES_PER_WEEK)


def next_run(slot: Slot, after: datetime) -> datetime:
    """The first time at ``slot`` strictly after ``after``, as an aware UTC datetime.

    ``after`` must be timezone-aware (any zone); the result has seconds and microseconds zero and
    is at most seven days later. An ``after`` exactly at the slot gives the next week's run.
    Because slots are UTC, daylight saving time never moves a run.

    Example:
        >>> next_run(Slot(1, 3, 17), datetime(2026, 11, 3, 3, 17, tzinfo=UTC))
        datetime.datetime(2026, 11, 10, 3, 17, tzinfo=datetime.timezone.utc)
    """
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError(f"next_run needs a timezone-aware datetime, got naive {after!r}")
    now = after.astimezone(UTC)
    monday = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=now.weekday())
    run = monday + timedelta(minutes=slot.minute_of_week)
    if run <= now:
        run += timedelta(days=7)
    return run


def splay(max_seconds: float = 60.0, random: Callable[[], float] = random.random) -> float:
    """A random delay in ``[0, max_seconds)`` to wait before sending (0.0 when the bound is 0).

    Args:
        max_seconds: the upper bound (exclusive), at least 0.
        random: a source of floats in ``[0, 1)``; pass a seeded ``Random().random`` in tests.

    Example:
        >>> 0 <= splay() < 60
        True
    """
    if not math.isfinite(max_seconds) or max_seconds < 0:
        raise ValueError(f"max_seconds must be a finite number >= 0, got {max_seconds!r}")
    fraction = random()
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"random() must return a float in [0, 1), got {fraction!r}")
    if max_seconds == 0:
        return 0.0
    # fraction < 1 keeps the product below max_seconds under round-to-nearest; the min() is a
    # belt for that brace.
    return min(max_seconds * fraction, math.nextafter(max_seconds, 0.0))
