"""Without a good Prometheus the block still comes, on time, and says why each fact is missing.

These peers need no Prometheus: a socket that never answers, a server that trickles its answer a
byte at a time, and a port where nothing listens.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.topology.servers import refused, silent_server, trickling_server
from usage_ping.topology import Topology, TopologySettings
from usage_ping.topology.config import DEFAULT_QUERY_TIMEOUT, DEFAULT_TOTAL_TIMEOUT

MARGIN = 0.5
"""Seconds past a deadline that the block may take to come back."""


def _timed(settings: TopologySettings) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    block = Topology(settings).collect()
    return block, time.perf_counter() - started


def _every_query(reason: str, settings: TopologySettings) -> dict[str, str]:
    return dict.fromkeys(Topology(settings).describe(), reason)


def test_a_prometheus_that_never_answers_is_given_up_at_the_query_deadline() -> None:
    """A hanging socket: the block returns at the query deadline, every query a timeout."""
    with silent_server() as url:
        settings = TopologySettings(url, query_timeout_s=1.0, total_timeout_s=3.0)
        block, took = _timed(settings)
    assert 1.0 <= took < 1.0 + MARGIN
    assert block["failures"] == _every_query("timeout", settings)
    assert block["application_requests_per_hour"] == -1
    assert block["query_apdex_weekly_average"] == -1
    assert block["nodes"] == []
    assert block["duration_s"] == pytest.approx(took, abs=0.05)


def test_the_default_deadlines_hold_against_a_hanging_prometheus() -> None:
    """With the production defaults (5 s a query, 15 s in all) a hang costs 5 s, not a minute."""
    with silent_server() as url:
        settings = TopologySettings(url)
        block, took = _timed(settings)
    assert (settings.query_timeout_s, settings.total_timeout_s) == (
        DEFAULT_QUERY_TIMEOUT,
        DEFAULT_TOTAL_TIMEOUT,
    )
    assert DEFAULT_QUERY_TIMEOUT <= took < DEFAULT_QUERY_TIMEOUT + MARGIN
    assert set(block["failures"].values()) == {"timeout"}


def test_the_block_deadline_wins_when_it_is_nearer() -> None:
    """A total deadline shorter than the query deadline ends every query at the total one."""
    with silent_server() as url:
        settings = TopologySettings(url, query_timeout_s=5.0, total_timeout_s=1.5)
        block, took = _timed(settings)
    assert 1.5 <= took < 1.5 + MARGIN
    assert block["failures"] == _every_query("total_timeout", settings)


def test_an_answer_that_trickles_in_is_cut_at_the_deadline() -> None:
    """Each byte comes quickly, the answer never ends: the deadline bounds the whole call."""
    with trickling_server(byte_every=0.1) as url:
        settings = TopologySettings(url, query_timeout_s=1.0, total_timeout_s=3.0)
        block, took = _timed(settings)
    assert 1.0 <= took < 1.0 + MARGIN
    assert block["failures"] == _every_query("timeout", settings)


def test_an_unreachable_prometheus_fails_at_once_with_the_error_class() -> None:
    """Connection refused: no waiting, and the failures name the error's class."""
    with refused() as url:
        settings = TopologySettings(url)
        block, took = _timed(settings)
    assert took < 1.0
    assert block["failures"] == _every_query("ConnectError", settings)


def test_collect_works_from_a_thread_that_runs_an_event_loop() -> None:
    """Called from async code (directly, or awaited through collect_async), within the deadline."""
    with refused() as url:
        topology = Topology(TopologySettings(url))

        async def main() -> tuple[dict[str, Any], dict[str, Any]]:
            return topology.collect(), await topology.collect_async()

        direct, awaited = asyncio.run(main())
    assert set(direct["failures"].values()) == set(awaited["failures"].values()) == {"ConnectError"}


def test_unavailable_gives_the_full_shape() -> None:
    """The block when nothing could be asked still has every key."""
    topology = Topology(TopologySettings("http://127.0.0.1:9"))
    block = topology.unavailable("total_timeout", 15.2)
    assert block == {
        "duration_s": 15.2,
        "application_requests_per_hour": -1,
        "query_apdex_weekly_average": -1,
        "failures": dict.fromkeys(topology.describe(), "total_timeout"),
        "nodes": [],
    }
