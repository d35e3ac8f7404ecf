"""The collector's endpoints: answers, CORS, the network user id cookie, good and bad stores."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.collector.snowplow.conftest import EVENT_ID, TP2, batch, event
from usage_ping.collector.app import create_app
from usage_ping.collector.settings import ServiceSettings, SnowplowSettings
from usage_ping.collector.snowplow.routes import PIXEL
from usage_ping.collector.snowplow.tables import snowplow_events

pytestmark = pytest.mark.dialects("postgresql", "sqlite")

B64_CONTEXTS = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
STANDARD = "iglu:dev.usage-ping/standard_context/jsonschema/1-0-0"


def good(client: TestClient) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = client.get("/micro/good").json()
    return events


def bad(client: TestClient) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = client.get("/micro/bad").json()
    return events


def test_the_pixel_is_a_gif_that_no_cache_keeps(client: TestClient) -> None:
    """GET /i answers a 1x1 GIF with no-cache headers, and stores the event."""
    response = client.get("/i", params=event())
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.content == PIXEL
    assert response.content.startswith(b"GIF89a\x01\x00\x01\x00")
    assert response.headers["cache-control"] == "no-cache, no-store, must-revalidate"
    assert good(client)[0]["rawEvent"]["api"] == {
        "vendor": "com.snowplowanalytics.snowplow",
        "version": "tp1",
    }


def test_tp2_get_and_post(client: TestClient) -> None:
    """GET tp2 answers the pixel; POST tp2 answers ok; both store their events."""
    assert client.get(TP2, params=event()).content == PIXEL
    response = client.post(TP2, json=batch(event(eid="11111111-1111-4111-8111-111111111111")))
    assert response.status_code == 200
    assert response.text == "ok"
    assert client.get("/micro/all").json() == {"total": 2, "good": 2, "bad": 0}


def test_cors_echoes_the_origin_with_credentials(client: TestClient) -> None:
    """Answers echo Origin (or *) and allow credentials; the preflight allows the headers."""
    origin = {"Origin": "https://app.example.com"}
    for response in (
        client.get("/i", params=event(), headers=origin),
        client.post(TP2, json=batch(event()), headers=origin),
    ):
        assert response.headers["access-control-allow-origin"] == "https://app.example.com"
        assert response.headers["access-control-allow-credentials"] == "true"
    assert client.get("/i", params=event()).headers["access-control-allow-origin"] == "*"
    for path in ("/i", TP2):
        preflight = client.options(
            path, headers={**origin, "Access-Control-Request-Method": "POST"}
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
        assert preflight.headers["access-control-allow-credentials"] == "true"
        allowed = preflight.headers["access-control-allow-headers"]
        assert {"Content-Type", "SP-Anonymous"} <= {h.strip() for h in allowed.split(",")}
        assert preflight.headers["access-control-max-age"] == "3600"


@pytest.mark.parametrize(
    "snowplow_settings", [SnowplowSettings(micro=True, allowed_origins=("https://ok.example",))]
)
def test_only_allowed_origins_get_cors_headers(client: TestClient) -> None:
    """With allowed origins configured, others get no CORS headers and a refused preflight."""
    ok = client.post(TP2, json=batch(event()), headers={"Origin": "https://ok.example"})
    assert ok.headers["access-control-allow-origin"] == "https://ok.example"
    other = client.post(TP2, json=batch(event()), headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    refused = client.options(TP2, headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers


def test_the_sp_cookie_carries_the_network_user_id(client: TestClient) -> None:
    """A new visitor gets an sp cookie; the cookie, then the nuid parameter, name the user."""
    first = client.get("/i", params=event())
    cookie = first.cookies.get("sp") or first.headers["set-cookie"].split(";")[0].split("=")[1]
    header = first.headers["set-cookie"]
    assert "HttpOnly" in header
    assert "Secure" in header
    assert "SameSite=none" in header
    assert "Max-Age=31536000" in header
    client.cookies.clear()
    again = client.get(
        "/i",
        params=event(eid="22222222-2222-4222-8222-222222222222"),
        headers={"Cookie": f"sp={cookie}"},
    )
    assert f"sp={cookie}" in again.headers["set-cookie"]
    client.get(
        "/i", params={**event(eid="33333333-3333-4333-8333-333333333333"), "nuid": "from-query"}
    )
    users = [g["event"]["network_userid"] for g in good(client)]
    assert users == ["from-query", cookie, cookie]


def test_sp_anonymous_keeps_no_cookie_and_no_address(client: TestClient) -> None:
    """SP-Anonymous: *: all-zero network user id, no Set-Cookie, no IP, no forwarding header."""
    response = client.post(
        TP2,
        json=batch(event()),
        headers={"SP-Anonymous": "*", "X-Forwarded-For": "203.0.113.9", "Cookie": "sp=abc"},
    )
    assert "set-cookie" not in response.headers
    (stored,) = good(client)
    assert stored["event"]["network_userid"] == "00000000-0000-0000-0000-000000000000"
    assert stored["event"]["user_ipaddress"] is None
    context = stored["rawEvent"]["context"]
    assert context["ipAddress"] is None
    assert not any(h.lower().startswith(("x-forwarded-for", "cookie")) for h in context["headers"])


def test_the_client_address_comes_from_x_forwarded_for(client: TestClient) -> None:
    """Behind a proxy, the first X-Forwarded-For entry is the user's address."""
    client.get("/i", params=event(), headers={"X-Forwarded-For": "203.0.113.9, 10.0.0.1"})
    assert good(client)[0]["event"]["user_ipaddress"] == "203.0.113.9"


