"""The main job end to end, on embedded defaults: seed → track → build → send → the central
service stores the ping and answers with a score → the demo's admin page shows it (in Chromium).

Everything is real: the SQLite databases and counter store, the central service and the demo
platform served by uvicorn on loopback, the official Snowplow trackers (Python and browser)
sending to the service's collector.
"""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.browser import Watched
from tests.serving import free_port, serve
from usage_ping import tracking
from usage_ping.demo.app import ADMIN_PATH, create_demo_app
from usage_ping.demo.run import DemoRun, add_arguments, prepare
from usage_ping.demo.seed import DEMO_PASSWORD


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[DemoRun, str, str]]:
    """``usage-ping demo`` up to the score, then the demo platform served; yields the run, the
    demo's URL and what the run printed."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    port = free_port()
    workdir, service_port = str(tmp_path / "demo"), str(free_port())
    args = parser.parse_args(
        ["--workdir", workdir, "--port", str(port), "--service-port", service_port]
    )
    printed = io.StringIO()
    from rich.console import Console

    run = prepare(args, Console(file=printed, width=120))
    app = create_demo_app(run.ping, secret_key="k" * 32, service_url=run.service_url)
    try:
        with serve(app, port) as url:
            yield run, url, printed.getvalue()
    finally:
        run.stop()
        tracking.configure(enabled=False)


def test_the_main_job_sends_the_ping_and_the_admin_page_shows_the_score(
    demo: tuple[DemoRun, str, str], watched_page: Watched
) -> None:
    run, url, printed = demo
    # The run printed every step and the score table.
    for step in ("1.", "2. seeded", "3. a week of simulated events", "4. central service up"):
        assert step in printed, printed
    assert "(0 failed)" in printed
    assert run.score is not None
    assert f"DevOps score: {run.score:.1f} %" in printed
    payload = json.loads(run.payload_path.read_text())
    assert len(payload["meta"]["metrics"]) >= 120

    # The central service stored the ping, flat, with the score it answered.
    service = sa.create_engine(f"sqlite:///{run.payload_path.parent / 'service.sqlite3'}")
    with service.connect() as conn:
        uuid, score = conn.execute(sa.text("SELECT uuid, score FROM pings")).one()
        flat = conn.execute(sa.text("SELECT count(*) FROM ping_metrics")).scalar_one()
    service.dispose()
    assert uuid == payload["uuid"]
    assert score == pytest.approx(run.score)
    assert flat >= 120

    # The administrator logs in to the demo platform and opens the admin page.
    page = watched_page.page
    page.goto(f"{url}{ADMIN_PATH}")
    page.fill("input[name=username]", "root")
    page.fill("input[name=password]", DEMO_PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.url == f"{url}{ADMIN_PATH}"
    body = page.inner_text("body")
    assert f"{run.score:.1f} %" in body
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
        ".some((el) => Array.isArray(el.data) && el.data.length > 0)"
    )
    watched_page.screenshot("demo-admin-usage")

    # A developer's day: open a project, create an issue, use a client-side feature.
    page.goto(f"{url}/")
    with page.expect_navigation():
        page.click("a[data-track-label=project]")
    page.fill("input[name=title]", "Found in the end-to-end test")
    with page.expect_navigation():
        page.click("button[data-track-label=create_issue]")
    assert "Found in the end-to-end test" in page.inner_text("h1")
    page.go_back()
    page.click("#search")
    page.wait_for_function("() => document.getElementById('counted').textContent !== ''")
    assert page.inner_text("#counted") == "search counted"
    watched_page.screenshot("demo-project")
    # A click that navigates may cancel its own tracking request (net::ERR_ABORTED); the browser
    # tracker keeps the event in its local queue and sends it from the next page, which is
    # checked below. Nothing else may go wrong.
    aborted = [p for p in watched_page.problems if "snowplow/tp2 (net::ERR_ABORTED)" in p]
    assert [p for p in watched_page.problems if p not in aborted] == []
    page.goto(f"{url}/")  # one more page: whatever was queued is sent from here
    page.wait_for_load_state("networkidle")
    assert tracking.flush(5.0)
    good = httpx.get(f"{run.service_url}/micro/good", timeout=10).json()
    labels = {
        (e["event"].get("se_action"), e["event"].get("se_label"))
        for e in good
        if e["event"].get("event") == "struct"
    }
    assert ("click_button", "create_issue") in labels  # the browser's click
    assert ("create", None) in labels  # the backend's event of the same action

    # The demo exports its requests for Prometheus.
    metrics = httpx.get(f"{url}/metrics").text
    assert 'http_requests_total{handler="/projects/{project_id}/issues"' in metrics
