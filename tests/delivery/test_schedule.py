"""The weekly slot per instance: stable, valid, spread evenly; next_run, cron lines, splay."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import random
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from usage_ping.delivery import schedule
from usage_ping.delivery.schedule import MINUTES_PER_WEEK, Slot, next_run, splay, weekly_slot

# Pinned: changing the derivation would move every instance's weekly run.
KNOWN_SLOTS = {
    "0b6d2f3c-8a1e-4c4b-9d7e-2f3a4b5c6d7e": Slot(weekday=4, hour=15, minute=38),
    "00000000-0000-0000-0000-000000000000": Slot(weekday=2, hour=18, minute=16),
    "uuid-not-set": Slot(weekday=6, hour=21, minute=23),
}

# Chi-square critical values at significance 0.001 by degrees of freedom (used without scipy).
CHI_SQUARE_CRITICAL_0_001 = {6: 22.458, 23: 49.728, 59: 98.324}

slots = st.builds(
    Slot,
    weekday=st.integers(0, 6),
    hour=st.integers(0, 23),
    minute=st.integers(0, 59),
)
# Zones with odd offsets, 30-minute DST (Lord Howe), a skipped day (Apia, 2011), and the extremes.
ZONES = [
    UTC,
    timezone(timedelta(hours=-12)),
    timezone(timedelta(hours=14)),
    *map(
        ZoneInfo,
        [
            "Europe/Berlin",
            "America/New_York",
            "America/St_Johns",
            "Asia/Kathmandu",
            "Australia/Lord_Howe",
            "Pacific/Chatham",
            "Pacific/Apia",
        ],
    ),
]
EARLIEST = datetime(1900, 1, 8, tzinfo=UTC)
SPAN_MINUTES = (datetime(2999, 12, 24, tzinfo=UTC) - EARLIEST) // timedelta(minutes=1)


def _instant(minutes: int, microseconds: int, zone: tzinfo) -> datetime:
    return (EARLIEST + timedelta(minutes=minutes, microseconds=microseconds)).astimezone(zone)


# Instants (often on a whole minute) shown in one of ZONES. Faster than st.datetimes(timezones=…),
# which spends most of its time on wall-clock times that do not exist.
aware_datetimes = st.builds(
    _instant,
    st.integers(0, SPAN_MINUTES),
    st.one_of(st.just(0), st.integers(0, 59_999_999)),
    st.sampled_from(ZONES),
)


def _instance_uuids(count: int) -> list[str]:
    """Random v4 uuids from a fixed seed: random enough for the test, and never flaky."""
    rng = random.Random(20261121)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


def _assert_uniform(counts: Counter[int], bins: int) -> None:
    observed = [counts.get(b, 0) for b in range(bins)]
    if importlib.util.find_spec("scipy") is not None:
        stats = importlib.import_module("scipy.stats")
        p_value = float(stats.chisquare(observed).pvalue)
        assert p_value > 0.001, (p_value, observed)
    else:
        expected = sum(observed) / bins
        statistic = sum((o - expected) ** 2 / expected for o in observed)
        assert statistic < CHI_SQUARE_CRITICAL_0_001[bins - 1], (statistic, observed)


# -- the slot of an instance ------------------------------------------------------------------


def test_known_uuids_keep_their_slots() -> None:
    """The derivation is pinned: these uuids map to these slots, today and in every release."""
    for instance_uuid, slot in KNOWN_SLOTS.items():
        assert weekly_slot(instance_uuid) == slot


def test_the_slot_is_the_same_in_another_process() -> None:
    """A fresh interpreter with another hash seed computes the same slots (no hash(), no state)."""
    uuids = [*KNOWN_SLOTS, *_instance_uuids(50)]
    code = (
        "import importlib.util, json, sys\n"
        "spec = importlib.util.spec_from_file_location('schedule', sys.argv[1])\n"
        "module = sys.modules['schedule'] = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "slots = [module.weekly_slot(u) for u in sys.argv[2:]]\n"
        "print(json.dumps([[s.weekday, s.hour, s.minute] for s in slots]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(schedule.__file__), *uuids],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        env={**os.environ, "PYTHONHASHSEED": "4242"},
    )
    there = [Slot(*fields) for fields in json.loads(done.stdout)]
    assert there == [weekly_slot(u) for u in uuids]


def test_the_same_uuid_in_any_case_or_padding_is_the_same_instance() -> None:
    """Upper case and surrounding whitespace do not move the slot."""
    instance_uuid = "0b6d2f3c-8a1e-4c4b-9d7e-2f3a4b5c6d7e"
    assert weekly_slot(f"  {instance_uuid.upper()}\n") == weekly_slot(instance_uuid)


def test_an_empty_uuid_is_refused() -> None:
    """No uuid, no slot: an empty one would put every such instance on one minute."""
    with pytest.raises(ValueError, match="uuid"):
        weekly_slot("  ")


def test_slots_are_valid() -> None:
    """Every field of every derived slot is in range, and the minute of the week round-trips."""
    for instance_uuid in _instance_uuids(2_000):
        slot = weekly_slot(instance_uuid)
        assert 0 <= slot.weekday <= 6
        assert 0 <= slot.hour <= 23
        assert 0 <= slot.minute <= 59
        assert Slot.from_minute_of_week(slot.minute_of_week) == slot


def test_slots_spread_evenly_over_the_week() -> None:
    """20,000 instances: weekdays, hours and minutes pass a chi-square test at 0.001, and no
    minute of the week holds more than 15 of them (about 2 are expected in each)."""
    found = [weekly_slot(u) for u in _instance_uuids(20_000)]
    _assert_uniform(Counter(s.weekday for s in found), 7)
    _assert_uniform(Counter(s.hour for s in found), 24)
    _assert_uniform(Counter(s.minute for s in found), 60)
    per_minute = Counter(s.minute_of_week for s in found)
    assert max(per_minute.values()) <= 15
    # About 1 - e**-2 = 86 % of the minutes are used by at least one of them.
    assert 0.83 * MINUTES_PER_WEEK < len(per_minute) < 0.89 * MINUTES_PER_WEEK


@pytest.mark.parametrize(
    ("fields", "field"),
    [((7, 0, 0), "weekday"), ((-1, 0, 0), "weekday"), ((0, 24, 0), "hour"), ((0, 0, 60), "minute")],
)
def test_a_slot_out_of_range_is_refused(fields: tuple[int, int, int], field: str) -> None:
    """Slot checks its fields when made."""
    with pytest.raises(ValueError, match=f"Slot.{field}"):
        Slot(*fields)


# -- cron lines and descriptions --------------------------------------------------------------


@pytest.mark.parametrize(
    ("slot", "line", "text"),
    [
        (Slot(0, 0, 0), "0 0 * * 1", "Mondays at 00:00 UTC"),
        (Slot(1, 3, 17), "17 3 * * 2", "Tuesdays at 03:17 UTC"),
        (Slot(5, 23, 59), "59 23 * * 6", "Saturdays at 23:59 UTC"),
        (Slot(6, 0, 5), "5 0 * * 0", "Sundays at 00:05 UTC"),
        (Slot(6, 12, 30), "30 12 * * 0", "Sundays at 12:30 UTC"),
    ],
)
def test_cron_lines_and_descriptions(slot: Slot, line: str, text: str) -> None:
    """Cron counts weekdays from Sunday = 0: Monday is 1 and Sunday is 0."""
    assert slot.cron() == line
    assert slot.describe() == text


@given(slot=slots, after=aware_datetimes)
def test_the_cron_line_names_the_day_next_run_lands_on(slot: Slot, after: datetime) -> None:
    """The cron line agrees with the run next_run computes (cron's weekday = isoweekday % 7)."""
    run = next_run(slot, after)
    minute, hour, _, _, day = slot.cron().split()
    assert (int(minute), int(hour), int(day)) == (run.minute, run.hour, run.isoweekday() % 7)


# -- next_run ---------------------------------------------------------------------------------


@given(slot=slots, after=aware_datetimes)
def test_next_run_is_the_first_slot_strictly_after(slot: Slot, after: datetime) -> None:
    """Later than after, at most a week later, on the slot's weekday, hour and minute, in UTC."""
    run = next_run(slot, after)
    assert run.tzinfo is UTC
    assert after < run <= after + timedelta(days=7)
    assert run - timedelta(days=7) <= after  # the first such time, not a later week's
    assert (run.weekday(), run.hour, run.minute) == (slot.weekday, slot.hour, slot.minute)
    assert (run.second, run.microsecond) == (0, 0)


@given(slot=slots, after=aware_datetimes)
def test_next_run_depends_on_the_instant_only(slot: Slot, after: datetime) -> None:
    """The same instant in any time zone gives the same run (no DST effect: slots are UTC)."""
    assert next_run(slot, after) == next_run(slot, after.astimezone(UTC))


@given(slot=slots, after=aware_datetimes)
def test_after_exactly_at_the_slot_gives_next_weeks_run(slot: Slot, after: datetime) -> None:
    """Run at the slot, the next run is a week later, not the same minute again."""
    run = next_run(slot, after)
    assert next_run(slot, run) == run + timedelta(days=7)
    assert next_run(slot, run - timedelta(microseconds=1)) == run


def test_next_run_across_a_daylight_saving_change() -> None:
    """Berlin springs forward on 2026-03-29: a Sunday 02:30 UTC slot still runs at 02:30 UTC."""
    berlin = ZoneInfo("Europe/Berlin")
    slot = Slot(weekday=6, hour=2, minute=30)
    run = next_run(slot, datetime(2026, 3, 28, 12, 0, tzinfo=berlin))
    assert run == datetime(2026, 3, 29, 2, 30, tzinfo=UTC)
    assert run.astimezone(berlin).hour == 4  # CEST, two hours ahead
    assert next_run(slot, run) == datetime(2026, 4, 5, 2, 30, tzinfo=UTC)


def test_next_run_refuses_a_naive_datetime() -> None:
    """A naive datetime has no instant: refused rather than guessed."""
    with pytest.raises(ValueError, match="timezone-aware"):
        next_run(Slot(0, 0, 0), datetime(2026, 11, 21, 12, 0))


# -- splay ------------------------------------------------------------------------------------


@given(fraction=st.floats(0.0, 1.0, exclude_max=True), bound=st.floats(0.0, 3600.0))
def test_splay_stays_below_its_bound(fraction: float, bound: float) -> None:
    """The delay is the fraction of the bound, in [0, bound) (0 when the bound is 0)."""
    delay = splay(bound, random=lambda: fraction)
    assert delay == 0.0 if bound == 0 else 0.0 <= delay < bound


def test_splay_defaults_to_up_to_a_minute() -> None:
    """By default a random delay below 60 s; a seeded source makes it reproducible."""
    assert all(0.0 <= splay() < 60.0 for _ in range(1_000))
    assert splay(random=random.Random(7).random) == splay(random=random.Random(7).random)


@pytest.mark.parametrize("bound", [-1.0, float("inf"), float("nan")])
def test_splay_refuses_a_bad_bound(bound: float) -> None:
    """A negative or infinite bound is a mistake, not a delay."""
    with pytest.raises(ValueError, match="max_seconds"):
        splay(bound)


def test_splay_refuses_a_source_outside_the_unit_interval() -> None:
    """A random source that returns 1.0 would reach the bound: refused."""
    with pytest.raises(ValueError, match="random"):
        splay(60.0, random=lambda: 1.0)
