"""The whole demo payload over seeded data: no failed metric, no drift, values as plain SQL."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from tests.demo.conftest import NOW, DemoInstance
from usage_ping.demo import models
from usage_ping.demo.config import METRICS_DIR
from usage_ping.testing import assert_metric, assert_no_drift, build_payload, metric_value

MONTH_START = datetime.combine(NOW.date(), time.min, tzinfo=UTC) - timedelta(days=28)
MONTH_END = datetime.combine(NOW.date(), time.min, tzinfo=UTC)


@pytest.fixture(scope="module")
def payload(demo: DemoInstance) -> dict[str, Any]:
    """The payload of the seeded demo, built as the instance builds it."""
    found = demo.ping.build()
    assert found is not None
    return found


def _scalar(engine: sa.Engine, query: sa.Select[Any]) -> Any:
    with engine.connect() as conn:
        return conn.execute(query).scalar_one()


def test_no_metric_fails_and_the_payload_matches_the_dictionary(
    payload: dict[str, Any], demo: DemoInstance
) -> None:
    """Every one of the 120+ metrics is computed, and payload and dictionary agree."""
    failures = [m for m in payload["meta"]["metrics"] if "error" in m]
    assert failures == []
    assert len(payload["meta"]["metrics"]) >= 120
    assert_no_drift(payload, METRICS_DIR)


def test_testing_build_payload_succeeds_over_the_seeded_database(demo: DemoInstance) -> None:
    """``usage_ping.testing.build_payload`` (which fails on any failed metric) passes too."""
    payload = build_payload(
        METRICS_DIR,
        engine=demo.engine,
        events=demo.ping.events,
        counters=demo.ping.counters,
        clock=lambda: NOW,
    )
    assert_no_drift(payload, METRICS_DIR)


def test_counts_equal_plain_sql(payload: dict[str, Any], demo: DemoInstance) -> None:
    """Counts, windows, distinct counts, sums, grouped counts and active users, against SQL."""
    issues, users, projects = models.issues, models.users, models.projects
    in_month = (issues.c.created_at >= MONTH_START) & (issues.c.created_at < MONTH_END)
    expected = {
        "counts.issues": sa.select(sa.func.count()).select_from(issues),
        "counts_monthly.issues": sa.select(sa.func.count()).where(in_month),
        "usage_activity_by_stage_monthly.plan.issues": sa.select(
            sa.func.count(sa.distinct(issues.c.author_id))
        ).where(in_month),
        "counts.issue_weight_total": sa.select(sa.func.sum(issues.c.weight)),
        "active_user_count": sa.select(sa.func.count()).where(
            users.c.state == "active", users.c.user_type.is_(None)
        ),
    }
    for key_path, query in expected.items():
        assert_metric(payload, key_path, _scalar(demo.engine, query))
    with demo.engine.connect() as conn:
        by_state = sa.select(issues.c.state, sa.func.count()).group_by(issues.c.state)
        states = {str(row[0]): int(row[1]) for row in conn.execute(by_state)}
        by_level = sa.select(projects.c.visibility_level, sa.func.count()).group_by(
            projects.c.visibility_level
        )
        levels = {int(row[0]): int(row[1]) for row in conn.execute(by_level)}
    assert_metric(payload, "counts.issues_by_state", states)
    names = {0: "private", 10: "internal", 20: "public"}
    visibility = {names[level]: count for level, count in sorted(levels.items())}
    assert_metric(payload, "counts.projects_by_visibility", visibility)


def test_estimates_are_close_to_exact_counts(payload: dict[str, Any]) -> None:
    """The HyperLogLog estimate of distinct authors stays near the exact distinct count."""
    exact = metric_value(payload, "usage_activity_by_stage.create.merge_requests")
    estimate = metric_value(
        payload, "usage_activity_by_stage.create.merge_request_authors_estimated"
    )
    assert abs(estimate - exact) <= max(2, 0.05 * exact)


def test_counters_events_and_aggregates_come_from_the_store(
    payload: dict[str, Any], demo: DemoInstance
) -> None:
    """Plain counters equal their totals; a category total covers its events; OR is at least
    each event, AND at most the smallest; a flagged-off event counts nobody."""
    totals = demo.ping.counters["wiki_pages"].totals()
    assert metric_value(payload, "counts.wiki_pages_create") == totals["wiki_pages_create"] > 0
    review = metric_value(payload, "redis_hll_counters.code_review")
    members = [v for k, v in review.items() if k.endswith("_monthly") and "total" not in k]
    total = review["code_review_total_unique_counts_monthly"]
    assert max(members) <= total <= sum(members)
    monthly = metric_value(payload, "counts_monthly.aggregated_metrics")
    create = review["i_code_review_user_create_mr_monthly"]
    approve = review["i_code_review_user_approve_mr_monthly"]
    assert monthly["code_review_any_action"] >= max(create, approve)
    assert 0 < monthly["code_review_create_and_approve"] <= min(create, approve)
    assert metric_value(payload, "redis_hll_counters.search.i_search_paid_monthly") == 0
    assert metric_value(payload, "redis_hll_counters.analytics.g_analytics_valuestream_monthly") > 0


def test_settings_license_and_system_facts(payload: dict[str, Any]) -> None:
    """Alternative values from the settings and license tables, facts from the system."""
    assert_metric(payload, "settings.signup_enabled", True)
    assert_metric(payload, "settings.default_project_visibility", "private")
    assert_metric(payload, "settings.database.adapter", "sqlite")
    assert_metric(payload, "license.plan", "ultimate")
    assert_metric(payload, "license.trial", False)
    assert metric_value(payload, "license.licensee")["Company"] == "Demo Corp"
    assert len(metric_value(payload, "license.md5")) == 32
    assert metric_value(payload, "settings.feature_flags")["search_paid_tracking"] is False


def test_an_aggregated_metric_whose_flag_is_off_fails_with_the_reason(demo: DemoInstance) -> None:
    """With its flag off, the flagged aggregated metric reports -1 and says why in meta."""
    flags = models.feature_flags
    with demo.engine.begin() as conn:
        conn.execute(
            flags.update().where(flags.c.name == "aggregated_issue_triage").values(enabled=False)
        )
    try:
        payload = build_payload(
            METRICS_DIR, allow_failures=True, engine=demo.engine, events=demo.ping.events,
            counters=demo.ping.counters, clock=lambda: NOW,
        )  # fmt: skip
    finally:
        with demo.engine.begin() as conn:
            conn.execute(
                flags.update().where(flags.c.name == "aggregated_issue_triage").values(enabled=True)
            )
    failures = {m["key_path"]: m["error"] for m in payload["meta"]["metrics"] if "error" in m}
    key = "counts_monthly.aggregated_metrics.issue_triage_and_comment"
    assert list(failures) == [key]
    assert "feature flag aggregated_issue_triage is off" in failures[key]
    assert metric_value(payload, key) == -1


@pytest.mark.dialects("postgresql", "mariadb")
def test_database_metrics_compute_on_the_server_databases(engine: sa.Engine) -> None:
    """Every database metric, grouped counts and settings included, computes on PostgreSQL and
    MariaDB too."""
    from usage_ping.demo import seed
    from usage_ping.metrics import MetricDictionary

    seed(engine, 1, now=NOW, password_hash="x")
    every = MetricDictionary.load(METRICS_DIR).values()
    dictionary = MetricDictionary(m for m in every if m.data_source not in {"redis_hll", "redis"})
    payload = build_payload(dictionary, engine=engine, clock=lambda: NOW)
    assert metric_value(payload, "counts.issues") == 600
    assert metric_value(payload, "settings.database.adapter") == engine.dialect.name
