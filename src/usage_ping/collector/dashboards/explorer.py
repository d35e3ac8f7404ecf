"""The metric explorer: one key path's distribution across instances and its weekly trend."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import sqlalchemy as sa

from usage_ping.collector.dashboards import charts
from usage_ping.collector.dashboards.instances import FAILED, is_failure
from usage_ping.collector.dashboards.summaries import Summary, summarize
from usage_ping.collector.dashboards.weeks import ClosedWeeks, Codec, Weeks, first_ping_id
from usage_ping.collector.key_paths import key_path_id
from usage_ping.collector.storage import instances, key_paths, ping_metrics, pings

__all__ = [
    "EXACT_VALUES",
    "Exploration",
    "Histogram",
    "histogram",
    "load_exploration",
    "suggest_key_paths",
]

EXACT_VALUES = 20
"""Up to this many distinct values, the histogram has one bar per value."""
MAX_BINS = 30


@dataclass(frozen=True)
class Histogram:
    """Bars of a distribution: a label (a value, or a range ``a to b``) and a count each."""

    labels: list[str]
    counts: list[int]


def histogram(values: list[float]) -> Histogram:
    """One bar per value when there are few distinct values, else equal-width bins (Sturges)."""
    if not values:
        return Histogram([], [])
    distinct = Counter(values)
    if len(distinct) <= EXACT_VALUES:
        ordered = sorted(distinct)
        return Histogram([f"{v:g}" for v in ordered], [distinct[v] for v in ordered])
    array = np.asarray(values, dtype=float)
    bins = min(MAX_BINS, math.ceil(math.log2(len(values))) + 1)
    counts, edges = np.histogram(array, bins=bins)
    labels = [f"{lo:.4g} to {hi:.4g}" for lo, hi in itertools.pairwise(edges)]
    return Histogram(labels, [int(c) for c in counts])


@dataclass(frozen=True)
class Exploration:
    """What the explorer shows for one key path."""

    key_path: str
    weeks: Weeks
    values: list[float]
    """Each instance's latest value (instances seen in the window, failures left out)."""
    failed: int
    """Instances whose latest value is a failure (-1, -2, -3)."""
    trend: list[Summary | None]
    """Per week: count, mean, max and the median and 90th percentile of all pings' values."""

    @property
    def histogram(self) -> Histogram:
        """The distribution of the latest values."""
        return histogram(self.values)

    @property
    def median(self) -> float | None:
        """The median of the latest values."""
        return float(np.median(self.values)) if self.values else None

    def charts(self) -> list[charts.Chart]:
        """The distribution across instances and the weekly median and 90th percentile."""
        bars = self.histogram
        distribution = charts.bars(
            "distribution",
            "Distribution across instances (latest value of each)",
            bars.labels,
            {"instances": bars.counts},
            y_title="instances",
            empty="No instance reported this key path in the window.",
        )
        distribution.layout["xaxis"] = {"type": "category", "title": {"text": self.key_path}}
        trend = charts.lines(
            "trend",
            "Weekly trend (all pings of the week)",
            self.weeks.labels,
            {
                "median": [None if s is None else s.quantiles[0] for s in self.trend],
                "90th percentile": [None if s is None else s.quantiles[1] for s in self.trend],
            },
            y_title=self.key_path,
            empty="No ping of the window has this key path.",
        )
        return [distribution, trend]


_CODEC = Codec[Summary | None](
    encode=lambda s: None if s is None else [s.count, s.mean, s.maximum, list(s.quantiles)],
    decode=lambda data: (
        None
        if data is None
        else Summary(int(data[0]), float(data[1]), float(data[2]), tuple(float(q) for q in data[3]))
    ),
)
"""A week of a key path's trend in ``dashboard_weeks``: ``[count, mean, max, [p50, p90]]``."""


def _trend(conn: sa.Connection, part: Weeks, path_id: int | None) -> list[Summary | None]:
    trend: list[Summary | None] = [None] * part.count
    first_id = first_ping_id(conn, part.start) if path_id is not None else None
    if first_id is None:
        return trend
    source = (
        sa.select(
            part.bucket(pings.c.received_at).label("grp"),
            ping_metrics.c.value.label("value"),
        )
        .join(pings, pings.c.id == ping_metrics.c.ping_id)
        .where(
            ping_metrics.c.key_path_id == path_id,
            ping_metrics.c.ping_id >= first_id,
            sa.not_(is_failure(ping_metrics.c.value)),
            pings.c.received_at >= part.start,
        )
    )
    for week, summary in summarize(conn, source, (0.5, 0.9)).items():
        if isinstance(week, int):
            trend[week] = summary
    return trend


def load_exploration(
    conn: sa.Connection,
    now: datetime,
    key_path: str,
    weeks: int = 26,
    *,
    cache: ClosedWeeks | None = None,
) -> Exploration:
    """The key path's latest value per instance seen in the window, and its weekly percentiles.

    Queries: the key path's id (``uq_key_paths_path``), ``ix_instances_last_seen`` then
    ``ix_ping_metrics_key_path`` (key_path_id, ping_id, value) for the latest values; for the
    weeks not in ``cache``, the same index from the first ping id of those weeks on, joined to
    ``pings`` by id (percentiles in PostgreSQL, in Python on SQLite).
    """
    window = Weeks.ending(now, weeks)
    path_id = key_path_id(conn, key_path)
    latest: Iterable[float] = (
        []
        if path_id is None
        else conn.execute(
            sa.select(ping_metrics.c.value)
            .select_from(instances)
            .join(
                ping_metrics,
                sa.and_(
                    ping_metrics.c.ping_id == instances.c.last_ping_id,
                    ping_metrics.c.key_path_id == path_id,
                ),
            )
            .where(instances.c.last_seen >= window.start)
        ).scalars()
    )
    values: list[float] = []
    failed = 0
    for value in latest:
        if value in FAILED:
            failed += 1
        else:
            values.append(float(value))
    trend = (
        cache.series(("trend", key_path), window, lambda part: _trend(conn, part, path_id), _CODEC)
        if cache is not None
        else _trend(conn, window, path_id)
    )
    return Exploration(key_path, window, values, failed, trend)


def suggest_key_paths(conn: sa.Connection, pings_read: int = 20) -> list[str]:
    """Key paths to offer in the picker: those of the latest ``pings_read`` pings.

    Reads the newest ids of the primary key of ``pings``, then the rows of ``ping_metrics`` from
    the oldest of them on (``ix_ping_metrics_ping_id``, BRIN on PostgreSQL: the table's last
    pages), never the whole table (a DISTINCT over ``ping_metrics`` would read every row).
    """
    latest = sa.select(pings.c.id).order_by(pings.c.id.desc()).limit(pings_read).subquery()
    oldest = conn.execute(sa.select(sa.func.min(latest.c.id))).scalar()
    if oldest is None:
        return []
    ids = (
        sa.select(ping_metrics.c.key_path_id)
        .where(
            ping_metrics.c.ping_id >= oldest,  # a value: the planner sees how few rows
            ping_metrics.c.ping_id.in_(sa.select(latest.c.id)),
        )
        .distinct()
    )
    return list(
        conn.execute(
            sa.select(key_paths.c.path).where(key_paths.c.id.in_(ids)).order_by(key_paths.c.path)
        ).scalars()
    )
