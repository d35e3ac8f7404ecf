"""The demo's telemetry configuration: where its dictionary and events live, its counters, flags.

Shipped as package data under ``usage_ping/demo/config/``:

- ``metrics/``: the metric dictionary, one YAML file per metric (``counts_all/``, ``counts_7d/``,
  ``counts_28d/``, ``stage_all/``, ``stage_28d/``, ``redis_hll/``, ``aggregates/``,
  ``settings/``, ``license/``);
- ``known_events/``: the known events (HLL unique-user counters), one file per category;
- ``aggregated_metrics/``: unions (OR) and intersections (AND) of known events;
- ``usage-ping.yml``: the configuration template (see :func:`write_config`).

Example:
    >>> from usage_ping.demo.config import write_config
    >>> path = write_config("/srv/demo", database_url="sqlite:///demo.sqlite3")  # doctest: +SKIP
    >>> ping = UsagePing.from_config(path, counters=demo_counters(store))  # doctest: +SKIP
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import sqlalchemy as sa
import yaml

from usage_ping.events import AggregatedMetrics, Counter, FeatureFlags, HashCounter, KnownEvents
from usage_ping.events.plain import HasTotals
from usage_ping.store import CounterStore

__all__ = [
    "AGGREGATED_METRICS_DIR",
    "CONFIG_DIR",
    "CONFIG_TEMPLATE",
    "COUNTERS",
    "FEATURE_FLAGS",
    "KNOWN_EVENTS_DIR",
    "METRICS_DIR",
    "aggregated_metrics",
    "demo_counters",
    "feature_flags",
    "known_events",
    "write_config",
]

CONFIG_DIR = Path(str(resources.files("usage_ping.demo").joinpath("config")))
"""The demo's configuration files (package data)."""
METRICS_DIR = CONFIG_DIR / "metrics"
KNOWN_EVENTS_DIR = CONFIG_DIR / "known_events"
AGGREGATED_METRICS_DIR = CONFIG_DIR / "aggregated_metrics"
CONFIG_TEMPLATE = CONFIG_DIR / "usage-ping.yml"

FEATURE_FLAGS: dict[str, bool] = {
    "search_paid_tracking": False,
    "value_stream_tracking": True,
    "aggregated_issue_triage": True,
}
"""The demo's feature flags and their defaults (seeded into ``usage_ping_feature_flags``).

``search_paid_tracking`` gates the event ``i_search_paid`` (off: it is never tracked),
``value_stream_tracking`` the event ``g_analytics_valuestream``, and ``aggregated_issue_triage``
the aggregated metric ``issue_triage_and_comment``."""

COUNTERS: dict[str, tuple[type[Counter] | type[HashCounter], tuple[str, ...]]] = {
    "wiki_pages": (Counter, ("create", "update", "delete")),
    "web_ide": (Counter, ("commits", "views", "merge_requests", "previews")),
    "source_code": (Counter, ("pushes",)),
    "pod_logs": (HashCounter, ("requests", "errors")),
}
"""The demo's plain counters: prefix, kind and events (``counts.<prefix>_<event>``)."""


def demo_counters(store: CounterStore) -> dict[str, HasTotals]:
    """The demo's plain counters over ``store``, by prefix (for ``UsagePing(counters=...)``)."""
    return {prefix: kind(store, prefix, events) for prefix, (kind, events) in COUNTERS.items()}


def known_events() -> KnownEvents:
    """The demo's known events."""
    return KnownEvents.load(KNOWN_EVENTS_DIR)


def aggregated_metrics() -> AggregatedMetrics:
    """The demo's aggregated metrics, checked against its known events."""
    return AggregatedMetrics.load(AGGREGATED_METRICS_DIR, events=known_events())


def feature_flags(engine: sa.Engine | None = None) -> FeatureFlags:
    """The demo's flags: those stored in the host database over :data:`FEATURE_FLAGS`."""
    if engine is None:
        return FeatureFlags(defaults=FEATURE_FLAGS)
    return FeatureFlags.from_table(engine, defaults=FEATURE_FLAGS)


def write_config(
    directory: Path | str,
    *,
    database_url: str | None = None,
    store_url: str | None = None,
    **settings: object,
) -> Path:
    """Write ``usage-ping.yml`` for the demo into ``directory``; returns its path.

    The template's dictionary and known events are pointed at the installed package data;
    ``database_url``, ``store_url`` and any other setting (``collector_url=...``) replace the
    template's values. Relative SQLite paths are relative to ``directory``.
    """
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load(CONFIG_TEMPLATE.read_text())
    data["metrics"] = [str(METRICS_DIR)]
    data["events"] = [str(KNOWN_EVENTS_DIR)]
    if database_url is not None:
        data["database_url"] = database_url
    if store_url is not None:
        data["store_url"] = store_url
    data.update(settings)
    path = target / "usage-ping.yml"
    path.write_text(
        "# usage-ping configuration of the demo platform (written by usage_ping.demo.config)\n"
        + yaml.safe_dump(data, sort_keys=False)
    )
    return path
