"""What the time frames mean, defined once.

All windows are in UTC and end where the day of the payload (``today``) begins, so that they
hold complete days only and two payloads built on the same day agree.

Database metrics (rows dated by the definition's ``time_column``):

- ``7d``: the 7 complete days before today, ``[today - 7 days, today)``;
- ``28d``: the 28 complete days before today, ``[today - 28 days, today)``;
- ``all``: every row, no time condition;
- ``none``: not a count over time (a setting, a fact).

Event counters (:mod:`usage_ping.events.windows`): ``7d`` is the last complete ISO week for weekly
aggregation and the 7 complete days before today for daily aggregation; ``28d`` the last 4
complete ISO weeks, or the 28 complete days.

Unlike GitLab's database metrics (whose 28d window ran from 30 to 2 days ago), ours end at the
start of today: rows of today, still being written, never count; yesterday's do.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

__all__ = ["DAYS", "database_window"]

DAYS = {"7d": 7, "28d": 28}


def database_window(time_frame: str, today: date) -> tuple[datetime, datetime] | None:
    """``[start, end)`` as UTC datetimes for a 7d or 28d database metric; None for all/none."""
    days = DAYS.get(time_frame)
    if days is None:
        return None
    end = datetime.combine(today, time.min, tzinfo=UTC)
    return end - timedelta(days=days), end
