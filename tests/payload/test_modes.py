"""Facts, queries mode, non-SQL mode, value types, progress, and workers that never block exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import usage_ping
from tests.metrics.files import write_metric
from tests.payload import targets
from tests.payload.test_builder import NOW, _callable, _issues
from usage_ping.events import Counter
from usage_ping.metrics import MetricDictionary
from usage_ping.payload import InstanceFacts, MetricOutcome, PayloadBuilder
from usage_ping.store import SQLiteStore

FACTS = InstanceFacts(
    uuid="7c5a3f9e-0000-4000-8000-000000000001",
    version="16.2.0",
    hostname="git.example.com",
    installation_type="docker",
    edition="EE",
)


def _database_metrics(d: Path) -> None:
    write_metric(d, "all", key_path="counts.issues")
    write_metric(d, "open", key_path="counts.issues_opened",
                 instrumentation={"table": "issues", "operation": "count",
                                  "filters": {"state": "opened"}})  # fmt: skip
    write_metric(d, "authors", key_path="counts_monthly.authors", time_frame="28d",
                 instrumentation={"table": "issues", "operation": "distinct_count",
                                  "column": "author_id", "time_column": "created_at"})  # fmt: skip
    write_metric(d, "weight", key_path="counts.weight",
                 instrumentation={"table": "issues", "operation": "sum",
                                  "column": "weight"})  # fmt: skip
    write_metric(d, "est", key_path="counts.authors_estimated",
                 instrumentation={"table": "issues", "operation": "estimate_distinct_count",
                                  "column": "author_id"})  # fmt: skip


def test_facts_lead_the_payload(tmp_path: Path) -> None:
    """uuid, hostname, version, installation_type, edition, recorded_at come first, then metrics."""
    _callable(tmp_path, "constant", "constant")
    facts = InstanceFacts(
        uuid=FACTS.uuid, version="16.2.0", hostname="git.example.com", edition="EE",
        active_user_count=lambda: 42, license={"plan": "premium", "user_count": 100},
    )  # fmt: skip
    payload = PayloadBuilder(
        MetricDictionary.load(tmp_path), facts=facts, clock=lambda: NOW
    ).build()
    assert list(payload)[:9] == [
        "uuid", "hostname", "version", "installation_type", "edition", "recorded_at",
        "active_user_count", "license", "settings",
    ]  # fmt: skip
    assert payload["uuid"] == FACTS.uuid
    assert payload["recorded_at"] == "2026-11-21T09:00:00.000Z"
    assert payload["active_user_count"] == 42
    assert payload["license"] == {"plan": "premium", "user_count": 100}
    assert payload["meta"]["started_at"] == "2026-11-21T09:00:00.000Z"
    assert payload["meta"]["mode"] == "values"
    assert [m["key_path"] for m in payload["meta"]["metrics"]] == [
        "active_user_count",
        "settings.constant",
    ]


def test_facts_default_hostname_is_this_machine() -> None:
    """Without a configured hostname the facts carry the machine's name."""
    import socket

    assert InstanceFacts(uuid="u", version="1").hostname == socket.getfqdn()


@pytest.mark.swallows
def test_a_failing_fact_callable_falls_back_and_is_explained(tmp_path: Path) -> None:
    """active_user_count that raises: -1, with its error in meta; the payload completes."""

    def broken() -> int:
        raise ConnectionError("replica down")

    facts = InstanceFacts(uuid="u", version="1", active_user_count=broken)
    payload = PayloadBuilder(MetricDictionary(), facts=facts).build()
    assert payload["active_user_count"] == -1
    [entry] = payload["meta"]["metrics"]
    assert entry["error"] == "ConnectionError: replica down"


def test_a_metric_cannot_take_a_facts_key(tmp_path: Path) -> None:
    """A key path whose top is a fact the builder fills is refused, naming the file."""
    _callable(tmp_path, "uuid", "constant", key_path="uuid", value_type="string")
    dictionary = MetricDictionary.load(tmp_path)
    with pytest.raises(ValueError, match=r"uuid\.yml: key_path 'uuid' clashes with the instance"):
        PayloadBuilder(dictionary, facts=FACTS)
    # Without facts, or when the dictionary supplies active_user_count itself, it is fine.
    PayloadBuilder(dictionary)


def test_active_user_count_may_come_from_the_dictionary(tmp_path: Path) -> None:
    """A metric with key path active_user_count fills the top-level key when facts leave it."""
    _callable(tmp_path, "users", "constant", key_path="active_user_count", options={"value": 9})
    payload = PayloadBuilder(MetricDictionary.load(tmp_path), facts=FACTS).build()
    assert payload["active_user_count"] == 9


