"""The dashboards on PostgreSQL and SQLite: every page with data, its charts and its numbers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.collector.conftest import SMALL_CARD, ping
from tests.collector.test_auth import OPERATORS, login
from usage_ping.collector.dashboards.explorer import histogram, load_exploration
from usage_ping.collector.dashboards.overview import load_overview
from usage_ping.collector.dashboards.quality import load_metric_report, load_quality
from usage_ping.collector.dashboards.weeks import GRACE, ClosedWeeks, Codec, Weeks, first_ping_id
from usage_ping.collector.settings import ServiceSettings
from usage_ping.collector.storage import dashboard_weeks, instances, migrate, pings

pytestmark = pytest.mark.dialects("postgresql", "sqlite")

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
"""The dashboards' clock in these tests: a Saturday of ISO week 2026-W47 (Monday 16 Nov)."""

EVIL = "<script>alert('x')</script>"

B_METRICS = {"issues": 10, "notes": 50, "merge_requests": 5, "deployments": 3}
B_META = {"metrics": [{"key_path": "counts.issues", "duration_ms": 10.0}]}


def dataset() -> list[dict[str, Any]]:
    """Pings of two instances (not sent in the order they were recorded).

    - ``inst-a`` (16.2.0, omnibus-gitlab, EE): days 0, 7 and 70 before NOW; deployments fail (-1)
      with a timeout in ``meta`` each time; 1200 issues.
    - ``inst-b`` (16.3.0, docker, CE): days 7 and 0; deployments 3; ``counts.estimate`` -2 on day
      0; 5 then 7 issues; only counts.issues timed in ``meta`` (10 ms).
    """
    return [
        ping("inst-a", days_ago=0),
        ping("inst-a", days_ago=7),
        ping("inst-a", days_ago=70),
        ping(
            "inst-b",
            days_ago=7,
            version="16.3.0",
            installation_type="docker",
            edition="CE",
            counts={"issues": 5},
            counts_monthly=B_METRICS,
            meta=B_META,
        ),
        ping(
            "inst-b",
            days_ago=0,
            version="16.3.0",
            installation_type="docker",
            edition="CE",
            counts={"issues": 7, "estimate": -2},
            counts_monthly=B_METRICS,
            meta=B_META,
        ),
    ]


def seed(client: TestClient, engine: sa.Engine, documents: list[dict[str, Any]]) -> None:
    """Send the pings, then date their arrival (and the instances' last_seen) one hour after
    their recording."""
    for document in documents:
        assert client.post("/usage_data", json=document).status_code == 201
    with engine.begin() as conn:
        last_seen: dict[str, datetime] = {}
        for row in conn.execute(sa.select(pings.c.id, pings.c.uuid, pings.c.recorded_at)).all():
            received = row.recorded_at + timedelta(hours=1)
            conn.execute(pings.update().where(pings.c.id == row.id).values(received_at=received))
            last_seen[row.uuid] = max(received, last_seen.get(row.uuid, received))
        for uuid, moment in last_seen.items():
            conn.execute(
                instances.update().where(instances.c.uuid == uuid).values(last_seen=moment)
            )


@pytest.fixture
def service_settings() -> ServiceSettings:
    """The test service with one operator (overrides the collector conftest's)."""
    return ServiceSettings(
        score=SMALL_CARD,
        ingest_per_minute=10_000,
        secret_key="a-test-secret-key-of-some-length",
        operators=OPERATORS,
    )


@pytest.fixture
def dashboard(client: TestClient, engine: sa.Engine) -> TestClient:
    """A logged-in client on the seeded service, its clock fixed at NOW."""
    client.app.state.dashboards.clock = lambda: NOW  # type: ignore[attr-defined]
    seed(client, engine, dataset())
    assert login(client).status_code == 303
    return client


