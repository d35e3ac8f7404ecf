"""The topology block against the real Prometheus and node_exporter from Debian's packages."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.instance_files import make_instance
from tests.topology.servers import FAST_REQUESTS, SLOW_REQUESTS, TEST_WINDOW, Stack
from usage_ping.instance import UsagePing
from usage_ping.topology import PrometheusClient, PrometheusError, Topology, TopologySettings


def _readings(node_exporter: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """node_exporter's own /metrics, by metric name."""
    text = httpx.get(f"{node_exporter}/metrics").text
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


@pytest.fixture(scope="module")
def block(stack: Stack) -> dict[str, Any]:
    return Topology(stack.settings()).collect()


def _only_node(block: dict[str, Any]) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = block["nodes"]
    assert len(nodes) == 1, "every target is on loopback: one node"
    return nodes[0]


def test_every_query_answers(block: dict[str, Any]) -> None:
    """With Prometheus, node_exporter and the app scraped, no query fails."""
    assert block["failures"] == {}
    assert list(block) == [
        "duration_s", "application_requests_per_hour", "query_apdex_weekly_average",
        "failures", "nodes",
    ]  # fmt: skip
    assert 0 < block["duration_s"] < 5


def test_node_facts_match_node_exporters_own_readings(block: dict[str, Any], stack: Stack) -> None:
    """Memory total and CPU count are what node_exporter reads; CPU count is this machine's."""
    node = _only_node(block)
    readings = _readings(stack.node_exporter)
    assert node["node_memory_total_bytes"] == int(readings["node_memory_MemTotal_bytes"][0][1])
    cpus = {labels["cpu"] for labels, _ in readings["node_cpu_seconds_total"]}
    assert node["node_cpus"] == len(cpus) == os.cpu_count()
    uname = os.uname()
    assert node["node_uname_info"] == {
        "machine": uname.machine,
        "sysname": uname.sysname,
        "release": uname.release,
    }
    assert 0 < node["node_memory_utilization"] < 1
    assert 0 <= node["node_cpu_utilization"] <= 1


def test_services_are_the_mapped_jobs_only(block: dict[str, Any]) -> None:
    """Jobs map to service names; a job no service maps is neither counted nor named."""
    services = {s["name"]: s for s in _only_node(block)["node_services"]}
    assert sorted(services) == ["node-exporter", "prometheus", "web"]
    # node_exporter is scraped twice (jobs node and unmapped): only the mapped job counts.
    assert services["node-exporter"]["process_count"] == 1
    assert services["node-exporter"]["process_memory_rss"] > 0
    assert "server" not in services["node-exporter"]
    assert "unmapped" not in json.dumps(block)


def test_the_apps_service_has_its_memory_and_server(block: dict[str, Any]) -> None:
    """The exporter's process metrics give RSS, USS and PSS (USS <= PSS <= RSS) and the server."""
    web = next(s for s in _only_node(block)["node_services"] if s["name"] == "web")
    assert web["process_count"] == 1
    assert web["server"] == "uvicorn"
    assert 0 < web["process_memory_uss"] <= web["process_memory_pss"] <= web["process_memory_rss"]


def test_requests_per_hour_and_apdex_come_from_the_apps_requests(block: dict[str, Any]) -> None:
    """Over a one-hour window, requests per hour is the load; apdex counts /slow as tolerated."""
    load = FAST_REQUESTS + SLOW_REQUESTS
    # rate() extrapolates a little past the first and last samples: at most ~1 s of 10 s.
    assert load <= block["application_requests_per_hour"] <= load * 1.25
    expected = (FAST_REQUESTS + SLOW_REQUESTS / 2) / load
    assert block["query_apdex_weekly_average"] == pytest.approx(expected, abs=0.02)


def test_jobs_that_prometheus_lacks_give_empty_results(stack: Stack) -> None:
    """Mapped jobs that Prometheus does not scrape: every query says empty_result, values -1."""
    block = Topology(stack.settings(services={"billing": "billing"})).collect()
    assert block["failures"] == dict.fromkeys(Topology(stack.settings()).describe(), "empty_result")
    assert block["application_requests_per_hour"] == -1
    assert block["query_apdex_weekly_average"] == -1
    assert block["nodes"] == []


def test_apdex_without_requests_in_the_window_is_not_a_number(stack: Stack) -> None:
    """No request in the window (the load ended before it): 0 per hour, and apdex is 0/0."""
    block = Topology(stack.settings(window="3s")).collect()
    assert block["failures"] == {"query_apdex_weekly_average": "not_a_number"}
    assert block["query_apdex_weekly_average"] == -1
    assert block["application_requests_per_hour"] == 0


def test_prometheus_errors_carry_their_type(stack: Stack) -> None:
    """A query Prometheus cannot parse raises PrometheusError with Prometheus's error type."""

    async def main() -> None:
        async with PrometheusClient(stack.prometheus) as client:
            with pytest.raises(PrometheusError) as raised:
                await client.query("sum(")
            assert raised.value.error_type == "bad_data"
            samples = await client.query("count(up)")
            assert samples[0].value == 4  # node, web, unmapped and prometheus itself

    asyncio.run(main())


def test_a_server_that_is_not_prometheus(stack: Stack) -> None:
    """The app's URL in place of Prometheus's: every query fails as PrometheusError."""
    block = Topology(TopologySettings(stack.app)).collect()
    assert set(block["failures"].values()) == {"PrometheusError"}
    assert block["nodes"] == []


@pytest.mark.swallows  # the instance's broken metric
def test_the_payload_of_an_instance_configured_for_prometheus(stack: Stack, tmp_path: Path) -> None:
    """prometheus in usage-ping.yml: the built payload has the block and every metric too."""
    config = make_instance(
        tmp_path,
        extra_config=(
            f"prometheus:\n  url: {stack.prometheus}\n  window: {TEST_WINDOW}\n"
            "  services: {web: web}\n"
        ),
    )
    ping = UsagePing.from_config(config)
    payload = ping.build()
    assert payload is not None
    assert payload["counts"]["issues"] == 30
    assert payload["settings"]["answer"] == 42
    topology = payload["topology"]
    assert {s["name"] for s in topology["nodes"][0]["node_services"]} == {
        "node-exporter", "prometheus", "web",
    }  # fmt: skip
    entry = next(m for m in payload["meta"]["metrics"] if m["key_path"] == "topology")
    assert "error" not in entry
