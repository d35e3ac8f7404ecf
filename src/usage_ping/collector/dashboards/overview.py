"""The overview: who reports, how many pings arrive, which versions run, which editions.

Weeks are ISO weeks of ``received_at`` (when the service got the ping), so a backlog that an
instance sends after an outage counts in the week it arrived.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from usage_ping.collector.dashboards import charts
from usage_ping.collector.dashboards.weeks import ClosedWeeks, Codec, Weeks
from usage_ping.collector.storage import instances, pings

__all__ = ["OTHER", "Overview", "load_overview", "version_key"]

OTHER = "other"
"""Versions outside the top ones are summed under this name."""


def version_key(version: str) -> tuple[tuple[int, ...], str]:
    """Sorts ``16.10.0`` after ``16.9.1`` (numbers compared as numbers, then the text)."""
    return tuple(int(n) for n in re.findall(r"\d+", version)[:6]), version


@dataclass(frozen=True)
class Overview:
    """The overview's figures for a window of weeks."""

    weeks: Weeks
    instances_per_week: list[int]
    pings_per_week: list[int]
    version_pings: dict[str, list[int]]
    """Top versions (newest first, then ``other``) -> pings per week."""
    editions: list[tuple[str, int]]
    installation_types: list[tuple[str, int]]
    active_instances: int
    known_instances: int

    @property
    def pings_total(self) -> int:
        """Pings received in the window."""
        return sum(self.pings_per_week)

    def charts(self) -> list[charts.Chart]:
        """The overview's figures."""
        x = self.weeks.labels
        shares: dict[str, list[float | None]] = {}
        for version, counts in self.version_pings.items():
            shares[version] = [
                round(100 * c / total, 2) if total else None
                for c, total in zip(counts, self.pings_per_week, strict=True)
            ]
        return [
            charts.bars(
                "instances-per-week",
                "Instances reporting per week",
                x,
                {"instances": self.instances_per_week},
                y_title="distinct instances",
                note="Distinct instance uuids with at least one ping received in the week.",
            ),
            charts.bars(
                "pings-per-week",
                "Pings received per week",
                x,
                {"pings": self.pings_per_week},
                y_title="pings",
            ),
            charts.bars(
                "version-adoption",
                "Version adoption (share of the week's pings)",
                x,
                dict(reversed(list(shares.items()))),  # oldest at the bottom of the stack
                y_title="% of pings",
                stacked=True,
                note="The most reported versions of the window; the rest are summed as other.",
            ),
            charts.pie(
                "editions",
                "Editions",
                self.editions,
                note="Latest facts of the instances that reported in the window.",
            ),
            charts.pie(
                "installation-types",
                "Installation types",
                self.installation_types,
                note="Latest facts of the instances that reported in the window.",
            ),
        ]


@dataclass(frozen=True)
class _Week:
    pings: int
    instances: int
    versions: dict[str, int]


_CODEC = Codec[_Week](
    encode=lambda week: [week.pings, week.instances, week.versions],
    decode=lambda data: _Week(int(data[0]), int(data[1]), dict(data[2])),
)
"""A week of the overview in ``dashboard_weeks``: ``[pings, instances, {version: pings}]``."""


def _weeks(conn: sa.Connection, part: Weeks) -> list[_Week]:
    rows = (
        sa.select(
            part.bucket(pings.c.received_at).label("week"),
            pings.c.uuid.label("uuid"),
            pings.c.version.label("version"),
        )
        .where(pings.c.received_at >= part.start)
        .subquery()
    )
    counts: dict[int, tuple[int, int]] = {}
    for week, n_pings, n_instances in conn.execute(
        sa.select(rows.c.week, sa.func.count(), sa.func.count(sa.distinct(rows.c.uuid)))
        .where(rows.c.week.is_not(None))
        .group_by(rows.c.week)
    ):
        counts[week] = (int(n_pings), int(n_instances))
    versions: dict[int, dict[str, int]] = {}
    for week, version, n_pings in conn.execute(
        sa.select(rows.c.week, rows.c.version, sa.func.count())
        .where(rows.c.week.is_not(None))
        .group_by(rows.c.week, rows.c.version)
    ):
        name = version if version is not None else "(none)"
        per_week = versions.setdefault(week, {})
        per_week[name] = per_week.get(name, 0) + int(n_pings)
    return [_Week(*counts.get(k, (0, 0)), versions=versions.get(k, {})) for k in range(part.count)]


def load_overview(
    conn: sa.Connection,
    now: datetime,
    weeks: int = 26,
    top_versions: int = 8,
    *,
    cache: ClosedWeeks | None = None,
) -> Overview:
    """The overview of the last ``weeks`` weeks (weeks that ended are taken from ``cache``).

    Queries (a range scan of ``ix_pings_received_at`` or ``ix_instances_last_seen``, then GROUP BY
    in the database; an index on ``pings (received_at, uuid, version)`` would make the first two
    index-only):

    - pings and distinct uuids per week;
    - pings per week and version;
    - editions and installation types of the instances seen in the window.
    """
    window = Weeks.ending(now, weeks)
    per_week = (
        cache.series("overview", window, lambda part: _weeks(conn, part), _CODEC)
        if cache is not None
        else _weeks(conn, window)
    )
    per_version: dict[str, list[int]] = {}
    for k, week in enumerate(per_week):
        for version, count in week.versions.items():
            per_version.setdefault(version, [0] * window.count)[k] += count

    ranked = sorted(per_version, key=lambda v: -sum(per_version[v]))
    top = sorted(ranked[:top_versions], key=version_key, reverse=True)
    version_pings = {v: per_version[v] for v in top}
    rest = ranked[top_versions:]
    if rest:
        version_pings[OTHER] = [sum(per_version[v][k] for v in rest) for k in range(window.count)]

    active = instances.c.last_seen >= window.start

    def facts(column: sa.Column[str]) -> list[tuple[str, int]]:
        counted = conn.execute(
            sa.select(column, sa.func.count()).where(active).group_by(column)
        ).all()
        return sorted(
            ((value if value is not None else "(none)", int(n)) for value, n in counted),
            key=lambda item: (-item[1], item[0]),
        )

    editions = facts(instances.c.edition)
    types = facts(instances.c.installation_type)
    known = conn.execute(sa.select(sa.func.count()).select_from(instances)).scalar_one()
    return Overview(
        weeks=window,
        instances_per_week=[week.instances for week in per_week],
        pings_per_week=[week.pings for week in per_week],
        version_pings=version_pings,
        editions=editions,
        installation_types=types,
        active_instances=sum(n for _, n in editions),
        known_instances=int(known),
    )
