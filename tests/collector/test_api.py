"""The BI API on PostgreSQL and SQLite: tokens, pages, filters, series and weekly aggregates."""

from __future__ import annotations

import base64
import json
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.collector.conftest import SMALL_CARD, ping
from usage_ping.collector.api import api_router, hash_token
from usage_ping.collector.app import create_app
from usage_ping.collector.settings import ServiceSettings
from usage_ping.collector.storage import dashboard_weeks, instances, pings

pytestmark = pytest.mark.dialects("postgresql", "sqlite")

TOKEN = "bi-token-0123456789"


def token_app(engine: sa.Engine, *tokens: str) -> FastAPI:
    """The whole service, accepting these API tokens."""
    settings = ServiceSettings(
        score=SMALL_CARD,
        ingest_per_minute=1_000_000,
        api_tokens=tuple(hash_token(t) for t in tokens),
    )
    return create_app(settings, engine=engine)


# (uuid, recorded_at, counts.issues, version, edition, installation_type), sent in this order: ping
# ids are not in recorded_at order. "b" at 00:30 +01:00 on Monday the 23rd is Sunday the 22nd in
# UTC: ISO week 47.
DATASET = [
    ("a", "2026-11-17T10:00:00Z", 50, "16.3.0", "EE", "omnibus-gitlab"),
    ("a", "2026-11-10T10:00:00Z", 10, "16.2.0", "EE", "omnibus-gitlab"),
    ("b", "2026-11-11T10:00:00Z", 20, "16.4.0", "CE", "docker"),
    ("eu/c", "2026-11-12T10:00:00Z", 40, "16.3.0", "EE", "helm"),
    ("a", "2026-11-14T10:00:00Z", 30, "16.2.0", "EE", "omnibus-gitlab"),
    ("b", "2026-11-23T00:30:00+01:00", 70, "16.4.0", "CE", "docker"),
    ("eu/c", "2026-11-23T00:00:00Z", 5, "16.3.0", "EE", "helm"),
]


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass
class Seeded:
    client: TestClient
    documents: dict[int, dict[str, Any]]
    responses: dict[int, dict[str, Any]]

    def get(self, url: str, **params: Any) -> Any:
        response = self.client.get(url, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def all_pages(self, url: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        for _ in range(100):
            page = self.get(url, **params, **({"cursor": cursor} if cursor else {}))
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items
        raise AssertionError("the pages never ended")


@pytest.fixture
def api(engine: sa.Engine) -> Iterator[Seeded]:
    """The service with the dataset stored, and a client sending a valid token."""
    with TestClient(
        token_app(engine, TOKEN), headers={"Authorization": f"Bearer {TOKEN}"}
    ) as client:
        documents, responses = {}, {}
        for uuid, recorded_at, issues, version, edition, installation in DATASET:
            document = ping(
                uuid=uuid,
                recorded_at=recorded_at,
                version=version,
                edition=edition,
                installation_type=installation,
                counts={"issues": issues},
            )
            answer = client.post("/usage_data", json=document)
            assert answer.status_code == 201
            ping_id = answer.json()["conv_index"]["usage_data_id"]
            documents[ping_id], responses[ping_id] = document, answer.json()
        yield Seeded(client, documents, responses)


def _ids(api: Seeded, *recorded: str) -> list[int]:
    by_time = {_utc(d["recorded_at"]): i for i, d in api.documents.items()}
    return [by_time[_utc(r)] for r in recorded]


# -- access ------------------------------------------------------------------------------------


def test_without_configured_tokens_the_api_says_how_to_turn_it_on(
    engine: sa.Engine, service_settings: ServiceSettings
) -> None:
    """No api_tokens: 403 for everyone, with the configuration to add."""
    with TestClient(create_app(service_settings, engine=engine)) as client:
        for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
            response = client.get("/api/v1/instances", headers=headers)
            assert response.status_code == 403
            assert "api_tokens" in response.json()["error"]
            assert "sha256sum" in response.json()["error"]


def test_a_valid_token_is_required(api: Seeded) -> None:
    """No token or an unknown one: 401 with WWW-Authenticate; the configured one: 200."""
    with TestClient(api.client.app) as anonymous:
        missing = anonymous.get("/api/v1/instances")
        assert missing.status_code == 401
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        assert "Authorization: Bearer" in missing.json()["error"]
        wrong = anonymous.get("/api/v1/pings/1", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert "invalid_token" in wrong.headers["WWW-Authenticate"]
        basic = anonymous.get("/api/v1/instances", headers={"Authorization": f"Basic {TOKEN}"})
        assert basic.status_code == 401
        # Refused before the parameters are looked at: no hint about what exists.
        assert anonymous.get("/api/v1/instances?limit=0").status_code == 401
    assert api.client.get("/api/v1/instances").status_code == 200


def test_tokens_can_come_from_a_function_read_on_each_request(engine: sa.Engine) -> None:
    """A callable lets tokens rotate without a restart."""
    valid: list[str] = []
    app = FastAPI()
    app.include_router(api_router(engine, ServiceSettings(), tokens=lambda: valid))
    create_app(ServiceSettings(), engine=engine)  # the tables
    with TestClient(app, headers={"Authorization": "Bearer t1"}) as client:
        assert client.get("/api/v1/instances").status_code == 403
        valid.append(hash_token("t1").upper())  # digests are compared case-insensitively
        assert client.get("/api/v1/instances").json() == {"items": [], "next_cursor": None}
        valid[:] = [hash_token("t2")]
        assert client.get("/api/v1/instances").status_code == 401


def test_a_token_instead_of_its_digest_is_refused_at_start(engine: sa.Engine) -> None:
    """Configuring the token itself (not its SHA-256 digest) fails loudly."""
    with pytest.raises(ValueError, match="not a SHA-256 hex digest"):
        api_router(engine, ServiceSettings(), tokens=["my-plain-token"])


# -- instances ---------------------------------------------------------------------------------


def test_instances_come_in_pages_by_uuid(api: Seeded) -> None:
    """limit=2: two pages that together hold every instance once, in uuid order."""
    first = api.get("/api/v1/instances", limit=2)
    assert [i["uuid"] for i in first["items"]] == ["a", "b"]
    assert first["next_cursor"] is not None
    second = api.get("/api/v1/instances", limit=2, cursor=first["next_cursor"])
    assert [i["uuid"] for i in second["items"]] == ["eu/c"]
    assert second["next_cursor"] is None
    assert api.get("/api/v1/instances", limit=3)["next_cursor"] is None


def test_an_instance_has_the_facts_of_its_latest_recorded_ping(api: Seeded) -> None:
    """Pings of "a" arrived newest first: the facts and latest ping stay the newest one's."""
    (a,) = [i for i in api.get("/api/v1/instances")["items"] if i["uuid"] == "a"]
    (latest_id,) = _ids(api, "2026-11-17T10:00:00Z")
    assert (a["version"], a["edition"], a["installation_type"]) == (
        "16.3.0",
        "EE",
        "omnibus-gitlab",
    )
    assert a["latest_ping"]["id"] == latest_id
    assert a["latest_ping"]["recorded_at"] == "2026-11-17T10:00:00Z"
    assert a["latest_ping"]["score"] == api.responses[latest_id]["conv_index"]["score"]
    detail = api.get("/api/v1/instances/a")
    assert detail["pings"] == 3
    assert detail["conv_index"] == api.responses[latest_id]["conv_index"]
    assert {k: v for k, v in detail.items() if k not in ("pings", "conv_index")} == a


FILTERS: list[tuple[dict[str, str], list[str]]] = [
    ({"version": "16.3.0"}, ["a", "eu/c"]),
    ({"edition": "CE"}, ["b"]),
    ({"installation_type": "helm"}, ["eu/c"]),
    ({"version": "16.3.0", "edition": "EE", "installation_type": "omnibus-gitlab"}, ["a"]),
    ({"version": "16.2.0"}, []),
    ({"seen_since": "2000-01-01T00:00:00Z"}, ["a", "eu/c"]),
]


def test_instances_are_filtered_by_their_facts(api: Seeded, engine: sa.Engine) -> None:
    """Exact matches on the latest facts; seen_since on the last ping received ("b" is old)."""
    with engine.begin() as conn:
        conn.execute(
            instances.update()
            .where(instances.c.uuid == "b")
            .values(last_seen=datetime(1999, 1, 1, tzinfo=UTC))
        )
    for params, expected in FILTERS:
        found = [i["uuid"] for i in api.get("/api/v1/instances", **params)["items"]]
        assert found == expected, params


def test_seen_since_without_a_zone_is_utc(api: Seeded) -> None:
    """A naive time is UTC: an hour from now finds nobody, an hour ago everybody."""
    now = datetime.now(UTC).replace(tzinfo=None)
    later = (now + timedelta(hours=1)).isoformat()
    earlier = (now - timedelta(hours=1)).isoformat()
    assert api.get("/api/v1/instances", seen_since=later)["items"] == []
    assert len(api.get("/api/v1/instances", seen_since=earlier)["items"]) == 3


def test_an_instances_pings_oldest_first_in_pages(api: Seeded) -> None:
    """Pings of "a" by recorded_at, one per page, each with its score."""
    items = api.all_pages("/api/v1/instances/a/pings", limit=1)
    times = ["2026-11-10T10:00:00Z", "2026-11-14T10:00:00Z", "2026-11-17T10:00:00Z"]
    assert [p["recorded_at"] for p in items] == times
    assert [p["id"] for p in items] == _ids(api, *times)
    assert [p["score"] for p in items] == [
        api.responses[i]["conv_index"]["score"] for i in _ids(api, *times)
    ]
    assert items[0]["version"] == "16.2.0"
    assert len(api.get("/api/v1/instances/eu/c/pings")["items"]) == 2  # a uuid with "/"


def test_a_ping_has_its_raw_payload_and_response(api: Seeded) -> None:
    """The payload as sent (meta included) and the exact answer the instance got."""
    for ping_id, document in api.documents.items():
        stored = api.get(f"/api/v1/pings/{ping_id}")
        assert stored["payload"] == document
        assert stored["response"] == api.responses[ping_id]
        assert stored["uuid"] == document["uuid"]
        assert _utc(stored["recorded_at"]) == _utc(document["recorded_at"])
        assert (stored["source"], stored["active_user_count"]) == ("http", 10)


def test_a_ping_comes_back_whatever_its_shape(api: Seeded) -> None:
    """Nested 600 deep, a 40-digit integer, NaN (as null): the payload as sent."""
    nested: dict[str, Any] = {"leaf": 1}
    for _ in range(600):
        nested = {"a": nested}
    document = ping(uuid="odd", nested=nested, big=10**40, nan=float("nan"))
    answer = api.client.post("/usage_data", content=json.dumps(document))  # NaN: not strict JSON
    stored = api.get(f"/api/v1/pings/{answer.json()['conv_index']['usage_data_id']}")
    assert stored["payload"] == {**document, "nan": None}


def test_a_cursor_cannot_reach_the_database_with_nonsense(api: Seeded) -> None:
    """Crafted cursors (a time outside UTC's calendar, an id past 64 bits) are 422, not 500."""
    series = "/api/v1/metrics/counts.issues/series"
    crafted: list[tuple[str, dict[str, str], list[Any]]] = [
        (series, {}, ["series", "0001-01-01T00:00:00+01:00", 1]),
        (series, {}, ["series", "2026-11-01T00:00:00+00:00", 2**70]),
        (series, {}, ["series", "2026-11-01T00:00:00", 1]),
        (series, {"aggregate": "weekly"}, ["weekly", "2026-13-01"]),
        ("/api/v1/instances/a/pings", {}, ["pings", "9999-12-31T23:59:59-01:00"]),
    ]
    for url, params, position in crafted:
        cursor = base64.urlsafe_b64encode(json.dumps(position).encode()).decode()
        response = api.client.get(url, params={**params, "cursor": cursor})
        assert response.status_code == 422, position
        assert response.json() == {"error": "cursor: not a next_cursor this endpoint returned"}


# -- metric series -----------------------------------------------------------------------------


def test_a_series_has_one_point_per_ping_oldest_first(api: Seeded) -> None:
    """Each ping's value with its uuid and time, in recorded_at order, across pages."""
    points = api.all_pages("/api/v1/metrics/counts.issues/series", limit=2)
    expected = sorted((_utc(r), u, float(v)) for u, r, v, *_ in DATASET)
    assert [(_utc(p["recorded_at"]), p["uuid"], p["value"]) for p in points] == expected
    assert [p["ping_id"] for p in points] == _ids(api, *(r.isoformat() for r, _, _ in expected))
    single = api.get("/api/v1/metrics/counts.issues/series", limit=1000)
    assert single["items"] == points
    assert (single["key_path"], single["aggregate"]) == ("counts.issues", "none")


def test_a_series_is_cut_by_time_and_instance(api: Seeded) -> None:
    """since is included, until excluded; uuid keeps one instance."""
    url = "/api/v1/metrics/counts.issues/series"
    window = api.get(url, since="2026-11-12T10:00:00Z", until="2026-11-17T10:00:00Z")["items"]
    assert [p["value"] for p in window] == [40, 30]
    late = api.get(url, since="2026-11-22T23:30:00Z")["items"]
    assert [(p["uuid"], p["value"]) for p in late] == [("b", 70), ("eu/c", 5)]
    only_a = api.get(url, uuid="a")["items"]
    assert [p["value"] for p in only_a] == [10, 30, 50]
    assert api.get(url, since="2030-01-01T00:00:00Z")["items"] == []


def test_weekly_aggregates_across_instances(api: Seeded) -> None:
    """Per ISO week in UTC: each instance's latest value, then count, mean, median, p90."""
    page = api.get("/api/v1/metrics/counts.issues/series", aggregate="weekly")
    assert page["aggregate"] == "weekly"
    assert page["next_cursor"] is None
    assert page["items"] == [
        # a: 10 then 30 (the later one counts), b: 20, eu/c: 40
        {"week": "2026-W46", "start": "2026-11-09", "count": 3,
         "avg": 30.0, "median": 30.0, "p90": 38.0},
        # a: 50, b: 70 (Monday 00:30 +01:00 is still Sunday in UTC)
        {"week": "2026-W47", "start": "2026-11-16", "count": 2,
         "avg": 60.0, "median": 60.0, "p90": 68.0},
        {"week": "2026-W48", "start": "2026-11-23", "count": 1,
         "avg": 5.0, "median": 5.0, "p90": 5.0},
    ]  # fmt: skip
    # The same figures as numpy's, which the DevOps score's leaders use.
    for week, values in zip(page["items"], ([30, 20, 40], [50, 70], [5]), strict=True):
        assert week["p90"] == pytest.approx(float(np.percentile(values, 90)))
        assert week["median"] == statistics.median(values)


def test_weekly_aggregates_come_in_pages_of_weeks(api: Seeded) -> None:
    """limit counts weeks; the cursor resumes at the next week; since cuts the first week."""
    url = "/api/v1/metrics/counts.issues/series"
    weeks = api.all_pages(url, aggregate="weekly", limit=1)
    assert [w["week"] for w in weeks] == ["2026-W46", "2026-W47", "2026-W48"]
    assert weeks == api.get(url, aggregate="weekly")["items"]
    cut = api.get(url, aggregate="weekly", since="2026-11-12T00:00:00Z", until="2026-11-17T00:00")
    # b's 20 is before since, a's 50 after until: a's 30 and eu/c's 40 remain.
    assert [(w["week"], w["count"], w["avg"]) for w in cut["items"]] == [("2026-W46", 2, 35.0)]
    only_b = api.get(url, aggregate="weekly", uuid="b")["items"]
    assert [(w["week"], w["count"], w["avg"]) for w in only_b] == [
        ("2026-W46", 1, 20.0),
        ("2026-W47", 1, 70.0),
    ]


def test_whole_weeks_are_kept_until_a_ping_recorded_in_them_arrives(
    api: Seeded, engine: sa.Engine
) -> None:
    """Across instances, each whole week is computed once and kept in dashboard_weeks; a week
    gets computed again when a late ping recorded in it arrives, the others are read back."""
    url = "/api/v1/metrics/counts.issues/series"
    with engine.begin() as conn:  # the dataset arrived two hours ago
        conn.execute(pings.update().values(received_at=datetime.now(UTC) - timedelta(hours=2)))
    counted = api.get(url, aggregate="weekly")
    with engine.connect() as conn:
        kept = conn.execute(sa.select(dashboard_weeks)).all()
    assert [
        row.week_start.date().isoformat() for row in sorted(kept, key=lambda r: r.week_start)
    ] == [
        "2026-11-09",
        "2026-11-16",
        "2026-11-23",
    ]
    assert {row.series for row in kept} == {'["weekly", "counts.issues"]'}
    # Mark the kept figures: what the API answers now comes from them.
    with engine.begin() as conn:
        for row in kept:
            figures = json.loads(row.figures)
            figures["week"]["avg"] = -1.0
            conn.execute(
                dashboard_weeks.update()
                .where(dashboard_weeks.c.week_start == row.week_start)
                .values(figures=json.dumps(figures))
            )
    marked = api.get(url, aggregate="weekly")["items"]
    assert [w["avg"] for w in marked] == [-1.0, -1.0, -1.0]
    assert [w["count"] for w in marked] == [w["count"] for w in counted["items"]]
    # A late ping recorded in week 46: that week is computed again (d's 60 joins a, b and eu/c).
    late = ping(uuid="d", recorded_at="2026-11-13T08:00:00Z", counts={"issues": 60})
    assert api.client.post("/usage_data", json=late).status_code == 201
    again = api.get(url, aggregate="weekly")["items"]
    assert (again[0]["count"], again[0]["avg"]) == (4, 37.5)
    assert [w["avg"] for w in again[1:]] == [-1.0, -1.0]
    # Pages, cuts and one instance give the same weeks as before.
    assert api.all_pages(url, aggregate="weekly", limit=1) == again
    cut = api.get(url, aggregate="weekly", since="2026-11-12T00:00:00Z", until="2026-11-17T00:00")
    assert [(w["week"], w["count"]) for w in cut["items"]] == [("2026-W46", 3)]
    assert cut["items"][0]["avg"] == pytest.approx(130 / 3)  # a's 30, eu/c's 40, d's 60


# -- errors ------------------------------------------------------------------------------------


NOT_FOUND = [
    ("/api/v1/instances/nobody", "no instance has the uuid 'nobody'"),
    ("/api/v1/instances/nobody/pings", "no instance has the uuid 'nobody'"),
    ("/api/v1/pings/999999", "no ping has the id 999999"),
    ("/api/v1/metrics/counts.nothing/series", "no ping has the metric 'counts.nothing'"),
    ("/api/v1/metrics/counts.issues/series?uuid=nobody", "no instance has the uuid 'nobody'"),
]


def test_unknown_things_are_404(api: Seeded) -> None:
    """404 naming what was not found."""
    for url, message in NOT_FOUND:
        response = api.client.get(url)
        assert (response.status_code, response.json()) == (404, {"error": message}), url


BAD_PARAMETERS = [
    ("/api/v1/instances?limit=0", "limit: Input should be greater than or equal to 1"),
    ("/api/v1/instances?limit=1001", "limit: Input should be less than or equal to 1000"),
    ("/api/v1/instances?limit=ten", "limit: Input should be a valid integer"),
    ("/api/v1/instances?seen_since=yesterday", "seen_since: Input should be a valid datetime"),
    ("/api/v1/instances?cursor=abc", "cursor: not a next_cursor this endpoint returned"),
    ("/api/v1/pings/0", "id: Input should be greater than or equal to 1"),
    ("/api/v1/pings/99999999999999999999", "id: Input should be less than or equal to"),
    ("/api/v1/pings/x", "id: Input should be a valid integer"),
    ("/api/v1/instances/a%00b", "uuid: String should match pattern"),
    ("/api/v1/metrics/counts.issues/series?since=2026-11-20&until=2026-11-10",
     "since (2026-11-20T00:00:00+00:00) is after until"),
    ("/api/v1/metrics/counts.issues/series?until=0001-01-01T00:00:00%2B01:00",
     "until: 0001-01-01T00:00:00+01:00 is out of range in UTC"),
    ("/api/v1/metrics/counts.issues/series?aggregate=daily",
     "aggregate: Input should be 'none' or 'weekly'"),
]  # fmt: skip


def test_bad_parameters_are_422_naming_the_parameter(api: Seeded) -> None:
    """One message per problem, in the service's {"error": ...} shape."""
    for url, message in BAD_PARAMETERS:
        response = api.client.get(url)
        assert response.status_code == 422, url
        assert message in response.json()["error"], url


def test_a_cursor_only_works_where_it_came_from(api: Seeded) -> None:
    """An instances cursor given to the series endpoint is refused, not misread."""
    cursor = api.get("/api/v1/instances", limit=1)["next_cursor"]
    response = api.client.get("/api/v1/metrics/counts.issues/series", params={"cursor": cursor})
    assert response.status_code == 422
    weekly = api.get("/api/v1/metrics/counts.issues/series", aggregate="weekly", limit=1)
    response = api.client.get(
        "/api/v1/metrics/counts.issues/series", params={"cursor": weekly["next_cursor"]}
    )
    assert response.status_code == 422


def test_the_openapi_document_describes_the_api(api: Seeded) -> None:
    """Response models, the bearer scheme and the error shapes are in /openapi.json."""
    document = api.get("/openapi.json")
    paths = document["paths"]
    assert {
        "/api/v1/instances",
        "/api/v1/instances/{uuid}",
        "/api/v1/instances/{uuid}/pings",
        "/api/v1/pings/{id}",
        "/api/v1/metrics/{key_path}/series",
        "/api/v1/export/metrics.parquet",
    } <= set(paths)
    series = paths["/api/v1/metrics/{key_path}/series"]["get"]
    assert series["security"] == [{"api_token": []}]
    assert set(series["responses"]) == {"200", "401", "403", "404", "422"}
    assert document["components"]["securitySchemes"]["api_token"]["scheme"] == "bearer"
    limit = next(p for p in series["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 1000)
