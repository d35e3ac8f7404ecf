"""Benchmark: payload generation by usage_ping's ``PayloadBuilder`` on a generated host database.

A host database resembling a DevOps platform (10 tables: users, projects, milestones, issues,
merge_requests, notes, ci_pipelines, ci_builds, deployments, events) is generated inside
PostgreSQL at each scale (1M and 10M rows in total by default; the largest tables hold most rows),
one schema per scale (``s1m``, ``s10m``). Rows are dated over the 90 days before generation, in id
order as a host's rows would be; author and project ids are skewed (a few heavy users and
projects); every table has indexes on ``created_at`` and on its foreign-key columns.

116 metric definitions (count, distinct_count, sum and estimate_distinct_count; with and without
equality filters; time frames all, 28d and 7d; key paths under counts, counts_monthly,
counts_weekly, usage_activity_by_stage and usage_activity_by_stage_monthly) are written as YAML
files into a temporary directory and loaded with ``MetricDictionary.load``. Measured side by side
in one run:

1. the whole payload's wall time per scale, with ``concurrency=1`` and ``concurrency=2``, on the
   engine a host would create (``defaults``, the headline) and on the same engine without
   server-side prepared statements (``no-prepare``, which isolates the cause of the slow metrics);
2. how the time grows with the rows (10M over 1M against the 10x row ratio), per operation and
   time frame;
3. the slowest metrics at the largest scale, each against one plain SQL statement;
4. every value against one plain statement per metric (exact counters equal, estimates within
   a tolerance), and every failed metric (-1 or an error);
5. what the library ran (batches, bounds queries, cancelled statements);
6. the slowest metrics rerun alone, their slowest batch explained as planned for its values and
   as a generic plan.

A metric given up at ``metric_timeout`` goes on counting after ``outcomes()`` returns (the builder
cannot stop it); the benchmark terminates those queries before the next run, so that each run
starts on an idle server, and reports how many there were.

Data are kept in the database ``usage_ping_payload_bench`` between runs and reused when a
schema's marker (generator version, rows), indexes and row counts match; ``--rebuild``
regenerates them (about 75 s for 10M rows). The payload's day is the day the data were generated
(the builder's ``clock``), so that 7d and 28d windows hold the same rows whenever it is rerun.

Usage::

    python benchmarks/payload.py                        # 1M and 10M rows: the results file
    python benchmarks/payload.py --scales 100k --runs 1 # a smoke run in well under a minute
    python benchmarks/payload.py --engines defaults     # without the no-prepare comparison
    python benchmarks/payload.py --rebuild              # regenerate the host database first
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from psycopg import sql as pgsql
from sqlalchemy import event

import usage_ping
from usage_ping.metrics import MetricDictionary, database_window
from usage_ping.payload import MetricOutcome, PayloadBuilder

GENERATOR_VERSION = 1
"""Bump when the generated data change: schemas with an older marker are regenerated."""

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/usage_ping_payload_bench"
RESULTS = Path(__file__).resolve().parent / "results" / "payload.md"
OTHER_OUTPUT = Path(__file__).resolve().parent.parent / ".bench"
DEFAULT_SCALES = (1_000_000, 10_000_000)
DEFAULT_CONCURRENCY = (1, 2)
DAYS = 90
PARALLEL = 2
"""The counters' parallel connections on PostgreSQL (the library's default)."""
METRIC_TIMEOUT = 300.0

# Targets from the issue.
TARGET_ROWS = 10_000_000
TARGET_SECONDS = 60.0
LINEAR_TOLERANCE = 1.25
"""Growth counts as linear while time ratio / row ratio stays at or below this."""
ESTIMATE_TOLERANCE_PCT = 3.0
"""HyperLogLog with 2^14 registers: 0.81 % standard error, so 3 % is over 3.5 standard errors."""

SHARES = {
    "users": 0.010,
    "projects": 0.015,
    "milestones": 0.005,
    "issues": 0.060,
    "merge_requests": 0.040,
    "notes": 0.200,
    "ci_pipelines": 0.080,
    "ci_builds": 0.300,
    "deployments": 0.040,
    "events": 0.250,
}
"""Each table's share of the scale's rows; ci_builds, events and notes hold 75 %."""

OK = "✓"
MISS = "MISS"
NA = "n/a"
DASH = "\N{EN DASH}"
TIMES = "\N{MULTIPLICATION SIGN}"

_started_at = time.perf_counter()


def log(message: str) -> None:
    """A progress line on stderr, with the seconds since the start."""
    print(f"[{time.perf_counter() - _started_at:7.1f}s] {message}", file=sys.stderr, flush=True)


# -- scales ------------------------------------------------------------------------------------


def parse_rows(text: str) -> int:
    """``"10M"`` -> 10000000, ``"100k"`` -> 100000."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", text.replace("_", ""))
    if match is None:
        raise argparse.ArgumentTypeError(f"not a row count: {text!r} (try 1m, 100k or 20000)")
    rows = round(
        float(match.group(1)) * {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2).lower()]
    )
    if rows < 10_000:
        raise argparse.ArgumentTypeError(f"at least 10k rows, got {text!r}")
    return rows


def parse_scales(text: str) -> list[int]:
    return sorted({parse_rows(part) for part in text.split(",") if part.strip()})


def parse_ints(text: str) -> list[int]:
    try:
        found = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not found or found[0] < 1:
        raise argparse.ArgumentTypeError(f"positive integers expected, got {text!r}")
    return found


def label(rows: int) -> str:
    if rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}M"
    if rows % 1_000 == 0:
        return f"{rows // 1_000}k"
    return str(rows)


def schema_name(rows: int) -> str:
    return f"s{label(rows).lower()}"


def table_rows(total: int) -> dict[str, int]:
    """Rows per table; the largest table takes the rounding remainder."""
    rows = {name: max(100, round(total * share)) for name, share in SHARES.items()}
    largest = max(SHARES, key=lambda name: SHARES[name])
    rows[largest] += total - sum(rows.values())
    return rows


# -- generated host database -------------------------------------------------------------------


def literal(value: object) -> str:
    return f"'{value}'" if isinstance(value, str) else str(value)


def pick(weights: Mapping[Any, float], sql_type: str) -> str:
    """One of ``weights``' keys, drawn with their weights, in one SQL expression."""
    values = list(weights)
    total = sum(weights.values())
    bounds, running = [], 0.0
    for value in values:
        bounds.append(f"{running / total:.6f}")
        running += weights[value]
    array = ", ".join(literal(v) for v in values)
    return (
        f"(ARRAY[{array}]::{sql_type}[])"
        f"[width_bucket(random(), ARRAY[{', '.join(bounds)}]::float8[])]"
    )


def skewed(k: int, power: float) -> str:
    """An id in 1..k; power > 1 makes low ids heavy (power 3: 1 % of ids hold 22 % of rows)."""
    return f"(1 + floor({k} * random() ^ {power}))::bigint"


def uniform(k: int) -> str:
    return f"(1 + floor({k} * random()))::bigint"


def maybe_null(share: float, expr: str) -> str:
    return f"CASE WHEN random() < {share} THEN NULL ELSE {expr} END"


@dataclass(frozen=True)
class TableDef:
    name: str
    columns: list[tuple[str, str, str]]
    """(name, type, SELECT expression over g = 1..rows)."""
    indexes: list[str]