def test_queries_mode_renders_sql_per_dialect_and_runs_nothing(
    engine: sa.Engine, metadata: sa.MetaData, tmp_path: Path
) -> None:
    """Each database metric's value is its SQL for this database; no statement is executed."""
    _issues(engine, metadata)
    _database_metrics(tmp_path)
    write_metric(tmp_path, "search", key_path="redis_hll_counters.search.i_search_total_weekly",
                 time_frame="7d", data_source="redis_hll",
                 instrumentation={"events": ["i_search_total"]})  # fmt: skip
    write_metric(tmp_path, "wiki", key_path="counts.wiki_pages_create", data_source="redis",
                 instrumentation={"counter": "wiki_pages", "event": "create"})  # fmt: skip
    _callable(tmp_path, "constant", "constant", options={"value": 3})
    statements: list[str] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    targets.calls.clear()
    payload = PayloadBuilder(
        MetricDictionary.load(tmp_path), engine=engine, mode="queries", clock=lambda: NOW
    ).build()
    assert statements == []
    assert targets.calls == []
    counts = payload["counts"]
    assert counts["issues"] == "SELECT count(*) AS count_1 FROM issues"
    assert counts["issues_opened"] == (
        "SELECT count(*) AS count_1 FROM issues WHERE issues.state = 'opened'"
    )
    assert counts["weight"] == "SELECT sum(issues.weight) AS sum_1 FROM issues"
    assert counts["authors_estimated"] == (
        "SELECT count(DISTINCT issues.author_id) AS count_1 FROM issues"
    )
    monthly = payload["counts_monthly"]["authors"]
    assert monthly.startswith(
        "SELECT count(DISTINCT issues.author_id) AS count_1 FROM issues WHERE issues.created_at >= "
    )
    assert "2026-10-24 00:00:00" in monthly  # 28 complete days before 2026-11-21
    assert "issues.created_at < '2026-11-21 00:00:00" in monthly
    assert counts["wiki_pages_create"] == {"redis_counter": "wiki_pages_create"}
    assert payload["redis_hll_counters"]["search"]["i_search_total_weekly"] == {
        "redis_hll_events": ["i_search_total"],
        "time_frame": "7d",
    }
    assert payload["settings"]["constant"] == {
        "callable": "tests.payload.targets:constant",
        "options": {"value": 3},
    }
    assert payload["meta"]["mode"] == "queries"

    # The SQL is the one the database runs: executed by hand it gives the counters' answers.
    with engine.connect() as conn:
        assert conn.execute(sa.text(counts["issues_opened"])).scalar() == 20
        assert conn.execute(sa.text(counts["weight"])).scalar() == 80


def test_queries_mode_without_a_database_uses_the_named_dialect(tmp_path: Path) -> None:
    """No engine at all: the SQL is rendered for the configured dialect."""
    write_metric(tmp_path, "flag", key_path="counts.confidential",
                 instrumentation={"table": "public.issues", "operation": "count",
                                  "filters": {"confidential": True}})  # fmt: skip
    for dialect, literal in (("postgresql", "true"), ("sqlite", "1"), ("mysql", "true")):
        payload = PayloadBuilder(
            MetricDictionary.load(tmp_path), mode="queries", dialect=dialect
        ).build()
        assert payload["counts"]["confidential"] == (
            "SELECT count(*) AS count_1 FROM public.issues "
            f"WHERE public.issues.confidential = {literal}"
        )


def test_non_sql_mode_gives_minus_three_for_sql_and_computes_the_rest(
    engine: sa.Engine, metadata: sa.MetaData, tmp_path: Path
) -> None:
    """Database metrics and SQL helpers called by callables give -3; counters are still read."""
    _issues(engine, metadata)
    _database_metrics(tmp_path)
    _callable(tmp_path, "via_helper", "issues_via_helper")
    write_metric(tmp_path, "wiki", key_path="counts.wiki_pages_create", data_source="redis",
                 instrumentation={"counter": "wiki_pages", "event": "create"})  # fmt: skip
    wiki = Counter(SQLiteStore(tmp_path / "c.sqlite3"), "wiki_pages", ["create"], strict=True)
    wiki.increment("create", 2)
    targets.engine = engine
    statements: list[str] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    try:
        payload = PayloadBuilder(
            MetricDictionary.load(tmp_path), engine=engine, counters={"wiki_pages": wiki},
            mode="non_sql",
        ).build()  # fmt: skip
    finally:
        targets.engine = None
    assert payload["counts"] == {
        "issues": -3, "issues_opened": -3, "weight": -3, "authors_estimated": -3,
        "wiki_pages_create": 2,
    }  # fmt: skip
    assert payload["counts_monthly"] == {"authors": -3}
    assert payload["settings"] == {"via_helper": -3}
    assert not any("count" in s.lower() for s in statements)  # reflection only, no counting
    assert all("error" not in m for m in payload["meta"]["metrics"])


