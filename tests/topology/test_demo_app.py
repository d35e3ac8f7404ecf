"""The demo platform scraped by a real Prometheus: the payload the demo builds carries a topology
block whose requests per hour and apdex come from the demo's own requests."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.serving import serve
from tests.topology.servers import node_exporter, prometheus, query_value, wait_for
from usage_ping.demo.app import create_demo_app
from usage_ping.demo.config import demo_counters, write_config
from usage_ping.demo.seed import seed
from usage_ping.instance import UsagePing

REQUESTS = 30


def test_the_demo_platform_reports_its_own_requests(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        database_url=f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        store_url=f"sqlite:///{tmp_path / 'counters.sqlite3'}",
    )
    ping = UsagePing.from_config(config)
    ping.counters = dict(demo_counters(ping.store))
    seed(ping.engine, 1)
    app = create_demo_app(ping, secret_key="k" * 32)
    with serve(app) as demo, node_exporter(tmp_path) as node:
        for path in ("/login", "/", "/metrics"):
            httpx.get(f"{demo}{path}")  # the series exist before the first scrape
        with prometheus(tmp_path, {"node": node, "demo": demo}) as url:
            with httpx.Client(base_url=demo) as client:
                for _ in range(REQUESTS):
                    assert client.get("/login").status_code == 200
            wait_for(
                lambda: (query_value(url, 'sum(http_requests_total{job="demo"})') or 0) >= REQUESTS,
                30,
                "Prometheus scrapes the demo's requests",
            )
            # The same instance, now configured with this Prometheus (as an operator would).
            config = write_config(
                tmp_path,
                database_url=f"sqlite:///{tmp_path / 'demo.sqlite3'}",
                store_url=f"sqlite:///{tmp_path / 'counters.sqlite3'}",
                prometheus={"url": url, "window": "1h", "services": {"demo": "web"}},
            )
            ping = UsagePing.from_config(config)
            ping.counters = dict(demo_counters(ping.store))
            payload = ping.build()
    assert payload is not None
    block = payload["topology"]
    assert block["failures"] == {}, block["failures"]
    assert block["application_requests_per_hour"] > 0
    assert 0 < block["query_apdex_weekly_average"] <= 1
    (node_block,) = block["nodes"]
    services = {s["name"]: s for s in node_block["node_services"]}
    assert services["web"]["process_count"] == 1
    assert services["web"]["server"] == "uvicorn"
    assert all(m["key_path"] != "topology" or "error" not in m for m in payload["meta"]["metrics"])
