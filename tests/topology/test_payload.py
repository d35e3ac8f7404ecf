"""The topology block in the payload: beside the metrics, never in their way, in every mode."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.instance_files import make_instance
from tests.metrics.files import write_metric
from tests.topology.servers import refused, silent_server
from usage_ping.cli import main
from usage_ping.instance import UsagePing
from usage_ping.metrics import MetricDictionary
from usage_ping.payload import PayloadBuilder
from usage_ping.topology import Topology, TopologySettings


def _dictionary(directory: Path) -> MetricDictionary:
    for name, value in (("a", 1), ("b", 2), ("c", 3)):
        write_metric(
            directory, name, key_path=f"settings.{name}", value_type="number",
            time_frame="none", data_source="system", data_category="operational",
            instrumentation={"callable": "tests.payload.targets:constant",
                             "options": {"value": value}},
        )  # fmt: skip
    return MetricDictionary.load(directory)


def _meta(payload: dict[str, Any], key: str) -> dict[str, Any]:
    entry: dict[str, Any] = next(m for m in payload["meta"]["metrics"] if m["key_path"] == key)
    return entry


def test_a_hanging_prometheus_leaves_every_metric_in_place(tmp_path: Path) -> None:
    """Topology timing out: every metric has its value, the block its failures, meta the reason."""
    with silent_server() as url:
        topology = Topology(TopologySettings(url, query_timeout_s=1.0, total_timeout_s=2.0))
        started = time.perf_counter()
        payload = PayloadBuilder(_dictionary(tmp_path), topology=topology).build()
        took = time.perf_counter() - started
    assert payload["settings"] == {"a": 1, "b": 2, "c": 3}
    assert took < 1.0 + 0.5  # the metrics ran while the topology waited
    block = payload["topology"]
    assert set(block["failures"].values()) == {"timeout"}
    assert block["nodes"] == []
    entry = _meta(payload, "topology")
    assert entry["error"].startswith("12 of 12 Prometheus queries failed: ")
    assert "node_cpus: timeout" in entry["error"]
    assert all("error" not in _meta(payload, f"settings.{k}") for k in "abc")
    assert list(payload)[-2:] == ["topology", "meta"]


def test_an_unreachable_prometheus_in_non_sql_mode(tmp_path: Path) -> None:
    """non_sql mode still asks Prometheus (it is not SQL): the block says it was refused."""
    with refused() as url:
        topology = Topology(TopologySettings(url))
        payload = PayloadBuilder(_dictionary(tmp_path), topology=topology, mode="non_sql").build()
    assert set(payload["topology"]["failures"].values()) == {"ConnectError"}
    assert payload["settings"] == {"a": 1, "b": 2, "c": 3}


def test_queries_mode_shows_the_promql_and_asks_nothing(tmp_path: Path) -> None:
    """In queries mode the block is each query's PromQL, and Prometheus is not contacted."""
    with silent_server() as url:
        settings = TopologySettings(url, services={"web": "web"}, window="1w")
        started = time.perf_counter()
        payload = PayloadBuilder(
            _dictionary(tmp_path), topology=Topology(settings), mode="queries"
        ).build()
        took = time.perf_counter() - started
    assert took < 1.0
    queries = payload["topology"]
    assert queries["application_requests_per_hour"] == (
        'sum(rate(http_requests_total{job=~"web"}[1w])) * 3600'
    )
    assert (
        queries["node_cpus"]
        == 'count by (instance) (node_cpu_seconds_total{job=~"web", mode="idle"})'
    )
    assert "error" not in _meta(payload, "topology")


def test_no_topology_while_operational_data_is_off(tmp_path: Path) -> None:
    """The block is operational data: with that category off it is neither built nor sent."""
    with refused() as url:
        builder = PayloadBuilder(
            _dictionary(tmp_path),
            topology=Topology(TopologySettings(url)),
            categories=("standard", "subscription", "optional"),
        )
        payload = builder.build()
    assert "topology" not in payload
    assert all(m["key_path"] != "topology" for m in payload["meta"]["metrics"])


def test_no_topology_without_prometheus_settings(tmp_path: Path) -> None:
    """A builder without a Topology builds no block."""
    payload = PayloadBuilder(_dictionary(tmp_path)).build()
    assert "topology" not in payload


def test_a_metric_under_topology_clashes_with_the_block(tmp_path: Path) -> None:
    """A dictionary metric at topology.* would be overwritten by the block: refused at once."""
    write_metric(
        tmp_path, "clash", key_path="topology.nodes_count", value_type="number",
        time_frame="none", data_source="system",
        instrumentation={"callable": "tests.payload.targets:constant"},
    )  # fmt: skip
    with pytest.raises(ValueError, match="topology"):
        PayloadBuilder(
            MetricDictionary.load(tmp_path),
            topology=Topology(TopologySettings("http://127.0.0.1:9")),
        )


@pytest.mark.swallows  # the instance's broken metric
def test_an_instance_without_its_prometheus_still_builds_everything(tmp_path: Path) -> None:
    """prometheus configured but down: the block says so, and the other metrics are all there."""
    with refused() as url:
        config = make_instance(tmp_path, extra_config=f"prometheus: {{url: '{url}'}}\n")
        payload = UsagePing.from_config(config).build()
    assert payload is not None
    assert payload["counts"]["issues"] == 30
    assert payload["usage_activity_by_stage"]["plan"]["issue_authors"] == 3
    assert payload["settings"]["answer"] == 42
    assert set(payload["topology"]["failures"].values()) == {"ConnectError"}
    keys = [m["key_path"] for m in payload["meta"]["metrics"]]
    assert keys[-1] == "topology"


def test_the_cli_prints_the_promql_in_queries_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """usage-ping payload --queries shows each topology query's PromQL beside the SQL."""
    config = make_instance(
        tmp_path, extra_config="prometheus: {url: 'http://127.0.0.1:9', services: {app: web}}\n"
    )
    assert main(["--config", str(config), "payload", "--queries"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["counts"]["issues"].startswith("SELECT count(")
    assert payload["topology"]["service_process_count"] == (
        'count by (instance, job) (process_start_time_seconds{job=~"app|node|prometheus"})'
    )
