"""The demo's timeline: when rows happen, with a weekly and a daily rhythm and growth."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from usage_ping.demo.columns import Int

__all__ = ["DAYS", "HOURS", "WEEKDAYS", "Timeline"]

DAYS = 90
"""Rows are dated over this many days before ``now``."""

WEEKDAYS = np.array([1.05, 1.0, 1.0, 0.95, 0.8, 0.22, 0.18])
"""Monday..Sunday."""
HOURS = np.array([
    0.12, 0.1, 0.1, 0.1, 0.12, 0.2, 0.35, 0.6, 0.85, 1.0, 1.0, 0.95,
    0.8, 0.9, 1.0, 1.0, 0.95, 0.8, 0.6, 0.45, 0.35, 0.28, 0.2, 0.15,
])  # fmt: skip
"""Hours of the day (UTC)."""
_GROWTH = 0.7
"""Activity at the end of the 90 days, relative to the start, minus one."""


class Timeline:
    """Timestamps with the weekly and daily rhythm, from quantiles of the activity over time.

    The activity is piecewise constant per hour; ``at(q)`` is the inverse of its cumulative
    distribution, so sorted quantiles give sorted timestamps.
    """

    def __init__(self, now: int, days: int = DAYS) -> None:
        self.now = now
        self.start = now - days * 86_400
        hours = days * 24
        edges = self.start + 3600 * np.arange(hours, dtype=np.int64)
        clock = edges // 3600
        weekday = (clock // 24 + 3) % 7  # 1970-01-01 was a Thursday
        weights = WEEKDAYS[weekday] * HOURS[clock % 24]
        weights *= 1 + _GROWTH * np.arange(hours) / hours
        self._weights = weights / weights.sum()
        self._cumulative = np.concatenate(([0.0], np.cumsum(self._weights)))
        self._cumulative[-1] = 1.0

    def at(self, quantiles: npt.NDArray[np.float64]) -> Int:
        """The timestamps (seconds) at these quantiles of the activity."""
        q = np.clip(quantiles, 0.0, 1.0 - 1e-12)
        hour = np.searchsorted(self._cumulative, q, side="right") - 1
        into = (q - self._cumulative[hour]) / self._weights[hour]
        seconds = self.start + 3600 * hour + np.floor(into * 3600).astype(np.int64)
        found: Int = np.minimum(seconds, self.now - 1)
        return found

    def activity(self, n: int, rng: np.random.Generator) -> Int:
        """``n`` sorted timestamps following the activity (one per stratum, jittered)."""
        quantiles = (np.arange(n) + rng.random(n)) / n
        return self.at(quantiles)

    def entities(self, n: int, rng: np.random.Generator) -> Int:
        """``n`` sorted creation times of things adopted early: the first one at the start."""
        quantiles = ((np.arange(n) + rng.random(n)) / n) ** 2
        quantiles[0] = 0.0
        return self.at(quantiles)
