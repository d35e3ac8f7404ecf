"""A capturing Snowplow collector on loopback, for the tracking tests (Python and browser).

:class:`CapturingCollector` is a real HTTP server on ``127.0.0.1`` serving from a background
thread. It speaks the parts of the collector protocol that the official trackers use:

- ``GET /i`` (one event in the query string; answered with a 1x1 GIF),
- ``POST /com.snowplowanalytics.snowplow/tp2`` (a ``payload_data`` envelope of events, answered
  ``ok``; query parameters are merged into each event, as Snowplow does),
- ``OPTIONS`` anywhere (CORS preflight),

and answers CORS as Snowplow's collector does: the request's ``Origin`` echoed (``*`` without
one), ``Access-Control-Allow-Credentials: true``, and for preflights ``Content-Type`` and
``SP-Anonymous`` allowed. Every request is recorded, and each event is kept as a
:class:`CapturedEvent` with its contexts decoded from ``co`` (JSON) or ``cx`` (base64url).

Example::

    with CapturingCollector() as collector:
        ...  # a tracker sends to collector.url
        [event] = collector.wait_for_events(1)
        assert event["se_ac"] == "create"
        assert event.context(STANDARD_CONTEXT_SCHEMA)["user_id"] == 3

Later the same tests can run against the real collector; only this module stands in for it.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, cast
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "GET_PATH",
    "POST_PATH",
    "CapturedEvent",
    "CapturedRequest",
    "CapturingCollector",
    "decode_json_field",
    "refusing_port",
    "silent_port",
]

GET_PATH = "/i"
POST_PATH = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
CONTEXTS = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/"
_PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


def decode_json_field(event: Mapping[str, str], plain: str, encoded: str) -> Any:
    """The JSON in ``plain`` (``co``, ``ue_pr``) or ``encoded`` (``cx``, ``ue_px``); None if absent.

    base64url with or without its ``=`` padding (the JS tracker strips it); ``+/`` accepted too.
    """
    if plain in event:
        return json.loads(event[plain])
    if encoded in event:
        text = event[encoded].replace("+", "-").replace("/", "_")
        return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    return None


@dataclass(frozen=True)
class CapturedRequest:
    """One HTTP request as received (header names lower-case)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class CapturedEvent:
    """One event: its parameters (``e``, ``se_ca``, ``co``...) and the request that carried it."""

    params: dict[str, str]
    request: CapturedRequest

    def __getitem__(self, key: str) -> str:
        return self.params[key]

    def get(self, key: str, default: str | None = None) -> str | None:
        """A parameter, or ``default``."""
        return self.params.get(key, default)

    def contexts(self) -> list[dict[str, Any]]:
        """The context entities (``{"schema", "data"}``), decoded from ``co`` or ``cx``."""
        envelope = decode_json_field(self.params, "co", "cx")
        if envelope is None:
            return []
        if not str(envelope.get("schema", "")).startswith(CONTEXTS):
            raise AssertionError(f"not a contexts envelope: {envelope!r}")
        entities: list[dict[str, Any]] = envelope["data"]
        return entities

    def context(self, schema: str) -> dict[str, Any]:
        """The data of the one entity under ``schema`` (AssertionError if not exactly one)."""
        found = [entity["data"] for entity in self.contexts() if entity["schema"] == schema]
        if len(found) != 1:
            schemas = [entity["schema"] for entity in self.contexts()]
            raise AssertionError(f"{len(found)} entities of {schema} in {schemas}")
        data: dict[str, Any] = found[0]
        return data

    def self_describing(self) -> dict[str, Any] | None:
        """The inner ``{"schema", "data"}`` of a self-describing event (``ue_pr``/``ue_px``)."""
        envelope = decode_json_field(self.params, "ue_pr", "ue_px")
        return None if envelope is None else cast(dict[str, Any], envelope["data"])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    timeout = 10

    def do_GET(self) -> None:
        cast(_Server, self.server).owner._handle(self, "GET")

    def do_POST(self) -> None:
        cast(_Server, self.server).owner._handle(self, "POST")

    def do_OPTIONS(self) -> None:
        cast(_Server, self.server).owner._handle(self, "OPTIONS")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read what was captured instead."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, owner: CapturingCollector, port: int) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", port), _Handler)


