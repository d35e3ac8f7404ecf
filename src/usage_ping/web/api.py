"""The UsageData HTTP API: frontend code counts events through the host.

Two endpoints, as GitLab's ``lib/api/usage_data.rb``, each taking one parameter ``event`` (in a
JSON object, a form, or the query string):

``POST {prefix}/increment_counter``
    Adds one to a plain counter (:class:`~usage_ping.events.Counter` or
    :class:`~usage_ping.events.HashCounter`). ``event`` is a counter's metric name,
    ``<prefix>_<event>`` (``wiki_pages_create`` increments event ``create`` of counter
    ``wiki_pages``), as GitLab's ``UsageDataCounters.count``. The known names are those of the
    counters the instance was given (``UsagePing(counters=...)``) and of ``counters=`` here.
``POST {prefix}/increment_unique_users``
    Tracks the signed-in user's id for a known event
    (:meth:`~usage_ping.events.EventCounter.track_event`).

Answers, checked in this order (GitLab's):

- **404** when the flag ``usage_data_api`` is off: the API does not exist then.
- **411 / 413** when the body has no length or is longer than 16 KiB (it holds one name).
- **403** when the host's CSRF check fails (``verify_csrf``).
- **401** when nobody is signed in (``authenticate`` returns None).
- **400** when ``event`` is missing, not a string, or not a known event (of the counters, or of
  the known events for unique users).
- **200** otherwise, with ``{"event": ..., "tracked": true|false}`` and, when false, a
  ``reason``: the event's feature flag is off, usage ping is disabled, or the count could not be
  recorded (a store that is down, logged to the ``usage_ping`` logger). A tracking failure never
  becomes an error answer: it goes through the fail-safe boundary
  (:func:`usage_ping.fallback.call_safely`) and the API still answers 200, as GitLab's does.

**Flags.** ``flags`` (a :class:`~usage_ping.events.FeatureFlags`) decides ``usage_data_api``,
which is on unless the host turns it off (the default flags declare it on, as GitLab since
13.7; a host passing its own flags declares it, e.g. ``FeatureFlags.from_table(engine,
defaults={"usage_data_api": True})``), and the per-event flags of counter events named in
``counter_flags``. A known event's own ``feature_flag`` is decided by the event counter's flags
(``ping.events.flags``), the same ones that gate ``track_event`` in the host's backend code, so the
API and the backend always agree; a host with one set of flags gives the same object to both.

Tracking writes to the counter store, so it runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from usage_ping.events.counter import FeatureFlags
from usage_ping.events.plain import Counter, HashCounter
from usage_ping.fallback import call_safely
from usage_ping.web.hooks import Authenticate, VerifyCsrf, call

if TYPE_CHECKING:
    from usage_ping.instance import UsagePing

__all__ = ["API_FLAG", "MAX_BODY_BYTES", "default_flags", "usage_data_router"]

API_FLAG = "usage_data_api"
"""The feature flag that switches the whole UsageData API (404 when off)."""

MAX_BODY_BYTES = 16 * 1024
"""The largest request body accepted: the API takes one event name."""

_NOT_RECORDED = "the count could not be recorded (see the usage_ping log)"

_EVENT_BODY = {
    "type": "object",
    "required": ["event"],
    "properties": {"event": {"type": "string", "description": "the event to count"}},
}
_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "description": "``event`` may also be given in the query string.",
        "content": {
            "application/json": {"schema": _EVENT_BODY},
            "application/x-www-form-urlencoded": {"schema": _EVENT_BODY},
        },
    },
}
_MESSAGE = {"type": "object", "properties": {"message": {"type": "string"}}}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Answered; ``tracked`` says whether the event was counted, and if not, "
        "``reason`` says why (a flag off, usage ping disabled, the store down).",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "event": {"type": "string"},
                        "tracked": {"type": "boolean"},
                        "reason": {"type": "string"},
                    },
                }
            }
        },
    },
    **{
        code: {"description": text, "content": {"application/json": {"schema": _MESSAGE}}}
        for code, text in (
            (400, "``event`` is missing or not a known event"),
            (401, "Nobody is signed in"),
            (403, "The CSRF token is missing or invalid"),
            (404, "The usage_data_api flag is off"),
            (413, "The body is longer than 16 KiB"),
        )
    },
}


def default_flags() -> FeatureFlags:
    """The flags used when the host gives none: ``usage_data_api`` on, every other flag off."""
    return FeatureFlags(defaults={API_FLAG: True})


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


@dataclass(frozen=True)
class _Outcome:
    tracked: bool
    reason: str | None = None

    def response(self, event: str) -> JSONResponse:
        body: dict[str, Any] = {"event": event, "tracked": self.tracked}
        if self.reason is not None:
            body["reason"] = self.reason
        return JSONResponse(body)


class _BadRequestError(Exception):
    """The request's parameters cannot be read; the message is the 400 answer."""


