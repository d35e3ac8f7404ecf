"""Simulated days of events: deterministic, honouring flags and the master switch."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.demo.conftest import NOW, DemoInstance
from usage_ping.demo import demo_counters, simulate_events
from usage_ping.instance import UsagePing
from usage_ping.store import SQLiteStore


def _ping(demo: DemoInstance, store_path: Path) -> UsagePing:
    store = SQLiteStore(store_path)
    ping = UsagePing.from_config(demo.config, engine=demo.engine, store=store, clock=lambda: NOW)
    ping.counters = dict(demo_counters(store))
    return ping


def test_the_same_seed_tracks_the_same_events(demo: DemoInstance, tmp_path: Path) -> None:
    """Two stores fed with the same seed and time hold the same counts."""
    first, second = _ping(demo, tmp_path / "a.db"), _ping(demo, tmp_path / "b.db")
    try:
        report = simulate_events(first, 7, seed=3, now=NOW)
        assert simulate_events(second, 7, seed=3, now=NOW) == report
        assert report.calls > 0
        assert report.values >= report.calls
        assert report.increments > 0
        assert first.events is not None
        assert second.events is not None
        assert first.events.totals(NOW.date()) == second.events.totals(NOW.date())
        assert first.counters["web_ide"].totals() == second.counters["web_ide"].totals()
        assert "user-days" in report.describe()
    finally:
        first.store.close()
        second.store.close()


def test_nothing_is_tracked_while_usage_ping_is_disabled(
    demo: DemoInstance, tmp_path: Path
) -> None:
    """The master switch stops event tracking (plain counters follow the host's calls)."""
    ping = _ping(demo, tmp_path / "off.db")
    ping.disable()
    try:
        assert simulate_events(ping, 3, now=NOW).calls == 0
    finally:
        ping.enable()
        ping.store.close()


def test_refuses_no_days(demo: DemoInstance) -> None:
    """Zero days is a mistake."""
    with pytest.raises(ValueError, match="days must be at least 1"):
        simulate_events(demo.ping, 0)
