"""The UsageData API through real HTTP: a host app on loopback, real sessions and CSRF tokens,
and counts read back from the SQLite counter store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from tests.serving import serve
from tests.web.conftest import Host, HostFactory, write_instance
from tests.web.host import csrf_ok, csrf_token, current_user_id, is_admin, signed_in
from usage_ping.events import Counter
from usage_ping.instance import UsagePing
from usage_ping.store import SQLiteStore
from usage_ping.testing import Swallowed
from usage_ping.web import API_FLAG, MAX_BODY_BYTES, admin_router, mountable, usage_data_router

COUNTER = "/usage_data/increment_counter"
UNIQUE = "/usage_data/increment_unique_users"


@pytest.fixture
def alice(host: Host) -> Iterator[httpx.Client]:
    with signed_in(host.url, "alice") as client:
        yield client


@pytest.fixture
def bob(host: Host) -> Iterator[httpx.Client]:
    with signed_in(host.url, "bob") as client:
        yield client


# -- 200 ----------------------------------------------------------------------------------------


def test_increment_counter_adds_one_to_the_plain_counter(host: Host, alice: httpx.Client) -> None:
    """200 and the counter in the store moves, with the event in JSON, a form or the query."""
    sent_as: list[dict[str, Any]] = [
        {"json": {"event": "wiki_pages_create"}},
        {"data": {"event": "wiki_pages_create"}},
        {"params": {"event": "wiki_pages_create"}},
    ]
    for how in sent_as:
        response = alice.post(COUNTER, **how)
        assert response.status_code == 200, response.text
        assert response.json() == {"event": "wiki_pages_create", "tracked": True}
    assert host.wiki.read("create") == 3
    assert host.wiki.read("update") == 0


def test_a_hash_counter_given_to_the_router_is_counted(host: Host, alice: httpx.Client) -> None:
    """Counters passed to the router (besides the instance's own) are known events too."""
    response = alice.post(COUNTER, json={"event": "pod_logs_requests"})
    assert response.json() == {"event": "pod_logs_requests", "tracked": True}
    assert host.pods.read("requests") == 1


def test_increment_unique_users_counts_each_user_once(
    host: Host, alice: httpx.Client, bob: httpx.Client
) -> None:
    """The signed-in user's id is tracked: alice twice and bob once make two users."""
    for client in (alice, alice, bob):
        response = client.post(UNIQUE, json={"event": "i_search_total"})
        assert response.status_code == 200, response.text
        assert response.json() == {"event": "i_search_total", "tracked": True}
    assert host.unique_users("i_search_total") == 2


def test_the_api_is_in_the_hosts_openapi_document(host: Host) -> None:
    """The host's OpenAPI document describes both endpoints and their answers."""
    document = httpx.get(f"{host.url}/openapi.json").json()
    for path in (COUNTER, UNIQUE):
        operation = document["paths"][path]["post"]
        assert {"200", "400", "401", "403", "404"} <= set(operation["responses"])
    assert not any(path.startswith("/admin/usage") for path in document["paths"])


# -- 400 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [COUNTER, UNIQUE])
@pytest.mark.parametrize(
    "body",
    [None, {}, {"event": ""}, {"other": "wiki_pages_create"}],
    ids=["no body", "empty object", "empty name", "other key"],
)
def test_a_missing_event_is_400(
    host: Host, alice: httpx.Client, path: str, body: dict[str, str] | None
) -> None:
    """Without ``event`` both endpoints answer 400 and count nothing."""
    response = alice.post(path) if body is None else alice.post(path, json=body)
    assert response.status_code == 400
    assert "event is missing" in response.json()["message"]
    assert host.wiki.read("create") == 0


@pytest.mark.parametrize("path", [COUNTER, UNIQUE])
def test_an_event_that_is_not_a_string_or_not_json_is_400(alice: httpx.Client, path: str) -> None:
    """A number for ``event``, a JSON array, or a body that is not JSON: 400 with the reason."""
    assert alice.post(path, json={"event": 5}).json()["message"].endswith("must be a string")
    assert "JSON object" in alice.post(path, json=["event"]).json()["message"]
    broken = alice.post(path, content=b"{", headers={"Content-Type": "application/json"})
    assert broken.status_code == 400
    assert "not valid JSON" in broken.json()["message"]


@pytest.mark.parametrize(
    ("path", "event"),
    [
        (COUNTER, "wiki_pages_delete"),  # not among the counter's events
        (COUNTER, "wiki_create"),
        (COUNTER, "i_search_total"),  # a known event, but no counter's
        (UNIQUE, "i_search_nothing"),
        (UNIQUE, "wiki_pages_create"),  # a counter's event, but not a known event
    ],
)
def test_an_unknown_event_is_400(host: Host, alice: httpx.Client, path: str, event: str) -> None:
    """Counter events are the counters' ``<prefix>_<event>`` names; unique-user events are
    the known events; anything else is 400."""
    response = alice.post(path, json={"event": event})
    assert response.status_code == 400
    assert response.json() == {"message": f"400 Bad request - unknown event {event!r}"}


# -- 401, 403, 404, 413 ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", [COUNTER, UNIQUE])
def test_a_signed_out_request_is_401(host: Host, path: str) -> None:
    """A valid CSRF token of a signed-out session is not enough: 401, nothing counted."""
    with signed_in(host.url, None) as anonymous:
        event = "wiki_pages_create" if path == COUNTER else "i_search_total"
        response = anonymous.post(path, json={"event": event})
    assert response.status_code == 401
    assert response.json() == {"message": "401 Unauthorized"}
    assert host.wiki.read("create") == 0
    assert host.unique_users("i_search_total") == 0


@pytest.mark.parametrize("path", [COUNTER, UNIQUE])
@pytest.mark.parametrize("token", [None, "forged", "other session"])
def test_a_missing_or_invalid_csrf_token_is_403(
    host: Host, alice: httpx.Client, bob: httpx.Client, path: str, token: str | None
) -> None:
    """No token, a made-up one, or another session's token: 403, nothing counted."""
    if token is None:
        del alice.headers["X-CSRF-Token"]
    else:
        sent = bob.headers["X-CSRF-Token"] if token == "other session" else token
        alice.headers["X-CSRF-Token"] = sent
    event = "wiki_pages_create" if path == COUNTER else "i_search_total"
    response = alice.post(path, json={"event": event})
    assert response.status_code == 403
    assert response.json() == {"message": "403 Forbidden - Invalid CSRF token is provided"}
    assert host.wiki.read("create") == 0
    assert host.unique_users("i_search_total") == 0


@pytest.mark.parametrize("path", [COUNTER, UNIQUE])
def test_the_usage_data_api_flag_off_is_404(host: Host, alice: httpx.Client, path: str) -> None:
    """With ``usage_data_api`` off the API does not exist, for anyone; on again, it answers."""
    event = "wiki_pages_create" if path == COUNTER else "i_search_total"
    host.flags.set(API_FLAG, False)
    assert alice.post(path, json={"event": event}).status_code == 404
    assert httpx.post(f"{host.url}{path}", json={"event": event}).status_code == 404
    assert host.wiki.read("create") == 0
    host.flags.set(API_FLAG, True)
    assert alice.post(path, json={"event": event}).json()["tracked"] is True


def test_a_body_longer_than_the_limit_is_413(alice: httpx.Client) -> None:
    """The API takes one name: a long body is refused before it is read."""
    body = {"event": "wiki_pages_create", "padding": "x" * MAX_BODY_BYTES}
    assert alice.post(COUNTER, json=body).status_code == 413


# -- not tracked, still 200 -----------------------------------------------------------------------


def test_a_known_event_behind_its_feature_flag(
    host: Host, alice: httpx.Client, bob: httpx.Client
) -> None:
    """An event whose ``feature_flag`` is off is answered 200 but not counted, until it is on."""
    response = alice.post(UNIQUE, json={"event": "i_search_advanced"})
    assert response.status_code == 200
    assert response.json() == {
        "event": "i_search_advanced",
        "tracked": False,
        "reason": "feature flag advanced_search_tracking is off",
    }
    assert host.unique_users("i_search_advanced") == 0
    host.flags.set("advanced_search_tracking", True)
    assert bob.post(UNIQUE, json={"event": "i_search_advanced"}).json()["tracked"] is True
    assert host.unique_users("i_search_advanced") == 1


def test_a_counter_event_behind_its_flag(host: Host, alice: httpx.Client) -> None:
    """``counter_flags`` gate counter events the same way."""
    host.flags.set("pod_logs_tracking", False)
    response = alice.post(COUNTER, json={"event": "pod_logs_requests"})
    assert response.status_code == 200
    assert response.json()["reason"] == "feature flag pod_logs_tracking is off"
    assert host.pods.read("requests") == 0


def test_nothing_is_counted_while_usage_ping_is_disabled(host: Host, alice: httpx.Client) -> None:
    """The admin's switch off: both endpoints answer 200 and count nothing."""
    host.ping.disable()
    for path, event in ((COUNTER, "wiki_pages_create"), (UNIQUE, "i_search_total")):
        response = alice.post(path, json={"event": event})
        assert response.status_code == 200
        assert response.json()["reason"] == "usage ping is disabled"
    assert host.wiki.read("create") == 0
    assert host.unique_users("i_search_total") == 0


@pytest.mark.swallows
def test_a_store_that_fails_never_makes_an_error_answer(
    make_host: HostFactory, swallowed: list[Swallowed]
) -> None:
    """The counter store closed under the host: 200 with ``tracked: false``, the error logged
    through the fail-safe boundary."""
    host = make_host()
    host.ping.store.close()
    with signed_in(host.url, "alice") as alice:
        for path, event in ((COUNTER, "wiki_pages_create"), (UNIQUE, "i_search_total")):
            response = alice.post(path, json={"event": event})
            assert response.status_code == 200
            assert response.json()["tracked"] is False
            assert "could not be recorded" in response.json()["reason"]
    assert len(swallowed) == 2


# -- other hosts ----------------------------------------------------------------------------------


def test_mounted_in_a_plain_starlette_app(tmp_path: Path) -> None:
    """Both routers work mounted (prefix "") in an ASGI app that is not FastAPI."""
    ping = UsagePing.from_config(write_instance(tmp_path / "instance"))
    wiki = Counter(ping.store, "wiki_pages", ["create"])

    async def login(request: Request) -> Response:
        request.session.clear()
        request.session.update(user_id=1, admin=True)
        return JSONResponse({})

    async def token(request: Request) -> Response:
        return JSONResponse({"token": csrf_token(request)})

    app = Starlette(
        routes=[
            Route("/login", login, methods=["POST"]),
            Route("/csrf", token),
            Mount(
                "/usage_data",
                app=mountable(
                    usage_data_router(
                        ping,
                        authenticate=current_user_id,
                        verify_csrf=csrf_ok,
                        counters=[wiki],
                        prefix="",
                    )
                ),
            ),
            Mount(
                "/admin/usage",
                app=mountable(
                    admin_router(
                        ping,
                        authorize=is_admin,
                        csrf_token=csrf_token,
                        verify_csrf=csrf_ok,
                        prefix="",
                    )
                ),
            ),
        ],
        middleware=[Middleware(SessionMiddleware, secret_key="a-test-secret-of-some-length")],
    )
    try:
        with serve(app) as url, httpx.Client(base_url=url) as client:
            client.post("/login")
            client.headers["X-CSRF-Token"] = client.get("/csrf").json()["token"]
            response = client.post(COUNTER, json={"event": "wiki_pages_create"})
            assert response.json() == {"event": "wiki_pages_create", "tracked": True}
            assert wiki.read("create") == 1
            page = client.get("/admin/usage/")
            assert page.status_code == 200
            assert 'action="/admin/usage/enabled"' in page.text
            assert 'href="/admin/usage/static/admin.css?v=' in page.text
            del client.headers["X-CSRF-Token"]
            form = {"csrf_token": client.get("/csrf").json()["token"]}
            switched = client.post("/admin/usage/enabled", data=form)
            assert switched.status_code == 303
            assert switched.headers["location"] == "/admin/usage/?saved=disabled"
            assert not ping.enabled
    finally:
        ping.store.close()
        ping.engine.dispose()


def test_two_counters_claiming_one_event_are_refused(tmp_path: Path) -> None:
    """``wiki`` + ``pages_create`` and ``wiki_pages`` + ``create`` are the same name: refused
    when the router is made, not at the first request."""
    ping = UsagePing.from_config(write_instance(tmp_path / "instance"))
    store = SQLiteStore(tmp_path / "counters.db")
    try:
        one = Counter(store, "wiki_pages", ["create"])
        other = Counter(store, "wiki", ["pages_create"])
        with pytest.raises(ValueError, match="wiki_pages_create is claimed by both"):
            usage_data_router(
                ping, authenticate=current_user_id, verify_csrf=csrf_ok, counters=[one, other]
            )
        with pytest.raises(ValueError, match="counter_flags names events no counter has"):
            usage_data_router(
                ping,
                authenticate=current_user_id,
                verify_csrf=csrf_ok,
                counters=[one],
                counter_flags={"wiki_pages_delete": "flag"},
            )
    finally:
        store.close()
        ping.engine.dispose()
