"""Operator login: scrypt hashes, signed sessions, CSRF on every form, the failed-login limit."""

from __future__ import annotations

import re

import httpx2
import pytest
from fastapi.testclient import TestClient

from tests.collector.conftest import SMALL_CARD
from usage_ping.collector.app import create_app
from usage_ping.collector.auth import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    LoginThrottle,
    OperatorAuth,
    hash_password,
    local_path,
    verify_password,
)
from usage_ping.collector.settings import ServiceSettings

pytestmark = pytest.mark.dialects("postgresql", "sqlite")

PASSWORD = "correct horse battery staple"
FAST = {"n": 2**10, "r": 8, "p": 1}
"""scrypt parameters cheap enough for tests (real hashes use the defaults)."""
OPERATORS = {"alice": hash_password(PASSWORD, **FAST)}


@pytest.fixture
def service_settings() -> ServiceSettings:
    """The test service with one operator (overrides the collector conftest's)."""
    return ServiceSettings(
        score=SMALL_CARD,
        ingest_per_minute=10_000,
        secret_key="a-test-secret-key-of-some-length",
        operators=OPERATORS,
    )


def csrf_token(html: str) -> str:
    """The CSRF token of the first form of a page."""
    found = re.search(r'name="csrf_token" value="([^"]*)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def login(
    client: TestClient, name: str = "alice", password: str = PASSWORD, next_path: str = ""
) -> httpx2.Response:
    """Open the login page and post its form; the response is not followed."""
    page = client.get("/login", params={"next": next_path} if next_path else None)
    assert page.status_code == 200
    form = {"csrf_token": csrf_token(page.text), "username": name, "password": password}
    if next_path:
        form["next"] = next_path
    return client.post("/login", data=form, follow_redirects=False)


# -- passwords ----------------------------------------------------------------------------------


def test_a_hash_verifies_its_password_only() -> None:
    """The right password matches; another one, or another case, does not."""
    stored = hash_password(PASSWORD, **FAST)
    assert verify_password(PASSWORD, stored)
    assert not verify_password(PASSWORD.upper(), stored)
    assert not verify_password("", stored)


def test_hashes_are_salted_and_carry_their_parameters() -> None:
    """Two hashes of one password differ; n, r and p are read back from the string."""
    first, second = hash_password(PASSWORD, **FAST), hash_password(PASSWORD, **FAST)
    assert first != second
    scheme, n, r, p, salt, key = first.split("$")
    assert (scheme, n, r, p) == ("scrypt", "1024", "8", "1")
    assert salt
    assert key
    assert hash_password("x", n=2**11, r=4, p=2).startswith("scrypt$2048$4$2$")
    assert verify_password("x", hash_password("x", n=2**11, r=4, p=2))


def test_the_default_parameters_are_strong() -> None:
    """Without arguments: scrypt with n = 2^15, r = 8, p = 1."""
    stored = hash_password("pw")
    assert stored.startswith("scrypt$32768$8$1$")
    assert verify_password("pw", stored)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plain-text-password",
        "scrypt$1024$8$1$c2FsdA==",
        "scrypt$1000$8$1$c2FsdA==$a2V5",  # n not a power of two
        "scrypt$1073741824$8$1$c2FsdA==$a2V5",  # gigabytes of memory: refused, not computed
        "scrypt$1024$8$1$not base64!$a2V5",
        "bcrypt$1024$8$1$c2FsdA==$a2V5",
    ],
)
def test_malformed_hashes_never_match(stored: str) -> None:
    """A broken configuration makes the login fail; it does not raise."""
    assert not verify_password("anything", stored)


def test_empty_passwords_and_bad_parameters_are_refused() -> None:
    """hash_password raises for what could never be a good hash."""
    with pytest.raises(ValueError, match="empty"):
        hash_password("")
    with pytest.raises(ValueError, match="scrypt parameters"):
        hash_password("pw", n=1000)


