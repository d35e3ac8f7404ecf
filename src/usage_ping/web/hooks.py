"""What the host supplies: its authentication, authorization and CSRF checks, as callables.

The web parts never know how the host logs people in or protects forms. The host passes small
callables that take the Starlette :class:`~starlette.requests.Request` and answer; each may be a
plain function or an ``async def`` (its result is awaited). Plain functions run on the event loop,
so keep them cheap (a look-up in the session); an ``async`` one may read the request's form
(``await request.form()``: the routers have already read the body, so it is not consumed).

Example (a host keeping the user id and a CSRF token in its session)::

    def authenticate(request: Request) -> int | None:
        return request.session.get("user_id")

    async def verify_csrf(request: Request) -> bool:
        expected = request.session.get("csrf_token")
        sent = request.headers.get("X-CSRF-Token")
        if sent is None and request.method == "POST":
            sent = (await request.form()).get("csrf_token")
        return bool(expected) and isinstance(sent, str) and secrets.compare_digest(sent, expected)
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TypeAlias, TypeVar

from starlette.requests import Request

__all__ = ["Authenticate", "Authorize", "CsrfToken", "VerifyCsrf", "call", "resolve"]

T = TypeVar("T")

Authenticate: TypeAlias = Callable[[Request], "object | Awaitable[object | None] | None"]
"""The signed-in user's id (a string or an integer: it is what unique users are counted by),
or None when nobody is signed in."""

Authorize: TypeAlias = Callable[[Request], "bool | Awaitable[bool]"]
"""Whether the request may see and change the usage statistics (an administrator)."""

VerifyCsrf: TypeAlias = Callable[[Request], "bool | Awaitable[bool]"]
"""Whether the request carries the host's valid CSRF token (a header for the UsageData API, as
GitLab's ``X-CSRF-Token``; the admin page's forms send it in a form field)."""

CsrfToken: TypeAlias = Callable[[Request], "str | Awaitable[str]"]
"""The host's CSRF token for this request's session, put into the admin page's forms."""


async def resolve(value: T | Awaitable[T]) -> T:
    """The value a host callable returned, awaited if it is awaitable."""
    if inspect.isawaitable(value):
        awaited: T = await value
        return awaited
    return value


def call(check: Callable[[Request], T | Awaitable[T]], request: Request) -> Awaitable[T]:
    """Call a host callable and resolve its result."""
    return resolve(check(request))
