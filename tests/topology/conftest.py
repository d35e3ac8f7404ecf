"""The session's Prometheus stack: node_exporter, an instrumented app, and Prometheus scraping both.

The app's request series are created before Prometheus first scrapes it, then a known load is
sent, so that the rates Prometheus computes are rates of that load alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.serving import serve
from tests.topology.servers import (
    FAST_REQUESTS,
    SLOW_REQUESTS,
    Stack,
    fresh_metrics,
    make_app,
    node_exporter,
    prometheus,
    query_value,
    wait_for,
)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Prometheus, node_exporter and the app on loopback, with the load already scraped."""
    directory = tmp_path_factory.mktemp("prometheus")
    with serve(make_app(fresh_metrics())) as app, node_exporter(directory) as node:
        warm_up = ("/", "/items/0", "/slow")
        for path in warm_up:  # every series exists before the first scrape
            httpx.get(f"{app}{path}").raise_for_status()
        # "unmapped" scrapes node_exporter a second time under a job no service maps.
        jobs = {"node": node, "web": app, "unmapped": node}
        with prometheus(directory, jobs) as url:
            time.sleep(3)  # samples before the load
            with httpx.Client(base_url=app) as client:
                for i in range(FAST_REQUESTS):
                    client.get("/" if i % 2 else f"/items/{i}").raise_for_status()
                for _ in range(SLOW_REQUESTS):
                    client.get("/slow").raise_for_status()
            total = len(warm_up) + FAST_REQUESTS + SLOW_REQUESTS
            wait_for(
                lambda: query_value(url, 'sum(http_requests_total{job="web"})') == total,
                30,
                "Prometheus scrapes the load",
            )
            time.sleep(3)  # samples after the load
            yield Stack(url, node, app)