def table_defs(rows: Mapping[str, int], anchor: dt.datetime) -> list[TableDef]:
    """The host tables: id in insertion order, created_at rising with the id over DAYS days."""
    users, projects = rows["users"], rows["projects"]
    environments = max(10, projects // 2)
    runners = max(5, sum(rows.values()) // 50_000)
    stamp = anchor.isoformat()

    def created(name: str) -> str:
        return (
            f"timestamptz '{stamp}' - interval '{DAYS} days' "
            f"+ ((g - 1 + random()) / {rows[name]}) * interval '{DAYS} days'"
        )

    user = skewed(users, 3)
    project = skewed(projects, 2)
    defs = [
        TableDef(
            "users",
            [
                ("username", "text", "'user' || g"),
                ("state", "text", pick({"active": 85, "blocked": 10, "deactivated": 5}, "text")),
                ("user_type", "smallint", maybe_null(0.92, pick({1: 2, 4: 1, 6: 1}, "smallint"))),
                ("admin", "boolean", "random() < 0.005"),
                ("sign_in_count", "integer", "floor(random() ^ 2 * 500)::integer"),
            ],
            [],
        ),
        TableDef(
            "projects",
            [
                ("creator_id", "bigint", user),
                ("namespace_id", "bigint", uniform(users)),
                ("visibility_level", "integer", pick({0: 60, 10: 15, 20: 25}, "integer")),
                ("archived", "boolean", "random() < 0.05"),
                ("star_count", "integer", "floor(random() ^ 4 * 1000)::integer"),
                ("repository_size", "bigint", "floor(random() ^ 3 * 1e9)::bigint"),
            ],
            ["creator_id", "namespace_id"],
        ),
        TableDef(
            "milestones",
            [
                ("project_id", "bigint", project),
                ("title", "text", "'Milestone ' || g"),
                ("state", "text", pick({"active": 70, "closed": 30}, "text")),
                (
                    "due_date",
                    "date",
                    maybe_null(0.3, f"date '{anchor.date()}' + mod(g, 120)::integer - 60"),
                ),
            ],
            ["project_id"],
        ),
        TableDef(
            "issues",
            [
                ("project_id", "bigint", project),
                ("author_id", "bigint", user),
                ("assignee_id", "bigint", maybe_null(0.4, skewed(users, 2))),
                ("milestone_id", "bigint", maybe_null(0.7, uniform(rows["milestones"]))),
                ("title", "text", "'Issue number ' || g || ' about something'"),
                ("state", "text", pick({"opened": 35, "closed": 65}, "text")),
                (
                    "issue_type",
                    "text",
                    pick({"issue": 90, "incident": 7, "test_case": 3}, "text"),
                ),
                ("confidential", "boolean", "random() < 0.05"),
                ("weight", "integer", maybe_null(0.6, "floor(random() * 10)::integer")),
            ],
            ["project_id", "author_id", "assignee_id", "milestone_id"],
        ),
        TableDef(
            "merge_requests",
            [
                ("target_project_id", "bigint", project),
                ("author_id", "bigint", user),
                ("assignee_id", "bigint", maybe_null(0.3, skewed(users, 2))),
                ("title", "text", "'Merge request ' || g || ': change things'"),
                (
                    "state",
                    "text",
                    pick({"merged": 60, "opened": 15, "closed": 20, "locked": 5}, "text"),
                ),
                ("additions", "integer", "floor(random() ^ 3 * 2000)::integer"),
                ("deletions", "integer", "floor(random() ^ 3 * 1000)::integer"),
            ],
            ["target_project_id", "author_id", "assignee_id"],
        ),
        TableDef(
            "notes",
            [
                ("project_id", "bigint", project),
                ("author_id", "bigint", user),
                (
                    "noteable_type",
                    "text",
                    pick({"Issue": 45, "MergeRequest": 45, "Commit": 7, "Snippet": 3}, "text"),
                ),
                ("noteable_id", "bigint", uniform(rows["issues"])),
                ("system", "boolean", "random() < 0.3"),
                ("note", "text", "repeat('lorem ipsum ', 1 + floor(random() * 16)::integer)"),
            ],
            ["project_id", "author_id", "noteable_id"],
        ),
        TableDef(
            "ci_pipelines",
            [
                ("project_id", "bigint", project),
                ("user_id", "bigint", user),
                (
                    "source",
                    "text",
                    pick(
                        {
                            "push": 55,
                            "merge_request_event": 25,
                            "schedule": 8,
                            "web": 6,
                            "api": 4,
                            "trigger": 2,
                        },
                        "text",
                    ),
                ),
                (
                    "status",
                    "text",
                    pick({"success": 75, "failed": 15, "canceled": 7, "running": 3}, "text"),
                ),
                ("ref", "text", pick({"main": 50, "develop": 10, "feature": 40}, "text")),
                ("duration", "integer", maybe_null(0.05, "floor(random() ^ 2 * 3600)::integer")),
            ],
            ["project_id", "user_id"],
        ),
        TableDef(
            "ci_builds",
            [
                ("project_id", "bigint", project),
                (
                    "commit_id",
                    "bigint",
                    f"1 + (g - 1) * {rows['ci_pipelines']}::bigint / {rows['ci_builds']}",
                ),
                ("user_id", "bigint", user),
                ("runner_id", "bigint", maybe_null(0.1, skewed(runners, 2))),
                (
                    "name",
                    "text",
                    pick({"rspec": 40, "lint": 15, "build": 20, "test": 15, "deploy": 10}, "text"),
                ),
                ("type", "text", pick({"Ci::Build": 95, "Ci::Bridge": 5}, "text")),
                (
                    "status",
                    "text",
                    pick({"success": 78, "failed": 12, "canceled": 6, "skipped": 4}, "text"),
                ),
                ("duration", "integer", maybe_null(0.05, "floor(random() ^ 2 * 1800)::integer")),
                ("queued_duration", "integer", "floor(random() ^ 4 * 600)::integer"),
            ],
            ["project_id", "commit_id", "user_id", "runner_id"],
        ),
        TableDef(
            "deployments",
            [
                ("project_id", "bigint", project),
                ("environment_id", "bigint", skewed(environments, 2)),
                ("user_id", "bigint", user),
                (
                    "status",
                    "text",
                    pick({"success": 80, "failed": 12, "canceled": 5, "running": 3}, "text"),
                ),
                (
                    "tier",
                    "text",
                    pick({"production": 35, "staging": 30, "development": 35}, "text"),
                ),
            ],
            ["project_id", "environment_id", "user_id"],
        ),
        TableDef(
            "events",
            [
                ("project_id", "bigint", project),
                ("author_id", "bigint", user),
                (
                    "action",
                    "smallint",
                    pick({5: 40, 1: 15, 6: 20, 2: 10, 3: 5, 7: 5, 8: 3, 9: 2}, "smallint"),
                ),
                (
                    "target_type",
                    "text",
                    maybe_null(0.4, pick({"Issue": 40, "MergeRequest": 35, "Note": 25}, "text")),
                ),
                ("target_id", "bigint", uniform(rows["issues"])),
            ],
            ["project_id", "author_id"],
        ),
    ]
    return [
        TableDef(
            d.name,
            [*d.columns, ("created_at", "timestamptz", created(d.name))],
            ["created_at", *d.indexes],
        )
        for d in defs
    ]


def index_names(definition: TableDef) -> list[str]:
    return [f"{definition.name}_pkey"] + [f"{definition.name}_{c}_idx" for c in definition.indexes]


def marker(rows: int) -> str:
    return f"usage_ping payload bench generator v{GENERATOR_VERSION} rows={rows}"


@dataclass
class HostSchema:
    """One scale of the generated host database."""

    schema: str
    rows: int
    tables: dict[str, int]
    anchor: dt.datetime
    """When the data were generated: rows are dated over the DAYS days before it."""
    built_seconds: float | None = None
    heap_bytes: int = 0
    index_bytes: int = 0


def ensure_database(url: sa.URL) -> None:
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            found = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
            ).first()
            if found is None:
                log(f"creating database {url.database}")
                conn.exec_driver_sql(f'CREATE DATABASE "{url.database}"')
    finally:
        admin.dispose()


def existing_schema(conn: sa.Connection, rows: int) -> HostSchema | None:
    """The schema of this scale when its marker, tables, indexes and row counts are right."""
    schema = schema_name(rows)
    comment = conn.execute(
        sa.text("SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = :s"),
        {"s": schema},
    ).scalar()
    prefix = marker(rows) + " anchor="
    if not isinstance(comment, str) or not comment.startswith(prefix):
        return None
    anchor = dt.datetime.fromisoformat(comment.removeprefix(prefix))
    expected = table_rows(rows)
    for definition in table_defs(expected, anchor):
        indexes = conn.execute(
            sa.text("SELECT indexname FROM pg_indexes WHERE schemaname = :s AND tablename = :t"),
            {"s": schema, "t": definition.name},
        ).scalars()
        # Extra indexes (added by hand to try something) are kept; missing ones rebuild.
        if not set(index_names(definition)) <= set(indexes):
            return None
        found = conn.exec_driver_sql(f"SELECT count(*) FROM {schema}.{definition.name}").scalar()
        if found != expected[definition.name]:
            return None
    return HostSchema(schema, rows, expected, anchor)


def build_schema(conn: sa.Connection, rows: int) -> HostSchema:
    """Generate the scale's schema in SQL: INSERT ... SELECT FROM generate_series per table."""
    schema = schema_name(rows)
    tables = table_rows(rows)
    anchor = dt.datetime.now(dt.UTC).replace(microsecond=0)
    started = time.perf_counter()
    log(f"{schema}: generating {rows:,} rows in 10 tables (generator v{GENERATOR_VERSION})")
    conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    conn.exec_driver_sql("SET maintenance_work_mem = '512MB'")
    conn.exec_driver_sql("SET synchronous_commit = off")
    for seed, definition in enumerate(table_defs(tables, anchor), start=1):
        name = f"{schema}.{definition.name}"
        begun = time.perf_counter()
        columns = ", ".join(f"{c} {t}" for c, t, _ in definition.columns)
        conn.exec_driver_sql(f"CREATE TABLE {name} (id bigint NOT NULL, {columns})")
        conn.exec_driver_sql(f"SELECT setseed({seed / 100})")
        conn.exec_driver_sql(
            f"INSERT INTO {name} (id, {', '.join(c for c, _, _ in definition.columns)}) "
            f"SELECT g, {', '.join(e for _, _, e in definition.columns)} "
            f"FROM generate_series(1, {tables[definition.name]}) AS g"
        )
        inserted = time.perf_counter() - begun
        conn.exec_driver_sql(f"ALTER TABLE {name} ADD PRIMARY KEY (id)")
        for column in definition.indexes:
            conn.exec_driver_sql(
                f"CREATE INDEX {definition.name}_{column}_idx ON {name} ({column})"
            )
        conn.exec_driver_sql(f"VACUUM (ANALYZE) {name}")
        log(
            f"{name}: {tables[definition.name]:,} rows inserted in {inserted:.1f} s, "
            f"ready in {time.perf_counter() - begun:.1f} s"
        )
    conn.exec_driver_sql(f"COMMENT ON SCHEMA {schema} IS '{marker(rows)} anchor={anchor}'")
    conn.exec_driver_sql("RESET maintenance_work_mem")
    conn.exec_driver_sql("RESET synchronous_commit")
    seconds = time.perf_counter() - started
    log(f"{schema}: ready in {seconds:.1f} s")
    return HostSchema(schema, rows, tables, anchor, built_seconds=seconds)


def ensure_schema(setup: sa.Engine, rows: int, rebuild: bool) -> HostSchema:
    with setup.connect() as conn:
        found = None if rebuild else existing_schema(conn, rows)
        if found is not None:
            log(f"{found.schema}: reusing ({rows:,} rows, generated {found.anchor:%Y-%m-%d %H:%M})")
        else:
            found = build_schema(conn, rows)
        heap, index = conn.execute(
            sa.text(
                "SELECT sum(pg_table_size(c.oid)), sum(pg_indexes_size(c.oid)) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :s AND c.relkind = 'r'"
            ),
            {"s": found.schema},
        ).one()
        found.heap_bytes, found.index_bytes = int(heap), int(index)
    return found


def prewarm(setup: sa.Engine, host: HostSchema) -> None:
    """Read every table and index of the scale into the OS cache, so that no run pays for it."""
    with setup.connect() as conn:
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        conn.execute(
            sa.text(
                "SELECT pg_prewarm(c.oid::regclass, 'read') FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :s AND c.relkind IN ('r', 'i')"
            ),
            {"s": host.schema},
        ).all()


# -- metric dictionary -------------------------------------------------------------------------

STAGE_OF_TABLE = {
    "users": "manage",
    "projects": "manage",
    "events": "manage",
    "issues": "plan",
    "milestones": "plan",
    "notes": "plan",
    "merge_requests": "create",
    "ci_pipelines": "verify",
    "ci_builds": "verify",
    "deployments": "release",
}
SECTION_OF_STAGE = {
    "manage": "dev",
    "plan": "dev",
    "create": "dev",
    "verify": "ops",
    "release": "ops",
}
GROUP_OF_STAGE = {
    "manage": "workspace",
    "plan": "project_management",
    "create": "code_review",
    "verify": "pipeline_execution",
    "release": "release",
}
FRAME_OF_GROUP = {
    "counts": "all",
    "counts_monthly": "28d",
    "counts_weekly": "7d",
    "usage_activity_by_stage": "all",
    "usage_activity_by_stage_monthly": "28d",
}
SHORT_OPERATION = {
    "count": "count",
    "distinct_count": "distinct",
    "sum": "sum",
    "estimate_distinct_count": "estimate",
}


@dataclass(frozen=True)
class Metric:
    """One database metric of the benchmark's dictionary."""

    key_path: str
    table: str
    operation: str
    column: str | None = None
    filters: Mapping[str, Any] = field(default_factory=dict)

    @property
    def time_frame(self) -> str:
        return FRAME_OF_GROUP[self.key_path.split(".", 1)[0]]

    @property
    def stage(self) -> str:
        parts = self.key_path.split(".")
        return parts[1] if parts[0].startswith("usage_activity") else STAGE_OF_TABLE[self.table]

    def describe(self) -> str:
        what = SHORT_OPERATION[self.operation]
        if self.column is not None:
            what += f"({self.column})"
        where = " ".join(f"{k}={v}" for k, v in self.filters.items())
        return f"{what} {self.table}" + (f" {where}" if where else "")


def _metrics() -> list[Metric]:
    c, d, s, e = "count", "distinct_count", "sum", "estimate_distinct_count"
    found: list[Metric] = []

    def add(
        key: str,
        table: str,
        operation: str = c,
        column: str | None = None,
        **filters: Any,
    ) -> None:
        found.append(Metric(key, table, operation, column, filters))

    # counts.* (all time)
    add("counts.users", "users")
    add("counts.users_active", "users", state="active")
    add("counts.users_blocked", "users", state="blocked")
    add("counts.users_humans", "users", user_type=None)
    add("counts.users_admins", "users", admin=True)
    add("counts.projects", "projects")
    add("counts.projects_private", "projects", visibility_level=0)
    add("counts.projects_internal", "projects", visibility_level=10)
    add("counts.projects_public", "projects", visibility_level=20)
    add("counts.projects_archived", "projects", archived=True)
    add("counts.projects_repository_size", "projects", s, "repository_size")
    add("counts.projects_stars", "projects", s, "star_count")
    add("counts.milestones", "milestones")
    add("counts.milestones_closed", "milestones", state="closed")
    add("counts.issues", "issues")
    add("counts.issues_opened", "issues", state="opened")
    add("counts.issues_closed", "issues", state="closed")
    add("counts.issues_confidential", "issues", confidential=True)
    add("counts.incident_issues", "issues", issue_type="incident")
    add("counts.issues_assigned", "issues", c, "assignee_id")
    add("counts.issues_with_milestone", "issues", c, "milestone_id")
    add("counts.issues_weight", "issues", s, "weight")
    add("counts.merge_requests", "merge_requests")
    add("counts.merge_requests_merged", "merge_requests", state="merged")
    add("counts.merge_requests_opened", "merge_requests", state="opened")
    add("counts.merge_requests_closed", "merge_requests", state="closed")
    add("counts.merge_request_additions", "merge_requests", s, "additions")
    add("counts.merge_request_deletions", "merge_requests", s, "deletions")
    add("counts.notes", "notes")
    add("counts.notes_system", "notes", system=True)
    add("counts.issue_notes", "notes", noteable_type="Issue")
    add("counts.merge_request_notes", "notes", noteable_type="MergeRequest")
    add("counts.commit_notes", "notes", noteable_type="Commit")
    add("counts.ci_pipelines", "ci_pipelines")
    add("counts.ci_pipelines_success", "ci_pipelines", status="success")
    add("counts.ci_pipelines_failed", "ci_pipelines", status="failed")
    add("counts.ci_pipelines_schedule", "ci_pipelines", source="schedule")
    add("counts.ci_pipelines_merge_request", "ci_pipelines", source="merge_request_event")
    add("counts.ci_pipelines_duration", "ci_pipelines", s, "duration")
    add("counts.ci_builds", "ci_builds")
    add("counts.ci_builds_success", "ci_builds", status="success")
    add("counts.ci_builds_failed", "ci_builds", status="failed")
    add("counts.ci_bridges", "ci_builds", type="Ci::Bridge")
    add("counts.ci_builds_duration", "ci_builds", s, "duration")
    add("counts.ci_builds_queued_duration", "ci_builds", s, "queued_duration")
    add("counts.ci_runners_used", "ci_builds", d, "runner_id")
    add("counts.deployments", "deployments")
    add("counts.successful_deployments", "deployments", status="success")
    add("counts.failed_deployments", "deployments", status="failed")
    add("counts.production_deployments", "deployments", tier="production")
    add("counts.environments", "deployments", d, "environment_id")
    add("counts.events", "events")
    add("counts.push_events", "events", action=5)
    # counts_monthly.* (28d) and counts_weekly.* (7d)
    monthly: list[tuple[str, str, str, str | None, dict[str, Any]]] = [
        ("users", "users", c, None, {}),
        ("projects", "projects", c, None, {}),
        ("milestones", "milestones", c, None, {}),
        ("issues", "issues", c, None, {}),
        ("issues_closed", "issues", c, None, {"state": "closed"}),
        ("incident_issues", "issues", c, None, {"issue_type": "incident"}),
        ("merge_requests", "merge_requests", c, None, {}),
        ("merge_requests_merged", "merge_requests", c, None, {"state": "merged"}),
        ("notes", "notes", c, None, {}),
        ("ci_pipelines", "ci_pipelines", c, None, {}),
        ("ci_pipelines_failed", "ci_pipelines", c, None, {"status": "failed"}),
        ("ci_builds", "ci_builds", c, None, {}),
        ("ci_builds_duration", "ci_builds", s, "duration", {}),
        ("deployments", "deployments", c, None, {}),
        ("successful_deployments", "deployments", c, None, {"status": "success"}),
        ("failed_deployments", "deployments", c, None, {"status": "failed"}),
        ("events", "events", c, None, {}),
        ("push_events", "events", c, None, {"action": 5}),
    ]
    for key, table, operation, column, filters in monthly:
        add(f"counts_monthly.{key}", table, operation, column, **filters)
    for key, table in [
        ("users", "users"),
        ("projects", "projects"),
        ("issues", "issues"),
        ("merge_requests", "merge_requests"),
        ("notes", "notes"),
        ("ci_pipelines", "ci_pipelines"),
        ("ci_builds", "ci_builds"),
        ("deployments", "deployments"),
        ("events", "events"),
    ]:
        add(f"counts_weekly.{key}", table)
    # usage_activity_by_stage.<stage>.* (all time): mostly distinct users
    stage = "usage_activity_by_stage"
    add(f"{stage}.manage.events", "events", d, "author_id")
    add(f"{stage}.manage.project_creators", "projects", d, "creator_id")
    add(f"{stage}.manage.events_estimated", "events", e, "author_id")
    add(f"{stage}.plan.issues", "issues", d, "author_id")
    add(f"{stage}.plan.assignees", "issues", d, "assignee_id")
    add(f"{stage}.plan.projects_with_issues", "issues", d, "project_id")
    add(f"{stage}.plan.notes", "notes", d, "author_id")
    add(f"{stage}.plan.projects_with_milestones", "milestones", d, "project_id")
    add(
        f"{stage}.plan.commented_issues_estimated", "notes", e, "noteable_id", noteable_type="Issue"
    )
    add(f"{stage}.create.merge_requests", "merge_requests", d, "author_id")
    add(f"{stage}.create.merge_requests_merged", "merge_requests", d, "author_id", state="merged")
    add(f"{stage}.create.projects_with_merge_requests", "merge_requests", d, "target_project_id")
    add(
        f"{stage}.create.merge_request_commenters",
        "notes",
        d,
        "author_id",
        noteable_type="MergeRequest",
    )
    add(f"{stage}.verify.ci_pipelines", "ci_pipelines", d, "user_id")
    add(f"{stage}.verify.ci_pipeline_schedules", "ci_pipelines", d, "user_id", source="schedule")
    add(f"{stage}.verify.projects_with_pipelines", "ci_pipelines", d, "project_id")
    add(f"{stage}.verify.ci_builds", "ci_builds", d, "user_id")
    add(f"{stage}.verify.ci_builds_estimated", "ci_builds", e, "user_id")
    add(f"{stage}.verify.pipelines_with_builds_estimated", "ci_builds", e, "commit_id")
    add(f"{stage}.release.deployments", "deployments", d, "user_id")
    add(f"{stage}.release.projects_with_deployments", "deployments", d, "project_id")
    add(f"{stage}.release.failed_deployments", "deployments", d, "user_id", status="failed")
    # usage_activity_by_stage_monthly.<stage>.* (28d)
    stage = "usage_activity_by_stage_monthly"
    add(f"{stage}.manage.events", "events", d, "author_id")
    add(f"{stage}.manage.events_estimated", "events", e, "author_id")
    add(f"{stage}.manage.project_creators", "projects", d, "creator_id")
    add(f"{stage}.plan.issues", "issues", d, "author_id")
    add(f"{stage}.plan.assignees", "issues", d, "assignee_id")
    add(f"{stage}.plan.notes", "notes", d, "author_id")
    add(f"{stage}.plan.notes_estimated", "notes", e, "author_id")
    add(f"{stage}.create.merge_requests", "merge_requests", d, "author_id")
    add(
        f"{stage}.create.merge_request_commenters",
        "notes",
        d,
        "author_id",
        noteable_type="MergeRequest",
    )
    add(f"{stage}.verify.ci_pipelines", "ci_pipelines", d, "user_id")
    add(f"{stage}.verify.ci_builds", "ci_builds", d, "user_id")
    add(f"{stage}.verify.ci_builds_estimated", "ci_builds", e, "user_id")
    add(f"{stage}.release.deployments", "deployments", d, "user_id")
    add(f"{stage}.release.projects_with_deployments", "deployments", d, "project_id")
    return found


METRICS = _metrics()
METRIC_BY_KEY = {m.key_path: m for m in METRICS}


def definition(metric: Metric, schema: str, index: int) -> dict[str, Any]:
    """The YAML mapping of one metric definition file."""
    instrumentation: dict[str, Any] = {
        "table": f"{schema}.{metric.table}",
        "operation": metric.operation,
    }
    if metric.column is not None:
        instrumentation["column"] = metric.column
    if metric.filters:
        instrumentation["filters"] = dict(metric.filters)
    if metric.time_frame in ("7d", "28d"):
        instrumentation["time_column"] = "created_at"
    stage = metric.stage
    return {
        "key_path": metric.key_path,
        "description": f"{metric.describe()} ({metric.time_frame})",
        "product_section": SECTION_OF_STAGE[stage],
        "product_stage": stage,
        "product_group": GROUP_OF_STAGE[stage],
        "value_type": "number",
        "status": "active",
        "time_frame": metric.time_frame,
        "data_source": "database",
        "data_category": ("standard", "operational", "optional")[index % 3],
        "tier": ["free", "premium", "ultimate"],
        "milestone": "1.0",
        "instrumentation": instrumentation,
    }


def write_dictionary(directory: Path, schema: str) -> MetricDictionary:
    """Write one YAML file per metric under ``directory`` and load them back."""
    target = directory / schema
    for group in FRAME_OF_GROUP:
        (target / group).mkdir(parents=True, exist_ok=True)
    for index, metric in enumerate(METRICS):
        group = metric.key_path.split(".", 1)[0]
        name = metric.key_path.split(".", 1)[1].replace(".", "_")
        path = target / group / f"{index:03d}_{name}.yml"
        path.write_text(yaml.safe_dump(definition(metric, schema, index), sort_keys=False))
    return MetricDictionary.load(target)


# -- query log ---------------------------------------------------------------------------------

_STARTED_KEY = "usage_ping_payload_bench_started"
_SETTINGS = re.compile(
    r"set_config|current_setting|pg_extension|^\s*(SET|SHOW|RESET)\b|pg_catalog|version\(\)", re.I
)


def classify(statement: str) -> str:
    """``bounds`` (min/max or block count), ``batch``, or ``other`` (settings, reflection)."""
    if "pg_relation_size" in statement:
        return "bounds"
    if _SETTINGS.search(statement):
        return "other"
    lowered = statement.lower()
    if "string_agg" in lowered or "count(" in lowered or "sum(" in lowered:
        return "batch"
    if "min(" in lowered and "max(" in lowered:
        return "bounds"
    return "other"


@dataclass
class Statement:
    sql: str
    params: Any
    seconds: float
    kind: str
    failed: bool = False


@dataclass
class QueryStats:
    """What the library ran during one payload (or one metric)."""

    statements: int = 0
    batches: int = 0
    batch_seconds: float = 0.0
    bounds: int = 0
    bounds_seconds: float = 0.0
    timeouts: int = 0
    slowest: Statement | None = None
    slowest_bounds: Statement | None = None
    kept: list[Statement] | None = None

    @property
    def slowest_batch_seconds(self) -> float:
        return 0.0 if self.slowest is None else self.slowest.seconds

    @property
    def slowest_bounds_seconds(self) -> float:
        return 0.0 if self.slowest_bounds is None else self.slowest_bounds.seconds


class QueryLog:
    """Times every statement on the attached engines (from any thread) while recording is on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats: QueryStats | None = None

    def attach(self, engine: sa.Engine) -> None:
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        event.listen(engine, "handle_error", self._error)

    @contextmanager
    def recording(self, keep: bool = False) -> Iterator[QueryStats]:
        stats = QueryStats(kept=[] if keep else None)
        with self._lock:
            self._stats = stats
        try:
            yield stats
        finally:
            with self._lock:
                self._stats = None

    def _before(self, conn: sa.Connection, *_: Any) -> None:
        conn.info[_STARTED_KEY] = time.perf_counter()

    def _after(
        self, conn: sa.Connection, cursor: Any, statement: str, parameters: Any, *_: Any
    ) -> None:
        started = conn.info.pop(_STARTED_KEY, None)
        if started is not None:
            self._add(statement, parameters, time.perf_counter() - started, failed=False)

    def _error(self, ctx: sa.engine.ExceptionContext) -> None:
        if ctx.connection is None or ctx.statement is None:
            return
        started = ctx.connection.info.pop(_STARTED_KEY, None)
        if started is not None:
            seconds = time.perf_counter() - started
            self._add(ctx.statement, ctx.parameters, seconds, failed=True)

    def _add(self, sql: str, params: Any, seconds: float, failed: bool) -> None:
        kind = classify(sql)
        found = Statement(
            sql, dict(params) if isinstance(params, Mapping) else params, seconds, kind
        )
        found.failed = failed
        with self._lock:
            stats = self._stats
            if stats is None:
                return
            stats.statements += 1
            stats.timeouts += failed
            if stats.kept is not None:
                stats.kept.append(found)
            if kind == "batch":
                stats.batches += 1
                stats.batch_seconds += seconds
                if stats.slowest is None or seconds > stats.slowest.seconds:
                    stats.slowest = found
            elif kind == "bounds":
                stats.bounds += 1
                stats.bounds_seconds += seconds
                if stats.slowest_bounds is None or seconds > stats.slowest_bounds.seconds:
                    stats.slowest_bounds = found


class LibraryLog(logging.Handler):
    """Counts what the ``usage_ping`` logger says: retried timeouts, bounds fallbacks, failures."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self._lock2 = threading.Lock()
        self.counts: dict[str, int] = {}
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            kind = "failure"
        elif "timed out; retrying" in message:
            kind = "batch timeout"
        elif "min/max of filtered" in message:
            kind = "filtered bounds timeout"
        else:
            kind = "other"
        with self._lock2:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if kind == "failure":
                self.warnings.append(message.split("\n", 1)[0][:300])

    def take(self) -> dict[str, int]:
        with self._lock2:
            found, self.counts = self.counts, {}
        return found


class ActivityMonitor:
    """Samples ``pg_stat_activity`` for active queries of other databases while measuring.

    Other work on the server (a test suite, another benchmark) slows the figures down; this says
    whether there was any, so that a reader can tell busy-machine figures from clean ones.
    """

    def __init__(self, url: sa.URL, interval: float = 0.5) -> None:
        self._engine = sa.create_engine(
            url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
        )
        self._database = url.database
        self._interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="bench-monitor", daemon=True)
        self.phase = "setup"
        self.samples: dict[str, int] = {}
        self.busy: dict[str, int] = {}
        self.databases: dict[str, int] = {}

    def __enter__(self) -> ActivityMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._engine.dispose()

    def _run(self) -> None:
        query = sa.text(
            "SELECT coalesce(datname, '?'), count(*) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND state = 'active' "
            "AND pid <> pg_backend_pid() AND datname IS DISTINCT FROM :db GROUP BY 1"
        )
        try:
            with self._engine.connect() as conn:
                while not self._stop.wait(self._interval):
                    found = conn.execute(query, {"db": self._database}).all()
                    with self._lock:
                        phase = self.phase
                        self.samples[phase] = self.samples.get(phase, 0) + 1
                        if found:
                            self.busy[phase] = self.busy.get(phase, 0) + 1
                        for name, _ in found:
                            self.databases[str(name)] = self.databases.get(str(name), 0) + 1
        except sa.exc.SQLAlchemyError as exc:
            log(f"activity monitor stopped: {exc}")

    def summary(self) -> str:
        with self._lock:
            busy = {phase: n for phase, n in self.busy.items() if n}
            if not busy:
                return "other activity on the server during the measurements: none seen"
            phases = ", ".join(
                f"{phase} {n}/{self.samples.get(phase, n)} samples" for phase, n in busy.items()
            )
            names = sorted(self.databases, key=lambda d: -self.databases[d])
        return (
            f"WARNING: other databases had active queries during the measurements ({phases}; "
            f"databases {', '.join(names[:3])}): those figures were taken on a busy machine"
        )


