"""A demo instance seeded once per module: SQLite host database, SQLite counter store, 35 days of
simulated events."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from usage_ping.demo import demo_counters, seed, simulate_events, write_config
from usage_ping.instance import UsagePing

NOW = datetime(2026, 3, 4, 15, 30, tzinfo=UTC)
"""A Wednesday: the weekly windows hold the complete ISO week before it."""


@dataclass
class DemoInstance:
    engine: sa.Engine
    ping: UsagePing
    config: Path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoInstance]:
    """The demo seeded at scale 1 with 35 days of events, configured by its usage-ping.yml."""
    root = tmp_path_factory.mktemp("demo")
    config = write_config(root, database_url="sqlite:///demo.sqlite3")
    engine = sa.create_engine(f"sqlite:///{root / 'demo.sqlite3'}")
    seed(engine, 1, now=NOW, password_hash="not-a-real-hash")
    ping = UsagePing.from_config(config, engine=engine, clock=lambda: NOW)
    ping.counters = dict(demo_counters(ping.store))
    simulate_events(ping, 35, now=NOW)
    yield DemoInstance(engine, ping, config)
    ping.store.close()
    engine.dispose()
