"""Host integration: the UsageData HTTP API and the "Usage statistics" admin page.

Both are routers to include in the host's FastAPI app; for any other ASGI app, make them with
``prefix=""`` and mount them wrapped by :func:`mountable`. The host keeps its own login and CSRF
protection and hands the checks over as callables (plain or ``async``, see
:mod:`usage_ping.web.hooks`):

- :func:`usage_data_router`: ``POST /usage_data/increment_counter`` and
  ``POST /usage_data/increment_unique_users`` (see :mod:`usage_ping.web.api`).
- :func:`admin_router`: the page at ``/admin/usage`` (see :mod:`usage_ping.web.admin`).

Needs the ``service`` extra (FastAPI, Jinja2, python-multipart and plotly).

Example (a FastAPI host with its user id and CSRF token in a signed session cookie)::

    from fastapi import FastAPI
    from starlette.middleware.sessions import SessionMiddleware
    from usage_ping.instance import UsagePing
    from usage_ping.web import admin_router, usage_data_router

    ping = UsagePing.from_config("usage-ping.yml")
    app = FastAPI()
    app.add_middleware(SessionMiddleware, secret_key=SECRET)

    def user_id(request):                      # None: 401
        return request.session.get("user_id")

    def is_admin(request):                     # False: 403
        return request.session.get("role") == "admin"

    def csrf_token(request):
        return request.session.setdefault("csrf_token", secrets.token_urlsafe(32))

    async def csrf_ok(request):                # a header from scripts, a field from forms
        sent = request.headers.get("X-CSRF-Token")
        if sent is None and request.method == "POST":
            sent = (await request.form()).get("csrf_token")
        expected = request.session.get("csrf_token")
        return bool(expected) and isinstance(sent, str) and secrets.compare_digest(sent, expected)

    app.include_router(usage_data_router(ping, authenticate=user_id, verify_csrf=csrf_ok))
    app.include_router(
        admin_router(ping, authorize=is_admin, csrf_token=csrf_token, verify_csrf=csrf_ok)
    )

A frontend then counts with ``fetch("/usage_data/increment_unique_users", {method: "POST",
headers: {"Content-Type": "application/json", "X-CSRF-Token": token}, body:
JSON.stringify({event: "i_search_total"})})``.
"""

from usage_ping.web import _extras  # noqa: F401  (first: a clear error without the extras)
from usage_ping.web.admin import CATEGORY_DESCRIPTIONS, admin_router
from usage_ping.web.api import API_FLAG, MAX_BODY_BYTES, default_flags, usage_data_router
from usage_ping.web.hooks import Authenticate, Authorize, CsrfToken, VerifyCsrf
from usage_ping.web.mount import mountable

__all__ = [
    "API_FLAG",
    "CATEGORY_DESCRIPTIONS",
    "MAX_BODY_BYTES",
    "Authenticate",
    "Authorize",
    "CsrfToken",
    "VerifyCsrf",
    "admin_router",
    "default_flags",
    "mountable",
    "usage_data_router",
]
