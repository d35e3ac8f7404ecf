"""The dashboards' routes: login and logout, the pages (operators only), the static files.

Pages are rendered on the server with Jinja2 (autoescaping on) and read the database through
the query modules of this package; each request opens one connection. They are left out of the
OpenAPI document, which describes the service's API.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import jinja2
import sqlalchemy as sa
from fastapi import APIRouter, FastAPI
from fastapi.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from usage_ping.collector.auth import CSRF_COOKIE, OperatorAuth, Session, local_path, tokens_match
from usage_ping.collector.dashboards.assets import STATIC_PREFIX, Assets
from usage_ping.collector.dashboards.explorer import load_exploration, suggest_key_paths
from usage_ping.collector.dashboards.instances import (
    load_instance,
    load_payload,
    metric_trend,
    search_instances,
)
from usage_ping.collector.dashboards.overview import load_overview
from usage_ping.collector.dashboards.quality import (
    DURATION_SAMPLE,
    load_metric_report,
    load_quality,
)
from usage_ping.collector.dashboards.weeks import ClosedWeeks, parse_weeks
from usage_ping.collector.settings import ServiceSettings

__all__ = ["Dashboards", "mount_dashboards"]

logger = logging.getLogger("usage_ping")

LOGIN_PATH = "/login"
HOME = "/dashboard"
MAX_FORM_BYTES = 16 * 1024

_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'; "
        "connect-src 'self'"
    ),
}


def _when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _pct(share: float | None, digits: int = 1) -> str:
    return "n/a" if share is None else f"{100 * share:.{digits}f} %"


def _number(value: float | None) -> str:
    if value is None:
        return "n/a"
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.4g}" if abs(value) >= 1e6 else f"{value:,.2f}".rstrip("0").rstrip(".")


def _clean(value: str | None, limit: int = 255) -> str:
    """A text parameter as the database can compare it: no NUL (PostgreSQL text cannot hold
    one), no surrounding spaces, at most ``limit`` characters (longer can match nothing)."""
    return (value or "").replace("\x00", "").strip()[:limit]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("usage_ping.collector.dashboards", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["pct"] = _pct
    env.filters["num"] = _number
    env.filters["q"] = lambda value: quote(str(value), safe="")
    return env


class Dashboards:
    """The operator pages of one app: its settings, database, login and templates.

    ``clock`` gives "now" for the pages' windows (tests fix it); ``closed_weeks`` keeps the
    figures of weeks that have ended.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        engine: sa.Engine,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock or (lambda: datetime.now(UTC))
        self.auth = OperatorAuth(settings.operators, settings.secret_key)
        self.closed_weeks = ClosedWeeks(engine=engine)
        self.assets = Assets()
        self.templates = _environment()

    # -- rendering ------------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        template: str,
        *,
        session: Session | None = None,
        status: int = 200,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        """A page of the dashboards with the nav bar, the operator and their CSRF token."""
        html = self.templates.get_template(template).render(
            operator=session.operator if session else None,
            csrf_token=session.csrf if session else "",
            css_url=self.assets.url("dashboards.css"),
            plotly_url=self.assets.url("plotly.min.js"),
            path=request.url.path,
            duration_sample=DURATION_SAMPLE,
            **context,
        )
        return HTMLResponse(html, status_code=status, headers={**_HEADERS, **(headers or {})})

    def guard(self, request: Request) -> Session | Response:
        """The operator's session, or the response that refuses the page."""
        if not self.auth.enabled:
            return self.render(request, "no_operators.html", status=403)
        session = self.auth.request_session(request)
        if session is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(
                f"{LOGIN_PATH}?{urlencode({'next': target})}", status_code=303, headers=_HEADERS
            )
        return session

    def forbidden(self, request: Request, session: Session | None = None) -> HTMLResponse:
        """403 for a form without the right CSRF token."""
        return self.render(request, "forbidden.html", session=session, status=403)

    # -- login ----------------------------------------------------------------------------------

    def login_page(
        self,
        request: Request,
        *,
        next_path: str,
        error: str = "",
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> HTMLResponse:
        """The login form, with its CSRF token (set as a cookie when new)."""
        token, new = self.auth.login_token(request)
        response = self.render(
            request,
            "login.html",
            status=status,
            headers=headers,
            login_token=token,
            next_path=next_path,
            error=error,
        )
        if new:
            self.auth.set_login_token(response, request, token)
        return response

    async def login(self, request: Request) -> Response:
        """POST /login: check the CSRF token, the throttle, then the name and password."""
        if not self.auth.enabled:
            return self.render(request, "no_operators.html", status=403)
        form = await _read_form(request)
        if form is None:
            return Response("form too large", status_code=413)
        if not tokens_match(form.get("csrf_token"), request.cookies.get(CSRF_COOKIE)):
            return self.forbidden(request)
        next_path = local_path(form.get("next"), HOME)
        address = request.client.host if request.client else "unknown"
        wait = self.auth.throttle.retry_after(address)
        if wait > 0:
            minutes = int(wait // 60) + 1
            return self.login_page(
                request,
                next_path=next_path,
                error=f"Too many failed logins from this address: try again in {minutes} min.",
                status=429,
                headers={"Retry-After": str(int(wait) + 1)},
            )
        name, password = form.get("username", ""), form.get("password", "")
        if not await run_in_threadpool(self.auth.authenticate, name, password):
            self.auth.throttle.failed(address)
            logger.info("failed dashboard login for %r from %s", name[:64], address)
            return self.login_page(
                request, next_path=next_path, error="Wrong name or password.", status=401
            )
        self.auth.throttle.succeeded(address)
        cookie, _ = self.auth.issue(name)
        response = RedirectResponse(next_path, status_code=303, headers=_HEADERS)
        self.auth.set_session(response, request, cookie)
        return response

    async def logout(self, request: Request) -> Response:
        """POST /logout: end the session (its CSRF token required)."""
        session = self.auth.request_session(request)
        response = RedirectResponse(LOGIN_PATH, status_code=303, headers=_HEADERS)
        if session is not None:
            form = await _read_form(request)
            if form is None or not tokens_match(form.get("csrf_token"), session.csrf):
                return self.forbidden(request, session)
        self.auth.clear_session(response)
        return response

    # -- routes ---------------------------------------------------------------------------------

    def router(self) -> APIRouter:
        """The dashboards' routes."""
        router = APIRouter(include_in_schema=False)
        router.add_api_route(LOGIN_PATH, self._login_get, methods=["GET"])
        router.add_api_route(LOGIN_PATH, self.login, methods=["POST"])
        router.add_api_route("/logout", self.logout, methods=["POST"])
        router.add_api_route(HOME, self._overview, methods=["GET"])
        router.add_api_route(f"{HOME}/instances", self._instances, methods=["GET"])
        router.add_api_route(f"{HOME}/instances/{{uuid:path}}", self._instance, methods=["GET"])
        router.add_api_route(f"{HOME}/metrics/qa", self._quality, methods=["GET"])
        router.add_api_route(
            f"{HOME}/metrics/qa/{{key_path:path}}", self._metric_report, methods=["GET"]
        )
        router.add_api_route(f"{HOME}/metrics/explorer", self._explorer, methods=["GET"])
        router.add_api_route(f"{STATIC_PREFIX}/{{name}}", self._static, methods=["GET"])
        return router

    def _login_get(self, request: Request, next: str | None = None) -> Response:
        if not self.auth.enabled:
            return self.render(request, "no_operators.html", status=403)
        target = local_path(next, HOME)
        if self.auth.request_session(request) is not None:
            return RedirectResponse(target, status_code=303, headers=_HEADERS)
        return self.login_page(request, next_path=target)

    def _static(self, request: Request, name: str) -> Response:
        return self.assets.response(name, request)

    def _overview(self, request: Request, weeks: str | None = None) -> Response:
        session = self.guard(request)
        if not isinstance(session, Session):
            return session
        count = parse_weeks(weeks, 26)
        with self.engine.connect() as conn:
            overview = load_overview(conn, self.clock(), count, cache=self.closed_weeks)
        return self.render(
            request,
            "overview.html",
            session=session,
            overview=overview,
            charts=overview.charts(),
            weeks=count,
        )

    def _instances(self, request: Request, q: str = "", page: str | None = None) -> Response:
        session = self.guard(request)
        if not isinstance(session, Session):
            return session
        number = int(page) if page and page.isdigit() and len(page) < 9 else 1
        with self.engine.connect() as conn:
            found = search_instances(conn, _clean(q), number)
        return self.render(request, "instances.html", session=session, found=found, query=q)

    def _instance(
        self,
        request: Request,
        uuid: str,
        metric: str | None = None,
        ping: str | None = None,
    ) -> Response:
        session = self.guard(request)
        if not isinstance(session, Session):
            return session
        uuid = _clean(uuid, 64)
        with self.engine.connect() as conn:
            detail = load_instance(conn, uuid)
            if detail is None:
                return self.render(
                    request,
                    "not_found.html",
                    session=session,
                    status=404,
                    what="instance",
                    name=uuid,
                )
            key_path = _clean(metric) or next(
                (k for k in self.settings.score.features.values() if k in detail.key_paths),
                detail.key_paths[0] if detail.key_paths else None,
            )
            trend = metric_trend(conn, uuid, key_path) if key_path else None
            ping_id = int(ping) if ping and ping.isdigit() and len(ping) < 19 else None
            ping_id = ping_id if ping_id is not None else detail.facts.last_ping_id
            payload = load_payload(conn, uuid, ping_id) if ping_id is not None else None
        charts = detail.charts() + ([trend] if trend else [])
        return self.render(
            request,
            "instance.html",
            session=session,
            detail=detail,
            charts=charts,
            metric=key_path or "",
            payload=payload,
            score_card=self.settings.score,
        )

    def _quality(self, request: Request, weeks: str | None = None) -> Response:
        session = self.guard(request)
        if not isinstance(session, Session):
            return session
        count = parse_weeks(weeks, 8)
        with self.engine.connect() as conn:
            quality = load_quality(conn, self.clock(), count, cache=self.closed_weeks)
        return self.render(
            request,
            "quality.html",
            session=session,
            quality=quality,
            charts=quality.charts(),
            weeks=count,
        )

    def _metric_report(self, request: Request, key_path: str, weeks: str | None = None) -> Response:
        session = self.guard(request)
        if not isinstance(session, Session):
            return session
        count = parse_weeks(weeks, 8)
        key_path = _clean(key_path)
        if not key_path:
            return RedirectResponse(f"{HOME}/metrics/qa?weeks={count}", status_code=303)
        with self.engine.connect() as conn:
            report = load_metric_report(
                conn, self.clock(), key_path, count, cache=self.closed_weeks
            )
        return self.render(
            request,
            "metric_report.html",
            session=session,
            report=report,
            charts=report.charts(),
            weeks=count,
        )

    def _explorer(
        self, request: Request, key_path: str | None = None, weeks: str | None = None
    ) -> Response:
        session = self.guard(request)
        if not isinstance(session, Session):
            return session
        count = parse_weeks(weeks, 26)
        key_path = _clean(key_path)
        with self.engine.connect() as conn:
            suggestions = suggest_key_paths(conn)
            exploration = (
                load_exploration(conn, self.clock(), key_path, count, cache=self.closed_weeks)
                if key_path
                else None
            )
        return self.render(
            request,
            "explorer.html",
            session=session,
            key_path=key_path,
            suggestions=suggestions,
            exploration=exploration,
            charts=exploration.charts() if exploration else [],
            weeks=count,
        )


async def _read_form(request: Request) -> dict[str, str] | None:
    """An url-encoded form's first value per field (None: over ``MAX_FORM_BYTES``)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        parsed = parse_qs(
            body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=20
        )
    except ValueError:  # too many fields
        return None
    return {key: values[0] for key, values in parsed.items()}


def mount_dashboards(app: FastAPI, settings: ServiceSettings, engine: sa.Engine) -> Dashboards:
    """Add the dashboards, the login and their static files to the service's app.

    The :class:`Dashboards` is kept as ``app.state.dashboards``.
    """
    dashboards = Dashboards(settings, engine)
    app.include_router(dashboards.router())
    app.state.dashboards = dashboards
    return dashboards
