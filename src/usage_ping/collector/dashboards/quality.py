"""Metric QA: which metrics fail (-1, -2, -3) in which versions and installation types, which
are slow, and what errors the instances reported for them.

The share of a metric's failures is over **all** pings received in the window (of the version or
installation type, for the splits): a ping without the metric did not fail it. That denominator
comes from ``pings`` alone; counting the pings that carry each key path would read every metric
row of the window.

Failures and totals are counted per week, so weeks that ended come from the process's
:class:`~usage_ping.collector.dashboards.weeks.ClosedWeeks`. Durations are those of the latest
``DURATION_SAMPLE`` pings of the window: the instances' weekly slots are spread by a hash of
their uuid, so the latest pings are a fair sample of instances, and the page's cost stays the
same however many pings the window holds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from usage_ping.collector.dashboards import charts
from usage_ping.collector.dashboards.instances import Rows, is_failure
from usage_ping.collector.dashboards.overview import version_key
from usage_ping.collector.dashboards.summaries import Summary, summarize_arrays
from usage_ping.collector.dashboards.weeks import ClosedWeeks, Codec, Weeks, first_ping_id
from usage_ping.collector.durations import unpack_rows
from usage_ping.collector.key_paths import key_path_id
from usage_ping.collector.storage import (
    key_paths,
    metric_errors,
    ping_meta,
    ping_metrics,
    pings,
)

__all__ = [
    "DURATION_SAMPLE",
    "ErrorGroup",
    "MetricFailures",
    "MetricReport",
    "Quality",
    "load_metric_report",
    "load_quality",
]

NONE = "(none)"
DURATION_SAMPLE = 200
"""Durations are summarized over the latest this many pings of the window."""
HEATMAP_ROWS = 30
HEATMAP_VERSIONS = 15


@dataclass
class MetricFailures:
    """A key path's failed pings in the window: in all, per code, version and installation type."""

    key_path: str
    failed: int = 0
    codes: Counter[float] = field(default_factory=Counter)
    by_version: Counter[str] = field(default_factory=Counter)
    by_type: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Totals:
    """Pings received in the window, in all and per version and installation type."""

    pings: int
    by_version: dict[str, int]
    by_type: dict[str, int]

    def share(self, failed: int, total: int | None = None) -> float | None:
        """``failed`` over ``total`` (default: every ping of the window), or None if none."""
        total = self.pings if total is None else total
        return failed / total if total else None


@dataclass(frozen=True)
class _Week:
    """One week's pings per (version, installation type) and failures per
    (key path, code, version, installation type)."""

    pings: dict[tuple[str, str], int]
    failures: dict[tuple[str, float, str, str], int]


_CODEC = Codec[_Week](
    encode=lambda week: [
        [[*key, count] for key, count in week.pings.items()],
        [[*key, count] for key, count in week.failures.items()],
    ],
    decode=lambda data: _Week(
        {(v, t): int(n) for v, t, n in data[0]},
        {(k, float(code), v, t): int(n) for k, code, v, t, n in data[1]},
    ),
)
"""A week of metric QA in ``dashboard_weeks``: ``[[version, type, pings], ...]`` and
``[[key_path, code, version, type, failed pings], ...]``."""


