"""``simulate_events``: days of the demo's users at work, tracked into the counter store.

Each simulated day, some of the seeded active users come by: heavy users (low ids, as in the
seeded data) almost every weekday, light users now and then, fewer on weekends. Each visitor
triggers each known event with that event's rate (:data:`EVENT_RATES`), through
:meth:`EventCounter.track_event` with the day's date, one call per event and day with the day's
user ids; the plain counters are incremented in proportion to the visitors. Feature flags are
honoured: an event whose flag is off is not tracked (``i_search_paid`` by default).

Example:
    >>> ping = UsagePing.from_config(write_config("/srv/demo"))  # doctest: +SKIP
    >>> print(simulate_events(ping, days=7).describe())
    7 days: 1,930 user-days, 8,122 unique-event values in 214 calls, 3,402 counter increments
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import sqlalchemy as sa

from usage_ping.demo import models
from usage_ping.demo.config import demo_counters, feature_flags, known_events
from usage_ping.events import Counter, EventCounter, FeatureFlags, HashCounter
from usage_ping.instance import UsagePing

__all__ = ["COUNTER_RATES", "EVENT_RATES", "SimulationReport", "simulate_events"]

EVENT_RATES: dict[str, float] = {
    "g_project_management_issue_created": 0.30,
    "g_project_management_issue_closed": 0.20,
    "g_project_management_issue_reopened": 0.03,
    "g_project_management_issue_title_changed": 0.10,
    "g_project_management_issue_assignee_changed": 0.15,
    "g_project_management_issue_milestone_changed": 0.08,
    "g_project_management_issue_comment_added": 0.45,
    "i_code_review_user_create_mr": 0.25,
    "i_code_review_user_approve_mr": 0.20,
    "i_code_review_user_merge_mr": 0.15,
    "i_code_review_user_add_suggestion": 0.08,
    "i_code_review_user_resolve_thread": 0.12,
    "i_search_total": 0.50,
    "i_search_advanced": 0.10,
    "i_search_paid": 0.05,
    "g_edit_by_web_ide": 0.10,
    "g_edit_by_sfe": 0.20,
    "g_edit_by_snippet_ide": 0.03,
    "g_analytics_contribution": 0.05,
    "g_analytics_insights": 0.03,
    "g_analytics_issues": 0.04,
    "g_analytics_valuestream": 0.02,
    "i_analytics_dev_ops_score": 0.01,
    "o_pipeline_authoring_unique_users_committing_ciconfigfile": 0.06,
    "o_pipeline_authoring_unique_users_pushing_mr_ciconfigfile": 0.04,
    "i_package_npm_user": 0.05,
    "i_package_maven_user": 0.03,
    "i_package_pypi_user": 0.04,
    "i_incident_management_incident_created": 0.02,
    "i_incident_management_incident_comment": 0.03,
    "i_incident_management_alert_status_changed": 0.02,
    "p_source_code_wiki_action": 0.07,
    "i_source_code_code_intelligence": 0.15,
    "i_testing_test_case_parsed": 0.12,
}
"""The share of a day's visitors who trigger each known event (0.1 for events not listed)."""

COUNTER_RATES: dict[str, dict[str, float]] = {
    "wiki_pages": {"create": 0.05, "update": 0.15, "delete": 0.01},
    "web_ide": {"commits": 0.10, "views": 0.30, "merge_requests": 0.04, "previews": 0.02},
    "source_code": {"pushes": 1.5},
    "pod_logs": {"requests": 0.40, "errors": 0.02},
}
"""Increments per visitor per day of each plain counter's events (a Poisson mean)."""

_WEEKDAY = (1.0, 1.0, 0.95, 0.95, 0.8, 0.25, 0.2)


@dataclass(frozen=True)
class SimulationReport:
    """What :func:`simulate_events` tracked."""

    days: int
    user_days: int
    """Visitors summed over the days."""
    calls: int
    """``track_event`` calls that wrote."""
    values: int
    """User ids passed to those calls."""
    increments: int
    """Plain counter increments (their amounts summed)."""

    def describe(self) -> str:
        return (
            f"{self.days} days: {self.user_days:,} user-days, {self.values:,} unique-event "
            f"values in {self.calls:,} calls, {self.increments:,} counter increments"
        )


def _active_users(engine: sa.Engine) -> list[int]:
    users = models.users
    query = (
        sa.select(users.c.id)
        .where(users.c.state == "active", users.c.user_type.is_(None))
        .order_by(users.c.id)
    )
    with engine.connect() as conn:
        return [int(i) for i in conn.execute(query).scalars()]


def simulate_events(
    ping: UsagePing,
    days: int = 7,
    *,
    seed: int = 0,
    now: datetime | None = None,
    flags: FeatureFlags | None = None,
    counters: Mapping[str, Counter | HashCounter] | None = None,
) -> SimulationReport:
    """Track ``days`` days of events (ending today) for the seeded users into ``ping``'s store.

    Args:
        ping: the demo's usage ping (its engine holds the seeded users, its store the counts).
        days: how many days, ending with today (35 fills every 28-day window).
        seed: the same seed and ``now`` give the same events.
        now: the current time (default: now); events are dated at noon UTC, or at ``now`` today.
        flags: feature flags for the events (default: the demo's, read from the database).
        counters: the plain counters to increment (default: the demo's, over ping's store).

    Returns:
        How much was tracked. Nothing is when usage ping is disabled.
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    events = ping.events.events if ping.events is not None else known_events()
    counter = EventCounter(
        ping.store,
        events,
        flags=flags or feature_flags(ping.engine),
        counting=ping.counting,
        clock=lambda: moment,
    )
    plain = counters if counters is not None else demo_counters_for(ping)
    users = np.array(_active_users(ping.engine), dtype=np.int64)
    # Heavy users (low ids) come by almost daily, light ones now and then.
    visits = np.clip(0.9 / np.sqrt(np.arange(1, len(users) + 1)), 0.02, 0.9)
    user_days = calls = values = increments = 0
    for back in range(days - 1, -1, -1):
        day: date = moment.date() - timedelta(days=back)
        at = min(datetime.combine(day, time(12), tzinfo=UTC), moment)
        rng = np.random.default_rng([seed, day.toordinal()])
        present = users[rng.random(len(users)) < visits * _WEEKDAY[day.weekday()]]
        user_days += len(present)
        if not len(present):
            continue
        for name in events:
            rate = EVENT_RATES.get(name, 0.1)
            doing = present[rng.random(len(present)) < rate]
            if len(doing) and counter.track_event(name, doing.tolist(), time=at):
                calls += 1
                values += len(doing)
        for prefix, rates in COUNTER_RATES.items():
            target = plain.get(prefix)
            if target is None:
                continue
            for event, rate in rates.items():
                amount = int(rng.poisson(rate * len(present)))
                if amount and target.increment(event, amount):
                    increments += amount
    return SimulationReport(days, user_days, calls, values, increments)


def demo_counters_for(ping: UsagePing) -> dict[str, Counter | HashCounter]:
    """Ping's plain counters that can be incremented, else the demo's over its store."""
    found = {k: v for k, v in ping.counters.items() if isinstance(v, Counter | HashCounter)}
    if found:
        return found
    made = demo_counters(ping.store)
    return {k: v for k, v in made.items() if isinstance(v, Counter | HashCounter)}
