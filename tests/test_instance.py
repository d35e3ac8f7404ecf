"""UsagePing: an instance wired from its configuration, its switches and its builds."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.instance_files import make_instance
from tests.payload import targets
from usage_ping.instance import UsagePing, open_store
from usage_ping.state import SwitchLockedError
from usage_ping.store import SQLiteStore


@pytest.mark.swallows
def test_a_build_from_configuration(tmp_path: Path) -> None:
    """Facts from the configuration and the persisted uuid; metrics computed; failures explained."""
    ping = UsagePing.from_config(make_instance(tmp_path), active_user_count=5)
    payload = ping.build()
    assert payload is not None
    assert payload["uuid"] == ping.state.uuid
    assert (payload["version"], payload["edition"], payload["hostname"]) == (
        "3.2.1", "EE", "git.example.com",
    )  # fmt: skip
    assert payload["active_user_count"] == 5
    assert payload["counts"] == {"issues": 30, "broken": -1}
    assert payload["usage_activity_by_stage"] == {"plan": {"issue_authors": 3}}
    assert payload["settings"] == {"answer": 42}
    # A restart keeps the instance's identity.
    assert UsagePing.from_config(tmp_path / "usage-ping.yml").build()["uuid"] == payload["uuid"]  # type: ignore[index]


def test_disabled_builds_nothing(tmp_path: Path) -> None:
    """With the master switch off no metric runs; build returns None; enable brings it back."""
    ping = UsagePing.from_config(make_instance(tmp_path))
    ping.disable()
    targets.calls.clear()
    assert ping.build() is None
    assert targets.calls == []
    ping.enable()
    assert ping.build() is not None
    assert targets.calls == ["constant"]


def test_locked_off_in_configuration(tmp_path: Path) -> None:
    """enabled: false: nothing is built and enabling at run time is refused."""
    ping = UsagePing.from_config(make_instance(tmp_path, extra_config="enabled: false\n"))
    assert not ping.enabled
    assert ping.build() is None
    with pytest.raises(SwitchLockedError):
        ping.enable()
    # The queries mode computes nothing, so it is allowed: it documents what would be counted.
    queries = ping.build("queries")
    assert queries is not None
    assert queries["counts"]["issues"] == "SELECT count(*) AS count_1 FROM issues"


def test_switched_off_categories_are_not_computed(tmp_path: Path) -> None:
    """The admin's categories reach the builder: an operational metric vanishes."""
    ping = UsagePing.from_config(make_instance(tmp_path))
    ping.state.set_categories(["standard", "optional"])
    payload = ping.build()
    assert payload is not None
    assert "usage_activity_by_stage" not in payload


def test_counting_follows_the_switch_with_a_short_cache(tmp_path: Path) -> None:
    """Event tracking reads the switch at most every 30 s, and sees a change after that."""
    ping = UsagePing.from_config(make_instance(tmp_path))
    assert ping.counting()
    ping.state.set_enabled(False)  # behind the cache's back (another process)
    assert ping.counting()
    ping._switch = (time.monotonic() - 31, True)
    assert not ping.counting()
    ping.enable()  # through the instance: the cache is dropped at once
    assert ping.counting()


def test_open_store_by_url(tmp_path: Path) -> None:
    """sqlite:/// opens the embedded store; unknown schemes are refused with the choices."""
    store = open_store(f"sqlite:///{tmp_path / 'c.db'}")
    assert isinstance(store, SQLiteStore)
    assert store.path == tmp_path / "c.db"
    with pytest.raises(ValueError, match="unknown scheme 'memcached'"):
        open_store("memcached://localhost")
    with pytest.raises(ValueError, match="is not a URL"):
        open_store("counters.db")
