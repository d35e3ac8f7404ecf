"""The demo's metric dictionary, known events and aggregated metrics: valid and consistent."""

from __future__ import annotations

import importlib
import io
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

from usage_ping.cli import main
from usage_ping.demo import models, write_config
from usage_ping.demo.config import (
    FEATURE_FLAGS,
    KNOWN_EVENTS_DIR,
    METRICS_DIR,
    aggregated_metrics,
    known_events,
)
from usage_ping.metrics import (
    CallableInstrumentation,
    DatabaseInstrumentation,
    MetricDictionary,
    RedisHLLInstrumentation,
    RedisInstrumentation,
)
from usage_ping.settings import Settings

STAGES = ("manage", "plan", "create", "verify", "release", "configure", "monitor", "secure",
          "package")  # fmt: skip


def _dictionary() -> MetricDictionary:
    return MetricDictionary.load(METRICS_DIR)


def test_the_validate_command_accepts_the_dictionary() -> None:
    """``usage-ping metrics validate`` passes on the shipped dictionary."""
    out = io.StringIO()
    assert main(["metrics", "validate", str(METRICS_DIR)], out=out) == 0
    assert out.getvalue().startswith("OK: ")
    assert int(out.getvalue().split()[1]) >= 120


def test_every_group_of_the_guide_has_metrics() -> None:
    """counts, weekly, monthly, settings, license, both stage groups for every stage, HLL,
    aggregated metrics."""
    paths = [m.key_path for m in _dictionary().active()]
    assert len(paths) >= 120
    tops = Counter(p.split(".")[0] for p in paths)
    for group in ("counts", "counts_weekly", "counts_monthly", "settings", "license",
                  "redis_hll_counters"):  # fmt: skip
        assert tops[group] > 0, group
    for group in ("usage_activity_by_stage", "usage_activity_by_stage_monthly"):
        stages = {p.split(".")[1] for p in paths if p.startswith(group + ".")}
        assert stages == set(STAGES), group
    for group in ("counts_weekly", "counts_monthly"):
        assert any(p.startswith(f"{group}.aggregated_metrics.") for p in paths), group


def test_every_instrumentation_kind_is_used() -> None:
    """Batch, distinct, sum and estimated counts; grouped counts; plain counters; HLL events;
    system facts; alternative values; aggregated metrics."""
    metrics = _dictionary().active()
    operations = {m.instrumentation.operation for m in metrics
                  if isinstance(m.instrumentation, DatabaseInstrumentation)}  # fmt: skip
    assert operations == {"count", "distinct_count", "sum", "estimate_distinct_count"}
    assert any(isinstance(m.instrumentation, RedisInstrumentation) for m in metrics)
    assert any(isinstance(m.instrumentation, RedisHLLInstrumentation) for m in metrics)
    callables = Counter(m.instrumentation.callable.rsplit(":", 1)[1] for m in metrics
                        if isinstance(m.instrumentation, CallableInstrumentation))  # fmt: skip
    for name in ("grouped", "aggregated", "setting", "license_field", "database_version",
                 "python_version", "operating_system"):  # fmt: skip
        assert callables[name] > 0, name
    assert {m.data_source for m in metrics} >= {"database", "redis", "redis_hll", "system"}
    assert {m.data_category for m in metrics} == {
        "standard", "subscription", "operational", "optional"
    }  # fmt: skip


def test_every_callable_resolves() -> None:
    """Each ``module:attribute`` of the dictionary imports."""
    for metric in _dictionary().values():
        if isinstance(metric.instrumentation, CallableInstrumentation):
            module, _, name = metric.instrumentation.callable.partition(":")
            assert callable(getattr(importlib.import_module(module), name)), metric.key_path


def test_database_metrics_count_indexed_columns_of_demo_tables() -> None:
    """Tables and columns exist; windows are dated by an indexed column; distinct counts walk an
    indexed column (the first of an index)."""
    for metric in _dictionary().values():
        inst = metric.instrumentation
        if not isinstance(inst, DatabaseInstrumentation):
            continue
        assert inst.table is not None
        table = models.metadata.tables[inst.table]
        names = [inst.column, inst.time_column, *inst.filters]
        for name in (n for n in names if n is not None):
            assert name in table.c, f"{metric.key_path}: {inst.table}.{name}"
        leading = {next(iter(i.columns)).name for i in table.indexes}
        if inst.time_column is not None:
            assert inst.time_column in {c.name for i in table.indexes for c in i.columns}
        if inst.operation == "distinct_count":
            assert inst.column in leading, f"{metric.key_path}: index {inst.table}.{inst.column}"


def test_every_known_event_has_weekly_and_monthly_metrics_and_totals() -> None:
    """As GitLab adds them automatically: <event>_weekly/_monthly per event, and a category
    total where the category's events share one slot and aggregation."""
    paths = {m.key_path for m in _dictionary().active()}
    events = known_events()
    for name, event in events.items():
        for frame in ("weekly", "monthly"):
            assert f"redis_hll_counters.{event.category}.{name}_{frame}" in paths
    for category in events.categories():
        members = events.in_category(category)
        countable = len(members) > 1 and len({(e.slot, e.aggregation) for e in members}) == 1
        total = f"redis_hll_counters.{category}.{category}_total_unique_counts_weekly"
        assert (total in paths) == countable, category


def test_aggregated_metrics_are_valid_and_each_frame_is_in_the_dictionary() -> None:
    """The aggregated metrics load against the known events (OR and AND, one with a flag), and
    each of their time frames has a metric in the dictionary."""
    metrics = aggregated_metrics()
    assert {m.operator for m in metrics.values()} == {"OR", "AND"}
    paths = {m.key_path for m in _dictionary().active()}
    groups = {"7d": "counts_weekly", "28d": "counts_monthly"}
    for metric in metrics.values():
        for frame in ("7d", "28d"):
            path = f"{groups[frame]}.aggregated_metrics.{metric.name}"
            assert (path in paths) == (frame in metric.time_frames), path


def test_feature_flags_of_events_and_aggregates_are_declared() -> None:
    """Every flag an event or an aggregated metric names is one of the demo's flags."""
    named = {e.feature_flag for e in known_events().values() if e.feature_flag}
    named |= {m.feature_flag for m in aggregated_metrics().values() if m.feature_flag}
    assert len(named) >= 2
    assert named <= set(FEATURE_FLAGS)
    assert {e.aggregation for e in known_events().values()} == {"daily", "weekly"}


def test_written_config_loads_the_shipped_dictionary(tmp_path: Path) -> None:
    """write_config points the instance at the package's dictionary and known events."""
    path = write_config(tmp_path, database_url="sqlite:///host.db", collector_url="http://x.test")
    settings = Settings.load(path)
    assert settings.metrics == (METRICS_DIR,)
    assert settings.events == (KNOWN_EVENTS_DIR,)
    assert settings.database_url == f"sqlite:///{tmp_path / 'host.db'}"
    assert settings.collector_url == "http://x.test"
    assert len(MetricDictionary.load(*settings.metrics)) == len(_dictionary())
    sa.create_engine(settings.database_url).dispose()