def _body_problem(request: Request) -> JSONResponse | None:
    """411 or 413 when the body is unbounded or too long (checked before it is read)."""
    length = request.headers.get("content-length")
    if length is None:
        if "transfer-encoding" in request.headers:
            return _error(411, "411 Length Required")
        return None
    if not length.isdigit() or int(length) > MAX_BODY_BYTES:
        return _error(413, f"413 Payload Too Large - at most {MAX_BODY_BYTES} bytes")
    return None


async def _event_param(request: Request) -> str:
    """``event`` from a JSON object, a form, or the query string."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    found: Any = None
    if media == "application/json" or media.endswith("+json"):
        body = await request.body()
        if body.strip():
            try:
                data = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                raise _BadRequestError("400 Bad request - the body is not valid JSON") from None
            if not isinstance(data, dict):
                raise _BadRequestError("400 Bad request - the body must be a JSON object")
            found = data.get("event")
    elif media == "application/x-www-form-urlencoded":
        body = await request.body()
        try:
            values = parse_qs(body.decode("utf-8"), strict_parsing=False)
        except UnicodeDecodeError:
            raise _BadRequestError("400 Bad request - the form is not UTF-8") from None
        found = values["event"][0] if values.get("event") else None
    elif media == "multipart/form-data":
        form = await request.form()
        found = form.get("event")
    if found is None:
        found = request.query_params.get("event")
    if found is None or found == "":
        raise _BadRequestError("400 Bad request - event is missing")
    if not isinstance(found, str):
        raise _BadRequestError("400 Bad request - event must be a string")
    return found


_Target = tuple[Counter | HashCounter, str]


def _counter_index(counters: Iterable[Counter | HashCounter]) -> dict[str, _Target]:
    """``{"<prefix>_<event>": (counter, event)}``; two counters claiming one name are refused."""
    index: dict[str, _Target] = {}
    for counter in counters:
        for name, event in zip(counter.metric_names(), counter.events, strict=True):
            if name in index and index[name][0] is not counter:
                raise ValueError(
                    f"counter event {name} is claimed by both {index[name][0]!r} and {counter!r}"
                )
            index[name] = (counter, event)
    return index


class _UsageDataAPI:
    """The two endpoints, bound to one instance and the host's checks."""

    def __init__(
        self,
        ping: UsagePing,
        *,
        authenticate: Authenticate,
        verify_csrf: VerifyCsrf,
        flags: FeatureFlags,
        counters: Iterable[Counter | HashCounter],
        counter_flags: Mapping[str, str],
    ) -> None:
        self.ping = ping
        self.authenticate = authenticate
        self.verify_csrf = verify_csrf
        self.flags = flags
        self.counters = _counter_index(counters)
        unknown = sorted(set(counter_flags) - set(self.counters))
        if unknown:
            raise ValueError(f"counter_flags names events no counter has: {', '.join(unknown)}")
        self.counter_flags = dict(counter_flags)
        # Loaded now, so that a bad known-events file fails when the host starts, not per request.
        self.events = ping.events

    async def _checked(self, request: Request) -> tuple[object, str] | JSONResponse:
        """The user id and the event, or the error answer."""
        if not self.flags.enabled(API_FLAG):
            return _error(404, "404 Not Found")
        problem = _body_problem(request)
        if problem is not None:
            return problem
        if not await call(self.verify_csrf, request):
            return _error(403, "403 Forbidden - Invalid CSRF token is provided")
        user = await call(self.authenticate, request)
        if user is None:
            return _error(401, "401 Unauthorized")
        try:
            event = await _event_param(request)
        except _BadRequestError as exc:
            return _error(400, str(exc))
        return user, event

    async def increment_counter(self, request: Request) -> Response:
        checked = await self._checked(request)
        if isinstance(checked, Response):
            return checked
        _, name = checked
        target = self.counters.get(name)
        if target is None:
            return _error(400, f"400 Bad request - unknown event {name!r}")
        flag = self.counter_flags.get(name)
        if flag is not None and not self.flags.enabled(flag):
            return _Outcome(False, f"feature flag {flag} is off").response(name)
        counter, event = target

        def count() -> _Outcome:
            if not self.ping.counting():
                return _Outcome(False, "usage ping is disabled")
            return _Outcome(True) if counter.increment(event) else _Outcome(False, _NOT_RECORDED)

        outcome = await run_in_threadpool(
            call_safely,
            count,
            fallback=_Outcome(False, _NOT_RECORDED),
            description=f"usage_data API increment_counter {name}",
        )
        return outcome.response(name)

    async def increment_unique_users(self, request: Request) -> Response:
        checked = await self._checked(request)
        if isinstance(checked, Response):
            return checked
        user, name = checked
        events = self.events
        known = events.events.get(name) if events is not None else None
        if events is None or known is None:
            return _error(400, f"400 Bad request - unknown event {name!r}")
        flag = known.feature_flag
        if flag is not None and not events.flags.enabled(flag):
            return _Outcome(False, f"feature flag {flag} is off").response(name)

        def track() -> _Outcome:
            if not self.ping.counting():
                return _Outcome(False, "usage ping is disabled")
            tracked = events.track_event(name, user)
            return _Outcome(True) if tracked else _Outcome(False, _NOT_RECORDED)

        outcome = await run_in_threadpool(
            call_safely,
            track,
            fallback=_Outcome(False, _NOT_RECORDED),
            description=f"usage_data API increment_unique_users {name}",
        )
        return outcome.response(name)


