"""The metric dictionary: YAML definitions checked when loaded, errors naming file and field."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.metrics.files import REMOVE, write_metric
from usage_ping.metrics import (
    CallableInstrumentation,
    DatabaseInstrumentation,
    MetricDefinitionError,
    MetricDictionary,
    RedisHLLInstrumentation,
    RedisInstrumentation,
    database_window,
)


def test_loads_every_kind_of_instrumentation(tmp_path: Path) -> None:
    """Database, redis_hll, redis and callable instrumentations load into typed specs."""
    write_metric(tmp_path, "issues")
    write_metric(
        tmp_path, "issues_28d", key_path="counts_monthly.issues", time_frame="28d",
        instrumentation={"table": "issues", "operation": "distinct_count", "column": "author_id",
                         "filters": {"state": "opened"}, "time_column": "created_at"},
    )  # fmt: skip
    write_metric(
        tmp_path, "search", key_path="redis_hll_counters.search.i_search_total_weekly",
        time_frame="7d", data_source="redis_hll", instrumentation={"events": ["i_search_total"]},
    )  # fmt: skip
    write_metric(
        tmp_path, "wiki", key_path="counts.wiki_pages_create", data_source="redis",
        instrumentation={"counter": "wiki_pages", "event": "create"},
    )  # fmt: skip
    sub = tmp_path / "system"
    sub.mkdir()
    write_metric(
        sub, "version", key_path="settings.version", value_type="string", time_frame="none",
        data_source="system", status="deprecated",
        instrumentation={"callable": "myapp.metrics:version", "options": {"short": True}},
    )  # fmt: skip
    metrics = MetricDictionary.load(tmp_path)
    assert len(metrics) == 5
    assert [m.key_path for m in metrics.active()] == [
        "counts.issues",
        "counts.wiki_pages_create",
        "counts_monthly.issues",
        "redis_hll_counters.search.i_search_total_weekly",
    ]
    monthly = metrics["counts_monthly.issues"].instrumentation
    assert monthly == DatabaseInstrumentation(
        operation="distinct_count", table="issues", column="author_id",
        filters={"state": "opened"}, time_column="created_at",
    )  # fmt: skip
    assert isinstance(metrics["counts.wiki_pages_create"].instrumentation, RedisInstrumentation)
    assert metrics["redis_hll_counters.search.i_search_total_weekly"].instrumentation == (
        RedisHLLInstrumentation(("i_search_total",))
    )
    version = metrics["settings.version"]
    assert version.instrumentation == CallableInstrumentation(
        "myapp.metrics:version", {"short": True}
    )
    assert not version.active
    assert version.source.endswith("system/version.yml")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"key_path": "Counts.Issues"}, "key_path: 'Counts.Issues' does not match"),
        ({"description": REMOVE}, "'description' is a required property"),
        ({"status": "maybe"}, "status: 'maybe' is not one of"),
        ({"time_frame": "1y"}, "time_frame: '1y' is not one of"),
        ({"data_source": "csv"}, "data_source: 'csv' is not one of"),
        ({"data_category": "secret"}, "data_category: 'secret' is not one of"),
        ({"tier": ["gold"]}, "tier/0: 'gold' is not one of"),
        ({"milestone": "soon"}, "milestone: 'soon' does not match"),
        ({"colour": "red"}, "'colour' was unexpected"),
        ({"instrumentation": {"table": "issues"}}, "instrumentation: must be one of"),
        (
            {"instrumentation": {"table": "x", "operation": "avg"}},
            "instrumentation: must be one of",
        ),
        ({"instrumentation": {"callable": "not a path"}}, "instrumentation: must be one of"),
        (
            {"time_frame": "28d"},
            "instrumentation/time_column: a 28d database metric needs the column",
        ),
        (
            {"instrumentation": {"table": "i", "operation": "count", "time_column": "created_at"}},
            "only 7d and 28d metrics use a time column",
        ),
        (
            {"instrumentation": {"table": "i", "operation": "sum"}},
            "instrumentation/column: sum needs a column",
        ),
        ({"data_source": "redis"}, "a database spec needs data_source database, not redis"),
        ({"value_type": "string"}, "value_type: a database metric is a number"),
        (
            {"data_source": "redis_hll", "instrumentation": {"events": ["i_x"]}},
            "time_frame: redis_hll metrics count a 7d or 28d window, not all",
        ),
    ],
)
def test_bad_definitions_name_the_file_and_the_field(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    """Each mistake is an error with the file's path and what is wrong where."""
    path = write_metric(tmp_path, "bad", **changes)
    with pytest.raises(MetricDefinitionError) as info:
        MetricDictionary.load(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_a_file_must_hold_one_metric(tmp_path: Path) -> None:
    """A list, invalid YAML or a missing file is refused with the file's path."""
    (tmp_path / "list.yml").write_text("- key_path: a\n")
    with pytest.raises(MetricDefinitionError, match=r"list\.yml: expected one metric"):
        MetricDictionary.load(tmp_path / "list.yml")
    (tmp_path / "broken.yml").write_text("key_path: [\n")
    with pytest.raises(MetricDefinitionError, match="not valid YAML"):
        MetricDictionary.load(tmp_path / "broken.yml")
    with pytest.raises(MetricDefinitionError, match="cannot read"):
        MetricDictionary.load(tmp_path / "missing.yml")


def test_duplicate_key_paths_are_refused_naming_both_files(tmp_path: Path) -> None:
    """The same key path in two files: the error names where it was first defined."""
    write_metric(tmp_path, "a")
    write_metric(tmp_path, "b")
    with pytest.raises(
        MetricDefinitionError,
        match=r"b\.yml: key_path 'counts.issues' is already defined in .*/a\.yml",
    ):
        MetricDictionary.load(tmp_path)


def test_a_key_path_cannot_nest_under_another_value(tmp_path: Path) -> None:
    """counts.issues and counts.issues.open cannot both exist: one is a number."""
    write_metric(tmp_path, "a")
    write_metric(tmp_path, "b", key_path="counts.issues.open")
    with pytest.raises(MetricDefinitionError, match=r"would nest under the value 'counts\.issues'"):
        MetricDictionary.load(tmp_path)


@pytest.mark.parametrize(
    ("frame", "start", "end"),
    [
        ("7d", datetime(2024, 2, 23, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)),
        ("28d", datetime(2024, 2, 2, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)),
    ],
)
def test_database_windows_are_complete_days_ending_today(
    frame: str, start: datetime, end: datetime
) -> None:
    """7d and 28d are half-open windows of complete UTC days that end where today begins."""
    assert database_window(frame, date(2024, 3, 1)) == (start, end)


def test_all_and_none_have_no_window() -> None:
    """all and none put no time condition on the rows."""
    assert database_window("all", date(2024, 3, 1)) is None
    assert database_window("none", date(2024, 3, 1)) is None