# -- measurements ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """How the benchmark creates the library's engine."""

    key: str
    label: str
    note: str
    connect_args: Mapping[str, Any]


VARIANTS = {
    "defaults": Variant(
        "defaults",
        "defaults",
        "the engine as the host creates it: create_engine(url, pool_size=n)",
        {},
    ),
    "no-prepare": Variant(
        "no-prepare",
        "no prepare",
        "the same engine with connect_args={'prepare_threshold': None}: psycopg never prepares "
        "a statement server-side, so PostgreSQL plans every batch for its own values; the "
        "counters set plan_cache_mode = force_custom_plan for the same effect, so both engines "
        "should now match (a difference means prepared statements change the plans again)",
        {"prepare_threshold": None},
    ),
}
APP_NAME = "usage_ping_payload_bench"
"""application_name of the library's connections, to find the work of abandoned metrics."""
PROFILE_TIMEOUT = 60.0
REPEAT_LIMIT = 300.0
"""A configuration whose first run took longer is not repeated (its figure is one run)."""


def is_failure(outcome: MetricOutcome) -> bool:
    value = outcome.value
    if outcome.error is not None or isinstance(value, bool):
        return True
    return not isinstance(value, int | float) or value < 0


@dataclass
class PayloadRun:
    variant: str
    concurrency: int
    seconds: float
    outcomes: list[MetricOutcome]
    stats: QueryStats
    logged: dict[str, int]
    abandoned: int = 0
    """Metrics the builder gave up on (metric_timeout) whose threads were still counting."""
    cleanup_seconds: float = 0.0

    @property
    def failures(self) -> list[MetricOutcome]:
        return [o for o in self.outcomes if is_failure(o)]


