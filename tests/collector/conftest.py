"""The central service on the test databases (PostgreSQL and SQLite) through a test client."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from usage_ping.collector.app import create_app
from usage_ping.collector.settings import ScoreCard, ServiceSettings


def ping(uuid: str = "instance-1", days_ago: float = 0, **extra: Any) -> dict[str, Any]:
    """A GitLab-shaped ping."""
    recorded = datetime(2026, 11, 21, 3, 0, tzinfo=UTC) - timedelta(days=days_ago)
    document: dict[str, Any] = {
        "uuid": uuid,
        "hostname": "git.example.com",
        "version": "16.2.0",
        "installation_type": "omnibus-gitlab",
        "edition": "EE",
        "recorded_at": recorded.isoformat().replace("+00:00", "Z"),
        "active_user_count": 10,
        "license": {"plan": "premium", "trial": False},
        "counts": {"issues": 1200, "notes": 5400, "projects": 80},
        "counts_monthly": {"issues": 40, "notes": 300, "merge_requests": 25, "deployments": -1},
        "usage_activity_by_stage": {"plan": {"issues": 12}},
        "settings": {"ldap_enabled": True, "operating_system": "ubuntu-22.04"},
        "meta": {
            "metrics": [
                {"key_path": "counts.issues", "duration_ms": 120.5},
                {"key_path": "counts_monthly.deployments", "duration_ms": 60000.0,
                 "error": "MetricTimeoutError: over 60 s"},
            ]
        },
    }  # fmt: skip
    document.update(extra)
    return document


SMALL_CARD = ScoreCard(
    features={
        "issues": "counts_monthly.issues",
        "notes": "counts_monthly.notes",
        "deployments": "counts_monthly.deployments",
    },
    min_instances=3,
    default_leaders={"issues": 2.0, "notes": 60.0, "deployments": 1.0},
)


@pytest.fixture
def service_settings() -> ServiceSettings:
    return ServiceSettings(score=SMALL_CARD, ingest_per_minute=10_000)


@pytest.fixture
def client(engine: sa.Engine, service_settings: ServiceSettings) -> Iterator[TestClient]:
    app = create_app(service_settings, engine=engine)
    with TestClient(app) as test_client:
        yield test_client
