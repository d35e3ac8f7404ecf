"""Windows and keys: complete ISO weeks and complete days, correct across year ends."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from usage_ping.events import KnownEvent
from usage_ping.events.windows import key, period, periods, window

WEEKLY = KnownEvent("i_weekly", "c", "weekly", redis_slot="s")
DAILY = KnownEvent("i_daily", "c", "daily", redis_slot="s")


@pytest.mark.parametrize(
    ("today", "weekly", "monthly_first"),
    [
        (date(2021, 1, 4), ["2020-W53"], "2020-W50"),  # a year with ISO week 53
        (date(2021, 1, 3), ["2020-W52"], "2020-W49"),  # Sunday: week 53 is not complete yet
        (date(2020, 1, 1), ["2019-W52"], "2019-W49"),  # ISO week 1 of 2020 started in December
        (date(2020, 1, 6), ["2020-W01"], "2019-W50"),  # week 1 that began on 2019-12-30
        (date(2026, 11, 21), ["2026-W46"], "2026-W43"),
    ],
)
def test_weekly_windows_are_the_last_complete_iso_weeks(
    today: date, weekly: list[str], monthly_first: str
) -> None:
    """weekly = the last complete ISO week, monthly = the last four, at year ends too."""
    w = window("weekly", "weekly", today)
    m = window("weekly", "monthly", today)
    assert periods(WEEKLY, w.start, w.end) == weekly
    labels = periods(WEEKLY, m.start, m.end)
    assert len(labels) == 4
    assert labels[0] == monthly_first
    assert labels[-1] == weekly[0]


def test_daily_windows_are_complete_days_before_today_including_leap_days() -> None:
    """7 and 28 complete days ending yesterday; February 29 is one of them in a leap year."""
    w = window("daily", "weekly", date(2024, 3, 1))
    m = window("daily", "monthly", date(2024, 3, 1))
    assert (w.start, w.end) == (date(2024, 2, 23), date(2024, 2, 29))
    assert len(periods(DAILY, m.start, m.end)) == 28
    assert "2024-02-29" in periods(DAILY, m.start, m.end)


def test_days_at_year_end_get_their_iso_week() -> None:
    """Dates around New Year map to the ISO week they belong to, not the calendar year."""
    assert period(WEEKLY, date(2019, 12, 30)) == "2020-W01"
    assert period(WEEKLY, date(2020, 12, 31)) == "2020-W53"
    assert period(WEEKLY, date(2021, 1, 3)) == "2020-W53"
    assert period(WEEKLY, date(2021, 1, 4)) == "2021-W01"
    assert period(DAILY, date(2020, 12, 31)) == "2020-12-31"


def test_weekly_periods_keep_only_weeks_wholly_inside_the_range() -> None:
    """A range that cuts a week keeps only the complete weeks inside it."""
    assert periods(WEEKLY, date(2026, 11, 10), date(2026, 11, 22)) == ["2026-W47"]
    assert periods(WEEKLY, date(2026, 11, 10), date(2026, 11, 15)) == []
    assert periods(WEEKLY, date(2026, 11, 16), date(2026, 11, 10)) == []


def test_keys_share_the_slot_tag() -> None:
    """Keys of one slot carry the same {tag}; contexts and periods follow."""
    assert key(WEEKLY, "2026-W47") == "usage_ping:hll:{s}:i_weekly:2026-W47"
    assert key(DAILY, "2026-11-21", "premium") == "usage_ping:hll:{s}:premium:i_daily:2026-11-21"
    untagged = KnownEvent("o_alone", "c", "daily")
    assert key(untagged, "2026-11-21").startswith("usage_ping:hll:{o_alone}:")


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)))
def test_every_day_has_full_windows_that_end_before_today(today: date) -> None:
    """For any date: 1 and 4 complete weeks, 7 and 28 complete days, all before today."""
    for frame, weeks, days in (("weekly", 1, 7), ("monthly", 4, 28)):
        w = window("weekly", frame, today)  # type: ignore[arg-type]
        labels = periods(WEEKLY, w.start, w.end)
        assert len(labels) == weeks
        assert w.start.weekday() == 0
        assert w.end.weekday() == 6
        assert today - timedelta(days=7) <= w.end < today
        d = window("daily", frame, today)  # type: ignore[arg-type]
        assert len(periods(DAILY, d.start, d.end)) == days
        assert d.end == today - timedelta(days=1)