@dataclass
class PlainResult:
    seconds: float
    value: int | float | None
    error: str | None = None


@dataclass
class ScaleResult:
    host: HostSchema
    dictionary_size: int
    runs: list[PayloadRun] = field(default_factory=list)
    plain: dict[str, PlainResult] = field(default_factory=dict)

    def at(self, variant: str, concurrency: int) -> list[PayloadRun]:
        return [r for r in self.runs if r.variant == variant and r.concurrency == concurrency]

    def median(self, variant: str, concurrency: int) -> float:
        return statistics.median(r.seconds for r in self.at(variant, concurrency))

    def durations(self, variant: str, concurrency: int) -> dict[str, float]:
        """Each metric's median duration (seconds) over the runs of a configuration."""
        found: dict[str, list[float]] = {}
        for run in self.at(variant, concurrency):
            for outcome in run.outcomes:
                found.setdefault(outcome.key_path, []).append(outcome.duration)
        return {key: statistics.median(values) for key, values in found.items()}

    def outcomes(self, variant: str) -> dict[str, list[MetricOutcome]]:
        found: dict[str, list[MetricOutcome]] = {}
        for run in self.runs:
            if run.variant == variant:
                for outcome in run.outcomes:
                    found.setdefault(outcome.key_path, []).append(outcome)
        return found


