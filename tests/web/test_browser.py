"""The admin page in a real browser: Debian's Chromium, driven by Playwright, against the host
app served by uvicorn on loopback."""

from __future__ import annotations

from typing import Any

from tests.browser import Watched
from tests.web.conftest import Host
from tests.web.host import USERS
from tests.web.test_admin import PAGE, deliver

# What the chart element holds once Plotly has drawn it, read from the element itself.
_PLOT = """
() => {
  const el = document.getElementById('devops-chart');
  return {
    plotted: el.classList.contains('js-plotly-plot'),
    svg: el.querySelectorAll('svg.main-svg').length,
    bars: el.querySelectorAll('g.point').length,
    traces: (el.data || []).map((t) => ({name: t.name, x: t.x, y: t.y})),
  };
}
"""


def test_the_admin_page_draws_the_devops_chart(host: Host, watched_page: Watched) -> None:
    """Signed in as an administrator, the page draws instance vs leader per feature with the
    Plotly served by the router, and the console and network report nothing wrong."""
    deliver(host)
    page = watched_page.page
    login = page.request.post(
        f"{host.url}/login", form={"username": "root", "password": USERS["root"].password}
    )
    assert login.status == 200
    page.goto(f"{host.url}{PAGE}")
    page.wait_for_selector("#devops-chart.js-plotly-plot svg.main-svg", timeout=15_000)
    plot: dict[str, Any] = page.evaluate(_PLOT)
    assert plot["plotted"]
    assert plot["svg"] >= 1
    assert plot["bars"] == 6  # three features, two bars each
    assert [t["name"] for t in plot["traces"]] == ["This instance", "Leader"]
    assert plot["traces"][0]["y"] == [7.5, 4.75, 3]
    assert page.locator("#devops-score").inner_text() == "62.5 %"
    watched_page.screenshot("web-admin-usage-statistics")
    assert watched_page.problems == []
