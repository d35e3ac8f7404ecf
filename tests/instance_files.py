"""A small instance on disk: a SQLite host database, a metric dictionary and a configuration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from tests.metrics.files import write_metric


def make_instance(root: Path, *, extra_config: str = "") -> Path:
    """Write the instance under ``root``; returns the configuration file."""
    engine = sa.create_engine(f"sqlite:///{root / 'host.db'}")
    issues = sa.Table(
        "issues",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("author_id", sa.Integer),
        sa.Column("created_at", sa.DateTime(timezone=True)),
    )
    issues.create(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            issues.insert(),
            [
                {"id": i, "author_id": i % 3, "created_at": now - timedelta(days=i)}
                for i in range(1, 31)
            ],
        )
    engine.dispose()
    metrics = root / "metrics"
    metrics.mkdir()
    write_metric(metrics, "issues", key_path="counts.issues")
    write_metric(
        metrics, "authors", key_path="usage_activity_by_stage.plan.issue_authors",
        data_category="operational",
        instrumentation={"table": "issues", "operation": "distinct_count", "column": "author_id"},
    )  # fmt: skip
    write_metric(
        metrics, "version", key_path="settings.answer", value_type="number", time_frame="none",
        data_source="system", data_category="standard",
        instrumentation={"callable": "tests.payload.targets:constant", "options": {"value": 42}},
    )  # fmt: skip
    write_metric(
        metrics, "broken", key_path="counts.broken",
        instrumentation={"table": "no_such_table", "operation": "count"},
    )  # fmt: skip
    config = root / "usage-ping.yml"
    config.write_text(
        "database_url: sqlite:///host.db\n"
        "store_url: sqlite:///counters.db\n"
        "metrics: [metrics]\n"
        "version: 3.2.1\n"
        "edition: EE\n"
        "hostname: git.example.com\n" + extra_config
    )
    return config