def pool_size(concurrencies: Sequence[int]) -> int:
    """Connections for the largest concurrency x the counters' parallel connections, plus one
    for reflection, so that no counter waits for the pool or runs with fewer connections."""
    return max(concurrencies) * PARALLEL + 1


def library_threads() -> list[threading.Thread]:
    current = threading.current_thread()
    return [
        t for t in threading.enumerate() if t.name.startswith("usage_ping-") and t is not current
    ]


def stop_abandoned(setup: sa.Engine) -> float:
    """End the work of metrics the builder gave up on; the seconds it took.

    ``metric_timeout`` makes the builder return -1 for a metric, but the metric's thread keeps
    counting (with its pool connections). The benchmark terminates those backends so that the
    next run starts on an idle server; the counter then fails and its thread ends.
    """
    started = time.perf_counter()
    while threads := library_threads():
        with setup.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :app AND state <> 'idle' "
                    "AND pid <> pg_backend_pid()"
                ),
                {"app": APP_NAME},
            ).all()
        for thread in threads:
            thread.join(timeout=0.2)
    return time.perf_counter() - started


@dataclass
class Bench:
    setup: sa.Engine
    plain: sa.Engine
    engines: dict[str, sa.Engine]
    queries: QueryLog
    library: LibraryLog

    def payload(
        self,
        dictionary: MetricDictionary,
        variant: str,
        concurrency: int,
        host: HostSchema,
        *,
        keep: bool = False,
        metric_timeout: float = METRIC_TIMEOUT,
    ) -> PayloadRun:
        # The payload's day is the day the data were generated: windows hold the same rows on
        # every rerun.
        builder = PayloadBuilder(
            dictionary,
            engine=self.engines[variant],
            concurrency=concurrency,
            metric_timeout=metric_timeout,
            clock=lambda: host.anchor,
        )
        self.library.take()
        with self.queries.recording(keep=keep) as stats:
            started = time.perf_counter()
            outcomes = builder.outcomes()
            seconds = time.perf_counter() - started
        logged = self.library.take()
        abandoned = sum(1 for o in outcomes if o.error and "MetricTimeoutError" in o.error)
        cleanup = stop_abandoned(self.setup)
        self.library.take()  # what the terminated leftovers logged belongs to no run
        return PayloadRun(
            variant, concurrency, seconds, outcomes, stats, logged, abandoned, cleanup
        )

    def run_plain(self, host: HostSchema) -> dict[str, PlainResult]:
        """Each metric as one plain statement, one after another, parallel workers, JIT off."""
        results: dict[str, PlainResult] = {}
        with self.plain.connect() as conn:
            conn.exec_driver_sql("SET max_parallel_workers_per_gather = 0")
            conn.exec_driver_sql("SET jit = off")
            meta = sa.MetaData(schema=host.schema)
            tables = {name: sa.Table(name, meta, autoload_with=conn) for name in host.tables}
            for metric in METRICS:
                query = plain_query(metric, tables[metric.table], host.anchor.date())
                started = time.perf_counter()
                try:
                    raw = conn.execute(query).scalar()
                except sa.exc.DBAPIError as exc:
                    error = str(exc.orig).strip().split("\n", 1)[0]
                    seconds = time.perf_counter() - started
                    results[metric.key_path] = PlainResult(seconds, None, error)
                    conn.rollback()
                    continue
                seconds = time.perf_counter() - started
                value = 0 if raw is None else raw
                results[metric.key_path] = PlainResult(
                    seconds, int(value) if value == int(value) else float(value)
                )
            conn.rollback()
        return results

    def profile(self, key_path: str, dictionary: MetricDictionary, host: HostSchema) -> Profile:
        """Rerun one metric alone (defaults, concurrency=1) and explain its queries."""
        alone = MetricDictionary([dictionary[key_path]])
        run = self.payload(alone, "defaults", 1, host, keep=True, metric_timeout=PROFILE_TIMEOUT)
        (outcome,) = run.outcomes
        found = Profile(key_path, run.seconds, run.stats, is_failure(outcome))
        bounds, batch = run.stats.slowest_bounds, slowest_completed(run.stats)
        if bounds is not None:
            found.bounds = self.explain(bounds, generic=False)
        if batch is not None:
            found.batch = batch
            found.custom = self.explain(batch, generic=False)
            found.generic = self.explain(batch, generic=True)
        return found

    def explain(self, statement: Statement, *, generic: bool) -> list[str]:
        """EXPLAIN ANALYZE under the counters' session settings (no parallel workers, no JIT).

        generic=False plans the statement for its values (what a statement sent with its
        parameters gets); generic=True prepares it and forces the generic plan (what a
        statement prepared by the driver gets once PostgreSQL prefers the generic plan).
        """
        with self.setup.connect() as conn:
            conn.exec_driver_sql("SET max_parallel_workers_per_gather = 0")
            conn.exec_driver_sql("SET jit = off")
            try:
                if not generic:
                    rows = conn.exec_driver_sql(
                        f"EXPLAIN (ANALYZE, BUFFERS) {statement.sql}", statement.params
                    ).all()
                else:
                    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", statement.sql)))
                    sql = re.sub(
                        r"%\((\w+)\)s", lambda m: f"${names.index(m.group(1)) + 1}", statement.sql
                    )
                    raw: Any = conn.connection.driver_connection
                    values = [
                        pgsql.Literal(statement.params[n]).as_string(raw).replace("%", "%%")
                        for n in names
                    ]
                    conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
                    conn.exec_driver_sql(f"PREPARE bench_q AS {sql.replace('%', '%%')}")
                    rows = conn.exec_driver_sql(
                        f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_q({', '.join(values)})"
                    ).all()
                    conn.exec_driver_sql("DEALLOCATE bench_q")
            except sa.exc.DBAPIError as exc:
                return [f"EXPLAIN failed: {str(exc.orig).strip()}"]
        return [str(row[0]) for row in rows]


def slowest_completed(stats: QueryStats) -> Statement | None:
    """The slowest batch that was not cancelled (its plan is the one worth explaining)."""
    done = [s for s in stats.kept or [] if s.kind == "batch" and not s.failed]
    return max(done, key=lambda s: s.seconds, default=None)


def plain_query(metric: Metric, table: sa.Table, today: dt.date) -> sa.Select[Any]:
    """The metric as one plain statement (an estimate as the exact count it estimates)."""
    column = table.c[metric.column] if metric.column is not None else None
    aggregate: sa.ColumnElement[Any]
    if metric.operation == "count":
        aggregate = sa.func.count() if column is None else sa.func.count(column)
    elif metric.operation == "sum":
        assert column is not None
        aggregate = sa.func.sum(column)
    else:
        aggregate = sa.func.count(sa.distinct(column if column is not None else table.c.id))
    query = sa.select(aggregate).select_from(table)
    for name, value in metric.filters.items():
        query = query.where(table.c[name] == value)
    window = database_window(metric.time_frame, today)
    if window is not None:
        query = query.where(table.c.created_at >= window[0], table.c.created_at < window[1])
    return query


@dataclass
class Profile:
    """One metric rerun alone, every statement recorded, its queries explained."""

    key_path: str
    seconds: float
    stats: QueryStats
    failed: bool
    batch: Statement | None = None
    bounds: list[str] = field(default_factory=list)
    custom: list[str] = field(default_factory=list)
    generic: list[str] = field(default_factory=list)


