"""The prometheus settings, the queries they make, and how targets become nodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from usage_ping.settings import ConfigError, Settings
from usage_ping.topology import DEFAULT_SERVICES, TopologySettings
from usage_ping.topology.block import node_of
from usage_ping.topology.queries import topology_queries


def test_no_prometheus_key_means_no_topology(tmp_path: Path) -> None:
    """Without a prometheus key there is nothing to query."""
    config = tmp_path / "usage-ping.yml"
    config.write_text("version: 1.0.0\n")
    assert Settings.load(config, environ={}).prometheus is None


def test_prometheus_settings_from_the_file(tmp_path: Path) -> None:
    """Every key read; services are added to the defaults, and null drops a default job."""
    config = tmp_path / "usage-ping.yml"
    config.write_text(
        "prometheus:\n"
        "  url: http://127.0.0.1:9090/prometheus\n"
        "  query_timeout_s: 2\n"
        "  total_timeout_s: 6\n"
        "  window: 1d\n"
        "  apdex_threshold_s: 0.25\n"
        "  services: {myapp: web, worker: sidekiq, prometheus: null}\n"
    )
    prometheus = Settings.load(config, environ={}).prometheus
    assert prometheus == TopologySettings(
        "http://127.0.0.1:9090/prometheus",
        query_timeout_s=2.0,
        total_timeout_s=6.0,
        window="1d",
        apdex_threshold_s=0.25,
        services={"node": "node-exporter", "myapp": "web", "worker": "sidekiq"},
    )


def test_defaults_of_the_prometheus_settings(tmp_path: Path) -> None:
    """Only the URL given: 5 s a query, 15 s in all, a week's window, the default services."""
    config = tmp_path / "usage-ping.yml"
    config.write_text("prometheus: {url: 'http://prometheus:9090'}\n")
    prometheus = Settings.load(config, environ={}).prometheus
    assert prometheus is not None
    assert (prometheus.query_timeout_s, prometheus.total_timeout_s) == (5.0, 15.0)
    assert prometheus.window == "1w"
    assert dict(prometheus.services) == dict(DEFAULT_SERVICES)


def test_environment_overrides_the_prometheus_keys(tmp_path: Path) -> None:
    """USAGE_PING_PROMETHEUS_* set single keys, keeping the file's others; an empty URL removes."""
    config = tmp_path / "usage-ping.yml"
    config.write_text("prometheus: {url: 'http://a:9090', services: {app: web}}\n")
    env = {
        "USAGE_PING_PROMETHEUS_URL": "http://b:9090",
        "USAGE_PING_PROMETHEUS_QUERY_TIMEOUT_S": "3",
        "USAGE_PING_PROMETHEUS_TOTAL_TIMEOUT_S": "9.5",
    }
    prometheus = Settings.load(config, environ=env).prometheus
    assert prometheus is not None
    assert (prometheus.url, prometheus.query_timeout_s, prometheus.total_timeout_s) == (
        "http://b:9090",
        3.0,
        9.5,
    )
    assert prometheus.services["app"] == "web"
    assert Settings.load(config, environ={"USAGE_PING_PROMETHEUS_URL": ""}).prometheus is None
    empty = tmp_path / "empty.yml"
    empty.write_text("")
    only_env = Settings.load(empty, environ={"USAGE_PING_PROMETHEUS_URL": "http://c:1"})
    assert only_env.prometheus == TopologySettings("http://c:1")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prometheus: {query_timeout_s: 5}\n", "'url' is a required property"),
        ("prometheus: {url: 'ftp://x'}\n", "prometheus/url"),
        ("prometheus: {url: 'http://x', query_timeout_s: 0}\n", "prometheus/query_timeout_s"),
        ("prometheus: {url: 'http://x', window: 'a week'}\n", "prometheus/window"),
        ("prometheus: {url: 'http://x', services: {web: ''}}\n", "prometheus/services/web"),
        ("prometheus: {url: 'http://x', timeout: 5}\n", "'timeout' was unexpected"),
        ("prometheus: {url: 'http://x', total_timeout_s: .inf}\n", "positive number"),
    ],
)
def test_bad_prometheus_settings_are_refused_with_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    """A bad value names the file and the key."""
    config = tmp_path / "usage-ping.yml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message) as raised:
        Settings.load(config, environ={})
    assert str(config) in str(raised.value)


def test_bad_topology_settings_fail_at_definition() -> None:
    """Made in code, bad settings raise ValueError naming the field."""
    with pytest.raises(ValueError, match="query_timeout_s"):
        TopologySettings("http://x", query_timeout_s=-1)
    with pytest.raises(ValueError, match="window"):
        TopologySettings("http://x", window="7 days")
    with pytest.raises(ValueError, match="url"):
        TopologySettings("prometheus:9090")


def test_queries_select_only_the_mapped_jobs_with_their_names_escaped() -> None:
    """Job names are regex-escaped inside a PromQL string; every query carries the selector."""
    settings = TopologySettings("http://x", services={"my.app": "web", 'we"ird': "w"})
    selector = r'job=~"my\\.app|we\"ird"'
    queries = topology_queries(settings)
    assert len(queries) == 12
    for query in queries:
        assert selector in query.promql, query.name


def test_the_apdex_query_matches_both_spellings_of_a_bucket_bound() -> None:
    """prometheus-client writes le="2.0", other clients le="2": both are matched."""
    (apdex,) = [q for q in topology_queries(TopologySettings("http://x")) if "apdex" in q.name]
    assert r'le=~"0\\.5"' in apdex.promql
    assert r'le=~"2|2\\.0"' in apdex.promql


@pytest.mark.parametrize(
    ("instance", "node"),
    [
        ("127.0.0.1:9100", "localhost"),
        ("localhost:8000", "localhost"),
        ("[::1]:9090", "localhost"),
        ("127.0.1.1:80", "localhost"),
        ("10.0.0.7:9100", "10.0.0.7"),
        ("db-1.internal:9187", "db-1.internal"),
        ("[2001:db8::1]:9100", "2001:db8::1"),
        ("web-2", "web-2"),
    ],
)
def test_targets_on_one_host_are_one_node(instance: str, node: str) -> None:
    """The port is dropped and loopback addresses are one localhost."""
    assert node_of(instance) == node
