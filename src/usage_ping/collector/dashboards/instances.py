"""The instance list (search, pages) and one instance's page: pings, score, features, trends."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import sqlalchemy as sa

from usage_ping.collector.dashboards import charts
from usage_ping.collector.key_paths import key_path_id
from usage_ping.collector.storage import instances, key_paths, ping_errors, ping_metrics, pings

__all__ = [
    "FAILED",
    "HISTORY_LIMIT",
    "InstanceDetail",
    "InstancePage",
    "Rows",
    "is_failure",
    "load_instance",
    "load_payload",
    "metric_trend",
    "search_instances",
]

Rows: TypeAlias = Sequence[sa.Row[*tuple[Any, ...]]]
"""Rows of any columns, as queries return them."""

FAILED = (-1.0, -2.0, -3.0)
"""Values a metric reports when it could not be computed (-1 failed, -2 estimate failed,
-3 not computed in a non-SQL payload)."""


def is_failure(value: sa.ColumnElement[float]) -> sa.ColumnElement[bool]:
    """``value IN (-1, -2, -3)`` with the numbers inline (not bound parameters), so that a
    partial index with that condition matches the query on PostgreSQL and SQLite."""
    return value.in_([sa.literal_column(str(int(code))) for code in FAILED])


HISTORY_LIMIT = 260
"""The instance page shows the latest pings up to this many (five years of weekly pings)."""


@dataclass(frozen=True)
class InstancePage:
    """One page of the instance list."""

    rows: Rows
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        """How many pages the search has (at least 1)."""
        return max(1, -(-self.total // self.per_page))


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_instances(
    conn: sa.Connection, query: str = "", page: int = 1, per_page: int = 50
) -> InstancePage:
    """Instances whose uuid or hostname contains ``query`` (any case), latest seen first.

    Uses ``ix_instances_last_seen`` for the order; a substring search reads the instances table
    (one row per instance, so it stays small next to the pings).
    """
    condition: sa.ColumnElement[bool] = sa.true()
    query = query.strip()[:255]
    if query:
        pattern = _like(query)
        condition = sa.or_(
            instances.c.uuid.ilike(pattern, escape="\\"),
            instances.c.hostname.ilike(pattern, escape="\\"),
        )
    total = int(
        conn.execute(
            sa.select(sa.func.count()).select_from(instances).where(condition)
        ).scalar_one()
    )
    page = max(1, min(page, max(1, -(-total // per_page))))
    rows = conn.execute(
        sa.select(instances)
        .where(condition)
        .order_by(instances.c.last_seen.desc(), instances.c.uuid)
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return InstancePage(rows, total, page, per_page)


@dataclass(frozen=True)
class InstanceDetail:
    """What the instance page shows."""

    facts: sa.Row[Any]
    history: Rows
    """The latest pings, newest first (id, recorded_at, received_at, facts, score, source)."""
    conv_index: dict[str, Any]
    """The latest ping's answer (leaders, instance values and percentages per feature)."""
    key_paths: list[str]
    """The key paths of the latest ping (for the trend picker)."""
    errors: Rows
    """The latest errors the instance reported through ``/usage_ping_errors``."""

    @property
    def features(self) -> list[tuple[str, float | None, float | None, float | None]]:
        """``(feature, leader, instance, percentage)`` of the latest ping's score."""
        block = self.conv_index
        names = [key.removeprefix("leader_") for key in block if key.startswith("leader_")]
        return [
            (
                name,
                block.get(f"leader_{name}"),
                block.get(f"instance_{name}"),
                block.get(f"percentage_{name}"),
            )
            for name in names
        ]

    def charts(self) -> list[charts.Chart]:
        """The score over time and the latest per-feature comparison."""
        scored = [row for row in reversed(self.history) if row.score is not None]
        features = self.features
        return [
            charts.lines(
                "score-over-time",
                "DevOps score over time",
                [row.recorded_at.isoformat() for row in scored],
                {"score": [row.score for row in scored]},
                y_title="score (0-100)",
                empty="No scored ping yet.",
            ),
            charts.bars(
                "features",
                "Features: this instance against the leaders (latest ping)",
                [name for name, *_ in features],
                {
                    "leader": [leader for _, leader, _, _ in features],
                    "this instance": [value for _, _, value, _ in features],
                },
                y_title="28-day count per active user",
                text={
                    "this instance": [
                        "n/a" if pct is None else f"{pct:g} %" for *_, pct in features
                    ]
                },
                empty="The latest ping has no score.",
            ),
        ]