_SCAN = re.compile(
    r"((?:Seq|Index Only|Index|Bitmap Heap|Bitmap Index|Tid Range) Scan(?: Backward)?"
    r"(?: using \w+)? on \w+)"
)
_EXECUTION = re.compile(r"Execution Time: ([\d.]+) ms")


def plan_summary(plan: list[str]) -> str:
    """The scan nodes of a plan and its execution time, on one line."""
    scans = [m.group(1) for line in plan if (m := _SCAN.search(line))]
    times = [float(m.group(1)) for line in plan if (m := _EXECUTION.search(line))]
    if not scans and not times:
        return NA
    took = f"{times[0]:,.1f} ms: " if times else ""
    return took + " / ".join(scans)


# -- tables ------------------------------------------------------------------------------------


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    left: frozenset[int] = frozenset({0})

    def add(self, *cells: str) -> None:
        self.rows.append(list(cells))

    def text(self) -> str:
        widths = [len(h) for h in self.headers]
        for row in self.rows:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

        def line(cells: Sequence[str]) -> str:
            parts = [
                cell.ljust(w) if i in self.left else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
            ]
            return "  ".join(parts).rstrip()

        out = [self.title, line(self.headers), "  ".join("-" * w for w in widths)]
        out += [line(row) for row in self.rows]
        out += [f"  * {note}" for note in self.notes]
        return "\n".join(out)

    def markdown(self) -> str:
        align = [":---" if i in self.left else "---:" for i in range(len(self.headers))]
        out = [f"### {self.title}", "", "| " + " | ".join(self.headers) + " |"]
        out.append("|" + "|".join(align) + "|")
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.rows]
        if self.notes:
            out += ["", *(f"- {note}" for note in self.notes)]
        return "\n".join(out)


def secs(seconds: float) -> str:
    return f"{seconds:,.2f}" if seconds < 100 else f"{seconds:,.0f}"


def spread(values: Sequence[float]) -> str:
    if not values:
        return NA
    if len(values) == 1:
        return secs(values[0])
    return f"{secs(statistics.median(values))} [{secs(min(values))}{DASH}{secs(max(values))}]"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}"


def check(passed: bool | None) -> str:
    return NA if passed is None else (OK if passed else MISS)


