"""Fixtures for the tracking tests: a capturing collector on loopback and trackers that close."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.tracking.collector import CapturingCollector
from usage_ping import tracking
from usage_ping.tracking import Tracking

MakeTracking = Callable[..., Tracking]


@pytest.fixture
def collector() -> Iterator[CapturingCollector]:
    """A capturing Snowplow collector on an ephemeral loopback port."""
    with CapturingCollector() as server:
        yield server


@pytest.fixture
def make_tracking(collector: CapturingCollector) -> Iterator[MakeTracking]:
    """Build trackers aimed at ``collector`` (options override); each is closed after the test.

    Background flushes are off unless a test asks for them, so that what arrives, and when, is
    up to the test.
    """
    made: list[Tracking] = []

    def make(**options: Any) -> Tracking:
        options.setdefault("endpoint", collector.url)
        options.setdefault("app_id", "test-app")
        options.setdefault("flush_interval", None)
        tracker = Tracking(**options)
        made.append(tracker)
        return tracker

    yield make
    for tracker in made:
        tracker.close(timeout=1.0)


@pytest.fixture(autouse=True)
def _default_tracking_off() -> Iterator[None]:
    """Each test starts, and leaves, the module's default tracker switched off."""
    yield
    tracking.configure(enabled=False)