# -- sessions -----------------------------------------------------------------------------------


def test_a_session_cookie_round_trips_and_resists_tampering() -> None:
    """The cookie names the operator and its CSRF token; a changed byte or key voids it."""
    auth = OperatorAuth(OPERATORS, "k" * 32)
    cookie, session = auth.issue("alice")
    assert auth.session(cookie) == session
    assert session.operator == "alice"
    assert len(session.csrf) >= 32
    assert auth.session(cookie[:-2] + ("A" if cookie[-2] != "A" else "B") + cookie[-1]) is None
    assert OperatorAuth(OPERATORS, "another key" * 3).session(cookie) is None
    assert auth.session("") is None
    assert auth.session(None) is None


def test_sessions_expire_and_end_with_a_password_change() -> None:
    """Past max_age, after a new password or the operator's removal, the cookie is void."""
    cookie, _ = OperatorAuth(OPERATORS, "k" * 32).issue("alice")
    assert OperatorAuth(OPERATORS, "k" * 32, max_age=-1).session(cookie) is None
    changed = {"alice": hash_password("a new password", **FAST)}
    assert OperatorAuth(changed, "k" * 32).session(cookie) is None
    assert OperatorAuth({"bob": OPERATORS["alice"]}, "k" * 32).session(cookie) is None


def test_without_a_secret_key_sessions_use_a_random_one(caplog: pytest.LogCaptureFixture) -> None:
    """A warning says sessions will not survive a restart; two processes do not share them."""
    with caplog.at_level("WARNING", logger="usage_ping"):
        first = OperatorAuth(OPERATORS, None)
    assert "random key" in caplog.text
    cookie, session = first.issue("alice")
    assert first.session(cookie) == session
    assert OperatorAuth(OPERATORS, None).session(cookie) is None


def test_authenticate_knows_names_and_passwords() -> None:
    """Only a configured name with its own password is accepted."""
    auth = OperatorAuth(OPERATORS, "k" * 32)
    assert auth.authenticate("alice", PASSWORD)
    assert not auth.authenticate("alice", "wrong")
    assert not auth.authenticate("mallory", PASSWORD)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/dashboard/metrics/qa?weeks=4", "/dashboard/metrics/qa?weeks=4"),
        ("/dashboard/instances/a%2Fb", "/dashboard/instances/a%2Fb"),
        (None, "/dashboard"),
        ("", "/dashboard"),
        ("https://evil.example/", "/dashboard"),
        ("//evil.example/x", "/dashboard"),
        ("/\\evil.example", "/dashboard"),
        ("javascript:alert(1)", "/dashboard"),
        ("/dashboard\r\nSet-Cookie: x=1", "/dashboard"),
        ("dashboard", "/dashboard"),
    ],
)
def test_next_must_be_a_local_path(target: str | None, expected: str) -> None:
    """After a login the operator lands on this site only."""
    assert local_path(target) == expected