def _weeks(conn: sa.Connection, part: Weeks) -> list[_Week]:
    weeks = [_Week({}, {}) for _ in range(part.count)]
    counted = (
        sa.select(
            part.bucket(pings.c.received_at).label("week"),
            pings.c.version.label("version"),
            pings.c.installation_type.label("itype"),
        )
        .where(pings.c.received_at >= part.start)
        .subquery()
    )
    for week, version, itype, count in conn.execute(
        sa.select(counted.c.week, counted.c.version, counted.c.itype, sa.func.count())
        .where(counted.c.week.is_not(None))
        .group_by(counted.c.week, counted.c.version, counted.c.itype)
    ):
        weeks[week].pings[(version or NONE, itype or NONE)] = int(count)
    first_id = first_ping_id(conn, part.start)
    if first_id is None:
        return weeks
    failed = (
        sa.select(
            part.bucket(pings.c.received_at).label("week"),
            key_paths.c.path.label("key_path"),
            ping_metrics.c.value.label("value"),
            pings.c.version.label("version"),
            pings.c.installation_type.label("itype"),
        )
        .join(pings, pings.c.id == ping_metrics.c.ping_id)
        .join(key_paths, key_paths.c.id == ping_metrics.c.key_path_id)
        .where(
            ping_metrics.c.ping_id >= first_id,
            is_failure(ping_metrics.c.value),
            pings.c.received_at >= part.start,
        )
        .subquery()
    )
    columns = [failed.c.week, failed.c.key_path, failed.c.value, failed.c.version, failed.c.itype]
    for row in conn.execute(
        sa.select(*columns, sa.func.count()).where(failed.c.week.is_not(None)).group_by(*columns)
    ):
        week, key_path, value, version, itype, count = tuple(row)
        key = (key_path, float(value), version or NONE, itype or NONE)
        weeks[week].failures[key] = weeks[week].failures.get(key, 0) + int(count)
    return weeks


def _window(conn: sa.Connection, window: Weeks, cache: ClosedWeeks | None) -> list[_Week]:
    if cache is None:
        return _weeks(conn, window)
    return cache.series("quality", window, lambda part: _weeks(conn, part), _CODEC)


def _totals(weeks: list[_Week]) -> Totals:
    by_version: Counter[str] = Counter()
    by_type: Counter[str] = Counter()
    for week in weeks:
        for (version, itype), count in week.pings.items():
            by_version[version] += count
            by_type[itype] += count
    return Totals(sum(by_version.values()), dict(by_version), dict(by_type))


def _failures(weeks: list[_Week], key_path: str | None = None) -> dict[str, MetricFailures]:
    found: dict[str, MetricFailures] = {}
    for week in weeks:
        for (path, value, version, itype), count in week.failures.items():
            if key_path is not None and path != key_path:
                continue
            entry = found.get(path)
            if entry is None:  # (setdefault would build a MetricFailures for every row)
                entry = found[path] = MetricFailures(path)
            entry.failed += count
            entry.codes[value] += count
            entry.by_version[version] += count
            entry.by_type[itype] += count
    return found


def _durations(
    conn: sa.Connection, since: datetime, key_path: str | None = None
) -> dict[str, Summary]:
    """Durations per key path in the latest ``DURATION_SAMPLE`` pings received since ``since``
    (``key_path``: that one's only): their ``ping_meta`` rows by primary key, summed up here."""
    latest = list(
        conn.execute(
            sa.select(pings.c.id)
            .where(pings.c.received_at >= since)
            .order_by(pings.c.id.desc())
            .limit(DURATION_SAMPLE)
        ).scalars()
    )
    only = None
    if key_path is not None:
        only = key_path_id(conn, key_path)
        if only is None:
            return {}
    if not latest:
        return {}
    rows = conn.execute(
        sa.select(ping_meta.c.key_path_ids, ping_meta.c.durations_ms).where(
            ping_meta.c.ping_id.in_(latest)
        )
    )
    ids, values = unpack_rows((bytes(r.key_path_ids), bytes(r.durations_ms)) for r in rows)
    if only is not None:
        keep = ids == only
        ids, values = ids[keep], values[keep]
    found = summarize_arrays(ids, values, (0.95,))
    if not found:
        return {}
    names = {
        row.id: row.path
        for row in conn.execute(
            sa.select(key_paths.c.id, key_paths.c.path).where(key_paths.c.id.in_(list(found)))
        )
    }
    return {names[k]: summary for k, summary in found.items() if k in names}


