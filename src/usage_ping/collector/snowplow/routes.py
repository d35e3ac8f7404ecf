"""The collector's endpoints, as the official Snowplow collector serves them.

- ``GET /i``: one event in the querystring; answers a 1x1 GIF that no cache keeps.
- ``GET /com.snowplowanalytics.snowplow/tp2``: the same (GIF answer).
- ``POST /com.snowplowanalytics.snowplow/tp2``: a ``payload_data`` batch; answers ``ok``.
- ``OPTIONS`` on both: the CORS preflight.

Every answer echoes the request's ``Origin`` (``*`` without one) with
``Access-Control-Allow-Credentials: true``, so that browser trackers sending with credentials
may read it; with ``allowed_origins`` configured, other origins get no CORS headers (and a 403
preflight), which stops browsers on other sites from sending JSON POSTs.

The ``sp`` cookie carries the network user id: the ``nuid`` query parameter wins, then the
cookie, else a new UUID; the answer (re)sets the cookie. ``SP-Anonymous: *`` makes the id all
zeros, sets no cookie, and keeps no IP address, forwarding header or cookie.

Nothing a tracker sends is dropped: events that fail go to the bad store with their errors, and
so does a body over ``max_body_bytes`` (as a size violation), with a 200 answer either way, so
that trackers do not resend them. Only a failing database answers 500 (trackers retry it).
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from enum import Enum
from typing import Any
from urllib.parse import parse_qsl

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import Response

from usage_ping.collector.bodies import BodyTooLargeError, read_body
from usage_ping.collector.settings import ServiceSettings, SnowplowSettings
from usage_ping.collector.slots import IngestSlots
from usage_ping.collector.snowplow.enrich import (
    ANONYMOUS_USER_ID,
    Enricher,
    RequestContext,
    raw_event,
)
from usage_ping.collector.snowplow.iglu import Resolver
from usage_ping.collector.snowplow.micro import micro_router
from usage_ping.collector.snowplow.protocol import (
    PIXEL_PATH,
    TP2_PATH,
    Failure,
    events_from_body,
    events_from_querystring,
)
from usage_ping.collector.snowplow.tables import BadRow, EventStore, good_row

__all__ = ["PIXEL", "Collector", "mount_snowplow"]

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
"""A transparent 1x1 GIF."""

_PRIVATE_HEADERS = frozenset({"cookie", "authorization"})
_ADDRESS_HEADERS = frozenset({"x-forwarded-for", "forwarded", "x-real-ip"})


class Collector:
    """Turns requests into stored good and bad events.

    Args:
        settings: the collector's settings.
        engine: the service's database (migrated).
        resolver: the Iglu schemas (default: bundled plus ``settings.schema_dir``).
    """

    def __init__(
        self, settings: SnowplowSettings, engine: sa.Engine, resolver: Resolver | None = None
    ) -> None:
        self.settings = settings
        self.resolver = resolver or Resolver(settings.schema_dir)
        self.enricher = Enricher(self.resolver, settings)
        self.store = EventStore(engine)

    # -- the request ------------------------------------------------------------------------

    def context(self, request: Request, api_version: str) -> RequestContext:
        """The collector's record of a request: time, address, agent, network user id …"""
        headers = request.headers
        anonymous = headers.get("sp-anonymous") == "*"
        hidden = _PRIVATE_HEADERS | _ADDRESS_HEADERS if anonymous else _PRIVATE_HEADERS
        ip: str | None = None
        if anonymous:
            nuid = ANONYMOUS_USER_ID
        else:
            nuid = request.query_params.get("nuid") or ""
            if not nuid:
                cookie = request.cookies.get(self.settings.cookie_name, "")
                nuid = cookie if 0 < len(cookie) <= 128 else str(uuid.uuid4())
            forwarded = (
                headers.get("x-forwarded-for") if self.settings.trust_forwarded_for else None
            )
            if forwarded:
                ip = forwarded.split(",")[0].strip() or None
            if ip is None and request.client is not None:
                ip = request.client.host
        return RequestContext(
            collector_tstamp=datetime.now(UTC),
            api_version=api_version,
            ip=ip,
            useragent=headers.get("user-agent"),
            referer=headers.get("referer"),
            hostname=headers.get("host"),
            network_userid=nuid,
            headers=tuple(f"{k}: {v}" for k, v in headers.items() if k not in hidden),
            content_type=headers.get("content-type"),
            anonymous=anonymous,
        )

    def payload(
        self, request: Request, context: RequestContext, body: str | None
    ) -> dict[str, Any]:
        """Micro's ``collectorPayload``: the request as the collector saw it."""
        record = raw_event(None, context)
        del record["parameters"]
        record["querystring"] = [
            {"name": k, "value": v} for k, v in parse_qsl(request.url.query, keep_blank_values=True)
        ]
        record["body"] = body
        record["path"] = request.url.path
        return record

    def handle(
        self,
        request: Request,
        context: RequestContext,
        events: list[dict[str, str] | Failure],
        body: str | None,
    ) -> None:
        """Enriches the events and stores them, good and bad (blocking: in a worker thread)."""
        self.store.save(*self.rows(request, context, events, body))

    def rows(
        self,
        request: Request,
        context: RequestContext,
        events: list[dict[str, str] | Failure],
        body: str | None,
    ) -> tuple[list[dict[str, Any]], list[BadRow]]:
        """The events enriched: the good rows and the bad ones (CPU only, no I/O)."""
        good: list[dict[str, Any]] = []
        bad: list[BadRow] = []
        seen: set[str] = set()
        collector = context.collector_tstamp
        version = context.api_version
        for item in events:
            result = item if isinstance(item, Failure) else self.enricher.enrich(item, context)
            if isinstance(result, Failure):
                raw = (
                    raw_event(result.parameters, context) if result.parameters is not None else None
                )
                payload = self.payload(request, context, body if raw is None else None)
                bad.append(BadRow(collector, version, result.errors, payload, raw))
                continue
            event = result.event
            if event["event_fingerprint"] in seen:
                continue
            seen.add(event["event_fingerprint"])
            good.append(
                good_row(
                    event,
                    result.raw,
                    collector=collector,
                    derived=result.derived_tstamp,
                    schema=result.schema,
                    contexts=result.contexts,
                    is_bot=result.is_bot,
                )
            )
        return good, bad

    # -- the answer -------------------------------------------------------------------------

    def origin_allowed(self, origin: str | None) -> bool:
        """Whether answers to this Origin carry CORS headers."""
        allowed = self.settings.allowed_origins
        return not allowed or "*" in allowed or (origin is not None and origin in allowed)

    def answer(self, request: Request, context: RequestContext | None, response: Response) -> None:
        """Adds the CORS headers and the network user id cookie."""
        origin = request.headers.get("origin")
        if self.origin_allowed(origin):
            response.headers["Access-Control-Allow-Origin"] = origin or "*"
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Vary"] = "Origin"
        settings = self.settings
        if context is not None and settings.cookie_enabled and not context.anonymous:
            age = settings.cookie_max_age_days * 86_400
            response.set_cookie(
                settings.cookie_name,
                context.network_userid,
                max_age=age,
                expires=age,
                path="/",
                domain=settings.cookie_domain,
                secure=settings.cookie_secure,
                httponly=True,
                samesite="none" if settings.cookie_secure else "lax",
            )


