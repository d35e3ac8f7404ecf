"""The central service as an ASGI app: ``create_app(settings)``, served by uvicorn.

Endpoints (all JSON; the OpenAPI documentation is at ``/docs``):

- ``POST /usage_data``: a ping (gzip accepted); 201 with the DevOps score (``conv_index``) for a
  new ping, 200 with the very same answer for a resend; 400 not JSON, 413 too large (also after
  decompression), 415 unknown encoding, 422 not a ping, 429 over the per-address rate.
- ``POST /usage_ping_errors``, ``POST /usage_ping_metadata``: what instances report besides pings.
- ``GET /upload`` and ``POST /upload``: the page and endpoint for payload files exported by
  air-gapped instances (``usage-ping export``).
- ``GET /health``.
- The Snowplow-compatible event collector (``GET /i``, ``GET|POST
  /com.snowplowanalytics.snowplow/tp2``) and, when enabled, its Micro API (``/micro/...``):
  :mod:`usage_ping.collector.snowplow`.
"""

from __future__ import annotations

import html
import json
import os
import threading
import time
import zlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import FastAPI, File, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response

from usage_ping import __version__
from usage_ping.collector.api import api_router
from usage_ping.collector.bodies import BodyTooLargeError, read_body
from usage_ping.collector.dashboards import mount_dashboards
from usage_ping.collector.dashboards.events import events_page_router
from usage_ping.collector.ingest import Ingestor, InvalidPingError
from usage_ping.collector.settings import ServiceSettings
from usage_ping.collector.slots import IngestSlots
from usage_ping.collector.snowplow import mount_snowplow
from usage_ping.collector.snowplow.api import events_api_router
from usage_ping.collector.storage import migrate, ping_errors, ping_metadata, service_engine
from usage_ping.payload.serialize import to_json

__all__ = ["SERVICE_CONFIG_ENV", "RateLimiter", "app_from_env", "create_app"]


class NotJSONError(Exception):
    """The body could not be parsed as JSON."""


class RateLimiter:
    """A token bucket per client address: ``per_minute`` requests, refilled continuously."""

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(per_minute)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> float:
        """0 if the request may go ahead, else the seconds until it may."""
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                if len(self._buckets) > 100_000:  # forget idle addresses
                    self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 120}
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


def _decode(body: bytes, encoding: str, limit: int) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise ValueError(encoding)
    inflater = zlib.decompressobj(wbits=47 if encoding != "deflate" else 15)  # 47: gzip or zlib
    data = inflater.decompress(body, limit + 1)
    if len(data) > limit or inflater.unconsumed_tail:
        raise BodyTooLargeError
    return data


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


_UPLOAD_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Upload a usage ping</title></head>
<body>
<h1>Upload a usage ping</h1>
{result}
<p>For instances without a connection to this service: run <code>usage-ping export --out
payload.json</code> on the instance, then upload the file here.</p>
<form method="post" action="/upload" enctype="multipart/form-data">
<input type="file" name="file" accept="application/json,.json" required>
<button type="submit">Upload</button>
</form>
</body></html>
"""


def _upload_result(response: Response, uuid: str) -> HTMLResponse:
    """The upload page again, saying what became of the file (for a browser's form post)."""
    answer = json.loads(bytes(response.body))
    if response.status_code >= 400:
        result = f'<p role="alert">Not stored: {html.escape(str(answer.get("error")))}</p>'
    else:
        index = answer.get("conv_index", {})
        what = "Stored" if response.status_code == 201 else "Already stored (a resend)"
        result = (
            f'<p role="status">{what}: ping {index.get("usage_data_id")} of instance '
            f'<a href="/dashboard/instances/{quote(uuid, safe="")}">{html.escape(uuid)}</a>, '
            f"DevOps score {index.get('score', 'n/a')}.</p>"
        )
    return HTMLResponse(_UPLOAD_PAGE.format(result=result), status_code=response.status_code)


_FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<rect width="16" height="16" rx="3" fill="#1f4e79"/>'
    '<path d="M3 12 L6 8 L9 10 L13 4" stroke="#fff" stroke-width="2" fill="none"/></svg>'
)