def load_instance(conn: sa.Connection, uuid: str) -> InstanceDetail | None:
    """The instance's page, or None if the service never heard of it.

    Uses the primary key of ``instances``, ``uq_pings_uuid_recorded_at`` (uuid, recorded_at) for
    the history, ``ix_ping_metrics_ping_id`` (BRIN on PostgreSQL) for the key paths of the latest
    ping, and ``ix_ping_errors_uuid``.
    """
    facts = conn.execute(sa.select(instances).where(instances.c.uuid == uuid)).first()
    if facts is None:
        return None
    history = conn.execute(
        sa.select(
            pings.c.id,
            pings.c.recorded_at,
            pings.c.received_at,
            pings.c.source,
            pings.c.hostname,
            pings.c.version,
            pings.c.edition,
            pings.c.installation_type,
            pings.c.active_user_count,
            pings.c.score,
        )
        .where(pings.c.uuid == uuid)
        .order_by(pings.c.recorded_at.desc())
        .limit(HISTORY_LIMIT)
    ).all()
    conv_index: dict[str, Any] = {}
    paths: list[str] = []
    if facts.last_ping_id is not None:
        response = conn.execute(
            sa.select(pings.c.response).where(pings.c.id == facts.last_ping_id)
        ).scalar()
        try:
            block = json.loads(response or "{}").get("conv_index")
        except (ValueError, AttributeError):
            block = None
        conv_index = block if isinstance(block, dict) else {}
        paths = list(
            conn.execute(
                sa.select(key_paths.c.path)
                .join(ping_metrics, ping_metrics.c.key_path_id == key_paths.c.id)
                .where(ping_metrics.c.ping_id == facts.last_ping_id)
                .order_by(key_paths.c.path)
            ).scalars()
        )
    errors = conn.execute(
        sa.select(ping_errors.c.received_at, ping_errors.c.body)
        .where(ping_errors.c.uuid == uuid)
        .order_by(ping_errors.c.id.desc())
        .limit(10)
    ).all()
    return InstanceDetail(facts, history, conv_index, paths, errors)


def metric_trend(conn: sa.Connection, uuid: str, key_path: str) -> charts.Chart:
    """A key path's value in each of the instance's pings (failures marked apart).

    Uses ``uq_pings_uuid_recorded_at`` then ``ix_ping_metrics_key_path`` (key_path_id, ping_id).
    """
    path_id = key_path_id(conn, key_path)
    rows = (
        []
        if path_id is None
        else conn.execute(
            sa.select(pings.c.recorded_at, ping_metrics.c.value)
            .join(
                ping_metrics,
                sa.and_(
                    ping_metrics.c.ping_id == pings.c.id, ping_metrics.c.key_path_id == path_id
                ),
            )
            .where(pings.c.uuid == uuid)
            .order_by(pings.c.recorded_at)
        ).all()
    )
    x = [row.recorded_at.isoformat() for row in rows]
    chart = charts.lines(
        "metric-trend",
        f"Trend of {key_path}",
        x,
        {key_path: [None if row.value in FAILED else row.value for row in rows]},
        y_title="value",
        empty="No ping of this instance has this key path.",
    )
    failed = [(stamp, row.value) for stamp, row in zip(x, rows, strict=True) if row.value in FAILED]
    if failed:
        chart.data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "failed (-1/-2/-3)",
                "x": [stamp for stamp, _ in failed],
                "y": [0] * len(failed),
                "text": [f"failed: {value:g}" for _, value in failed],
                "marker": {"symbol": "x", "size": 10, "color": "#c62828"},
            }
        )
        chart.layout["showlegend"] = True
    return chart


def load_payload(conn: sa.Connection, uuid: str, ping_id: int) -> tuple[int, str] | None:
    """A ping of this instance as indented JSON (None if it is not one of its pings)."""
    found = conn.execute(
        sa.select(pings.c.id, pings.c.payload).where(pings.c.id == ping_id, pings.c.uuid == uuid)
    ).first()
    if found is None:
        return None
    try:
        pretty = json.dumps(json.loads(found.payload), indent=2, ensure_ascii=False)
    except ValueError:
        pretty = found.payload
    return int(found.id), pretty
