"""The DevOps score: how much of each feature an instance uses, against the leading instances.

For each feature of the score card (default: issues, notes, milestones, boards, merge requests,
CI pipelines, environments, deployments, projects with Prometheus, service desk issues):

- **instance value** = the feature's 28-day count in the ping divided by the instance's active
  users (at least 1). A missing or failed (negative) count has no value: the feature is left out
  of the instance's score rather than counted as zero.
- **leader** = the ``leader_percentile`` (default 90th) of the instance values of the instances
  that pinged in the last ``leader_window_days`` (35), each with its latest ping. While fewer than
  ``min_instances`` (10) instances have a value, the configured default leader is used.
- **percentage** = min(100, 100 * instance / leader); 0 when the leader is 0.
- **score** = the mean of the percentages of the features that have a value.

Leaders are recomputed at most once a minute per process: a ping's score does not need the very
latest percentile, and ingest stays fast.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa

from usage_ping.collector.settings import ScoreCard
from usage_ping.collector.storage import instances, key_paths, ping_metrics

__all__ = ["Leaders", "conv_index", "instance_values"]

LEADER_TTL = 60.0
"""Seconds leaders are reused before they are recomputed."""


def instance_values(flat: Mapping[str, float], card: ScoreCard) -> dict[str, float | None]:
    """Each feature's count per active user in one ping (None: missing or failed)."""
    users = flat.get(card.active_users)
    divisor = max(1.0, users) if users is not None and users >= 0 else 1.0
    values: dict[str, float | None] = {}
    for feature, key_path in card.features.items():
        count = flat.get(key_path)
        values[feature] = None if count is None or count < 0 else count / divisor
    return values


def conv_index(
    usage_data_id: int, values: Mapping[str, float | None], leaders: Mapping[str, float]
) -> dict[str, Any]:
    """The response block: ``usage_data_id``, per feature leader/instance/percentage, ``score``."""
    block: dict[str, Any] = {"usage_data_id": usage_data_id}
    percentages: list[float] = []
    for feature, value in values.items():
        leader = float(leaders.get(feature, 0.0))
        block[f"leader_{feature}"] = round(leader, 4)
        block[f"instance_{feature}"] = None if value is None else round(value, 4)
        if value is None:
            block[f"percentage_{feature}"] = None
            continue
        percentage = 0.0 if leader <= 0 else min(100.0, 100.0 * value / leader)
        block[f"percentage_{feature}"] = round(percentage, 2)
        percentages.append(percentage)
    block["score"] = round(sum(percentages) / len(percentages), 2) if percentages else None
    return block


@dataclass
class _Cached:
    at: float
    leaders: dict[str, float]


class Leaders:
    """The leaders of a score card, from the latest ping of each recent instance (cached)."""

    def __init__(self, card: ScoreCard, ttl: float = LEADER_TTL) -> None:
        self.card = card
        self.ttl = ttl
        self._cached: _Cached | None = None
        self._lock = threading.Lock()

    def get(self, conn: sa.Connection, now: datetime) -> dict[str, float]:
        """The current leaders (recomputed when older than the TTL)."""
        cached = self._cached
        if cached is not None and time.monotonic() - cached.at < self.ttl:
            return cached.leaders
        with self._lock:
            # Threads that waited for the lock take what the first one computed.
            cached = self._cached
            if cached is not None and time.monotonic() - cached.at < self.ttl:
                return cached.leaders
            leaders = self.compute(conn, now)
            self._cached = _Cached(time.monotonic(), leaders)
            return leaders

    def invalidate(self) -> None:
        """Forget the cached leaders (the next ping recomputes them)."""
        self._cached = None

    def compute(self, conn: sa.Connection, now: datetime) -> dict[str, float]:
        """Percentiles of instance values over the window; defaults where too few instances."""
        card = self.card
        since = now - timedelta(days=card.leader_window_days)
        wanted = [*card.features.values(), card.active_users]
        names = {
            row.id: row.path
            for row in conn.execute(
                sa.select(key_paths.c.id, key_paths.c.path).where(key_paths.c.path.in_(wanted))
            )
        }
        query = (
            sa.select(instances.c.uuid, ping_metrics.c.key_path_id, ping_metrics.c.value)
            .join(ping_metrics, ping_metrics.c.ping_id == instances.c.last_ping_id)
            .where(instances.c.last_seen >= since, ping_metrics.c.key_path_id.in_(list(names)))
        )
        per_instance: dict[str, dict[str, float]] = {}
        for uuid, key_path_id, value in conn.execute(query) if names else ():
            per_instance.setdefault(uuid, {})[names[key_path_id]] = value
        samples: dict[str, list[float]] = {f: [] for f in card.features}
        for flat in per_instance.values():
            for feature, value in instance_values(flat, card).items():
                if value is not None:
                    samples[feature].append(value)
        leaders: dict[str, float] = {}
        for feature in card.features:
            values = samples[feature]
            if len(values) < card.min_instances:
                leaders[feature] = float(card.default_leaders.get(feature, 0.0))
            else:
                leaders[feature] = float(np.percentile(values, card.leader_percentile))
        return leaders
