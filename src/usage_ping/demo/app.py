"""The demo platform as a web application: the example of a host instrumented with usage-ping.

What a host developer copies from here:

- the session (Starlette's signed cookie) holds the user id and a CSRF token; forms carry the token
  as a field, scripts as the ``X-CSRF-Token`` header (:func:`verify_csrf`);
- actions that change data record a backend event (:func:`usage_ping.tracking.event`) and count
  unique users per feature in the counter store (``ping.events.track_event``);
- pages load the browser tracking module, with ``data-track-*`` attributes on links and buttons
  and ``trackRedisHllUserEvent`` for a client-side feature;
- the UsageData API (``/usage_data/...``) and the admin page (``/admin/usage``) of
  :mod:`usage_ping.web` are mounted with the demo's own checks.

Build it with :func:`create_demo_app`; ``usage-ping demo`` (:mod:`usage_ping.demo.run`) serves it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import jinja2
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.middleware.sessions import SessionMiddleware

from usage_ping import tracking
from usage_ping.collector.auth import verify_password
from usage_ping.demo import models
from usage_ping.demo.simulate import demo_counters_for
from usage_ping.instance import UsagePing
from usage_ping.web import admin_router, usage_data_router

__all__ = ["ADMIN_PATH", "create_demo_app", "verify_csrf"]

ADMIN_PATH = "/admin/usage"
_FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<rect width="16" height="16" rx="3" fill="#292961"/>'
    '<circle cx="8" cy="8" r="4" fill="#fc6d26"/></svg>'
)
_SESSION_COOKIE = "demo_session"


def _environment() -> jinja2.Environment:
    loader = jinja2.FileSystemLoader(str(resources.files("usage_ping.demo").joinpath("templates")))
    env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["when"] = lambda moment: moment.strftime("%Y-%m-%d %H:%M") if moment else ""
    return env


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made on first use)."""
    token = request.session.get("csrf_token")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf_token"] = token
    return token


async def verify_csrf(request: Request) -> bool:
    """The request carries the session's token: the ``X-CSRF-Token`` header (scripts) or the
    ``csrf_token`` form field (forms)."""
    expected = request.session.get("csrf_token")
    sent: object = request.headers.get("X-CSRF-Token")
    if sent is None and request.method == "POST":
        sent = (await request.form()).get("csrf_token")
    return (
        isinstance(expected, str)
        and isinstance(sent, str)
        and secrets.compare_digest(sent.encode(), expected.encode())
    )


def current_user(request: Request) -> int | None:
    """The signed-in user's id, or None."""
    user = request.session.get("user_id")
    return user if isinstance(user, int) else None


