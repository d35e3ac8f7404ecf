"""The administrator's "Usage statistics" page, as a router for the host's app.

What an administrator sees and does at ``{prefix}`` (default ``/admin/usage``):

- **Usage ping on or off** (``POST {prefix}/enabled``, a checkbox). When the configuration file
  locks it off (``enabled: false``), the checkbox is disabled and the page says where to change it;
  a forged request to turn it on is refused with 409.
- **Data categories sent** (``POST {prefix}/categories``): standard, subscription, operational,
  optional.
- **Preview payload** (``GET {prefix}/preview``): the exact document the instance would send,
  built now (in a worker thread: the event loop is not blocked) with how long the build took;
  ``GET {prefix}/preview.json`` is the same document as the JSON bytes that would be sent.
- **Download payload** (``POST {prefix}/download``): what ``usage-ping export`` writes, as a file
  (``Content-Disposition: attachment``) to upload by hand from an air-gapped host. Like the
  command, it stores the payload in the outbox and marks it exported, so it is not sent twice.
- **Delivery**: when the last payload was built and sent, what is pending, and the next weekly
  slot.
- **DevOps report** from the last delivered payload's response: the score and, per feature, the
  instance against the leader as a Plotly bar chart (``plotly.min.js`` served under
  ``{prefix}/static/`` from the installed ``plotly`` package, no CDN) and a table.

The host supplies ``authorize`` (may this request administer usage statistics? otherwise 403),
``csrf_token`` (put into every form, in the field ``csrf_field``) and ``verify_csrf`` (checked on
every POST, 403 when it fails). See :mod:`usage_ping.web.hooks`. Pages are sent with
``Cache-Control: no-store``: they show what the instance reports about itself.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from usage_ping.delivery.outbox import OutboxRow
from usage_ping.delivery.schedule import next_run
from usage_ping.delivery.submit import devops_report
from usage_ping.payload.serialize import to_json
from usage_ping.state import CATEGORIES, SwitchLockedError
from usage_ping.web.assets import asset
from usage_ping.web.assets import asset_response as _asset_response
from usage_ping.web.hooks import Authorize, CsrfToken, VerifyCsrf, call
from usage_ping.web.report import ReportView, report_view
from usage_ping.web.templates import render

if TYPE_CHECKING:
    from usage_ping.instance import UsagePing

__all__ = ["CATEGORY_DESCRIPTIONS", "admin_router"]

logger = logging.getLogger("usage_ping")

CATEGORY_DESCRIPTIONS: dict[str, str] = {
    "standard": "Metrics that describe the installation: its settings and components.",
    "subscription": "Metrics that the license and the subscription need, such as active users.",
    "operational": "How features are used (counts of issues, pipelines, deployments and the "
    "like), so that the vendor can support the instance and improve them; the DevOps report is "
    "computed from them.",
    "optional": "Further usage metrics that help product decisions.",
}
"""What each data category holds, as the page explains it."""

_NOTICES = {
    "enabled": "Usage ping is on.",
    "disabled": "Usage ping is off: nothing is built, sent or counted.",
    "categories": "The data categories were saved.",
}
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
_MAX_FORM_BYTES = 16 * 1024


@dataclass(frozen=True)
class _Overview:
    """What the page shows, read in one worker-thread call."""

    uuid: str
    enabled: bool
    locked_off: bool
    source: str
    categories: frozenset[str]
    latest: OutboxRow | None
    last_sent: OutboxRow | None
    pending: int
    slot: str
    next_run: datetime | None
    report: ReportView | None


class _Admin:
    def __init__(
        self,
        ping: UsagePing,
        *,
        authorize: Authorize,
        csrf_token: CsrfToken,
        verify_csrf: VerifyCsrf,
        csrf_field: str,
        prefix: str,
    ) -> None:
        self.ping = ping
        self.authorize = authorize
        self.csrf_token = csrf_token
        self.verify_csrf = verify_csrf
        self.csrf_field = csrf_field
        self.prefix = prefix

    # -- helpers ----------------------------------------------------------------------------------

    def base(self, request: Request) -> str:
        """The page's URL path, wherever the router is included or mounted."""
        return str(request.scope.get("root_path", "")) + self.prefix

    def home(self, request: Request) -> str:
        """The page's own URL (mounted with an empty prefix, its route is ``/``)."""
        return self.base(request) + ("" if self.prefix else "/")

    def static(self, request: Request, name: str) -> str:
        found = asset(name)
        version = f"?v={found.etag}" if found is not None else ""
        return f"{self.base(request)}/static/{name}{version}"

    async def page(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        html = render(
            template,
            base=self.base(request),
            home=self.home(request),
            css=self.static(request, "admin.css"),
            plotly_js=self.static(request, "plotly.min.js"),
            admin_js=self.static(request, "admin.js"),
            **context,
        )
        return HTMLResponse(html, status_code=status, headers=_HEADERS)

    async def message(self, request: Request, status: int, title: str, text: str) -> HTMLResponse:
        return await self.page(request, "message.html", status, title=title, text=text)

    async def denied(self, request: Request, *, post: bool) -> Response | None:
        """403 unless the host authorizes the request (and, for a POST, its CSRF token)."""
        if not await call(self.authorize, request):
            return await self.message(
                request, 403, "Forbidden", "Only administrators can see the usage statistics."
            )
        if post:
            length = request.headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > _MAX_FORM_BYTES):
                return await self.message(request, 413, "Too large", "The form is too large.")
            await request.form()  # read once here, so that an async verify_csrf can use it
            if not await call(self.verify_csrf, request):
                return await self.message(
                    request, 403, "Forbidden", "The form has expired: reload the page and retry."
                )
        return None

    def overview(self) -> _Overview:
        ping = self.ping
        outbox = ping.outbox
        enabled = ping.enabled
        last_sent = outbox.last_sent()
        report = devops_report(last_sent) if last_sent is not None else None
        slot = ping.slot()
        return _Overview(
            uuid=ping.state.uuid,
            enabled=enabled,
            locked_off=ping.settings.locked_off,
            source=ping.settings.source,
            categories=ping.state.categories,
            latest=outbox.latest(),
            last_sent=last_sent,
            pending=len(outbox.pending()),
            slot=slot.describe(),
            next_run=next_run(slot, ping.clock()) if enabled else None,
            report=report_view(report) if report is not None else None,
        )

    async def show(self, request: Request, status: int = 200, error: str | None = None) -> Response:
        overview = await run_in_threadpool(self.overview)
        notice = _NOTICES.get(request.query_params.get("saved", ""))
        return await self.page(
            request,
            "admin.html",
            status,
            o=overview,
            categories=[(c, CATEGORY_DESCRIPTIONS[c]) for c in CATEGORIES],
            csrf_field=self.csrf_field,
            csrf_token=await call(self.csrf_token, request),
            notice=None if error else notice,
            error=error,
        )

    def saved(self, request: Request, what: str) -> RedirectResponse:
        return RedirectResponse(f"{self.home(request)}?saved={what}", status_code=303)

    # -- endpoints --------------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        return await self.denied(request, post=False) or await self.show(request)

    async def set_enabled(self, request: Request) -> Response:
        refused = await self.denied(request, post=True)
        if refused is not None:
            return refused
        wanted = (await request.form()).get("enabled") in ("true", "on", "1")
        try:
            await run_in_threadpool(self.ping.enable if wanted else self.ping.disable)
        except SwitchLockedError:
            return await self.show(
                request,
                409,
                error=f"Usage ping is locked off in {self.ping.settings.source} and cannot be "
                "turned on here.",
            )
        return self.saved(request, "enabled" if wanted else "disabled")

    async def set_categories(self, request: Request) -> Response:
        refused = await self.denied(request, post=True)
        if refused is not None:
            return refused
        chosen = [str(c) for c in (await request.form()).getlist("categories")]
        try:
            await run_in_threadpool(self.ping.state.set_categories, chosen)
        except ValueError as exc:
            return await self.show(request, 400, error=str(exc))
        return self.saved(request, "categories")

    async def _build(self) -> tuple[dict[str, Any] | None, float]:
        started = time.perf_counter()
        payload = await run_in_threadpool(self.ping.build)
        return payload, time.perf_counter() - started

    def _disabled_text(self) -> str:
        if self.ping.settings.locked_off:
            return f"Usage ping is locked off in {self.ping.settings.source}: nothing is built."
        return "Usage ping is off: nothing is built. Turn it on to preview the payload."

    async def preview(self, request: Request) -> Response:
        refused = await self.denied(request, post=False)
        if refused is not None:
            return refused
        try:
            payload, seconds = await self._build()
        except Exception as exc:  # the host's database is down, the dictionary is invalid...
            logger.warning("usage ping preview failed: %s", exc, exc_info=exc)
            text = f"The payload could not be built: {type(exc).__name__}: {exc}"
            return await self.message(request, 500, "Preview failed", text)
        if payload is None:
            return await self.message(request, 409, "Nothing to preview", self._disabled_text())
        entries = payload.get("meta", {}).get("metrics", [])
        return await self.page(
            request,
            "preview.html",
            text=to_json(payload, indent=2),
            seconds=seconds,
            metrics=len(entries),
            failed=[e for e in entries if "error" in e],
            size=len(to_json(payload).encode()),
        )

    async def preview_json(self, request: Request) -> Response:
        refused = await self.denied(request, post=False)
        if refused is not None:
            return refused
        try:
            payload, seconds = await self._build()
        except Exception as exc:
            logger.warning("usage ping preview failed: %s", exc, exc_info=exc)
            text = f"the payload could not be built: {type(exc).__name__}: {exc}"
            return JSONResponse({"message": text}, 500, headers=_HEADERS)
        if payload is None:
            return JSONResponse({"message": self._disabled_text()}, 409, headers=_HEADERS)
        headers = {**_HEADERS, "Server-Timing": f"build;dur={seconds * 1000:.0f}"}
        return Response(to_json(payload), media_type="application/json", headers=headers)

    def _export(self) -> OutboxRow | None:
        with tempfile.TemporaryDirectory(prefix="usage-ping-") as folder:
            return self.ping.export(Path(folder) / "payload.json")

    async def download(self, request: Request) -> Response:
        refused = await self.denied(request, post=True)
        if refused is not None:
            return refused
        try:
            row = await run_in_threadpool(self._export)
        except RuntimeError as exc:  # the instance lock is held by a submission
            return await self.message(request, 409, "Busy", f"{exc}.")
        except Exception as exc:  # the host's database is down, the dictionary is invalid...
            logger.warning("usage ping download failed: %s", exc, exc_info=exc)
            text = f"The payload could not be built: {type(exc).__name__}: {exc}"
            return await self.message(request, 500, "Download failed", text)
        if row is None:
            return await self.message(request, 409, "Nothing to download", self._disabled_text())
        name = f"usage-ping-{row.recorded_at:%Y%m%d-%H%M%S}.json"
        headers = {**_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'}
        return Response(row.body, media_type="application/json", headers=headers)

    async def static_file(self, request: Request) -> Response:
        return _asset_response(str(request.path_params["name"]), request)


def admin_router(
    ping: UsagePing,
    *,
    authorize: Authorize,
    csrf_token: CsrfToken,
    verify_csrf: VerifyCsrf,
    csrf_field: str = "csrf_token",
    prefix: str = "/admin/usage",
) -> APIRouter:
    """The "Usage statistics" admin page as a router (see the module documentation).

    Args:
        ping: the instance.
        authorize: the host's check: may this request administer usage statistics (403 if not)?
        csrf_token: the host's CSRF token for the request's session, put into the forms.
        verify_csrf: the host's check of a POST's CSRF token (403 if it fails); the token
            arrives in the form field ``csrf_field``.
        csrf_field: the form field that carries the token.
        prefix: where the page lives.

    Example:
        >>> app.include_router(  # doctest: +SKIP
        ...     admin_router(ping, authorize=is_admin, csrf_token=token, verify_csrf=csrf_ok)
        ... )

    For an ASGI app that is not FastAPI, make it with an empty prefix and mount it with
    :func:`~usage_ping.web.mount.mountable`:
    ``Mount("/admin/usage", app=mountable(admin_router(ping, ..., prefix="")))``.
    """
    admin = _Admin(
        ping,
        authorize=authorize,
        csrf_token=csrf_token,
        verify_csrf=verify_csrf,
        csrf_field=csrf_field,
        prefix=prefix,
    )
    router = APIRouter(prefix=prefix, include_in_schema=False)
    routes: list[tuple[str, Any, str, str]] = [
        ("" if prefix else "/", admin.index, "GET", "index"),
        ("/enabled", admin.set_enabled, "POST", "enabled"),
        ("/categories", admin.set_categories, "POST", "categories"),
        ("/preview", admin.preview, "GET", "preview"),
        ("/preview.json", admin.preview_json, "GET", "preview_json"),
        ("/download", admin.download, "POST", "download"),
        ("/static/{name}", admin.static_file, "GET", "static"),
    ]
    for path, endpoint, method, name in routes:
        router.add_api_route(path, endpoint, methods=[method], name=f"usage_ping_admin_{name}")
    return router
