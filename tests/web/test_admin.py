"""The "Usage statistics" admin page through real HTTP: an administrator's session, forms that
carry the host's CSRF token, and the instance's state read back from its database."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.web.conftest import NOW, Host, HostFactory
from tests.web.host import signed_in
from usage_ping.payload.serialize import to_json
from usage_ping.web.assets import asset

PAGE = "/admin/usage"

CONV_INDEX = {
    "usage_data_id": 7,
    "leader_issues": 9.5,
    "instance_issues": 4.75,
    "percentage_issues": 50.0,
    "leader_merge_requests": 3.0,
    "instance_merge_requests": 3.0,
    "percentage_merge_requests": 100.0,
    "leader_ci_pipelines": 20.0,
    "instance_ci_pipelines": 7.5,
    "percentage_ci_pipelines": 37.5,
}
"""A central service's answer: three features, score (50 + 100 + 37.5) / 3 = 62.5 %."""


@pytest.fixture
def admin(host: Host) -> Iterator[httpx.Client]:
    """The administrator's browser: a session, and forms that carry the CSRF token themselves."""
    with signed_in(host.url, "root", csrf_header=False) as client:
        yield client


def form_token(page: httpx.Response) -> str:
    """The CSRF token the page put into its forms."""
    tokens = {str(t) for t in re.findall(r'name="csrf_token" value="([^"]+)"', page.text)}
    assert len(tokens) == 1, tokens
    return tokens.pop()