@dataclass(frozen=True)
class Quality:
    """The QA page: failing metrics of the window and the slowest ones."""

    weeks: Weeks
    totals: Totals
    failures: list[MetricFailures]
    """Most failed pings first, then by key path."""
    slowest: list[tuple[str, Summary]]
    """Key paths by 95th percentile of duration, slowest first."""

    @property
    def versions(self) -> list[str]:
        """The window's versions, oldest first."""
        return sorted(self.totals.by_version, key=version_key)

    @property
    def types(self) -> list[str]:
        """The window's installation types, most pings first."""
        return sorted(self.totals.by_type, key=lambda t: (-self.totals.by_type[t], t))

    def charts(self) -> list[charts.Chart]:
        """Failure heatmaps by version and by installation type, and the slowest metrics."""
        rows = self.failures[:HEATMAP_ROWS]
        versions = sorted(
            sorted(self.totals.by_version, key=lambda v: -self.totals.by_version[v])[
                :HEATMAP_VERSIONS
            ],
            key=version_key,
        )
        types = self.types

        def grid(columns: list[str], split: str) -> list[list[float | None]]:
            totals = self.totals.by_version if split == "version" else self.totals.by_type
            return [
                [
                    None
                    if not totals.get(column)
                    else round(
                        100
                        * (f.by_version if split == "version" else f.by_type)[column]
                        / totals[column],
                        2,
                    )
                    for column in columns
                ]
                for f in rows
            ]

        keys = [f.key_path for f in rows]
        slow = self.slowest[:20]
        return [
            charts.heatmap(
                "failures-by-version",
                "Failed pings by version (% of the version's pings)",
                versions,
                keys,
                grid(versions, "version"),
                z_title="% failed",
                empty="No metric failed in this window.",
            ),
            charts.heatmap(
                "failures-by-installation-type",
                "Failed pings by installation type (% of the type's pings)",
                types,
                keys,
                grid(types, "type"),
                z_title="% failed",
                empty="No metric failed in this window.",
            ),
            charts.bars(
                "slowest-metrics",
                "Slowest metrics (95th percentile of duration)",
                [key for key, _ in slow],
                {
                    "p95": [round(s.quantiles[0], 1) for _, s in slow],
                    "mean": [round(s.mean, 1) for _, s in slow],
                },
                y_title="milliseconds",
                horizontal=True,
                note=f"Durations in the latest {DURATION_SAMPLE} pings of the window.",
                empty="No ping of this window reported durations.",
            ),
        ]


def load_quality(
    conn: sa.Connection, now: datetime, weeks: int = 8, *, cache: ClosedWeeks | None = None
) -> Quality:
    """Failing and slow metrics of the pings received in the last ``weeks`` weeks.

    Queries, for the weeks not in ``cache``:

    - pings per week, version and installation type: ``ix_pings_received_at``;
    - failed values per week, key path, code, version and type: the rows of ``ping_metrics``
      from the first ping id of those weeks on, joined to ``pings`` by id. A partial index
      ``ping_metrics (ping_id, key_path_id) WHERE value IN (-1, -2, -3)`` reduces that to the failed
      rows (the condition is written inline so the planner can use it);

    and, for the durations, the ``ping_meta`` rows of the latest ``DURATION_SAMPLE`` pings by
    primary key (percentiles in Python).
    """
    window = Weeks.ending(now, weeks)
    per_week = _window(conn, window, cache)
    failures = sorted(_failures(per_week).values(), key=lambda f: (-f.failed, f.key_path))
    durations = _durations(conn, window.start)
    slowest = sorted(durations.items(), key=lambda item: (-item[1].quantiles[0], item[0]))
    return Quality(window, _totals(per_week), failures, slowest)


@dataclass(frozen=True)
class ErrorGroup:
    """One error message of a key path: how often, in which versions, last received when."""

    error: str
    count: int
    versions: list[str]
    last_received: datetime


@dataclass(frozen=True)
class MetricReport:
    """The drill-down page of one key path."""

    key_path: str
    weeks: Weeks
    totals: Totals
    failures: MetricFailures
    errors: list[ErrorGroup]
    duration: Summary | None
    recent: Rows
    """The latest failed pings: uuid, hostname, version, received_at, value, error."""

    def charts(self) -> list[charts.Chart]:
        """Failure share by version and by installation type."""
        versions = sorted(self.totals.by_version, key=version_key)
        types = sorted(self.totals.by_type, key=lambda t: (-self.totals.by_type[t], t))

        def shares(columns: list[str], counts: Counter[str], totals: dict[str, int]) -> list[float]:
            return [round(100 * counts[c] / totals[c], 2) if totals[c] else 0.0 for c in columns]

        failures = self.failures
        return [
            charts.bars(
                "metric-failures-by-version",
                "Failed pings by version",
                versions,
                {"% failed": shares(versions, failures.by_version, self.totals.by_version)},
                y_title="% of the version's pings",
                empty="No ping in this window.",
            ),
            charts.bars(
                "metric-failures-by-installation-type",
                "Failed pings by installation type",
                types,
                {"% failed": shares(types, failures.by_type, self.totals.by_type)},
                y_title="% of the type's pings",
                empty="No ping in this window.",
            ),
        ]


