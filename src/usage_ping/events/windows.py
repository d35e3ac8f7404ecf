"""Time windows and the keys that hold each period of an event.

**Keys.** ``usage_ping:hll:{<slot>}:[<context>:]<event>:<period>``, where the period is the ISO
week (``2026-W47``) for weekly aggregation and the calendar date (``2026-11-21``) for daily
aggregation. The ``{slot}`` hash tag keeps every key of a slot in one Redis Cluster slot. Weeks
use the ISO year *and* the ISO week together (GitLab paired an ISO year with a calendar day of the
year for daily keys, which broke at year ends).

**Windows** (all dates in UTC, ``today`` being the day the payload is built):

==============  ====================================  ====================================
time frame      weekly aggregation                    daily aggregation
==============  ====================================  ====================================
``weekly``      the last complete ISO week            the 7 complete days before today
``monthly``     the last 4 complete ISO weeks         the 28 complete days before today
==============  ====================================  ====================================

A complete ISO week runs Monday to Sunday and ended before today's week began; the current week
and today never count, because they are still filling. Every window therefore has at least one
period, whatever the date: there is no year end, week 53 or leap day at which it comes out empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from usage_ping.events.definitions import KnownEvent

__all__ = ["TimeFrame", "Window", "key", "period", "periods", "window"]

TimeFrame = Literal["weekly", "monthly"]
_WEEKS = {"weekly": 1, "monthly": 4}
_DAYS = {"weekly": 7, "monthly": 28}


@dataclass(frozen=True)
class Window:
    """Dates from ``start`` to ``end``, both included."""

    start: date
    end: date

    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days + 1)]


def window(aggregation: str, frame: TimeFrame, today: date) -> Window:
    """The window of ``frame`` for events of ``aggregation``, as of ``today`` (see the table)."""
    if aggregation == "weekly":
        this_monday = today - timedelta(days=today.weekday())
        return Window(this_monday - timedelta(weeks=_WEEKS[frame]), this_monday - timedelta(1))
    return Window(today - timedelta(days=_DAYS[frame]), today - timedelta(days=1))


def period(event: KnownEvent, day: date) -> str:
    """The period holding ``day`` for ``event``: its ISO week or its date."""
    if event.aggregation == "weekly":
        iso = day.isocalendar()
        return f"{iso.year}-W{iso.week:02d}"
    return day.isoformat()


def periods(event: KnownEvent, start: date, end: date) -> list[str]:
    """Periods of ``event`` inside ``[start, end]``: days, or ISO weeks lying wholly inside."""
    if start > end:
        return []
    if event.aggregation == "daily":
        return [period(event, d) for d in Window(start, end).days()]
    first_monday = start + timedelta(days=(7 - start.weekday()) % 7)
    found = []
    monday = first_monday
    while monday + timedelta(days=6) <= end:
        found.append(period(event, monday))
        monday += timedelta(weeks=1)
    return found


def key(event: KnownEvent, period_label: str, context: str = "") -> str:
    """The store key of one period of ``event`` (in ``context``, e.g. a plan, if given)."""
    scope = f"{context}:" if context else ""
    return f"usage_ping:hll:{{{event.slot}}}:{scope}{event.name}:{period_label}"