@pytest.mark.parametrize(
    ("counter", "args"),
    [
        (usage_ping.count, ()),
        (usage_ping.distinct_count, ("author_id",)),
        (usage_ping.sum, ("weight",)),
        (usage_ping.estimate_distinct_count, ()),
        (usage_ping.estimate_distinct_sketch, ()),
    ],
)
def test_sql_helpers_return_minus_three_in_non_sql_mode(counter: Any, args: tuple[str]) -> None:
    """Every SQL helper answers -3 without touching the database (here: one that does not exist)."""
    engine = sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    table = sa.table("issues", sa.column("id"), sa.column("author_id"), sa.column("weight"))
    with usage_ping.sql.non_sql_mode():
        assert counter(engine, table, *args) == usage_ping.QUERIES_MODE
    assert not usage_ping.sql.sql_disabled()


@pytest.mark.swallows
@pytest.mark.parametrize(
    ("value_type", "good", "bad"),
    [
        ("string", "v1", 1),
        ("boolean", True, "yes"),
        ("object", {"a": 1}, [1]),
        ("number", 2.5, True),
    ],
)
def test_values_must_have_their_declared_type(
    tmp_path: Path, value_type: str, good: Any, bad: Any
) -> None:
    """A value of another type than value_type says so in meta and falls back to -1."""
    _callable(tmp_path, "good", "constant", value_type=value_type, options={"value": good})
    _callable(tmp_path, "bad", "constant", value_type=value_type, options={"value": bad})
    payload = PayloadBuilder(MetricDictionary.load(tmp_path)).build()
    assert payload["settings"] == {"good": good, "bad": -1}
    errors = {m["key_path"]: m.get("error") for m in payload["meta"]["metrics"]}
    assert errors == {
        "settings.bad": f"MetricTypeError: expected a {value_type}, got {type(bad).__name__}",
        "settings.good": None,
    }


@pytest.mark.swallows
def test_on_outcome_sees_every_metric_and_cannot_break_the_build(tmp_path: Path) -> None:
    """The progress callback gets each outcome once; when it raises, the build goes on."""
    for n in range(5):
        _callable(tmp_path, f"m{n}", "constant")
    seen: list[MetricOutcome] = []

    def progress(outcome: MetricOutcome) -> None:
        seen.append(outcome)
        raise RuntimeError("display broke")

    payload = PayloadBuilder(MetricDictionary.load(tmp_path), on_outcome=progress).build()
    assert sorted(o.key_path for o in seen) == [f"settings.m{n}" for n in range(5)]
    assert payload["settings"] == {f"m{n}": 7 for n in range(5)}


@pytest.mark.swallows
def test_a_hung_metric_frees_its_slot(tmp_path: Path) -> None:
    """With one worker, a metric hung for good is given up and the others still run."""
    _callable(tmp_path, "a_hang", "hang", options={"seconds": 30})
    for n in range(3):
        _callable(tmp_path, f"b{n}", "constant")
    started = time.perf_counter()
    payload = PayloadBuilder(
        MetricDictionary.load(tmp_path), concurrency=1, metric_timeout=0.3
    ).build()
    assert time.perf_counter() - started < 3
    assert payload["settings"] == {"a_hang": -1, "b0": 7, "b1": 7, "b2": 7}


def test_a_hung_metric_never_holds_up_interpreter_exit(tmp_path: Path) -> None:
    """The host process exits at once after a build whose metric hangs for a minute."""
    _callable(tmp_path, "hang", "hang", options={"seconds": 60})
    script = textwrap.dedent(
        f"""
        from usage_ping.metrics import MetricDictionary
        from usage_ping.payload import PayloadBuilder
        metrics = MetricDictionary.load({str(tmp_path)!r})
        payload = PayloadBuilder(metrics, metric_timeout=0.2).build()
        print(payload["settings"]["hang"])
        """
    )
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.strip() == "-1"
    assert time.perf_counter() - started < 10


def test_recorded_at_is_utc_with_milliseconds(tmp_path: Path) -> None:
    """A clock in another zone still records UTC."""
    from datetime import timedelta, timezone

    moment = datetime(2026, 11, 21, 10, 30, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    payload = PayloadBuilder(MetricDictionary(), facts=FACTS, clock=lambda: moment).build()
    assert payload["recorded_at"] == "2026-11-21T08:30:05.123Z"
    assert datetime.fromisoformat(payload["recorded_at"]).tzinfo == UTC


def test_plain_counters_whose_totals_clash_are_refused(tmp_path: Path) -> None:
    """Prefix wiki + event pages_create and prefix wiki_pages + event create: one name, refused."""
    store = SQLiteStore(tmp_path / "c.sqlite3")
    counters = {
        "wiki": Counter(store, "wiki", ["pages_create"]),
        "wiki_pages": Counter(store, "wiki_pages", ["create", "delete"]),
    }
    with pytest.raises(ValueError, match="'wiki' and 'wiki_pages' both report 'wiki_pages_create'"):
        PayloadBuilder(MetricDictionary(), counters=counters)
