"""A tiny host application for the web parts, served by uvicorn on loopback.

It has what a real host has and the library must not provide: a login that keeps the user in a
signed session cookie, and a CSRF token of its own in that session, sent back by scripts in the
``X-CSRF-Token`` header and by forms in the ``csrf_token`` field. Its checks are the example
callables that the routers take.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from fastapi import FastAPI
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from usage_ping.events import Counter, FeatureFlags, HashCounter
from usage_ping.instance import UsagePing
from usage_ping.web import admin_router, usage_data_router


@dataclass(frozen=True)
class User:
    id: int
    password: str
    admin: bool


USERS = {
    "root": User(1, "root-password-1", admin=True),
    "alice": User(2, "alice-password-2", admin=False),
    "bob": User(3, "bob-password-3", admin=False),
}


# -- the host's checks: the example callables ------------------------------------------------


def current_user_id(request: Request) -> int | None:
    """The signed-in user's id, from the session."""
    value = request.session.get("user_id")
    return value if isinstance(value, int) else None


def is_admin(request: Request) -> bool:
    """Whether the signed-in user is an administrator."""
    return request.session.get("admin") is True


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use (signed-out sessions have one too)."""
    token = request.session.get("csrf_token")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf_token"] = token
    return token


async def csrf_ok(request: Request) -> bool:
    """The token from the header (scripts) or the form field (forms) matches the session's."""
    expected = request.session.get("csrf_token")
    sent = request.headers.get("X-CSRF-Token")
    if sent is None and request.method == "POST":
        sent_field = (await request.form()).get("csrf_token")
        sent = sent_field if isinstance(sent_field, str) else None
    return isinstance(expected, str) and sent is not None and secrets.compare_digest(sent, expected)


# -- the app ----------------------------------------------------------------------------------


def create_host(
    ping: UsagePing,
    *,
    flags: FeatureFlags | None = None,
    counters: Iterable[Counter | HashCounter] = (),
    counter_flags: Mapping[str, str] | None = None,
) -> FastAPI:
    """The host app: login, logout, its CSRF token, and both routers of usage_ping.web."""
    app = FastAPI()
    app.add_middleware(SessionMiddleware, secret_key=secrets.token_urlsafe(32), same_site="strict")

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        user = USERS.get(str(form.get("username", "")))
        if user is None or not secrets.compare_digest(str(form.get("password", "")), user.password):
            return JSONResponse({"message": "wrong user name or password"}, 401)
        request.session.clear()  # a new session (and CSRF token) after signing in
        request.session.update(user_id=user.id, admin=user.admin)
        return JSONResponse({"user_id": user.id})

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        request.session.clear()
        return JSONResponse({})

    @app.get("/favicon.ico")
    async def favicon() -> Response:
        return Response(status_code=204)  # a host has its icon; the admin page links none

    @app.get("/csrf")
    async def token(request: Request) -> Response:
        return JSONResponse({"token": csrf_token(request)})

    app.include_router(
        usage_data_router(
            ping,
            authenticate=current_user_id,
            verify_csrf=csrf_ok,
            flags=flags,
            counters=counters,
            counter_flags=counter_flags,
        )
    )
    app.include_router(
        admin_router(ping, authorize=is_admin, csrf_token=csrf_token, verify_csrf=csrf_ok)
    )
    return app


@contextmanager
def signed_in(
    base_url: str, username: str | None, *, csrf_header: bool = True
) -> Iterator[httpx.Client]:
    """A client with its own cookie jar, signed in as ``username`` (None: signed out); with
    ``csrf_header`` it sends the session's CSRF token in ``X-CSRF-Token``, as scripts do."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        if username is not None:
            response = client.post(
                "/login", data={"username": username, "password": USERS[username].password}
            )
            assert response.status_code == 200, response.text
        if csrf_header:
            client.headers["X-CSRF-Token"] = client.get("/csrf").json()["token"]
        yield client