class _Page(HTMLParser):
    """The parts of a page the tests look at: charts, their figures, scripts and links."""

    def __init__(self) -> None:
        super().__init__()
        self.chart_divs: list[str] = []
        self.figures: dict[str, dict[str, Any]] = {}
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self.raw_figures: list[str] = []
        self._in_script: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if "data-chart" in found:
            self.chart_divs.append(found["data-chart"] or "")
        if tag == "script":
            self._in_script = found
            if found.get("src"):
                self.urls.append(found["src"] or "")
        if tag == "link" and found.get("href"):
            self.urls.append(found["href"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = None

    def handle_data(self, data: str) -> None:
        script = self._in_script
        if script is None:
            return
        if script.get("type") == "application/json":
            key = (script.get("id") or "").removeprefix("chart-").removesuffix("-figure")
            self.figures[key] = json.loads(data)
            self.raw_figures.append(data)
        else:
            self.inline_scripts.append(data)


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def points(figure: dict[str, Any]) -> list[Any]:
    """Every drawn value of a figure (y, values or z of its traces), None left out."""
    found: list[Any] = []
    for trace in figure["data"]:
        for axis in ("y", "values", "z"):
            for value in trace.get(axis) or []:
                if isinstance(value, list):
                    found.extend(v for v in value if v is not None)
                elif value is not None:
                    found.append(value)
    return found


PAGES = {
    "/dashboard": [
        "instances-per-week",
        "pings-per-week",
        "version-adoption",
        "editions",
        "installation-types",
    ],
    "/dashboard/instances": [],
    "/dashboard/instances?q=inst-b": [],
    "/dashboard/instances/inst-a": ["score-over-time", "features", "metric-trend"],
    "/dashboard/instances/inst-b?metric=counts.issues": [
        "score-over-time",
        "features",
        "metric-trend",
    ],
    "/dashboard/metrics/qa": [
        "failures-by-version",
        "failures-by-installation-type",
        "slowest-metrics",
    ],
    "/dashboard/metrics/qa/counts_monthly.deployments": [
        "metric-failures-by-version",
        "metric-failures-by-installation-type",
    ],
    "/dashboard/metrics/explorer": [],
    "/dashboard/metrics/explorer?key_path=counts.issues": ["distribution", "trend"],
}


def test_every_page_renders_its_charts_with_data(dashboard: TestClient) -> None:
    """200, the chart divs in order, each with a figure that has points to draw."""
    for path, expected in PAGES.items():
        response = dashboard.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        page = parse(response.text)
        assert page.chart_divs == expected, path
        assert set(page.figures) == set(expected), path
        for key, figure in page.figures.items():
            assert figure["data"], (path, key)
            assert points(figure), (path, key)
        for script in page.inline_scripts:
            assert "Plotly.newPlot" in script
        if expected:
            assert any("plotly.min.js" in url for url in page.urls), path


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard?weeks=520",
        "/dashboard/metrics/qa?weeks=520",
        "/dashboard/metrics/explorer?key_path=counts.issues&weeks=520",
        "/dashboard?weeks=not-a-number",
        "/dashboard/metrics/qa?weeks=0",
        "/dashboard/instances?page=-3",
        "/dashboard/instances?page=99999999999999999999",
        "/dashboard/instances/inst-a?ping=99999999999999999999999",
        "/dashboard/instances/inst-a?ping=abc&metric=",
        "/dashboard/metrics/explorer?key_path=",
        "/dashboard/metrics/explorer?key_path=counts.%00issues",
        "/dashboard/metrics/qa/counts.%00issues",
        "/dashboard/instances?q=inst%00",
        "/dashboard/instances/inst-a?metric=counts.%00issues",
    ],
)
def test_odd_parameters_still_give_a_page(dashboard: TestClient, path: str) -> None:
    """The longest window (ten years), bad numbers (the defaults instead) and NUL characters
    (which PostgreSQL text cannot hold) give a page, never a 500."""
    assert dashboard.get(path).status_code == 200
    assert dashboard.get("/dashboard/instances/inst%00-a").status_code == 200


