"""A Snowplow-Micro-compatible API over the event stores, for the operator's tests.

Tests written against Snowplow Micro run unchanged against the service (``snowplow.micro: true``
in its configuration; off by default, because these endpoints read and delete every event
without a login):

- ``GET|POST /micro/all``: ``{"total", "good", "bad"}``;
- ``GET|POST /micro/reset``: deletes every stored event, answers the zeroed summary;
- ``GET /micro/good``: every good event, newest first, as Micro's ``GoodEvent``
  (``{rawEvent, eventType, schema, contexts, event}``); ``POST /micro/good`` filters with a JSON
  body of optional keys, as Micro does (and, as Micro, ignores other keys): ``event_type``
  (``struct``, ``page_view`` …), ``schema`` (the event's Iglu URI), ``contexts`` (URIs that must
  all be attached), ``limit``;
- ``GET|POST /micro/bad``: the bad events as ``{collectorPayload, rawEvent, errors}``; the POST
  filters by ``vendor``, ``version`` (``tp1`` for ``/i``, ``tp2``) and ``limit``;
- ``GET /micro/iglu/{vendor}/{name}/{format}/{version}``: a schema the collector resolves, or 404.

Events are read from the database, so every worker of the service answers the same.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from usage_ping.collector.snowplow.enrich import ATOMIC_FIELDS
from usage_ping.collector.snowplow.iglu import Resolver, SchemaKey
from usage_ping.collector.snowplow.tables import EventStore

__all__ = ["micro_router"]

_GOOD_FILTERS = {"event_type": str, "schema": str, "contexts": list, "limit": int}
_BAD_FILTERS = {"vendor": str, "version": str, "limit": int}


class _FilterError(ValueError):
    pass


async def _filters(request: Request, allowed: dict[str, type]) -> dict[str, Any]:
    body = await request.body()
    if not body.strip():
        return {}
    try:
        filters = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise _FilterError("the body is not JSON") from exc
    if not isinstance(filters, dict):
        raise _FilterError("the filters are a JSON object")
    known: dict[str, Any] = {}
    for name, value in filters.items():
        expected = allowed.get(name)
        if expected is None or value is None:
            continue  # Micro ignores keys it does not know, and nulls
        if not isinstance(value, expected) or isinstance(value, bool):
            raise _FilterError(f"{name} must be a {expected.__name__}")
        if isinstance(value, list) and not all(isinstance(uri, str) for uri in value):
            raise _FilterError("contexts must be a list of Iglu URIs")
        if name == "limit" and isinstance(value, int) and value < 0:
            raise _FilterError("limit must not be negative")
        known[name] = value
    return known


def _full_event(stored: str) -> str:
    """The enriched event with every atomic field, as Micro shows it (the store omits nulls)."""
    event: dict[str, Any] = dict.fromkeys(ATOMIC_FIELDS)
    event.update(json.loads(stored))
    return json.dumps(event)


def _json_array(items: list[str]) -> Response:
    return Response("[" + ",".join(items) + "]", media_type="application/json")


def micro_router(store: EventStore, resolver: Resolver) -> APIRouter:
    """The ``/micro`` endpoints over ``store`` and ``resolver``."""
    router = APIRouter(prefix="/micro", tags=["snowplow micro"])

    def summary() -> dict[str, int]:
        good, bad = store.counts()
        return {"total": good + bad, "good": good, "bad": bad}

    @router.api_route("/all", methods=["GET", "POST"], summary="How many events are stored")
    def all_events() -> dict[str, int]:
        return summary()

    @router.api_route("/reset", methods=["GET", "POST"], summary="Delete every stored event")
    def reset() -> dict[str, int]:
        store.reset()
        return summary()

    def good(filters: dict[str, Any]) -> Response:
        rows = store.good(
            event_type=filters.get("event_type"),
            schema=filters.get("schema"),
            contexts=filters.get("contexts", ()),
            limit=filters.get("limit"),
        )
        return _json_array(
            [
                f'{{"rawEvent":{raw},"eventType":{json.dumps(event_type)},'
                f'"schema":{json.dumps(schema)},"contexts":{contexts},'
                f'"event":{_full_event(event)}}}'
                for raw, event_type, schema, contexts, event in rows
            ]
        )

    def bad(filters: dict[str, Any]) -> Response:
        rows = store.bad(
            vendor=filters.get("vendor"),
            version=filters.get("version"),
            limit=filters.get("limit"),
        )
        return _json_array(
            [
                f'{{"collectorPayload":{payload},"rawEvent":{raw or "null"},"errors":{errors}}}'
                for payload, raw, errors in rows
            ]
        )

    @router.get("/good", summary="Good events, newest first")
    def good_all() -> Response:
        return good({})

    @router.post("/good", summary="Good events matching Micro's filters")
    async def good_filtered(request: Request) -> Response:
        try:
            filters = await _filters(request, _GOOD_FILTERS)
        except _FilterError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return await run_in_threadpool(good, filters)

    @router.get("/bad", summary="Bad events with their errors, newest first")
    def bad_all() -> Response:
        return bad({})

    @router.post("/bad", summary="Bad events matching Micro's filters")
    async def bad_filtered(request: Request) -> Response:
        try:
            filters = await _filters(request, _BAD_FILTERS)
        except _FilterError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return await run_in_threadpool(bad, filters)

    @router.get("/iglu/{vendor}/{name}/{format}/{version}", summary="A schema, by its Iglu path")
    def iglu(vendor: str, name: str, format: str, version: str) -> Response:
        key = SchemaKey(vendor, name, format, version)
        schema = resolver.schema(key)
        if schema is None:
            return JSONResponse({"error": f"{key.uri} is not known"}, status_code=404)
        return JSONResponse(schema)

    return router