def without_timings(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload less what differs from one build to the next (how long things took)."""
    copy = json.loads(to_json(payload))
    meta = copy["meta"]
    meta.pop("duration_s")
    for entry in meta["metrics"]:
        entry.pop("duration_ms")
    return dict(copy)


def deliver(host: Host, conv_index: dict[str, Any] | None = None) -> int:
    """An outbox row as a delivery leaves it: sent, with the service's answer stored."""
    payload = {"uuid": host.ping.state.uuid, "recorded_at": "2026-03-02T10:00:00Z", "counts": {}}
    row = host.ping.outbox.add(payload)
    answer = {"conv_index": conv_index or CONV_INDEX}
    host.ping.outbox.mark_sent(row.id, usage_data_id=7, response=answer, attempts=1)
    return row.id


# -- who may see it -------------------------------------------------------------------------------


@pytest.mark.parametrize("username", [None, "alice"])
def test_only_administrators_see_or_change_anything(host: Host, username: str | None) -> None:
    """Signed out or not an administrator: 403 for the page, the previews and every form."""
    with signed_in(host.url, username) as client:
        for method, path in (
            ("GET", PAGE),
            ("GET", f"{PAGE}/preview"),
            ("GET", f"{PAGE}/preview.json"),
            ("POST", f"{PAGE}/enabled"),
            ("POST", f"{PAGE}/categories"),
            ("POST", f"{PAGE}/download"),
        ):
            response = client.request(method, path, data={"csrf_token": "x"})
            assert response.status_code == 403, (method, path)
            assert "Only administrators" in response.text
    assert host.ping.enabled
    assert host.ping.outbox.latest() is None


def test_a_form_without_the_csrf_token_changes_nothing(host: Host, admin: httpx.Client) -> None:
    """An administrator's session is not enough for a POST: no token or a wrong one is 403."""
    for form in ({}, {"csrf_token": "forged"}):
        response = admin.post(f"{PAGE}/enabled", data=form)
        assert response.status_code == 403
        assert "expired" in response.text
    assert admin.post(f"{PAGE}/download", data={"csrf_token": "forged"}).status_code == 403
    assert host.ping.enabled
    assert host.ping.outbox.latest() is None


# -- the page -------------------------------------------------------------------------------------


def test_the_page_of_a_new_instance(host: Host, admin: httpx.Client) -> None:
    """Switch on, every category sent, nothing built or sent yet, the next weekly slot."""
    page = admin.get(PAGE)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert re.search(r'id="usage-ping-enabled"\s+checked', page.text)
    for category in ("standard", "subscription", "operational", "optional"):
        assert re.search(rf'value="{category}"\s+checked', page.text)
    assert re.search(r'id="last-built">\s*never', page.text)
    assert re.search(r'id="last-sent">\s*never', page.text)
    slot = host.ping.slot().describe()
    assert f"({slot}, derived from the instance uuid)" in page.text
    assert "No DevOps report yet" in page.text
    assert "plotly.min.js" not in page.text  # no chart, no script
    assert host.ping.state.uuid in page.text


def test_turning_usage_ping_off_and_on_again(host: Host, admin: httpx.Client) -> None:
    """The checkbox form: unchecked turns it off (and the page says so), checked turns it on."""
    token = form_token(admin.get(PAGE))
    off = admin.post(f"{PAGE}/enabled", data={"csrf_token": token})
    assert off.status_code == 303
    assert off.headers["location"] == f"{PAGE}?saved=disabled"
    assert not host.ping.enabled
    page = admin.get(off.headers["location"])
    assert "Usage ping is off: nothing is built, sent or counted." in page.text
    assert not re.search(r'id="usage-ping-enabled"\s+checked', page.text)
    assert "not scheduled: usage ping is off" in page.text
    assert "Download payload" not in page.text

    on = admin.post(f"{PAGE}/enabled", data={"csrf_token": form_token(page), "enabled": "true"})
    assert on.status_code == 303
    assert host.ping.enabled
    assert "Usage ping is on." in admin.get(on.headers["location"]).text


def test_choosing_the_data_categories(host: Host, admin: httpx.Client) -> None:
    """The categories form saves the ticked ones; an unknown one is refused with 400."""
    token = form_token(admin.get(PAGE))
    saved = admin.post(
        f"{PAGE}/categories",
        data={"csrf_token": token, "categories": ["standard", "operational"]},
    )
    assert saved.status_code == 303
    assert host.ping.state.categories == {"standard", "operational"}
    page = admin.get(saved.headers["location"])
    assert re.search(r'value="operational"\s+checked', page.text)
    assert not re.search(r'value="optional"\s+checked', page.text)
    refused = admin.post(
        f"{PAGE}/categories", data={"csrf_token": token, "categories": ["standard", "secret"]}
    )
    assert refused.status_code == 400
    assert "unknown data categories secret" in refused.text
    assert host.ping.state.categories == {"standard", "operational"}


def test_locked_off_in_the_configuration(make_host: HostFactory) -> None:
    """``enabled: false`` in the file: the switch is disabled and explained, and neither a
    forged form, a preview nor a download can get round it."""
    host = make_host(extra_config="enabled: false\n")
    with signed_in(host.url, "root", csrf_header=False) as admin:
        page = admin.get(PAGE)
        assert page.status_code == 200
        assert "<fieldset disabled>" in page.text
        assert re.search(
            r'id="usage-ping-enabled"\s+disabled aria-describedby="locked-off"', page.text
        )
        assert f"locked off in the configuration file <code>{host.config}</code>" in page.text
        forced = admin.post(
            f"{PAGE}/enabled", data={"csrf_token": form_token(page), "enabled": "true"}
        )
        assert forced.status_code == 409
        assert "locked off" in forced.text
        assert not host.ping.enabled
        preview = admin.get(f"{PAGE}/preview")
        assert preview.status_code == 409
        assert "locked off" in preview.text
        assert admin.get(f"{PAGE}/preview.json").status_code == 409
        download = admin.post(f"{PAGE}/download", data={"csrf_token": form_token(page)})
        assert download.status_code == 409
    assert host.ping.outbox.latest() is None


# -- preview and download -------------------------------------------------------------------------


@pytest.mark.swallows  # the instance has a metric on a missing table, sent as -1
def test_the_preview_is_the_payload_build_makes(host: Host, admin: httpx.Client) -> None:
    """preview.json is the JSON ``build()`` makes, and the preview page shows it and the time
    the build took; nothing is stored in the outbox."""
    raw = admin.get(f"{PAGE}/preview.json")
    assert raw.status_code == 200
    assert raw.headers["content-type"] == "application/json"
    assert raw.headers["server-timing"].startswith("build;dur=")
    built = host.ping.build()
    assert built is not None
    assert without_timings(raw.json()) == without_timings(built)
    assert raw.json()["recorded_at"] == NOW.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    page = admin.get(f"{PAGE}/preview")
    assert page.status_code == 200
    assert re.search(r'id="build-time">\d+\.\d\d s<', page.text)
    assert "1 metric failed" in page.text
    shown = re.search(r'<pre id="payload"[^>]*>(.*)</pre>', page.text, re.S)
    assert shown is not None
    text = shown.group(1).replace("&#34;", '"').replace("&quot;", '"').replace("&amp;", "&")
    assert without_timings(json.loads(text)) == without_timings(built)
    assert host.ping.outbox.latest() is None


@pytest.mark.swallows
def test_download_is_the_exported_file(host: Host, admin: httpx.Client) -> None:
    """A JSON attachment, byte for byte the outbox row ``usage-ping export`` writes, which is
    then marked exported (not sent again)."""
    token = form_token(admin.get(PAGE))
    response = admin.post(f"{PAGE}/download", data={"csrf_token": token})
    assert response.status_code == 200
    stamp = NOW.strftime("%Y%m%d-%H%M%S")
    assert response.headers["content-disposition"] == (
        f'attachment; filename="usage-ping-{stamp}.json"'
    )
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    row = host.ping.outbox.latest()
    assert row is not None
    assert response.content == row.body
    assert row.exported_at is not None
    assert not row.pending
    payload = response.json()
    assert payload["uuid"] == host.ping.state.uuid
    assert payload["counts"]["issues"] == 30


# -- delivery and the DevOps report ---------------------------------------------------------------


def test_the_devops_report_from_the_last_delivery(host: Host, admin: httpx.Client) -> None:
    """Score, a row per feature and the figure's data come from the stored response."""
    deliver(host)
    page = admin.get(PAGE)
    assert page.status_code == 200
    assert re.search(r'id="devops-score">62\.5 %<', page.text)
    assert re.search(
        r'id="last-sent">\s*\d{4}-\d\d-\d\d \d\d:\d\d UTC \(usage data id 7\)', page.text
    )
    assert '<th scope="row">CI pipelines</th><td>7.5</td><td>20</td><td>37.5 %</td>' in page.text
    assert '<th scope="row">Issues</th><td>4.75</td><td>9.5</td><td>50.0 %</td>' in page.text
    found = re.search(
        r'<script type="application/json" id="devops-chart-figure">(.*?)</script>', page.text
    )
    assert found is not None
    figure = json.loads(found.group(1))
    instance, leader = figure["data"]
    assert instance["x"] == ["CI pipelines", "Issues", "Merge requests"]
    assert instance["y"] == [7.5, 4.75, 3.0]
    assert leader["y"] == [20.0, 9.5, 3.0]
    assert f'src="{PAGE}/static/plotly.min.js?v=' in page.text


def test_plotly_is_served_from_the_installed_package(host: Host, admin: httpx.Client) -> None:
    """plotly.min.js under the page's prefix, with an ETag (304 when unchanged) and gzip."""
    plotly = asset("plotly.min.js")
    assert plotly is not None
    response = httpx.get(f"{host.url}{PAGE}/static/plotly.min.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.headers["content-encoding"] == "gzip"
    assert response.content == plotly.body
    assert b"plotly.js" in response.content[:2000]
    again = httpx.get(
        f"{host.url}{PAGE}/static/plotly.min.js",
        headers={"If-None-Match": response.headers["etag"]},
    )
    assert again.status_code == 304
    assert httpx.get(f"{host.url}{PAGE}/static/secrets.txt").status_code == 404