def test_an_empty_key_path_leads_back_to_the_qa_list(dashboard: TestClient) -> None:
    """/dashboard/metrics/qa/ with nothing after it: the list of all metrics."""
    response = dashboard.get("/dashboard/metrics/qa/?weeks=4", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/metrics/qa?weeks=4"


def test_no_page_loads_anything_from_another_site(dashboard: TestClient) -> None:
    """Scripts and stylesheets come from this service: no http(s):// or // in src and href."""
    for path in [*PAGES, "/login"]:
        page = parse(dashboard.get(path).text)
        assert page.urls, path
        for url in page.urls:
            assert url.startswith("/"), (path, url)
            assert not url.startswith("//"), (path, url)
        for script in page.inline_scripts:
            assert "http://" not in script
            assert "https://" not in script


def test_the_overview_counts_instances_pings_and_versions(dashboard: TestClient) -> None:
    """Per ISO week: distinct instances, pings, and each version's share of the pings."""
    figures = parse(dashboard.get("/dashboard").text).figures
    instances_trace = figures["instances-per-week"]["data"][0]
    assert len(instances_trace["x"]) == 26
    assert instances_trace["x"][-1] == "2026-11-16"
    # weeks, oldest first: day 70 is ten weeks back; days 7 and 0 the last two weeks.
    assert instances_trace["y"][-1] == 2
    assert instances_trace["y"][-2] == 2
    assert instances_trace["y"][-11] == 1
    assert sum(instances_trace["y"]) == 5
    assert sum(figures["pings-per-week"]["data"][0]["y"]) == 5
    adoption = {t["name"]: t["y"] for t in figures["version-adoption"]["data"]}
    assert adoption["16.2.0"][-1] == 50.0
    assert adoption["16.3.0"][-1] == 50.0
    assert adoption["16.2.0"][-11] == 100.0
    assert adoption["16.3.0"][0] is None  # no ping that week
    editions = figures["editions"]["data"][0]
    assert dict(zip(editions["labels"], editions["values"], strict=True)) == {"EE": 1, "CE": 1}
    narrower = parse(dashboard.get("/dashboard?weeks=4").text).figures
    assert sum(narrower["pings-per-week"]["data"][0]["y"]) == 4


def test_qa_shares_are_failed_pings_over_the_pings_of_the_window(
    dashboard: TestClient, engine: sa.Engine
) -> None:
    """Deployments failed in 2 of the 4 pings of 8 weeks (50 %), 3 of 5 in 26 weeks (60 %)."""
    with engine.connect() as conn:
        quality = load_quality(conn, NOW, weeks=8)
        wider = load_quality(conn, NOW, weeks=26)
    assert quality.totals.pings == 4
    failures = {f.key_path: f for f in quality.failures}
    assert set(failures) == {"counts_monthly.deployments", "counts.estimate"}
    deployments = failures["counts_monthly.deployments"]
    assert quality.totals.share(deployments.failed) == 0.5
    assert deployments.codes == {-1.0: 2}
    assert dict(deployments.by_version) == {"16.2.0": 2}
    assert quality.totals.by_version == {"16.2.0": 2, "16.3.0": 2}
    assert dict(deployments.by_type) == {"omnibus-gitlab": 2}
    assert quality.totals.share(failures["counts.estimate"].failed) == 0.25
    assert failures["counts.estimate"].codes == {-2.0: 1}
    assert wider.totals.pings == 5
    wide = {f.key_path: f for f in wider.failures}["counts_monthly.deployments"]
    assert wider.totals.share(wide.failed) == 0.6
    slowest = dict(quality.slowest)
    assert next(iter(slowest)) == "counts_monthly.deployments"
    assert slowest["counts_monthly.deployments"].quantiles[0] == pytest.approx(60000.0)
    # counts.issues took 120.5 ms twice (inst-a) and 10 ms twice (inst-b).
    assert slowest["counts.issues"].mean == pytest.approx(65.25)
    assert slowest["counts.issues"].quantiles[0] == pytest.approx(120.5)
    assert slowest["counts.issues"].count == 4

    html = dashboard.get("/dashboard/metrics/qa").text
    assert 'data-key-path="counts_monthly.deployments"' in html
    assert "50.0 %" in html
    assert "16.2.0: 100.0 %" in html
    assert "omnibus-gitlab: 100.0 %" in html
    heatmap = parse(html).figures["failures-by-version"]["data"][0]
    row = heatmap["y"].index("counts_monthly.deployments")
    assert dict(zip(heatmap["x"], heatmap["z"][row], strict=True)) == {
        "16.2.0": 100.0,
        "16.3.0": 0.0,
    }
    assert "60.0 %" in dashboard.get("/dashboard/metrics/qa?weeks=26").text


def test_the_qa_drill_down_lists_the_errors_with_their_versions(dashboard: TestClient) -> None:
    """The meta error of deployments: twice in the window, from 16.2.0, with the failed pings."""
    html = dashboard.get("/dashboard/metrics/qa/counts_monthly.deployments").text
    assert "MetricTimeoutError: over 60 s" in html
    errors = html[html.index('id="errors"') :]
    cells = errors[: errors.index("</tr>", errors.index("<tbody>"))]
    assert '<td class="num">2</td>' in cells
    assert "<td>16.2.0</td>" in cells
    assert html.count('href="/dashboard/instances/inst-a?metric=counts_monthly.deployments') == 2
    figure = parse(html).figures["metric-failures-by-version"]["data"][0]
    assert dict(zip(figure["x"], figure["y"], strict=True)) == {"16.2.0": 100.0, "16.3.0": 0.0}
    nothing = dashboard.get("/dashboard/metrics/qa/counts.issues").text
    assert "No error reported for this metric" in nothing


def test_the_explorer_histogram_counts_each_instances_latest_value(
    dashboard: TestClient, client: TestClient, engine: sa.Engine
) -> None:
    """Latest issues: 1200 (inst-a), 7 (inst-b), 1200 (inst-c); inst-d failed and is left out."""
    seed(client, engine, [ping("inst-c", days_ago=14), ping("inst-d", counts={"issues": -1})])
    html = dashboard.get("/dashboard/metrics/explorer", params={"key_path": "counts.issues"}).text
    figures = parse(html).figures
    bars = figures["distribution"]["data"][0]
    assert dict(zip(bars["x"], bars["y"], strict=True)) == {"7": 1, "1200": 2}
    assert "of them failed it" in html
    trend = {t["name"]: t["y"] for t in figures["trend"]["data"]}
    # The last week: inst-a 1200, inst-b 7 (inst-d's -1 is a failure, not a value).
    assert trend["median"][-1] == pytest.approx(603.5)
    assert trend["90th percentile"][-1] == pytest.approx(7 + 0.9 * 1193)
    assert trend["median"][-2] == pytest.approx((1200 + 5) / 2)
    assert trend["median"][-3] == pytest.approx(1200)  # inst-c alone
    unknown = dashboard.get("/dashboard/metrics/explorer", params={"key_path": "no.such"}).text
    assert "No instance reported this key path" in unknown
    assert 'value="counts.issues"' in dashboard.get("/dashboard/metrics/explorer").text


def test_histograms_bin_many_distinct_values() -> None:
    """Past 20 distinct values the bars are ranges whose counts add up to the instances."""
    assert histogram([3.0, 1.0, 3.0]).counts == [1, 2]
    many = histogram([float(v) for v in range(100)])
    assert len(many.counts) == 8  # Sturges: ceil(log2(100)) + 1
    assert sum(many.counts) == 100
    assert many.labels[0].startswith("0 to ")
    assert histogram([]).counts == []


def test_the_instance_page_shows_history_score_features_trend_and_payload(
    dashboard: TestClient, engine: sa.Engine
) -> None:
    """The pings newest first, the score over time, leader vs instance, a trend, a payload."""
    html = dashboard.get("/dashboard/instances/inst-b", params={"metric": "counts.issues"}).text
    page = parse(html)
    trend = page.figures["metric-trend"]["data"][0]
    assert trend["y"] == [5.0, 7.0]
    score = page.figures["score-over-time"]["data"][0]
    assert len(score["y"]) == 2
    features = {t["name"]: t for t in page.figures["features"]["data"]}
    issues = features["this instance"]["x"].index("issues")
    assert features["this instance"]["y"][issues] == 1.0  # 10 issues / 10 active users
    assert features["leader"]["y"][issues] == 2.0  # the default leader (few instances)
    assert "How the DevOps score is computed" in html
    assert "90th percentile" in html
    with engine.connect() as conn:
        ids = (
            conn.execute(
                sa.select(pings.c.id).where(pings.c.uuid == "inst-b").order_by(pings.c.recorded_at)
            )
            .scalars()
            .all()
        )
    # the history table lists both pings, newest first, each with a link to its payload
    assert html.index(f"ping={ids[1]}#payload") < html.index(f"ping={ids[0]}#payload")
    older = dashboard.get("/dashboard/instances/inst-b", params={"ping": str(ids[0])}).text
    assert f"Payload of ping {ids[0]}" in older
    assert "&#34;issues&#34;: 5" in older  # pretty JSON, escaped
    # another instance's ping is not shown here
    other = dashboard.get("/dashboard/instances/inst-a", params={"ping": str(ids[0])}).text
    assert "No such ping of this instance" in other
    failing = parse(
        dashboard.get("/dashboard/instances/inst-a?metric=counts_monthly.deployments").text
    )
    marks = {t["name"]: t for t in failing.figures["metric-trend"]["data"]}
    assert len(marks["failed (-1/-2/-3)"]["x"]) == 3
    missing = dashboard.get("/dashboard/instances/no-such-instance")
    assert missing.status_code == 404


def test_the_instance_list_searches_and_pages(dashboard: TestClient, client: TestClient) -> None:
    """Search by a part of the uuid or hostname, any case; 50 per page, latest seen first."""
    html = dashboard.get("/dashboard/instances", params={"q": "INST-B"}).text
    assert "/dashboard/instances/inst-b" in html
    assert "/dashboard/instances/inst-a" not in html
    by_host = dashboard.get("/dashboard/instances", params={"q": "example.com"}).text
    assert "2 instances" in by_host
    assert "1 instance " in dashboard.get("/dashboard/instances", params={"q": "inst-a"}).text
    wildcard = dashboard.get("/dashboard/instances", params={"q": "%"}).text
    assert "0 instances" in wildcard
    for n in range(60):
        client.post("/usage_data", json=ping(f"bulk-{n:02d}"))
    first = dashboard.get("/dashboard/instances").text
    assert "page 1 of 2" in first
    assert first.count('href="/dashboard/instances/') == 50
    second = dashboard.get("/dashboard/instances", params={"page": "2"}).text
    assert second.count('href="/dashboard/instances/') == 12
    assert "page 2 of 2" in dashboard.get("/dashboard/instances?page=99").text


def test_text_from_pings_is_escaped_everywhere(
    dashboard: TestClient, client: TestClient, engine: sa.Engine
) -> None:
    """A hostname and a key path that are script tags show as text, in HTML and in chart JSON."""
    evil = ping(
        "inst-evil",
        hostname=EVIL,
        counts={EVIL: -1, "issues": 3},
        meta={"metrics": [{"key_path": f"counts.{EVIL}", "error": EVIL, "duration_ms": 5}]},
    )
    seed(client, engine, [evil])
    key = f"counts.{EVIL}"
    paths = [
        "/dashboard/instances",
        "/dashboard/instances/inst-evil",
        f"/dashboard/instances/inst-evil?metric={key}",
        "/dashboard/metrics/qa",
        "/dashboard/metrics/explorer",
    ]
    responses = [dashboard.get(path) for path in paths]
    responses.append(dashboard.get(f"/dashboard/metrics/qa/{key}"))
    responses.append(dashboard.get("/dashboard/metrics/explorer", params={"key_path": key}))
    for response in responses:
        assert response.status_code == 200, response.url
        assert "<script>alert" not in response.text, response.url
        assert "&lt;script&gt;alert" in response.text or "\\u003cscript" in response.text
        for raw in parse(response.text).raw_figures:  # nothing in chart JSON can end its script
            assert not {"<", ">", "&"} & set(raw)
    qa = responses[3].text
    assert "counts.&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in qa
    figure = parse(qa).figures["failures-by-version"]
    assert key in figure["data"][0]["y"]  # the JSON decodes back to the text itself
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</code></td>" in responses[-2].text


def test_plotly_is_served_from_the_package_as_javascript(dashboard: TestClient) -> None:
    """The installed plotly.min.js, with a JS content type, cacheable, gzip when accepted."""
    response = dashboard.get("/dashboard/static/plotly.min.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.headers["content-encoding"] == "gzip"
    assert "plotly.js" in response.text[:200]
    assert len(response.content) > 1_000_000
    etag = response.headers["etag"]
    again = dashboard.get("/dashboard/static/plotly.min.js", headers={"If-None-Match": etag})
    assert again.status_code == 304
    plain = dashboard.get(
        "/dashboard/static/plotly.min.js", headers={"Accept-Encoding": "identity"}
    )
    assert "content-encoding" not in plain.headers
    assert plain.content == response.content
    css = dashboard.get("/dashboard/static/dashboards.css")
    assert css.headers["content-type"].startswith("text/css")
    assert dashboard.get("/dashboard/static/../auth.py").status_code == 404
    assert dashboard.get("/dashboard/static/other.js").status_code == 404


def test_pages_are_not_cached_nor_framed(dashboard: TestClient) -> None:
    """Operator pages carry no-store and refuse to be framed by another site."""
    response = dashboard.get("/dashboard")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_dashboards_are_not_in_the_openapi_document(client: TestClient) -> None:
    """The OpenAPI document describes the API, not the HTML pages."""
    paths = client.get("/openapi.json").json()["paths"]
    assert not any(p.startswith(("/dashboard", "/login", "/logout")) for p in paths)


def test_weeks_are_iso_weeks_ending_with_the_current_one() -> None:
    """Mondays at 00:00 UTC, oldest first; a moment maps to its week; CASE buckets agree."""
    weeks = Weeks.ending(NOW, 3)
    assert weeks.labels == ["2026-11-02", "2026-11-09", "2026-11-16"]
    assert weeks.iso_label(2) == "2026-W47"
    assert weeks.index(datetime(2026, 11, 16, tzinfo=UTC)) == 2
    assert weeks.index(datetime(2026, 11, 15, 23, 59, tzinfo=UTC)) == 1
    assert weeks.index(datetime(2026, 11, 1, tzinfo=UTC)) is None
    new_year = Weeks.ending(datetime(2027, 1, 1, tzinfo=UTC), 2)
    assert [new_year.iso_label(k) for k in range(2)] == ["2026-W52", "2026-W53"]


def test_closed_weeks_are_computed_once_and_the_current_week_every_time() -> None:
    """The cache asks only for the weeks from the first one it lacks; final weeks are kept."""
    asked: list[list[str]] = []

    def compute(part: Weeks) -> list[str]:
        asked.append(part.labels)
        return [f"value of {label}" for label in part.labels]

    cache = ClosedWeeks()
    weeks = Weeks.ending(NOW, 3)
    assert cache.series("k", weeks, compute) == [f"value of {x}" for x in weeks.labels]
    assert cache.series("k", weeks, compute) == [f"value of {x}" for x in weeks.labels]
    assert asked == [weeks.labels, ["2026-11-16"]]
    wider = Weeks.ending(NOW, 4)  # an older week not seen yet: computed from there on
    cache.series("k", wider, compute)
    assert asked[-1] == wider.labels
    cache.series("other key", weeks, compute)
    assert asked[-1] == weeks.labels
    # Just after a week ended, it is not final yet (pings may still be committing).
    monday = datetime(2026, 11, 23, tzinfo=UTC)
    fresh = ClosedWeeks()
    early = Weeks.ending(monday + GRACE / 2, 2)
    fresh.series("k", early, compute)
    fresh.series("k", early, compute)
    assert asked[-1] == early.labels
    later = Weeks.ending(monday + GRACE, 2)
    fresh.series("k", later, compute)
    fresh.series("k", later, compute)
    assert asked[-1] == ["2026-11-23"]
    small = ClosedWeeks(max_entries=2)
    small.series("k", Weeks.ending(NOW, 4), compute)
    small.series("k", Weeks.ending(NOW, 4), compute)
    assert len(asked[-1]) == 4  # the oldest weeks were dropped, so all are computed again
    small.clear()


def test_a_new_ping_of_the_current_week_shows_at_once(
    dashboard: TestClient, client: TestClient, engine: sa.Engine
) -> None:
    """Past weeks come from the cache, the current week is counted on every load."""
    before = parse(dashboard.get("/dashboard").text).figures["pings-per-week"]["data"][0]["y"]
    seed(client, engine, [ping("inst-new", days_ago=0.25)])
    after = parse(dashboard.get("/dashboard").text).figures["pings-per-week"]["data"][0]["y"]
    assert after[-1] == before[-1] + 1
    assert after[:-1] == before[:-1]
    assert "5 pings received since" in dashboard.get("/dashboard/metrics/qa").text


TEXT = Codec[str](encode=lambda value: value, decode=str)


def test_closed_weeks_are_kept_in_the_database_for_every_worker(engine: sa.Engine) -> None:
    """Final weeks are stored once; another cache on the same database (another worker, or
    after a restart) reads them and computes only the current week; clear() forgets them."""
    migrate(engine)
    asked: list[list[str]] = []

    def compute(part: Weeks) -> list[str]:
        asked.append(part.labels)
        return [f"value of {label}" for label in part.labels]

    weeks = Weeks.ending(NOW, 4)
    expected = [f"value of {x}" for x in weeks.labels]
    assert ClosedWeeks(engine=engine).series(("trend", "k"), weeks, compute, TEXT) == expected
    worker = ClosedWeeks(engine=engine)
    assert worker.series(("trend", "k"), weeks, compute, TEXT) == expected
    assert asked == [weeks.labels, ["2026-11-16"]]
    with engine.connect() as conn:
        stored = conn.execute(sa.select(dashboard_weeks)).all()
    assert sorted(row.week_start for row in stored) == list(weeks.starts[:3])
    assert {row.series for row in stored} == {'["trend", "k"]'}
    assert ClosedWeeks(engine=engine).series("no codec", weeks, compute) == expected
    assert asked[-1] == weeks.labels  # without a codec, nothing is stored
    # A week that ended less than GRACE ago is not final: never stored.
    monday = datetime(2026, 11, 23, tzinfo=UTC)
    ClosedWeeks(engine=engine).series("early", Weeks.ending(monday + GRACE / 2, 2), compute, TEXT)
    ClosedWeeks(engine=engine).series("early", Weeks.ending(monday + GRACE / 2, 2), compute, TEXT)
    assert asked[-1] == ["2026-11-16", "2026-11-23"]
    worker.clear()
    ClosedWeeks(engine=engine).series(("trend", "k"), weeks, compute, TEXT)
    assert asked[-1] == weeks.labels


def test_stored_weeks_give_the_figures_counted_from_the_pings(
    dashboard: TestClient, engine: sa.Engine
) -> None:
    """Overview, metric QA and explorer figures read back from dashboard_weeks (by a fresh
    cache) equal those counted from the pings without any cache."""
    now = NOW + timedelta(days=14)  # the dataset's weeks have all ended

    def pages(cache: ClosedWeeks | None) -> list[Any]:
        with engine.connect() as conn:
            return [
                load_overview(conn, now, 26, cache=cache),
                load_quality(conn, now, 12, cache=cache),
                load_metric_report(conn, now, "counts_monthly.deployments", 12, cache=cache),
                load_exploration(conn, now, "counts.issues", 26, cache=cache),
            ]

    counted = pages(None)
    assert pages(ClosedWeeks(engine=engine)) == counted  # counted, then stored
    with engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(dashboard_weeks)).scalar()
    assert stored == 25 + 11 + 25  # the weeks that ended; the QA drill-down shares QA's
    assert pages(ClosedWeeks(engine=engine)) == counted  # read back
    assert counted[0].pings_total == 5
    assert counted[1].failures[0].failed == 2  # inst-a's deployments, days 0 and 7


def test_the_first_ping_id_of_a_window_is_the_smallest_received_since(
    dashboard: TestClient, engine: sa.Engine
) -> None:
    """min(id) over the pings received at or after the moment; None after the last one."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(pings.c.id, pings.c.received_at)).all()
        for row in rows:
            expected = min(r.id for r in rows if r.received_at >= row.received_at)
            assert first_ping_id(conn, row.received_at) == expected
        assert first_ping_id(conn, max(r.received_at for r in rows) + timedelta(seconds=1)) is None
