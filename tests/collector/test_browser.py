"""The dashboards in a real browser: Debian's Chromium, driven by Playwright, against the
service served by uvicorn on loopback (PostgreSQL and SQLite).

An operator logs in through the form, opens every page with data and the upload page; on each,
every chart div must have become a Plotly plot holding data with points to draw, the console
and the network must report nothing wrong, and a screenshot is saved under artifacts/browser/.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.browser import Watched
from tests.collector.conftest import SMALL_CARD, ping
from tests.collector.test_auth import OPERATORS, PASSWORD
from tests.collector.test_dashboards import NOW, PAGES, dataset, seed
from tests.serving import serve
from usage_ping.collector.app import create_app
from usage_ping.collector.settings import ServiceSettings
from usage_ping.collector.storage import pings

pytestmark = pytest.mark.dialects("postgresql", "sqlite")

# What every chart div holds once Plotly has drawn it: the number of traces, and how many of
# them have values to draw (y, values or z), read from the plot element itself.
_PLOTS = """
() => Array.from(document.querySelectorAll('[data-chart]')).map((el) => ({
  key: el.dataset.chart,
  plotted: el.classList.contains('js-plotly-plot'),
  svg: el.querySelectorAll('svg.main-svg').length,
  traces: Array.isArray(el.data) ? el.data.length : 0,
  withPoints: Array.isArray(el.data)
    ? el.data.filter((t) => ['y', 'values', 'z'].some((a) => Array.isArray(t[a])
        && t[a].flat().some((v) => v !== null && v !== undefined))).length
    : 0,
}))
"""


@pytest.fixture
def served(engine: sa.Engine) -> Iterator[str]:
    """The service with one operator and the dashboards' dataset, its clock at NOW, served by
    uvicorn in a thread; yields its base URL."""
    settings = ServiceSettings(
        score=SMALL_CARD,
        ingest_per_minute=10_000,
        secret_key="a-browser-test-secret-key-of-some-length",
        operators=OPERATORS,
    )
    app = create_app(settings, engine=engine)
    app.state.dashboards.clock = lambda: NOW
    seed(TestClient(app), engine, dataset())
    with serve(app) as url:
        yield url


def log_in(watched: Watched, base: str) -> None:
    """Open a dashboard page, get sent to the login form, fill it in and land on the page."""
    page = watched.page
    page.goto(f"{base}/dashboard/metrics/qa")
    assert "/login" in page.url
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("form[action='/login'] button[type=submit], form[action='/login'] button")
    assert page.url == f"{base}/dashboard/metrics/qa"


def plots(watched: Watched) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = watched.page.evaluate(_PLOTS)
    return found


def test_an_operator_sees_every_page_with_its_charts_drawn(
    served: str, watched_page: Watched, dialect: str
) -> None:
    """Each page of the dashboards: 200, each chart a drawn Plotly plot with points, no console
    error, no failed request; a screenshot of each."""
    log_in(watched_page, served)
    page = watched_page.page
    for path, expected in PAGES.items():
        response = page.goto(f"{served}{path}")
        assert response is not None
        assert response.status == 200, path
        page.wait_for_load_state("load")
        drawn = plots(watched_page)
        assert [d["key"] for d in drawn] == expected, path
        for chart in drawn:
            assert chart["plotted"], (path, chart)
            assert chart["svg"] >= 1, (path, chart)
            assert chart["traces"] >= 1, (path, chart)
            assert chart["withPoints"] >= 1, (path, chart)
        watched_page.screenshot(f"{dialect}-{path.strip('/').replace('/', '-') or 'root'}")
        assert watched_page.problems == [], path
    # The links work too: from the list to an instance, from QA to a metric's errors.
    page.goto(f"{served}/dashboard/instances")
    with page.expect_navigation():
        page.click("a[href^='/dashboard/instances/inst-a']")
    assert page.url.startswith(f"{served}/dashboard/instances/inst-a")
    assert len(plots(watched_page)) == 3
    page.goto(f"{served}/dashboard/metrics/qa")
    with page.expect_navigation():
        page.click("a[href^='/dashboard/metrics/qa/counts_monthly.deployments']")
    assert "MetricTimeoutError: over 60 s" in page.content()
    assert watched_page.problems == []


def test_the_explorer_form_picks_a_key_path(served: str, watched_page: Watched) -> None:
    """Typing a key path into the explorer's form draws its distribution and trend."""
    log_in(watched_page, served)
    page = watched_page.page
    page.goto(f"{served}/dashboard/metrics/explorer")
    assert plots(watched_page) == []
    page.fill("input[name=key_path]", "counts_monthly.notes")
    with page.expect_navigation():
        page.press("input[name=key_path]", "Enter")
    drawn = plots(watched_page)
    assert [d["key"] for d in drawn] == ["distribution", "trend"]
    assert all(d["withPoints"] >= 1 for d in drawn)
    watched_page.screenshot("explorer-counts_monthly.notes")
    assert watched_page.problems == []


def test_an_air_gapped_payload_uploaded_through_the_page_is_stored(
    served: str, watched_page: Watched, engine: sa.Engine, tmp_path: Path
) -> None:
    """The upload page takes an exported payload file; the service stores it and the page says
    so, with the score and a link to the instance; a second upload is a resend; a file that is
    not JSON is refused with the reason."""
    exported = tmp_path / "payload.json"
    exported.write_text(json.dumps(ping("air-gapped-1", days_ago=1)))
    page = watched_page.page
    page.goto(f"{served}/upload")
    watched_page.screenshot("upload")

    def upload(path: Path) -> str:
        page.set_input_files("input[type=file]", str(path))
        with page.expect_navigation():
            page.click("button[type=submit]")
        return page.inner_text("body")

    assert "Stored: ping 6 of instance air-gapped-1, DevOps score" in upload(exported)
    assert page.get_attribute("[role=status] a", "href") == "/dashboard/instances/air-gapped-1"
    watched_page.screenshot("upload-stored")
    assert watched_page.problems == []
    assert "Already stored (a resend): ping 6" in upload(exported)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert "Not stored: the file is not JSON" in upload(broken)
    # The refusal is a 400 (the page with the reason); the browser reports it, nothing else.
    assert len(watched_page.problems) == 2
    assert all("400" in problem and "/upload" in problem for problem in watched_page.problems)
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(pings.c.source).where(pings.c.uuid == "air-gapped-1")
        ).scalars()
        assert list(stored) == ["upload"]