@pytest.mark.parametrize("snowplow_settings", [SnowplowSettings(micro=True, anonymise_ip_octets=2)])
def test_addresses_are_anonymised_as_configured(client: TestClient) -> None:
    """anonymise_ip_octets: 2 keeps the first two octets."""
    client.get("/i", params=event(), headers={"X-Forwarded-For": "203.0.113.9"})
    assert good(client)[0]["event"]["user_ipaddress"] == "203.0.x.x"


def test_a_post_merges_its_querystring_into_every_event(client: TestClient) -> None:
    """Querystring parameters on a POST are added to each event and win on a clash."""
    body = batch(event(), event(eid="44444444-4444-4444-8444-444444444444"))
    client.post(TP2, params={"aid": "from-query"}, json=body)
    assert [g["event"]["app_id"] for g in good(client)] == ["from-query", "from-query"]


def test_the_same_event_twice_is_stored_once(client: TestClient) -> None:
    """Within a batch and across requests, an event's fingerprint is stored once."""
    client.post(TP2, json=batch(event(), event(stm="1700000009999")))
    client.get("/i", params=event(stm="1700000002000"))
    assert client.get("/micro/all").json() == {"total": 1, "good": 1, "bad": 0}


def test_one_bad_event_does_not_spoil_its_batch(client: TestClient) -> None:
    """Unknown e, a non-string value, malformed base64: bad with errors; the rest good."""
    b64 = base64.urlsafe_b64encode(b'{"schema": "x"').decode()
    body = batch(
        event(),
        event(e="zz", eid="55555555-5555-4555-8555-555555555555"),
        {**event(eid="66666666-6666-4666-8666-666666666666"), "se_va": 3},
        event(eid="77777777-7777-4777-8777-777777777777", cx="!!!not base64!!!"),
        event(eid="88888888-8888-4888-8888-888888888888", cx=b64),
    )
    assert client.post(TP2, json=body).status_code == 200
    assert client.get("/micro/all").json() == {"total": 5, "good": 1, "bad": 4}
    errors = {" ".join(b["errors"]) for b in bad(client)}
    assert any("Field [e]: [zz] is not a recognised event code" in e for e in errors)
    assert any("se_va: 3 is not of type 'string'" in e for e in errors)
    assert any("Field [cx]: not base64url-encoded" in e for e in errors)
    assert any("Field [cx]: not JSON" in e for e in errors)
    raws = [b["rawEvent"]["parameters"] for b in bad(client)]
    assert {"zz", "se"} == {r["e"] for r in raws}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "the body is not JSON"),
        (b'{"schema": "iglu:x/y/jsonschema/1-0-0", "data": []}', "not a payload_data schema"),
        (b'{"data": []}', "not a self-describing JSON"),
        (
            b'{"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",'
            b' "data": []}',
            "[] should be non-empty",
        ),
        (b"", "empty body"),
    ],
)
def test_a_body_that_is_no_batch_is_kept_whole_as_bad(
    client: TestClient, body: bytes, error: str
) -> None:
    """The whole body is kept in the bad row, with the reason."""
    response = client.post(TP2, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    (row,) = bad(client)
    assert error in " ".join(row["errors"])
    assert row["collectorPayload"]["body"] == body.decode()
    assert row["rawEvent"] is None


@pytest.mark.parametrize("snowplow_settings", [SnowplowSettings(micro=True, max_body_bytes=2048)])
def test_an_oversized_body_is_a_size_violation(client: TestClient) -> None:
    """Over max_body_bytes: not read, answered 200, kept as a bad row saying so."""
    body = batch(*[event(eid=f"{n:08d}-0000-4000-8000-000000000000") for n in range(20)])
    assert client.post(TP2, json=body).status_code == 200
    (row,) = bad(client)
    assert row["errors"] == ["size violation: the body is over 2048 bytes"]


def test_a_post_without_body_is_one_event_from_the_querystring(client: TestClient) -> None:
    """An empty POST with the event in its querystring is that event."""
    client.post(TP2, params=event())
    assert good(client)[0]["event"]["event_id"] == EVENT_ID


def test_plain_and_base64_json_fields(client: TestClient) -> None:
    """co and ue_pr as JSON; cx and ue_px as base64url with or without padding, or +/."""
    contexts = json.dumps({"schema": B64_CONTEXTS, "data": [{"schema": STANDARD, "data": {}}]})
    raw = contexts.encode()
    padded = base64.urlsafe_b64encode(raw).decode()
    variants = [
        {"co": contexts},
        {"cx": padded},
        {"cx": padded.rstrip("=")},
        {"cx": base64.b64encode(raw).decode()},
    ]
    for n, fields in enumerate(variants):
        client.post(TP2, json=batch(event(eid=f"{n:08d}-0000-4000-8000-000000000000", **fields)))
    stored = good(client)
    assert len(stored) == 4
    assert all(g["contexts"] == [STANDARD] for g in stored)


def test_micro_answers_its_iglu_schemas(client: TestClient) -> None:
    """/micro/iglu/... serves a schema the collector knows, and 404 for others."""
    schema = client.get("/micro/iglu/dev.usage-ping/standard_context/jsonschema/1-0-0").json()
    assert schema["self"]["name"] == "standard_context"
    assert schema["additionalProperties"] is False
    assert client.get("/micro/iglu/com.example/nope/jsonschema/1-0-0").status_code == 404


def test_micro_refuses_filters_of_the_wrong_type(client: TestClient) -> None:
    """A filter of the wrong type, or a body that is not JSON, is a 400; other keys are ignored."""
    assert client.post("/micro/good", json={"colour": "red"}).status_code == 200
    assert client.post("/micro/good", json={"contexts": [1]}).status_code == 400
    assert client.post("/micro/good", json={"limit": "2"}).status_code == 400
    assert client.post("/micro/bad", content=b"[", headers={}).status_code == 400
    assert client.post("/micro/good", json={"limit": None}).status_code == 200


def test_micro_is_off_by_default(engine: sa.Engine) -> None:
    """Without snowplow.micro the testing API does not exist; the collector does."""
    with TestClient(create_app(ServiceSettings(), engine=engine)) as plain:
        assert plain.get("/micro/good").status_code == 404
        assert plain.get("/micro/reset").status_code == 404
        assert plain.get("/i", params=event()).status_code == 200
        paths = plain.get("/openapi.json").json()["paths"]
        assert {"/i", TP2} <= set(paths)


def test_the_collector_can_be_switched_off(engine: sa.Engine) -> None:
    """snowplow.enabled: false mounts nothing."""
    settings = ServiceSettings(snowplow=SnowplowSettings(enabled=False))
    with TestClient(create_app(settings, engine=engine)) as plain:
        assert plain.get("/i", params=event()).status_code == 404


def test_nul_and_lone_surrogates_are_stored(client: TestClient) -> None:
    """Text PostgreSQL cannot hold (NUL, lone surrogates) never makes a 500."""
    body = json.dumps(batch(event(se_ca="a\x00b", se_ac="\ud800x", uid="\x00")))
    assert client.post(TP2, content=body).status_code == 200
    (stored,) = good(client)
    assert stored["event"]["se_category"] == "a\x00b"  # the event keeps what was sent


def test_bots_are_flagged_in_the_store(client: TestClient, engine: sa.Engine) -> None:
    """A crawler's event is stored good, with is_bot set for the analytics to leave out."""
    googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    client.get("/i", params=event(), headers={"User-Agent": googlebot})
    client.get("/i", params=event(eid="99999999-9999-4999-8999-999999999999"))
    with engine.connect() as conn:
        flags = conn.execute(
            sa.select(snowplow_events.c.is_bot).order_by(snowplow_events.c.id)
        ).scalars()
        assert list(flags) == [True, False]
