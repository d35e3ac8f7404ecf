"""The payload builder: every metric in isolation, with its reason in meta when it fails."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.metrics.files import write_metric
from tests.payload import targets
from usage_ping.events import Counter, EventCounter, KnownEvent, KnownEvents
from usage_ping.metrics import MetricDictionary
from usage_ping.payload import PayloadBuilder, set_path
from usage_ping.store import SQLiteStore

NOW = datetime(2026, 11, 21, 9, tzinfo=UTC)


def _issues(engine: sa.Engine, metadata: sa.MetaData) -> sa.Table:
    issues = sa.Table(
        "issues",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("author_id", sa.Integer),
        sa.Column("state", sa.String(10)),
        sa.Column("weight", sa.Integer),
        sa.Column("created_at", sa.DateTime(timezone=True)),
    )
    metadata.create_all(engine)
    rows = [
        {
            "id": i,
            "author_id": i % 4,
            "state": "opened" if i % 2 else "closed",
            "weight": 2,
            "created_at": NOW - timedelta(days=i),  # issue i is i days old
        }
        for i in range(1, 41)
    ]
    with engine.begin() as conn:
        conn.execute(issues.insert(), rows)
    return issues


def _callable(directory: Path, name: str, target: str, **changes: Any) -> None:
    write_metric(
        directory, name, key_path=changes.pop("key_path", f"settings.{name}"),
        value_type=changes.pop("value_type", "number"), time_frame="none", data_source="system",
        instrumentation={"callable": f"tests.payload.targets:{target}",
                         "options": changes.pop("options", {})},
        **changes,
    )  # fmt: skip


def test_builds_a_nested_payload_from_every_source(
    engine: sa.Engine, metadata: sa.MetaData, tmp_path: Path
) -> None:
    """Database, redis_hll, redis and callable metrics land at their key paths, with meta."""
    _issues(engine, metadata)
    d = tmp_path / "metrics"
    d.mkdir()
    write_metric(d, "all", key_path="counts.issues")
    write_metric(d, "open", key_path="counts.issues_opened",
                 instrumentation={"table": "issues", "operation": "count",
                                  "filters": {"state": "opened"}})  # fmt: skip
    write_metric(d, "week", key_path="counts_weekly.issues", time_frame="7d",
                 instrumentation={"table": "issues", "operation": "count",
                                  "time_column": "created_at"})  # fmt: skip
    write_metric(d, "authors", key_path="counts_monthly.authors", time_frame="28d",
                 instrumentation={"table": "issues", "operation": "distinct_count",
                                  "column": "author_id", "time_column": "created_at"})  # fmt: skip
    write_metric(
        d,
        "weight",
        key_path="counts.weight",
        instrumentation={"table": "issues", "operation": "sum", "column": "weight"},
    )
    write_metric(d, "search", key_path="redis_hll_counters.search.i_search_total_weekly",
                 time_frame="7d", data_source="redis_hll",
                 instrumentation={"events": ["i_search_total"]})  # fmt: skip
    write_metric(d, "wiki", key_path="counts.wiki_pages_create", data_source="redis",
                 instrumentation={"counter": "wiki_pages", "event": "create"})  # fmt: skip
    _callable(d, "version", "Versioned", value_type="string", options={"prefix": "v"})
    store = SQLiteStore(tmp_path / "counters.sqlite3")
    events = EventCounter(store, KnownEvents([KnownEvent("i_search_total", "search", "weekly")]),
                          strict=True)  # fmt: skip
    events.track_event("i_search_total", ["a", "b"], time=NOW - timedelta(days=7))
    wiki = Counter(store, "wiki_pages", ["create"], strict=True)
    wiki.increment("create", 3)

    payload = PayloadBuilder(
        MetricDictionary.load(d), engine=engine, events=events, counters={"wiki_pages": wiki},
        clock=lambda: NOW,
    ).build()  # fmt: skip

    assert payload["counts"] == {
        "issues": 40, "issues_opened": 20, "weight": 80, "wiki_pages_create": 3,
    }  # fmt: skip
    # Issues 1..7 days old: the 7 complete days before 2026-11-21 hold days 1..7 (issue 1 is
    # dated 2026-11-20 09:00, issue 7 2026-11-14 09:00); issue 8 (2026-11-13) is outside.
    assert payload["counts_weekly"] == {"issues": 7}
    assert payload["counts_monthly"] == {"authors": 4}
    assert payload["redis_hll_counters"] == {"search": {"i_search_total_weekly": 2}}
    assert payload["settings"] == {"version": "v1.2.3"}
    meta = {m["key_path"]: m for m in payload["meta"]["metrics"]}
    assert len(meta) == 8
    assert all("error" not in m and m["duration_ms"] >= 0 for m in meta.values())


@pytest.mark.swallows
def test_failing_metrics_fall_back_and_meta_says_why(
    engine: sa.Engine, metadata: sa.MetaData, tmp_path: Path
) -> None:
    """Raising, hanging, wrongly typed and missing-table metrics: -1 each, the rest unharmed."""
    _issues(engine, metadata)
    _callable(tmp_path, "boom", "boom")
    _callable(tmp_path, "hang", "hang", options={"seconds": 3})
    _callable(tmp_path, "wrong", "wrong_type")
    write_metric(tmp_path, "missing", key_path="counts.missing",
                 instrumentation={"table": "no_such_table", "operation": "count"})  # fmt: skip
    write_metric(
        tmp_path,
        "text_sum",
        key_path="counts.state_sum",
        instrumentation={"table": "issues", "operation": "sum", "column": "state"},
    )
    write_metric(tmp_path, "good", key_path="counts.issues")
    builder = PayloadBuilder(MetricDictionary.load(tmp_path), engine=engine, metric_timeout=0.5,
                             clock=lambda: NOW)  # fmt: skip
    started = time.perf_counter()
    payload = builder.build()
    assert time.perf_counter() - started < 2.5  # the hung metric is given up, not waited for
    assert payload["counts"] == {"issues": 40, "missing": -1, "state_sum": -1}
    assert payload["settings"] == {"boom": -1, "hang": -1, "wrong": -1}
    errors = {m["key_path"]: m.get("error", "") for m in payload["meta"]["metrics"]}
    assert errors["settings.boom"] == "RuntimeError: boom"
    assert errors["settings.hang"].startswith("MetricTimeoutError: over 0.5 s")
    assert errors["settings.wrong"] == "MetricTypeError: expected a number, got str"
    assert errors["counts.missing"].startswith("NoSuchTableError")
    assert errors["counts.state_sum"].startswith("InvalidRelationError: sum needs a numeric")
    assert errors["counts.issues"] == ""


@pytest.mark.dialects("postgresql")
@pytest.mark.swallows
def test_a_database_error_inside_a_counter_is_explained_without_sql(
    engine: sa.Engine, metadata: sa.MetaData, tmp_path: Path
) -> None:
    """When the counter itself returns -1, meta still names the error, without SQL or values."""
    _issues(engine, metadata)
    write_metric(tmp_path, "bad", key_path="counts.bad",
                 instrumentation={"table": "issues", "operation": "count",
                                  "filters": {"author_id": "abc"}})  # fmt: skip
    payload = PayloadBuilder(MetricDictionary.load(tmp_path), engine=engine).build()
    assert payload["counts"] == {"bad": -1}
    [entry] = payload["meta"]["metrics"]
    assert entry["error"].split(":")[0] in {"DataError", "ProgrammingError"}
    assert "SELECT" not in entry["error"]
    assert "[parameters" not in entry["error"]


def test_switched_off_categories_and_inactive_metrics_are_never_computed(tmp_path: Path) -> None:
    """A metric of a category the admin turned off is not run and not in the payload."""
    targets.calls.clear()
    _callable(tmp_path, "optional", "constant", data_category="optional")
    _callable(tmp_path, "operational", "constant", data_category="operational")
    _callable(tmp_path, "removed", "constant", status="removed")
    payload = PayloadBuilder(
        MetricDictionary.load(tmp_path), categories=["standard", "operational"]
    ).build()
    assert payload["settings"] == {"operational": 7}
    assert targets.calls == ["constant"]


def test_bounds_are_shared_by_concurrent_metrics_over_one_table(
    engine: sa.Engine, metadata: sa.MetaData, tmp_path: Path
) -> None:
    """Three metrics over issues, run two at a time, query its min/max once."""
    _issues(engine, metadata)
    write_metric(tmp_path, "a", key_path="counts.a")
    write_metric(
        tmp_path,
        "b",
        key_path="counts.b",
        instrumentation={"table": "issues", "operation": "sum", "column": "weight"},
    )
    write_metric(
        tmp_path,
        "c",
        key_path="counts.c",
        instrumentation={"table": "issues", "operation": "count", "column": "author_id"},
    )
    statements: list[str] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.lower())

    payload = PayloadBuilder(MetricDictionary.load(tmp_path), engine=engine, concurrency=2).build()
    assert payload["counts"] == {"a": 40, "b": 80, "c": 40}
    assert sum(1 for s in statements if "min(" in s and "max(" in s) == 1


def test_set_path_builds_groups() -> None:
    """Dotted key paths create nested groups."""
    tree: dict[str, Any] = {}
    set_path(tree, "a.b.c", 1)
    set_path(tree, "a.b.d", 2)
    set_path(tree, "e", 3)
    assert tree == {"a": {"b": {"c": 1, "d": 2}}, "e": 3}


def test_concurrency_must_be_positive() -> None:
    """A pool of no workers is refused when the builder is made."""
    with pytest.raises(ValueError, match="concurrency"):
        PayloadBuilder(MetricDictionary(), concurrency=0)