def create_app(
    settings: ServiceSettings | None = None, *, engine: sa.Engine | None = None
) -> FastAPI:
    """The central service, its database migrated to the latest schema."""
    settings = settings or ServiceSettings()
    engine = engine or service_engine(settings.database_url)
    migrate(engine)
    ingestor = Ingestor(engine, settings.score)
    limiter = RateLimiter(settings.ingest_per_minute)
    app = FastAPI(
        title="usage-ping central service",
        version=__version__,
        description="Receives usage pings from self-managed instances and scores them.",
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.ingestor = ingestor
    slots = app.state.ingest_slots = IngestSlots(settings.ingest_concurrency)

    def limited(request: Request) -> JSONResponse | None:
        source = request.client.host if request.client else "unknown"
        wait = limiter.allow(source)
        if wait > 0:
            return _error(
                429, "too many requests from this address", **{"Retry-After": str(int(wait) + 1)}
            )
        return None

    async def document(request: Request) -> tuple[Any, bytes]:
        """The parsed body, and the body as it was sent (decompressed)."""
        raw = await read_body(request, settings.max_body_bytes)
        encoding = request.headers.get("content-encoding", "").lower()
        body = _decode(raw, encoding, settings.max_body_bytes)
        try:
            return json.loads(body), body
        except (ValueError, RecursionError) as exc:  # not JSON, nested too deep, huge numbers
            raise NotJSONError from exc

    async def guarded(
        request: Request, handle: Callable[[Any, bytes], Awaitable[Response]]
    ) -> Response:
        refused = limited(request)
        if refused is not None:
            return refused
        try:
            parsed, body = await document(request)
        except BodyTooLargeError:
            return _error(413, f"the body is over {settings.max_body_bytes} bytes")
        except NotJSONError:
            return _error(400, "the body is not JSON (or nested too deeply)")
        except zlib.error:
            return _error(400, "the body is not valid gzip")
        except ValueError as exc:
            return _error(415, f"unsupported Content-Encoding {exc}")
        return await handle(parsed, body)

    def ping_response(parsed: Any, source: str, body: bytes | None = None) -> Response:
        try:
            stored = ingestor.ingest(parsed, source=source, body=body)
        except InvalidPingError as exc:
            return _error(422, str(exc))
        return JSONResponse(stored.response, status_code=201 if stored.created else 200)

    @app.post("/usage_data", status_code=201, summary="Receive a usage ping")
    async def usage_data(request: Request) -> Response:
        async def handle(parsed: Any, body: bytes) -> Response:
            return await slots.run(ping_response, parsed, "http", body)

        return await guarded(request, handle)

    def side_table(table: sa.Table, key: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            async def handle(parsed: Any, _body: bytes) -> Response:
                if not isinstance(parsed, dict):
                    return _error(422, "expected a JSON object")
                inner = parsed.get(key, parsed)
                uuid = inner.get("uuid") if isinstance(inner, dict) else None
                if uuid is not None:
                    uuid = str(uuid).replace("\x00", "")

                def store() -> None:
                    with engine.begin() as conn:
                        conn.execute(
                            table.insert().values(
                                uuid=str(uuid)[:64] if uuid is not None else None,
                                received_at=datetime.now(UTC),
                                body=to_json(parsed),
                            )
                        )

                await run_in_threadpool(store)
                return JSONResponse({}, status_code=201)

            return await guarded(request, handle)

        return endpoint

    app.add_api_route(
        "/usage_ping_errors",
        side_table(ping_errors, "error"),
        methods=["POST"],
        status_code=201,
        summary="Receive an instance's report of a failed ping",
    )
    app.add_api_route(
        "/usage_ping_metadata",
        side_table(ping_metadata, "metadata"),
        methods=["POST"],
        status_code=201,
        summary="Receive the per-metric metadata of a ping",
    )

    @app.get("/upload", response_class=HTMLResponse, summary="The upload page")
    def upload_page() -> str:
        return _UPLOAD_PAGE.format(result="")

    @app.post("/upload", summary="Upload a payload file exported by an air-gapped instance")
    async def upload(request: Request, file: UploadFile = File(...)) -> Response:  # noqa: B008
        refused = limited(request)
        if refused is not None:
            return refused
        raw = await file.read(settings.max_body_bytes + 1)
        if len(raw) > settings.max_body_bytes:
            return _error(413, f"the file is over {settings.max_body_bytes} bytes")
        uuid = ""
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON, nested too deep, huge numbers
            answered: Response = _error(
                400, "the file is not JSON (upload the file usage-ping export wrote)"
            )
        else:
            answered = await slots.run(ping_response, parsed, "upload", None)
            if isinstance(parsed, dict):
                uuid = str(parsed.get("uuid", ""))
        if "text/html" not in request.headers.get("accept", ""):
            return answered
        return _upload_result(answered, uuid)  # a browser's form post: the page, with the result

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        # Browsers ask for it on every page; an SVG answers for all of them (no 404 in consoles).
        return Response(
            _FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"}
        )

    @app.get("/health", summary="Liveness and database check")
    def health() -> dict[str, str]:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return {"status": "ok"}

    app.include_router(api_router(engine, settings))
    mount_dashboards(app, settings, engine)
    mount_snowplow(app, settings, engine, slots)
    app.include_router(events_api_router(engine, settings))
    app.include_router(events_page_router())
    return app


SERVICE_CONFIG_ENV = "USAGE_PING_SERVICE_CONFIG"
"""The environment variable naming the service's configuration file (for uvicorn workers)."""


def app_from_env() -> FastAPI:
    """The app configured from ``$USAGE_PING_SERVICE_CONFIG`` (defaults without it)."""
    path = os.environ.get(SERVICE_CONFIG_ENV)
    return create_app(ServiceSettings.load(path) if path else ServiceSettings())