def create_demo_app(
    ping: UsagePing,
    *,
    secret_key: str,
    service_url: str | None = None,
    extra_routes: Callable[[FastAPI], None] | None = None,
    prometheus: bool = True,
) -> FastAPI:
    """The demo platform over ``ping``'s host database and counter store.

    Args:
        ping: the demo's usage ping (its engine holds the seeded tables).
        secret_key: signs the session cookie.
        service_url: the central service, linked from the pages (its dashboards).
        extra_routes: called with the app before the pages are added.
        prometheus: count requests and serve them at ``/metrics`` for Prometheus (the payload's
            topology block reads requests per hour and apdex from there).
    """
    engine = ping.engine
    pages = _environment()
    app = FastAPI(title="usage-ping demo platform", docs_url=None, redoc_url=None)

    @app.middleware("http")
    async def admin_sign_in(request: Request, call_next: Any) -> Response:
        # The admin page answers 403 to anyone it does not authorize; the demo sends a visitor
        # who has not signed in to the login form first. (Added before the session middleware,
        # so it runs inside it and sees the session.)
        if (
            request.method == "GET"
            and request.url.path.startswith(ADMIN_PATH)
            and current_user(request) is None
        ):
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        response: Response = await call_next(request)
        return response

    app.add_middleware(
        SessionMiddleware, secret_key=secret_key, session_cookie=_SESSION_COOKIE, same_site="lax"
    )
    if prometheus:
        from prometheus_client import CollectorRegistry

        from usage_ping.topology.exporter import RequestMetrics, instrument

        instrument(app, RequestMetrics(CollectorRegistry()))  # one registry per app
    if extra_routes is not None:
        extra_routes(app)

    def is_admin(request: Request) -> bool:
        return bool(request.session.get("admin"))

    app.include_router(
        usage_data_router(
            ping,
            authenticate=current_user,
            verify_csrf=verify_csrf,
            counters=demo_counters_for(ping).values(),
        )
    )
    app.include_router(
        admin_router(
            ping, authorize=is_admin, csrf_token=csrf_token, verify_csrf=verify_csrf,
            prefix=ADMIN_PATH,
        )
    )  # fmt: skip

    def render(request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        user = current_user(request)
        options = tracking.frontend_options(user=user, project=values.get("project_id"))
        html = pages.get_template(name).render(
            request=request,
            user=request.session.get("username"),
            admin=is_admin(request),
            csrf_token=csrf_token(request),
            tracking_config=tracking.config_script(options) if options else "",
            service_url=service_url,
            admin_path=ADMIN_PATH,
            **values,
        )
        return HTMLResponse(html, status_code=status)

    def signed_in(request: Request) -> int | RedirectResponse:
        user = current_user(request)
        if user is None:
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return user

    def track(request: Request, category: str, action: str, event: str | None, **ids: Any) -> None:
        """A backend event, and the user counted for the feature (neither ever raises)."""
        user = current_user(request)
        tracking.event(category, action, user=user, **ids)
        counter = ping.events
        if event is not None and counter is not None and user is not None:
            counter.track_event(event, values=user)

    @app.get("/assets/usage-ping-tracking.js", include_in_schema=False)
    def bundle() -> Response:
        path = tracking.bundle_path()
        if not path.exists():
            return Response("// run `make js` to build the tracking module\n", 404)
        return FileResponse(path, media_type="text/javascript")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(_FAVICON, media_type="image/svg+xml")

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/") -> HTMLResponse:
        return render(request, "login.html", next_path=_local(next), error=None)

    @app.post("/login", response_model=None)
    async def login(request: Request) -> Response:
        form = await request.form()
        next_path = _local(str(form.get("next") or "/"))
        if not await verify_csrf(request):
            return render(request, "login.html", 403, next_path=next_path, error="Form expired.")
        name, password = str(form.get("username", "")), str(form.get("password", ""))
        with engine.connect() as conn:
            row = conn.execute(
                sa.select(models.users.c.id, models.users.c.password_hash, models.users.c.admin)
                .where(models.users.c.username == name, models.users.c.state == "active")
            ).first()  # fmt: skip
        if row is None or not verify_password(password, row.password_hash):
            return render(
                request, "login.html", 401, next_path=next_path, error="Wrong name or password."
            )
        request.session.clear()
        request.session.update(user_id=int(row.id), username=name, admin=bool(row.admin))
        csrf_token(request)
        return RedirectResponse(next_path, status_code=303)

    @app.post("/logout", response_model=None)
    async def logout(request: Request) -> Response:
        if await verify_csrf(request):
            request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/", response_class=HTMLResponse, response_model=None)
    def home(request: Request) -> Response:
        user = signed_in(request)
        if isinstance(user, RedirectResponse):
            return user
        p = models.projects
        with engine.connect() as conn:
            projects = conn.execute(
                sa.select(p.c.id, p.c.name, p.c.path, p.c.star_count, p.c.last_activity_at)
                .where(p.c.creator_id == user)
                .order_by(p.c.id)
                .limit(20)
            ).all()
            if not projects:
                projects = conn.execute(
                    sa.select(p.c.id, p.c.name, p.c.path, p.c.star_count, p.c.last_activity_at)
                    .order_by(p.c.star_count.desc(), p.c.id)
                    .limit(20)
                ).all()
            mine = conn.execute(
                sa.select(models.issues.c.id, models.issues.c.title, models.issues.c.project_id)
                .where(models.issues.c.assignee_id == user, models.issues.c.state == "opened")
                .order_by(models.issues.c.id.desc())
                .limit(10)
            ).all()
        return render(request, "home.html", projects=projects, assigned=mine)

    @app.get("/projects/{project_id}", response_class=HTMLResponse, response_model=None)
    def project_page(request: Request, project_id: int) -> Response:
        user = signed_in(request)
        if isinstance(user, RedirectResponse):
            return user
        with engine.connect() as conn:
            project = conn.execute(
                sa.select(models.projects).where(models.projects.c.id == project_id)
            ).first()
            if project is None:
                return render(request, "missing.html", 404, what="project")
            i, m, pl = models.issues, models.merge_requests, models.ci_pipelines
            issues = conn.execute(
                sa.select(i.c.id, i.c.title, i.c.state, i.c.created_at)
                .where(i.c.project_id == project_id)
                .order_by(i.c.id.desc())
                .limit(15)
            ).all()
            merge_requests = conn.execute(
                sa.select(m.c.id, m.c.title, m.c.state)
                .where(m.c.target_project_id == project_id)
                .order_by(m.c.id.desc())
                .limit(10)
            ).all()
            pipelines = conn.execute(
                sa.select(pl.c.id, pl.c.status, pl.c.created_at)
                .where(pl.c.project_id == project_id)
                .order_by(pl.c.id.desc())
                .limit(10)
            ).all()
        return render(
            request,
            "project.html",
            project=project,
            project_id=project_id,
            issues=issues,
            merge_requests=merge_requests,
            pipelines=pipelines,
        )

    @app.post("/projects/{project_id}/issues", response_model=None)
    async def create_issue(request: Request, project_id: int) -> Response:
        user = signed_in(request)
        if isinstance(user, RedirectResponse):
            return user
        if not await verify_csrf(request):
            return render(request, "missing.html", 403, what="form (it expired: reload the page)")
        title = str((await request.form()).get("title", "")).strip()[:255] or "Untitled"
        with engine.begin() as conn:
            namespace = conn.execute(
                sa.select(models.projects.c.namespace_id).where(models.projects.c.id == project_id)
            ).scalar()
            if namespace is None:
                return render(request, "missing.html", 404, what="project")
            issue_id = conn.execute(
                models.issues.insert().values(**_issue_row(project_id, user, title))
            ).inserted_primary_key
        track(
            request, "issues", "create", "g_project_management_issue_created",
            project=project_id, namespace=namespace,
        )  # fmt: skip
        assert issue_id is not None
        return RedirectResponse(f"/issues/{issue_id[0]}", status_code=303)

    @app.get("/issues/{issue_id}", response_class=HTMLResponse, response_model=None)
    def issue_page(request: Request, issue_id: int) -> Response:
        user = signed_in(request)
        if isinstance(user, RedirectResponse):
            return user
        i, n, u = models.issues, models.notes, models.users
        with engine.connect() as conn:
            issue = conn.execute(sa.select(i).where(i.c.id == issue_id)).first()
            if issue is None:
                return render(request, "missing.html", 404, what="issue")
            notes = conn.execute(
                sa.select(n.c.id, n.c.note, n.c.created_at, u.c.username)
                .join(u, u.c.id == n.c.author_id)
                .where(n.c.noteable_type == "Issue", n.c.noteable_id == issue_id)
                .order_by(n.c.id)
                .limit(50)
            ).all()
        return render(request, "issue.html", issue=issue, notes=notes, project_id=issue.project_id)

    @app.post("/issues/{issue_id}/notes", response_model=None)
    async def add_note(request: Request, issue_id: int) -> Response:
        return await _issue_action(request, issue_id, "comment")

    @app.post("/issues/{issue_id}/state", response_model=None)
    async def change_state(request: Request, issue_id: int) -> Response:
        return await _issue_action(request, issue_id, "state")

    async def _issue_action(request: Request, issue_id: int, kind: str) -> Response:
        user = signed_in(request)
        if isinstance(user, RedirectResponse):
            return user
        if not await verify_csrf(request):
            return render(request, "missing.html", 403, what="form (it expired: reload the page)")
        form = await request.form()
        i = models.issues
        with engine.begin() as conn:
            issue = conn.execute(
                sa.select(i.c.project_id, i.c.state).where(i.c.id == issue_id)
            ).first()
            if issue is None:
                return render(request, "missing.html", 404, what="issue")
            now = datetime.now(UTC)
            if kind == "comment":
                text = str(form.get("note", "")).strip()[:10_000] or "(empty)"
                conn.execute(
                    models.notes.insert().values(
                        project_id=issue.project_id, author_id=user, noteable_type="Issue",
                        noteable_id=issue_id, system=False, note=text, created_at=now,
                    )
                )  # fmt: skip
                action, event = "comment", "g_project_management_issue_comment_added"
            else:
                closing = issue.state == "opened"
                conn.execute(
                    i.update()
                    .where(i.c.id == issue_id)
                    .values(
                        state="closed" if closing else "opened",
                        closed_at=now if closing else None,
                    )
                )  # fmt: skip
                action = "close" if closing else "reopen"
                event = f"g_project_management_issue_{'closed' if closing else 'reopened'}"
        track(request, "issues", action, event, project=issue.project_id)
        return RedirectResponse(f"/issues/{issue_id}", status_code=303)

    return app


def _issue_row(project_id: int, author: int, title: str) -> dict[str, Any]:
    """The columns of a new issue (the others take their defaults)."""
    return {
        "project_id": project_id,
        "author_id": author,
        "title": title,
        "state": "opened",
        "issue_type": "issue",
        "confidential": False,
        "service_desk": False,
        "created_at": datetime.now(UTC),
    }


def _local(path: str) -> str:
    """``path`` if it stays on this site, else ``/`` (no open redirect after login)."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path
