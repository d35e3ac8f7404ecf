"""The callables of the demo's metric dictionary (``usage_ping.demo.metrics:<name>``).

What the declarative instrumentations cannot say: grouped counts (a ``{group: value}`` object),
aggregated metrics (an intersection of known events needs inclusion-exclusion), application
settings and license fields (alternative values: a value with a fallback), and system facts.
Each uses what the running build was given (:func:`usage_ping.payload.current_build`): its
engine, event counter and day.
"""

from __future__ import annotations

import hashlib
import platform
import sys
from collections.abc import Mapping
from functools import cache
from importlib import metadata
from typing import Any

import sqlalchemy as sa

import usage_ping
from usage_ping.demo import models
from usage_ping.demo.config import AGGREGATED_METRICS_DIR, feature_flags
from usage_ping.events import (
    AggregatedMetrics,
    AggregateTimeFrame,
    EventError,
    aggregated_value,
)
from usage_ping.fallback import call_safely
from usage_ping.metrics import database_window
from usage_ping.payload import current_build

__all__ = [
    "aggregated",
    "database_adapter",
    "database_version",
    "feature_flag_states",
    "grouped",
    "license_field",
    "operating_system",
    "package_version",
    "python_version",
    "setting",
]

LABELS: dict[str, dict[Any, str]] = {"visibility": dict(models.VISIBILITY_LEVELS)}
"""Names for coded group keys, by the ``labels`` option."""

_COUNTERS = {
    "count": usage_ping.count,
    "distinct_count": usage_ping.distinct_count,
    "sum": usage_ping.sum,
}


def _engine() -> sa.Engine:
    engine = current_build().engine
    if engine is None:
        raise LookupError("the payload is built without a database engine")
    return engine


def _key(value: Any, labels: Mapping[Any, str]) -> str:
    if value in labels:
        return labels[value]
    return "none" if value is None else str(value)


def grouped(
    table: str,
    group_by: str,
    *,
    operation: str = "count",
    column: str | None = None,
    labels: str | None = None,
    time_frame: str | None = None,
    time_column: str = "created_at",
) -> dict[str, int | float] | int:
    """A batch counter over ``table`` grouped by ``group_by``: ``{group: value}``.

    Args:
        table: a table of :mod:`usage_ping.demo.models`.
        group_by: the column whose values are the keys.
        operation: ``count``, ``distinct_count`` or ``sum``.
        column: the counted or summed column (``distinct_count`` and ``sum`` need one).
        labels: name the keys with :data:`LABELS` (``visibility``: private, internal, public).
        time_frame: ``7d`` or ``28d`` to count only rows dated in that window.
        time_column: the column that dates each row.

    Returns:
        The values by group, or the counter's fallback code (-1) when counting failed.
    """
    engine = _engine()
    target = models.metadata.tables[table]
    relation = sa.select(target).group_by(target.c[group_by])
    window = database_window(time_frame, current_build().today) if time_frame else None
    if window is not None:
        stamp = target.c[time_column]
        relation = relation.where(stamp >= window[0], stamp < window[1])
    counter = _COUNTERS[operation]
    counted = target.c[column] if column is not None else None
    result = counter(engine, relation, counted)
    if not isinstance(result, dict):
        return int(result)
    names = LABELS.get(labels, {}) if labels else {}
    return {_key(key, names): value for key, value in sorted(result.items(), key=_order)}


def _order(item: tuple[Any, Any]) -> tuple[bool, str]:
    return item[0] is None, str(item[0])


@cache
def _aggregated_metrics() -> AggregatedMetrics:
    return AggregatedMetrics.load(AGGREGATED_METRICS_DIR)


def aggregated(name: str, time_frame: str) -> int:
    """The demo's aggregated metric ``name`` (OR: union, AND: intersection) over ``time_frame``.

    Raises:
        EventError: the metric's feature flag is off (the metric is then reported as -1, with
            the reason in meta), or its events cannot be counted.
        LookupError: the build has no event counter.
    """
    build = current_build()
    if build.events is None:
        raise LookupError("the payload is built without an event counter")
    metric = _aggregated_metrics()[name]
    if metric.feature_flag and not feature_flags(build.engine).enabled(metric.feature_flag):
        raise EventError(f"aggregated metric {name}: feature flag {metric.feature_flag} is off")
    frame: AggregateTimeFrame = "7d" if time_frame == "7d" else "28d"
    return aggregated_value(build.events, metric, frame, build.today)


def _settings_row(engine: sa.Engine) -> Mapping[str, Any]:
    table = models.application_settings
    with engine.connect() as conn:
        row = conn.execute(sa.select(table).order_by(table.c.id).limit(1)).mappings().first()
    if row is None:
        raise LookupError("application_settings has no row")
    return dict(row)


def setting(name: str, fallback: Any = -1, labels: str | None = None) -> Any:
    """An application setting, or ``fallback`` when it cannot be read (an alternative value).

    The error is logged by the fail-safe boundary (tests see it raised), and the payload gets
    ``fallback`` rather than -1: ``False`` for a switch that cannot be read, say.
    """

    def read() -> Any:
        value = _settings_row(_engine())[name]
        return LABELS[labels].get(value, str(value)) if labels else value

    return call_safely(read, fallback=fallback, description=f"demo setting {name}")


def feature_flag_states() -> dict[str, bool]:
    """Every demo feature flag and whether it is on (stored values over the defaults)."""
    from usage_ping.demo.config import FEATURE_FLAGS

    flags = feature_flags(_engine())
    return {name: flags.enabled(name) for name in sorted(FEATURE_FLAGS)}


def license_field(field: str) -> Any:
    """A field of the current license (the newest row of ``licenses``).

    ``md5`` is the MD5 of the license key (never the key); ``licensee`` is an object with
    ``Name``, ``Email`` and ``Company``; dates are ISO strings, an open end is ``""``.
    """
    table = models.licenses
    with _engine().connect() as conn:
        query = sa.select(table).order_by(table.c.created_at.desc(), table.c.id.desc()).limit(1)
        row = conn.execute(query).mappings().first()
    if row is None:
        raise LookupError("no license is installed")
    if field == "md5":
        return hashlib.md5(row["license_key"].encode(), usedforsecurity=False).hexdigest()
    if field == "licensee":
        return {
            "Name": row["licensee_name"],
            "Email": row["licensee_email"],
            "Company": row["licensee_company"],
        }
    value = row[field]
    if field in ("starts_at", "expires_at"):
        return value.isoformat() if value is not None else ""
    if field == "trial":
        return bool(value)
    return value


def database_adapter() -> str:
    """The database's name as SQLAlchemy knows it (``postgresql``, ``mariadb``, ``sqlite``)."""
    return _engine().dialect.name


def database_version() -> str:
    """The database server's version."""
    engine = _engine()
    with engine.connect() as conn:
        info = conn.dialect.server_version_info
    if info is None:
        raise LookupError("the database did not report its version")
    return ".".join(str(part) for part in info)


def python_version() -> str:
    """The Python version, e.g. ``3.11.2``."""
    return platform.python_version()


def operating_system() -> str:
    """The operating system and machine, e.g. ``linux-x86_64``."""
    return f"{sys.platform}-{platform.machine()}"


def package_version(package: str) -> str:
    """The installed version of ``package``."""
    return metadata.version(package)