class CapturingCollector:
    """A Snowplow collector on ``127.0.0.1`` that records what it receives (see the module).

    Args:
        port: the port; 0 picks a free one.
        status: the status to answer events with (200; set :attr:`status` to change it later).
    """

    def __init__(self, port: int = 0, *, status: int = 200) -> None:
        self.status = status
        self._lock = threading.Condition()
        self._requests: list[CapturedRequest] = []
        self._events: list[CapturedEvent] = []
        self._httpd = _Server(self, port)
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"snowplow-collector-{self.port}",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """The collector's base URL, e.g. ``http://127.0.0.1:41234``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def origin(self) -> str:
        """The collector's origin (the same as :attr:`url`)."""
        return self.url

    def stop(self) -> None:
        """Stop serving and close the port."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what it received ---------------------------------------------------------------------

    @property
    def requests(self) -> list[CapturedRequest]:
        """Every request, in order (preflights included)."""
        with self._lock:
            return list(self._requests)

    @property
    def events(self) -> list[CapturedEvent]:
        """Every event received, in order."""
        with self._lock:
            return list(self._events)

    def wait_for_events(
        self, count: int, timeout: float = 5.0, *, where: Mapping[str, str] | None = None
    ) -> list[CapturedEvent]:
        """Wait until ``count`` events (matching ``where``'s parameters, if given) have arrived.

        Raises:
            AssertionError: on timeout, listing what did arrive.
        """
        deadline = time.monotonic() + timeout

        def matching() -> list[CapturedEvent]:
            return [
                event
                for event in self._events
                if all(event.params.get(k) == v for k, v in (where or {}).items())
            ]

        with self._lock:
            while len(found := matching()) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(e.get("e"), e.get("se_ca"), e.get("se_ac")) for e in self._events]
                    raise AssertionError(
                        f"expected {count} event(s) matching {where or {}}, got {len(found)}; "
                        f"all events (e, se_ca, se_ac): {seen}"
                    )
                self._lock.wait(left)
            return found

    # -- handling (in a handler thread) -------------------------------------------------------

    def _handle(self, handler: _Handler, method: str) -> None:
        split = urlsplit(handler.path)
        headers = {name.lower(): value for name, value in handler.headers.items()}
        body = handler.rfile.read(int(headers.get("content-length") or 0))
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        request = CapturedRequest(method, split.path, query, headers, body)
        events: list[CapturedEvent] = []
        status = self.status
        if method == "GET" and split.path in (GET_PATH, POST_PATH) and query:
            events = [CapturedEvent(query, request)]
        elif method == "POST" and split.path == POST_PATH:
            try:
                envelope = json.loads(body)
                if envelope.get("schema") != PAYLOAD_DATA:
                    raise ValueError(f"unexpected envelope schema {envelope.get('schema')!r}")
                events = [CapturedEvent({**item, **query}, request) for item in envelope["data"]]
            except (ValueError, TypeError, KeyError, AttributeError):
                status = 400
        elif method != "OPTIONS":
            status = 404
        with self._lock:
            self._requests.append(request)
            if 200 <= status < 300:
                self._events.extend(events)
            self._lock.notify_all()
        self._respond(handler, method, split.path, status, headers.get("origin"))

    def _respond(
        self, handler: _Handler, method: str, path: str, status: int, origin: str | None
    ) -> None:
        if method == "OPTIONS":
            body, content_type = b"", "text/plain"
        elif method == "GET" and path == GET_PATH:
            body, content_type = _PIXEL, "image/gif"
        else:
            body, content_type = b"ok", "text/plain; charset=utf-8"
        handler.send_response(status if method != "OPTIONS" else 200)
        handler.send_header("Access-Control-Allow-Origin", origin or "*")
        handler.send_header("Access-Control-Allow-Credentials", "true")
        if method == "OPTIONS":
            handler.send_header("Access-Control-Allow-Headers", "Content-Type, SP-Anonymous")
            handler.send_header("Access-Control-Max-Age", "3600")
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


# -- collectors that are down -------------------------------------------------------------------


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections (bound, not listening): a collector that is down."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@contextmanager
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers: a collector that hangs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]