def usage_data_router(
    ping: UsagePing,
    *,
    authenticate: Authenticate,
    verify_csrf: VerifyCsrf,
    flags: FeatureFlags | None = None,
    counters: Iterable[Counter | HashCounter] = (),
    counter_flags: Mapping[str, str] | None = None,
    prefix: str = "/usage_data",
) -> APIRouter:
    """The UsageData API as a router for the host's app (see the module documentation).

    Args:
        ping: the instance (its counters, known events and master switch).
        authenticate: the host's check: the signed-in user's id, or None (401).
        verify_csrf: the host's check of the request's CSRF token (False: 403).
        flags: decides ``usage_data_api`` and ``counter_flags`` (default: :func:`default_flags`).
        counters: plain counters besides those the instance holds (``ping.counters``).
        counter_flags: ``{counter event: flag name}``: events counted only while their flag is on.
        prefix: where the endpoints live.

    Raises:
        ValueError: two counters claim one event name, or ``counter_flags`` names an unknown one.
        EventDefinitionError: the instance's known-events files are invalid.

    Example:
        >>> app.include_router(  # doctest: +SKIP
        ...     usage_data_router(ping, authenticate=current_user_id, verify_csrf=csrf_ok)
        ... )

    For an ASGI app that is not FastAPI (Starlette, say), make it with an empty prefix and mount
    it with :func:`~usage_ping.web.mount.mountable`:
    ``Mount("/usage_data", app=mountable(usage_data_router(ping, ..., prefix="")))``.
    """
    own = [c for c in ping.counters.values() if isinstance(c, Counter | HashCounter)]
    api = _UsageDataAPI(
        ping,
        authenticate=authenticate,
        verify_csrf=verify_csrf,
        flags=flags if flags is not None else default_flags(),
        counters=[*own, *(c for c in counters if all(c is not o for o in own))],
        counter_flags=counter_flags or {},
    )
    router = APIRouter(prefix=prefix, tags=["usage_data"])
    router.add_api_route(
        "/increment_counter",
        api.increment_counter,
        methods=["POST"],
        summary="Count one occurrence of a counter event",
        responses=_RESPONSES,
        openapi_extra=_OPENAPI,
        name="usage_data_increment_counter",
    )
    router.add_api_route(
        "/increment_unique_users",
        api.increment_unique_users,
        methods=["POST"],
        summary="Count the signed-in user for a known event",
        responses=_RESPONSES,
        openapi_extra=_OPENAPI,
        name="usage_data_increment_unique_users",
    )
    return router