def _pixel() -> Response:
    return Response(
        PIXEL,
        media_type="image/gif",
        headers={"Cache-Control": "no-cache, no-store, must-revalidate"},
    )


def mount_snowplow(
    app: FastAPI, settings: ServiceSettings, engine: sa.Engine, slots: IngestSlots | None = None
) -> None:
    """Adds the collector's endpoints (and the Micro API when enabled) to the service.

    ``slots``: the bound on ingest work at once that event batches share with pings (default:
    ``settings.ingest_concurrency`` for the collector alone).

    Raises:
        SchemaFileError: a schema in ``snowplow.schema_dir`` cannot be used.
    """
    config = settings.snowplow
    if not config.enabled:
        return
    collector = Collector(config, engine)
    app.state.snowplow = collector
    slots = slots or IngestSlots(settings.ingest_concurrency)

    async def get_event(request: Request, api_version: str) -> Response:
        context = collector.context(request, api_version)
        events = events_from_querystring(request.url.query)
        await slots.run(collector.handle, request, context, events, None)
        response = _pixel()
        collector.answer(request, context, response)
        return response

    async def pixel(request: Request) -> Response:
        return await get_event(request, "tp1")

    async def tp2_get(request: Request) -> Response:
        return await get_event(request, "tp2")

    async def tp2_post(request: Request) -> Response:
        context = collector.context(request, "tp2")
        try:
            body = await read_body(request, config.max_body_bytes)
        except BodyTooLargeError:
            error = f"size violation: the body is over {config.max_body_bytes} bytes"
            events: list[dict[str, str] | Failure] = [Failure([error])]
            await slots.run(collector.handle, request, context, events, None)
        else:
            query = dict(parse_qsl(request.url.query, keep_blank_values=True))
            text = body.decode("utf-8", "replace")

            def work() -> None:
                parsed = events_from_body(body, query, collector.resolver)
                collector.handle(request, context, parsed, text)

            await slots.run(work)
        response = Response("ok", media_type="text/plain")
        collector.answer(request, context, response)
        return response

    async def preflight(request: Request) -> Response:
        if not collector.origin_allowed(request.headers.get("origin")):
            return Response(status_code=403)
        response = Response(
            headers={
                "Access-Control-Allow-Headers": "Content-Type, SP-Anonymous",
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Max-Age": "3600",
            }
        )
        collector.answer(request, None, response)
        return response

    tags: list[str | Enum] = ["snowplow collector"]
    app.add_api_route(
        PIXEL_PATH, pixel, methods=["GET"], tags=tags, summary="One event in the querystring"
    )
    app.add_api_route(
        TP2_PATH, tp2_get, methods=["GET"], tags=tags, summary="One event in the querystring"
    )
    app.add_api_route(
        TP2_PATH, tp2_post, methods=["POST"], tags=tags, summary="A batch of events (payload_data)"
    )
    for path in (PIXEL_PATH, TP2_PATH):
        app.add_api_route(path, preflight, methods=["OPTIONS"], tags=tags, summary="CORS preflight")
    if config.micro:
        app.include_router(micro_router(collector.store, collector.resolver))