def test_the_throttle_counts_failures_per_address_within_the_window() -> None:
    """max_failures within the window block the address until the oldest one ages out."""
    now = [1000.0]
    throttle = LoginThrottle(max_failures=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.retry_after("10.0.0.1") == 0
        throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == pytest.approx(60)
    assert throttle.retry_after("10.0.0.2") == 0
    now[0] += 30
    assert throttle.retry_after("10.0.0.1") == pytest.approx(30)
    now[0] += 30
    assert throttle.retry_after("10.0.0.1") == 0
    throttle.failed("10.0.0.1")
    throttle.succeeded("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == 0


# -- the login flow -----------------------------------------------------------------------------


def test_pages_redirect_to_the_login_when_logged_out(client: TestClient) -> None:
    """Every dashboard page answers 303 to /login with the page as next."""
    for path in (
        "/dashboard",
        "/dashboard/instances?q=x",
        "/dashboard/instances/some-uuid",
        "/dashboard/metrics/qa",
        "/dashboard/metrics/qa/counts.issues",
        "/dashboard/metrics/explorer?key_path=counts.issues",
    ):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        location = httpx2.URL(response.headers["location"])
        assert location.path == "/login"
        assert location.params["next"] == path


def test_a_wrong_password_is_refused_and_the_right_one_logs_in(client: TestClient) -> None:
    """401 with a message, no session; then 303 to next with an HttpOnly, SameSite session."""
    refused = login(client, password="wrong")
    assert refused.status_code == 401
    assert "Wrong name or password" in refused.text
    assert SESSION_COOKIE not in refused.headers.get("set-cookie", "")
    assert login(client, name="mallory").status_code == 401

    accepted = login(client, next_path="/dashboard/metrics/qa?weeks=4")
    assert accepted.status_code == 303
    assert accepted.headers["location"] == "/dashboard/metrics/qa?weeks=4"
    cookie = next(
        h for h in accepted.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE)
    )
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Max-Age=43200" in cookie
    assert "Secure" not in cookie  # plain HTTP in the test; set over HTTPS
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert "alice" in page.text
    assert client.get("/login", follow_redirects=False).status_code == 303  # already logged in


def test_a_login_never_redirects_off_site(client: TestClient) -> None:
    """A next pointing elsewhere lands on the overview."""
    response = login(client, next_path="//evil.example/phish")
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"


@pytest.mark.parametrize("token", [None, "", "forged-token-0123456789abcdefghij"])
def test_the_login_form_needs_its_csrf_token(client: TestClient, token: str | None) -> None:
    """Without the token of the cookie the login page set: 403, whatever the password."""
    client.get("/login")
    form = {"username": "alice", "password": PASSWORD}
    if token is not None:
        form["csrf_token"] = token
    response = client.post("/login", data=form, follow_redirects=False)
    assert response.status_code == 403
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")


def test_the_csrf_cookie_is_needed_too(client: TestClient) -> None:
    """The form's token alone (a page fetched by someone else) is not enough."""
    token = csrf_token(client.get("/login").text)
    client.cookies.delete(CSRF_COOKIE)
    form = {"csrf_token": token, "username": "alice", "password": PASSWORD}
    assert client.post("/login", data=form, follow_redirects=False).status_code == 403


def test_logout_needs_the_session_csrf_token(client: TestClient) -> None:
    """Logout without or with a wrong token: 403 and still logged in; with it: logged out."""
    assert login(client).status_code == 303
    page = client.get("/dashboard")
    token = csrf_token(page.text)
    assert client.post("/logout", follow_redirects=False).status_code == 403
    wrong = client.post("/logout", data={"csrf_token": "x" * 43}, follow_redirects=False)
    assert wrong.status_code == 403
    assert client.get("/dashboard", follow_redirects=False).status_code == 200
    out = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303
    assert out.headers["location"] == "/login"
    assert client.get("/dashboard", follow_redirects=False).status_code == 303


def test_failed_logins_are_limited_per_address(client: TestClient) -> None:
    """After ten failures from one address even the right password gets 429 with Retry-After."""
    for _ in range(10):
        assert login(client, password="guess").status_code == 401
    blocked = login(client)
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    assert "Too many failed logins" in blocked.text


def test_without_operators_the_dashboards_explain_how_to_add_one(client: TestClient) -> None:
    """No operator configured: the pages and the login refuse with the instructions."""
    app = create_app(ServiceSettings(score=SMALL_CARD), engine=client.app.state.engine)  # type: ignore[attr-defined]
    with TestClient(app) as bare:
        for path in ("/dashboard", "/dashboard/metrics/qa", "/login"):
            response = bare.get(path, follow_redirects=False)
            assert response.status_code == 403
            assert "usage-ping service hash-password" in response.text
            assert "operators:" in response.text
        assert bare.post("/login", data={"username": "a"}).status_code == 403
