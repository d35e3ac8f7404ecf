"""An instance on disk (SQLite host database and counter store, metrics, known events) and the
tiny host app mounting both routers, served by uvicorn on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.instance_files import make_instance
from tests.serving import serve
from tests.web.host import create_host
from usage_ping.events import Counter, FeatureFlags, HashCounter
from usage_ping.instance import UsagePing
from usage_ping.web import API_FLAG

EVENTS = """\
- name: i_search_total
  category: search
  aggregation: daily
- name: i_search_advanced
  category: search
  aggregation: daily
  feature_flag: advanced_search_tracking
"""

NOW = datetime.now(UTC).replace(microsecond=0)
"""The instances' clock: fixed, so that two builds record the same moment."""


@dataclass
class Host:
    """The served host app and what it counts into."""

    url: str
    ping: UsagePing
    flags: FeatureFlags
    wiki: Counter
    pods: HashCounter
    config: Path

    def unique_users(self, event: str) -> int:
        """Distinct users counted today for a (daily) known event."""
        assert self.ping.events is not None
        today = datetime.now(UTC).date()
        return self.ping.events.unique_events(event, today, today)


def write_instance(root: Path, extra_config: str = "") -> Path:
    """An instance with two known events (one behind a feature flag); returns its config."""
    root.mkdir()
    (root / "events.yml").write_text(EVENTS)
    return make_instance(root, extra_config="events: [events.yml]\n" + extra_config)


HostFactory = Callable[..., Host]


@pytest.fixture
def make_host(tmp_path: Path) -> Iterator[HostFactory]:
    """Builds and serves host apps: ``make_host(extra_config="enabled: false\\n")``."""
    stack = ExitStack()

    def factory(extra_config: str = "", name: str = "instance") -> Host:
        config = write_instance(tmp_path / name, extra_config)
        ping = UsagePing.from_config(config, clock=lambda: NOW)
        wiki = Counter(ping.store, "wiki_pages", ["create", "update"])
        ping.counters["wiki_pages"] = wiki  # the instance's own counter
        pods = HashCounter(ping.store, "pod_logs", ["requests"])  # given to the router only
        flags = FeatureFlags(
            {"advanced_search_tracking": False, "pod_logs_tracking": True},
            defaults={API_FLAG: True},
        )
        assert ping.events is not None
        ping.events.flags = flags  # one set of flags for the API and for backend tracking
        app = create_host(
            ping,
            flags=flags,
            counters=[pods],
            counter_flags={"pod_logs_requests": "pod_logs_tracking"},
        )
        stack.callback(ping.engine.dispose)
        stack.callback(ping.store.close)
        url = stack.enter_context(serve(app))
        return Host(url, ping, flags, wiki, pods, config)

    with stack:
        yield factory


@pytest.fixture
def host(make_host: HostFactory) -> Host:
    """A host app over an enabled instance."""
    return make_host()