def number(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return repr(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def error_pct(estimate: object, exact: object) -> float | None:
    if not isinstance(estimate, int | float) or not isinstance(exact, int | float) or not exact:
        return None
    return (estimate - exact) / exact * 100


@dataclass
class Report:
    scales: list[ScaleResult]
    variants: list[str]
    concurrencies: list[int]
    profiles: list[Profile]
    targets: list[tuple[str, str, bool | None]] = field(default_factory=list)

    @property
    def largest(self) -> ScaleResult:
        return self.scales[-1]

    def configs(self) -> list[tuple[str, int]]:
        return [(v, c) for v in self.variants for c in self.concurrencies]

    def name(self, variant: str, concurrency: int) -> str:
        return f"{VARIANTS[variant].label} c={concurrency}"

    def payload_table(self) -> Table:
        c1, cn = self.concurrencies[0], self.concurrencies[-1]
        headers = ["scale", "engine", *(f"c={c} s" for c in self.concurrencies)]
        if cn != c1:
            headers.append(f"c={c1} / c={cn}")
        headers += ["plain s", f"c={c1} / plain", "failed", "abandoned"]
        table = Table(
            "1. Payload generation: wall time of PayloadBuilder.outcomes(), 116 metrics",
            headers,
            left=frozenset({0, 1}),
        )
        for scale in self.scales:
            plain = sum(p.seconds for p in scale.plain.values()) if scale.plain else None
            for variant in self.variants:
                row = [f"{scale.host.schema} ({label(scale.host.rows)} rows)", variant]
                row += [
                    spread([r.seconds for r in scale.at(variant, c)]) for c in self.concurrencies
                ]
                if cn != c1:
                    row.append(
                        f"{scale.median(variant, c1) / scale.median(variant, cn):.2f}{TIMES}"
                    )
                if plain is None:
                    row += [NA, NA]
                else:
                    row += [secs(plain), f"{scale.median(variant, c1) / plain:.1f}{TIMES}"]
                runs = [r for r in scale.runs if r.variant == variant]
                failed = sum(len(r.failures) for r in runs)
                outcomes = sum(len(r.outcomes) for r in runs)
                row.append(f"{failed} / {outcomes}")
                row.append(str(sum(r.abandoned for r in runs)))
                table.add(*row)
        most = max(len(s.at(v, c)) for s in self.scales for v, c in self.configs())
        table.notes = [
            f"median [min{DASH}max] of up to {most} runs per cell, the configurations taking "
            f"turns; a configuration whose first run took over {REPEAT_LIMIT:.0f} s ran once",
            f"PayloadBuilder(dictionary, engine=engine, concurrency=n, metric_timeout="
            f"{METRIC_TIMEOUT:g}).outcomes(), a new builder per run; engine pool_size "
            f"{pool_size(self.concurrencies)}, max_overflow 0 (every counter gets its "
            f"{PARALLEL} connections)",
            *(f"{VARIANTS[v].label}: {VARIANTS[v].note}" for v in self.variants),
            "plain = the same metrics as one plain statement each (count(*), count(DISTINCT), "
            "sum(); an estimate as the exact count(DISTINCT)), one after another on one "
            "connection, parallel workers and JIT off, measured once",
            "failed = outcomes with value -1/-2 or an error, over every run of the row; "
            "abandoned = metrics given up at metric_timeout whose counting went on after "
            "outcomes() returned (the benchmark then terminated their queries, so that the next "
            "run started on an idle server)",
        ]
        return table

    def growth_table(self) -> Table | None:
        if len(self.scales) < 2:
            return None
        small, large = self.scales[0], self.scales[-1]
        ratio_rows = large.host.rows / small.host.rows
        a, b = label(small.host.rows), label(large.host.rows)
        has_plain = bool(small.plain and large.plain)
        headers = ["what", f"{a} s", f"{b} s", f"{b}/{a}", "÷ row ratio", "linear"]
        if has_plain:
            headers += [f"plain {a} s", f"plain {b} s", f"{b}: lib/plain"]
        table = Table(
            f"2. Growth with the rows: {b} over {a} ({ratio_rows:.0f}{TIMES} the rows)", headers
        )

        def plain(scale: ScaleResult, keys: Sequence[str]) -> float:
            return sum(scale.plain[k].seconds for k in keys)

        def add(
            what: str, t_small: float, t_large: float, keys: Sequence[str], judge: bool
        ) -> None:
            growth = t_large / t_small if t_small > 0 else float("nan")
            per_row = growth / ratio_rows
            row = [
                what,
                secs(t_small),
                secs(t_large),
                f"{growth:,.1f}{TIMES}",
                f"{per_row:.2f}",
                check(per_row <= LINEAR_TOLERANCE) if judge else "",
            ]
            if has_plain:
                p_small, p_large = plain(small, keys), plain(large, keys)
                row += [secs(p_small), secs(p_large), f"{t_large / p_large:,.1f}{TIMES}"]
            table.add(*row)

        every = [m.key_path for m in METRICS]
        for variant, c in self.configs():
            add(
                f"payload, {self.name(variant, c)}",
                small.median(variant, c),
                large.median(variant, c),
                every,
                True,
            )
        groups: dict[str, list[str]] = {}
        for metric in METRICS:
            op = SHORT_OPERATION[metric.operation]
            groups.setdefault(f"{op} metrics", []).append(metric.key_path)
        for metric in METRICS:
            groups.setdefault(f"{metric.time_frame} metrics", []).append(metric.key_path)
        c1 = self.concurrencies[0]
        for variant in self.variants:
            d_small, d_large = small.durations(variant, c1), large.durations(variant, c1)
            for what, keys in groups.items():
                add(
                    f"{self.name(variant, c1)}: {what} ({len(keys)})",
                    sum(d_small[k] for k in keys),
                    sum(d_large[k] for k in keys),
                    keys,
                    False,
                )
        table.notes = [
            f"÷ row ratio = (time {b} / time {a}) / {ratio_rows:.0f}: 1.00 grows like the rows, "
            f"above grows faster; linear {OK} up to {LINEAR_TOLERANCE:.2f}",
            "the metric lines add up the metrics' median durations (the outcome's duration, "
            f"which for a given-up metric is metric_timeout = {METRIC_TIMEOUT:g} s)",
        ]
        if has_plain:
            table.notes.append(
                "plain = the same metrics as one plain statement each (table 1's note), added up"
            )
        return table

    def slowest_table(self, variant: str, number_: str) -> Table:
        scale = self.largest
        c1 = self.concurrencies[0]
        durations = scale.durations(variant, c1)
        columns = {(v, c): scale.durations(v, c) for v, c in self.configs()}
        values = {k: [o.value for o in found] for k, found in scale.outcomes(variant).items()}
        headers = ["key path", "metric", "frame"]
        headers += [f"{self.name(v, c)} ms" for v, c in self.configs()]
        headers += ["plain ms", f"{VARIANTS[variant].label} c={c1} / plain", "value"]
        table = Table(
            f"{number_}. The 10 slowest metrics at {label(scale.host.rows)} rows with the "
            f"{VARIANTS[variant].label} engine (concurrency={c1}, median duration)",
            headers,
            left=frozenset({0, 1}),
        )
        for key in sorted(durations, key=lambda k: -durations[k])[:10]:
            metric = METRIC_BY_KEY[key]
            plain = scale.plain.get(key)
            row = [key, metric.describe(), metric.time_frame]
            row += [ms(columns[v, c][key]) for v, c in self.configs()]
            if plain is not None and plain.seconds > 0:
                row += [ms(plain.seconds), f"{durations[key] / plain.seconds:,.0f}{TIMES}"]
            else:
                row += [NA, NA]
            row.append(" / ".join(dict.fromkeys(number(v) for v in values[key])))
            table.add(*row)
        total = sum(durations.values())
        table.notes = [
            f"these 10 take {sum(sorted(durations.values())[-10:]) / total:.0%} of the "
            f"{total:,.1f} s that all {len(durations)} metrics took at "
            f"{self.name(variant, c1)}; value: every distinct value over the runs (-1: failed)",
        ]
        if number_ == "3":
            table.notes.append(
                "table rows: "
                + ", ".join(f"{name} {count:,}" for name, count in scale.host.tables.items())
            )
        return table

    def check_table(self) -> Table:
        table = Table(
            "4. Values: the library's against one plain statement per metric",
            ["scale", "engine", "exact equal", "failed", "estimates", "max |error| %", "notes"],
            left=frozenset({0, 1, 6}),
        )
        for scale in self.scales:
            if not scale.plain:
                continue
            for variant in self.variants:
                outcomes = scale.outcomes(variant)
                exact = [m for m in METRICS if m.operation != "estimate_distinct_count"]
                estimates = [m for m in METRICS if m.operation == "estimate_distinct_count"]
                failed = {k for k, found in outcomes.items() if any(map(is_failure, found))}
                wrong = [
                    m.key_path
                    for m in exact
                    if any(
                        not is_failure(o) and o.value != scale.plain[m.key_path].value
                        for o in outcomes[m.key_path]
                    )
                ]
                errors = [
                    abs(e)
                    for m in estimates
                    for o in outcomes[m.key_path]
                    if not is_failure(o)
                    and (e := error_pct(o.value, scale.plain[m.key_path].value)) is not None
                ]
                worst = max(errors, default=None)
                table.add(
                    scale.host.schema,
                    variant,
                    f"{len(exact) - len(wrong)}/{len(exact)} {OK if not wrong else MISS}",
                    str(len(failed)),
                    str(len(estimates)),
                    NA if worst is None else f"{worst:.2f}",
                    "; ".join(wrong[:5]),
                )
                self.targets.append(
                    (
                        f"{scale.host.schema}, {variant}: every computed value right (exact "
                        f"equal to plain SQL, estimates within {ESTIMATE_TOLERANCE_PCT:g} %)",
                        f"{len(wrong)} wrong, max estimate error "
                        + (NA if worst is None else f"{worst:.2f} %"),
                        not wrong and worst is not None and worst <= ESTIMATE_TOLERANCE_PCT,
                    )
                )
        table.notes = [
            "exact equal: metrics whose every computed value (failed ones aside) equals the plain "
            "statement's; failed: metrics that failed in at least one run",
            "estimate error = |estimate - exact| / exact against count(DISTINCT), worst run",
        ]
        return table

    def library_table(self) -> Table:
        table = Table(
            "5. What the library ran per payload (median over the runs)",
            [
                "scale",
                "engine",
                "statements",
                "batches",
                "batch s",
                "bounds",
                "bounds s",
                "slowest batch ms",
                "cancelled",
                "logged (all runs)",
            ],
            left=frozenset({0, 1, 9}),
        )
        for scale in self.scales:
            for variant, c in self.configs():
                runs = scale.at(variant, c)

                def med(get: Callable[[PayloadRun], float], runs: list[PayloadRun] = runs) -> float:
                    return statistics.median(get(r) for r in runs)

                logged: dict[str, int] = {}
                for run in runs:
                    for kind, n in run.logged.items():
                        logged[kind] = logged.get(kind, 0) + n
                table.add(
                    scale.host.schema,
                    self.name(variant, c),
                    f"{med(lambda r: r.stats.statements):,.0f}",
                    f"{med(lambda r: r.stats.batches):,.0f}",
                    secs(med(lambda r: r.stats.batch_seconds)),
                    f"{med(lambda r: r.stats.bounds):,.0f}",
                    secs(med(lambda r: r.stats.bounds_seconds)),
                    ms(med(lambda r: r.stats.slowest_batch_seconds)),
                    f"{med(lambda r: r.stats.timeouts):,.0f}",
                    ", ".join(f"{k} {v}" for k, v in sorted(logged.items())) or "nothing",
                )
        table.notes = [
            "until outcomes() returned; batch s and bounds s add up the statements' own times "
            f"over all connections (up to concurrency {TIMES} {PARALLEL} at once)",
            "bounds = the min/max of the walked column (or the block count of an estimate), "
            "once per relation and filter; cancelled = statements stopped by the counters' 1 s "
            "statement_timeout (a batch is then halved and retried; a filtered min/max falls "
            "back to the whole table's)",
            "logged = usage_ping log records: batch timeout (retried in halves), filtered bounds "
            "timeout, failure (a counter gave up)",
        ]
        return table

    def profile_table(self) -> Table | None:
        if not self.profiles:
            return None
        table = Table(
            f"6. The slowest metrics at {label(self.largest.host.rows)} rerun alone (defaults, "
            f"concurrency=1, given up after {PROFILE_TIMEOUT:.0f} s): their slowest completed "
            "batch planned for its values and as a generic plan",
            [
                "key path",
                "alone s",
                "batches",
                "ms/batch",
                "cancelled",
                "batch planned for its values",
                "same batch, generic plan",
            ],
            left=frozenset({0, 5, 6}),
        )
        for found in self.profiles:
            stats = found.stats
            per_batch = stats.batch_seconds / stats.batches if stats.batches else 0.0
            table.add(
                found.key_path,
                f"{secs(found.seconds)}{' (gave up)' if found.failed else ''}",
                f"{stats.batches:,}",
                f"{per_batch * 1000:,.1f}",
                str(stats.timeouts),
                plan_summary(found.custom),
                plan_summary(found.generic),
            )
        table.notes = [
            "psycopg prepares a statement server-side once it has run 5 times on a connection; "
            "a counter's batches are one statement with new range values, so from the 6th batch "
            "on PostgreSQL may switch to the generic plan, which cannot see how narrow the "
            "batch's range is; the counters' sessions set plan_cache_mode = force_custom_plan "
            "to avoid it, and the generic column shows what that avoids",
            "the full plans are under Plans below",
        ]
        return table

    def failures(self) -> list[str]:
        found = []
        for scale in self.scales:
            for run in scale.runs:
                for o in run.failures:
                    found.append(
                        f"{scale.host.schema} {self.name(run.variant, run.concurrency)}: "
                        f"{o.key_path} = {int(o.value) if isinstance(o.value, int) else o.value!r}"
                        f" after {o.duration:.1f} s: {o.error}"
                    )
        return found

    def targets_table(self) -> Table:
        scale = next((s for s in self.scales if s.host.rows == TARGET_ROWS), None)
        variant = self.variants[0]
        head: list[tuple[str, str, bool | None]] = []
        if scale is None:
            head.append(
                (f"{label(TARGET_ROWS)}-row payload under {TARGET_SECONDS:.0f} s", NA, None)
            )
        else:
            for c in self.concurrencies:
                median = scale.median(variant, c)
                head.append(
                    (
                        f"{label(TARGET_ROWS)}-row payload under {TARGET_SECONDS:.0f} s "
                        f"({self.name(variant, c)})",
                        f"{median:,.1f} s",
                        median < TARGET_SECONDS,
                    )
                )
        if len(self.scales) > 1:
            small, large = self.scales[0], self.scales[-1]
            ratio_rows = large.host.rows / small.host.rows
            for c in self.concurrencies:
                growth = large.median(variant, c) / small.median(variant, c)
                head.append(
                    (
                        f"time grows about linearly with the rows ({label(large.host.rows)} / "
                        f"{label(small.host.rows)}, {self.name(variant, c)})",
                        f"{growth:,.1f}{TIMES} the time for {ratio_rows:.0f}{TIMES} the rows",
                        growth / ratio_rows <= LINEAR_TOLERANCE,
                    )
                )
        for v in self.variants:
            failed = sum(len(r.failures) for s in self.scales for r in s.runs if r.variant == v)
            outcomes = sum(len(r.outcomes) for s in self.scales for r in s.runs if r.variant == v)
            head.append(
                (
                    f"no metric failed (-1, -2 or an error), {v}",
                    f"{failed} of {outcomes} outcomes failed",
                    failed == 0,
                )
            )
        self.targets[:0] = head
        table = Table("Targets", ["target", "measured", "result"], left=frozenset({0, 1}))
        for what, measured, passed in self.targets:
            table.add(what, measured, check(passed))
        if len(self.variants) > 1:
            table.notes = [
                f"the issue's targets are judged on the {variant} engine; the other engine's "
                "figures are in tables 1 to 5"
            ]
        return table

    def tables(self) -> list[Table]:
        found = [self.payload_table()]
        growth = self.growth_table()
        if growth is not None:
            found.append(growth)
        found.append(self.slowest_table(self.variants[0], "3"))
        if len(self.variants) > 1:
            found.append(self.slowest_table(self.variants[1], "3b"))
        found += [self.check_table(), self.library_table()]
        profiles = self.profile_table()
        if profiles is not None:
            found.append(profiles)
        found.append(self.targets_table())
        return found

    def missed(self) -> list[str]:
        return [what for what, _, passed in self.targets if passed is False]


def plan_lines(profiles: list[Profile]) -> list[str]:
    out: list[str] = []
    for found in profiles:
        metric = METRIC_BY_KEY[found.key_path]
        stats = found.stats
        out += [
            "",
            f"{found.key_path} ({metric.describe()}, {metric.time_frame}): "
            f"{secs(found.seconds)} s alone{' (gave up)' if found.failed else ''}; "
            f"{stats.batches:,} batches, {stats.batch_seconds:.2f} s in batches; "
            f"{stats.timeouts} cancelled",
        ]
        if found.bounds:
            out.append("  bounds query, planned for its values:")
            out += [f"    {line}" for line in found.bounds]
        if found.batch is not None:
            out.append(
                f"  slowest completed batch ({found.batch.seconds * 1000:,.0f} ms in the run), "
                f"params {found.batch.params}:"
            )
            out.append(f"    SQL: {' '.join(found.batch.sql.split())}")
            out.append("  planned for its values:")
            out += [f"    {line}" for line in found.custom]
            out.append("  generic plan (PREPARE, plan_cache_mode = force_generic_plan):")
            out += [f"    {line}" for line in found.generic]
    return out


# -- header ------------------------------------------------------------------------------------


def version_of(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def machine_line() -> str:
    cpu = memory = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 2**20:.0f} GB"
                break
    except OSError:
        pass
    load = os.getloadavg()
    return (
        f"machine: {os.cpu_count()} cores ({cpu}, {platform.machine()}), {memory} RAM; load "
        f"average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min)"
    )


def header_lines(
    setup: sa.Engine, url: sa.URL, hosts: list[HostSchema], args: argparse.Namespace
) -> list[str]:
    with setup.connect() as conn:
        version = conn.exec_driver_sql("SHOW server_version").scalar()
        settings = {
            name: conn.exec_driver_sql(f"SHOW {name}").scalar()
            for name in (
                "shared_buffers",
                "work_mem",
                "effective_cache_size",
                "random_page_cost",
                "jit",
                "max_parallel_workers_per_gather",
                "plan_cache_mode",
            )
        }
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    counts = {op: sum(m.operation == op for m in METRICS) for op in SHORT_OPERATION}
    frames = {f: sum(m.time_frame == f for m in METRICS) for f in ("all", "28d", "7d")}
    lines = [
        f"usage_ping payload benchmark, {now}",
        machine_line(),
        f"PostgreSQL {version} on {url.host}:{url.port}, database {url.database}; "
        + ", ".join(f"{k}={v}" for k, v in settings.items()),
        f"usage_ping {usage_ping.__version__}, SQLAlchemy {sa.__version__}, psycopg "
        f"{version_of('psycopg')} (prepare_threshold 5 by default), Python "
        f"{platform.python_version()}",
        f"{len(METRICS)} metrics: "
        + ", ".join(f"{op} {n}" for op, n in counts.items())
        + "; time frames "
        + ", ".join(f"{f} {n}" for f, n in frames.items())
        + f"; counters on their defaults (target_time 0.1 s, timeout 1 s, {PARALLEL} "
        "connections); the payload's day is the day the data were generated",
        f"runs: up to {args.runs} per configuration and scale, after reading every table and "
        "index into the OS cache (pg_prewarm 'read')",
        f"host schemas (heap + indexes; created_at over the {DAYS} days before generation, in "
        "id order; author/user ids skewed: 1 % of the users hold about 22 % of the rows; "
        "indexes on created_at and on every foreign-key column):",
    ]
    for host in hosts:
        built = (
            f"generated in {host.built_seconds:.0f} s by this run"
            if host.built_seconds is not None
            else f"reused, generated {host.anchor:%Y-%m-%d %H:%M} UTC"
        )
        lines.append(
            f"  {host.schema}: {host.rows:,} rows, {host.heap_bytes / 2**20:,.0f} MB heap + "
            f"{host.index_bytes / 2**20:,.0f} MB indexes; {built}"
        )
    return lines


# -- main --------------------------------------------------------------------------------------


def parse_variants(text: str) -> list[str]:
    found = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [v for v in found if v not in VARIANTS]
    if unknown or not found:
        raise argparse.ArgumentTypeError(f"engines are {', '.join(VARIANTS)}; got {text!r}")
    return list(dict.fromkeys(found))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark usage_ping's PayloadBuilder on a generated host database.",
    )
    parser.add_argument(
        "--scales",
        type=parse_scales,
        default=list(DEFAULT_SCALES),
        help="total rows per scale: 1m,10m (the default), or 100k for a quick check",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=3,
        help=f"runs per configuration (default 3; one for a configuration over "
        f"{REPEAT_LIMIT:.0f} s)",
    )
    parser.add_argument(
        "--concurrency",
        type=parse_ints,
        default=list(DEFAULT_CONCURRENCY),
        help="builder concurrencies to compare (default 1,2)",
    )
    parser.add_argument(
        "--engines",
        type=parse_variants,
        default=list(VARIANTS),
        help="engine variants: defaults (the headline) and no-prepare (default: both)",
    )
    parser.add_argument("--url", default=DEFAULT_URL, help=f"database URL (default {DEFAULT_URL})")
    parser.add_argument(
        "--rebuild", action="store_true", help="drop and regenerate the host schemas"
    )
    parser.add_argument(
        "--no-plain", action="store_true", help="skip the plain-SQL baseline and value check"
    )
    parser.add_argument(
        "--explain",
        type=int,
        default=3,
        metavar="N",
        help="rerun the N slowest metrics alone and explain their queries (default 3; 0: none)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="markdown copy (default benchmarks/results/payload.md for the default scales, "
        ".bench/payload-<scales>.md otherwise)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.explain < 0:
        parser.error("--runs must be at least 1 and --explain at least 0")
    if not args.scales:
        parser.error("--scales needs at least one scale")
    if args.output is None:
        if args.scales == list(DEFAULT_SCALES):
            args.output = RESULTS
        else:
            args.output = OTHER_OUTPUT / f"payload-{'-'.join(label(s) for s in args.scales)}.md"
    return args


def measure_scale(
    bench: Bench, host: HostSchema, workdir: Path, args: argparse.Namespace
) -> ScaleResult:
    scale_label = label(host.rows)
    dictionary = write_dictionary(workdir, host.schema)
    result = ScaleResult(host, len(dictionary.active()))
    log(f"[{scale_label}] reading {host.schema} into the OS cache")
    prewarm(bench.setup, host)
    configs = [(v, c) for v in args.engines for c in args.concurrency]
    slow: set[tuple[str, int]] = set()
    for run in range(args.runs):
        order = configs if run % 2 == 0 else configs[::-1]
        for variant, c in order:
            if (variant, c) in slow:
                continue
            found = bench.payload(dictionary, variant, c, host)
            result.runs.append(found)
            if found.seconds > REPEAT_LIMIT:
                slow.add((variant, c))
            log(
                f"[{scale_label}] run {run + 1}/{args.runs}, {variant} c={c}: "
                f"{found.seconds:.2f} s, {len(found.failures)} failed, "
                f"{found.abandoned} abandoned (stopped in {found.cleanup_seconds:.1f} s)"
            )
    if not args.no_plain:
        log(f"[{scale_label}] the same metrics as plain statements")
        result.plain = bench.run_plain(host)
    return result


def measure(
    args: argparse.Namespace, url: sa.URL, setup: sa.Engine, workdir: Path, monitor: ActivityMonitor
) -> tuple[list[ScaleResult], list[Profile]]:
    library = LibraryLog()
    usage_logger = logging.getLogger("usage_ping")
    usage_logger.addHandler(library)
    usage_logger.setLevel(logging.INFO)
    size = pool_size(args.concurrency)
    engines = {
        key: sa.create_engine(
            url,
            pool_size=size,
            max_overflow=0,
            connect_args={"application_name": APP_NAME, **VARIANTS[key].connect_args},
        )
        for key in args.engines
    }
    queries = QueryLog()
    for engine in engines.values():
        queries.attach(engine)
    plain = sa.create_engine(url, pool_size=1, max_overflow=0)
    bench = Bench(setup, plain, engines, queries, library)
    results: list[ScaleResult] = []
    profiles: list[Profile] = []
    try:
        hosts = [ensure_schema(setup, rows, args.rebuild) for rows in args.scales]
        for host in hosts:
            monitor.phase = label(host.rows)
            results.append(measure_scale(bench, host, workdir, args))
        if args.explain and "defaults" in engines:
            monitor.phase = "profiles"
            largest = results[-1]
            durations = largest.durations("defaults", args.concurrency[0])
            dictionary = MetricDictionary.load(workdir / largest.host.schema)
            for key in sorted(durations, key=lambda k: -durations[k])[: args.explain]:
                log(f"[{label(largest.host.rows)}] profiling {key}")
                profiles.append(bench.profile(key, dictionary, largest.host))
    finally:
        usage_logger.removeHandler(library)
        for engine in engines.values():
            engine.dispose()
        plain.dispose()
    return results, profiles


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    url = sa.make_url(args.url)
    ensure_database(url)
    setup = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="payload-bench-") as tmp,
            ActivityMonitor(url) as monitor,
        ):
            results, profiles = measure(args, url, setup, Path(tmp), monitor)
        report = Report(results, args.engines, args.concurrency, profiles)
        tables = report.tables()
        header = header_lines(setup, url, [r.host for r in results], args)
        header.insert(2, monitor.summary())
    finally:
        setup.dispose()

    failures = report.failures()
    missed = report.missed()
    summary = "targets missed: " + ("; ".join(missed) if missed else "none")
    plans = plan_lines(profiles)
    text = "\n\n".join(["\n".join(header), *(t.text() for t in tables), summary])
    if failures:
        text += "\n\nFailed metrics:\n" + "\n".join(f"  {f}" for f in failures)
    if plans:
        text += "\n\nPlans:" + "\n".join(plans)
    print(text)

    markdown = [
        "# usage_ping payload benchmark",
        "",
        f"_{header[0]}_",
        "",
        *(f"  - {line.strip()}" if line.startswith("  ") else f"- {line}" for line in header[1:]),
        "",
        *"\n\n".join(t.markdown() for t in tables).splitlines(),
        "",
        summary,
    ]
    if failures:
        markdown += ["", "### Failed metrics", "", *(f"- {f}" for f in failures)]
    if plans:
        markdown += ["", "### Plans", "", "```", *plans[1:], "```"]
    output: Path = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(markdown) + "\n", encoding="utf-8")
    log(f"wrote {output}")
    return 1 if failures or missed else 0


if __name__ == "__main__":
    sys.exit(main())
