"""The host application's side: request and process metrics under the names the queries read."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from tests.topology.servers import fresh_metrics, make_app
from usage_ping.topology.exporter import MemoryCollector, RequestMetrics, instrument
from usage_ping.topology.queries import PROPORTIONAL_MEMORY, UNIQUE_MEMORY


def _samples(client: TestClient) -> dict[str, list[tuple[dict[str, str], float]]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def _count(samples: dict[str, list[tuple[dict[str, str], float]]], **labels: str) -> float:
    return sum(
        value
        for found, value in samples.get("http_requests_total", [])
        if all(found.get(k) == v for k, v in labels.items())
    )


def test_requests_are_counted_by_route_template_method_and_status() -> None:
    """Handler is the route's template, not the path; /metrics itself is not counted."""
    with TestClient(make_app(fresh_metrics())) as client:
        for i in range(3):
            client.get(f"/items/{i}")
        client.get("/")
        client.get("/items/not-a-number")  # 422 from validation
        client.get("/metrics")
        samples = _samples(client)
    assert _count(samples, handler="/items/{item_id}", method="GET", status="200") == 3
    assert _count(samples, handler="/", status="200") == 1
    assert _count(samples, handler="/items/{item_id}", status="422") == 1
    assert _count(samples, handler="/metrics") == 0
    assert _count(samples) == 5


def test_unknown_paths_count_as_one_handler() -> None:
    """404s for any path share the handler "none", so scans cannot grow the series."""
    with TestClient(make_app(fresh_metrics())) as client:
        for path in ("/wp-admin", "/.env", "/x/y/z"):
            assert client.get(path).status_code == 404
        samples = _samples(client)
    assert _count(samples, handler="none", status="404") == 3


def test_an_error_in_the_app_counts_as_500() -> None:
    """A request whose handler raises is counted with status 500, and timed."""
    app = FastAPI()

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    instrument(app, fresh_metrics())
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/boom").status_code == 500
        samples = _samples(client)
    assert _count(samples, handler="/boom", status="500") == 1
    counts = samples["http_request_duration_seconds_count"]
    assert [v for labels, v in counts if labels["handler"] == "/boom"] == [1]


def test_durations_have_buckets_at_the_apdex_thresholds() -> None:
    """The histogram has buckets at T = 0.5 s and 4T = 2 s, which the apdex query reads."""
    with TestClient(make_app(fresh_metrics())) as client:
        client.get("/")
        samples = _samples(client)
    bounds = {labels["le"] for labels, _ in samples["http_request_duration_seconds_bucket"]}
    assert {"0.5", "2.0", "+Inf"} <= bounds


def test_process_metrics_and_server_are_exported() -> None:
    """Process RSS and start time, USS and PSS (on Linux), and the app server's name."""
    with TestClient(make_app(fresh_metrics())) as client:
        samples = _samples(client)
    assert samples["process_resident_memory_bytes"][0][1] > 0
    assert samples["process_start_time_seconds"][0][1] > 0
    assert samples["usage_ping_app_server_info"] == [({"server": "uvicorn"}, 1.0)]
    if Path("/proc/self/smaps_rollup").exists():
        uss = samples[UNIQUE_MEMORY][0][1]
        pss = samples[PROPORTIONAL_MEMORY][0][1]
        assert 0 < uss <= pss <= samples["process_resident_memory_bytes"][0][1]


def test_the_server_is_detected_from_what_was_imported() -> None:
    """Without a name, the server is the one this process imported (uvicorn, under pytest)."""
    registry = CollectorRegistry()
    RequestMetrics(registry)
    assert registry.get_sample_value("usage_ping_app_server_info", {"server": "uvicorn"}) == 1


def test_registering_twice_in_one_registry_is_refused() -> None:
    """Metrics are defined once per registry; a second definition fails loudly."""
    registry = CollectorRegistry()
    RequestMetrics(registry)
    with pytest.raises(ValueError, match="Duplicated"):
        RequestMetrics(registry)


def test_memory_collector_is_silent_without_smaps(tmp_path: Path) -> None:
    """Where /proc/self/smaps_rollup does not exist, USS and PSS are simply not exported."""
    assert list(MemoryCollector(tmp_path / "missing").collect()) == []
    partial = tmp_path / "smaps_rollup"
    partial.write_text("Rss:                1024 kB\n")
    assert list(MemoryCollector(partial).collect()) == []


def test_memory_collector_reads_private_and_proportional_pages(tmp_path: Path) -> None:
    """USS is the private pages, PSS the proportional set, both in bytes."""
    rollup = tmp_path / "smaps_rollup"
    rollup.write_text(
        "00400000-7fff00000000 ---p 00000000 00:00 0   [rollup]\n"
        "Rss:                4096 kB\nPss:                3072 kB\n"
        "Private_Clean:       512 kB\nPrivate_Dirty:      1536 kB\nPrivate_Hugetlb:       0 kB\n"
    )
    families = {f.name: f.samples[0].value for f in MemoryCollector(rollup).collect()}
    assert families == {UNIQUE_MEMORY: 2048 * 1024, PROPORTIONAL_MEMORY: 3072 * 1024}