def load_metric_report(
    conn: sa.Connection,
    now: datetime,
    key_path: str,
    weeks: int = 8,
    *,
    cache: ClosedWeeks | None = None,
) -> MetricReport:
    """Failures, errors and durations of one key path over the last ``weeks`` weeks.

    Failures come from the same weekly counts as :func:`load_quality` (shared through
    ``cache``). Errors read ``metric_errors`` from the window's first ping id on, by the key
    path's id: ``ix_metric_errors_key_path (key_path_id, ping_id)``. The latest failed pings read
    the failed rows of the key path in the window (``ix_ping_metrics_key_path``, or the partial
    index of failures); durations are those of the latest ``DURATION_SAMPLE`` pings
    (``ping_meta`` by primary key).
    """
    window = Weeks.ending(now, weeks)
    per_week = _window(conn, window, cache)
    totals = _totals(per_week)
    failures = _failures(per_week, key_path).get(key_path, MetricFailures(key_path))
    first_id = first_ping_id(conn, window.start)
    path_id = key_path_id(conn, key_path)
    if first_id is None or path_id is None:
        return MetricReport(key_path, window, totals, failures, [], None, [])
    grouped: dict[str, tuple[int, set[str], datetime]] = {}
    for error, version, count, last in conn.execute(
        sa.select(
            metric_errors.c.error,
            pings.c.version,
            sa.func.count(),
            sa.func.max(pings.c.received_at),
        )
        .join(pings, pings.c.id == metric_errors.c.ping_id)
        .where(
            metric_errors.c.key_path_id == path_id,
            metric_errors.c.ping_id >= first_id,
            pings.c.received_at >= window.start,
        )
        .group_by(metric_errors.c.error, pings.c.version)
    ):
        total, versions, latest = grouped.get(error, (0, set(), last))
        versions.add(version or NONE)
        grouped[error] = (total + int(count), versions, max(latest, last))
    errors = sorted(
        (
            ErrorGroup(error, count, sorted(versions, key=version_key), last)
            for error, (count, versions, last) in grouped.items()
        ),
        key=lambda group: (-group.count, group.error),
    )
    duration = _durations(conn, window.start, key_path).get(key_path)
    # The latest 20 failed pings first, then their errors: looking the error up for every
    # failed ping of the window (thousands for a metric that fails often) cost more.
    latest = (
        sa.select(
            pings.c.id,
            pings.c.uuid,
            pings.c.hostname,
            pings.c.version,
            pings.c.installation_type,
            pings.c.received_at,
            ping_metrics.c.value,
        )
        .select_from(ping_metrics)
        .join(pings, pings.c.id == ping_metrics.c.ping_id)
        .where(
            ping_metrics.c.key_path_id == path_id,
            ping_metrics.c.ping_id >= first_id,
            is_failure(ping_metrics.c.value),
            pings.c.received_at >= window.start,
        )
        .order_by(pings.c.received_at.desc(), pings.c.id.desc())
        .limit(20)
        .subquery()
    )
    recent = conn.execute(
        sa.select(latest, metric_errors.c.error)
        .select_from(latest)
        .outerjoin(
            metric_errors,
            sa.and_(
                metric_errors.c.ping_id == latest.c.id,
                metric_errors.c.key_path_id == path_id,
            ),
        )
        .order_by(latest.c.received_at.desc(), latest.c.id.desc())
    ).all()
    return MetricReport(key_path, window, totals, failures, errors, duration, recent)
