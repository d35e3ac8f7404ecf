"""Metrics of the host application for Prometheus: what the topology block reads back.

An ASGI middleware counts requests and times them, under the names and labels that
:mod:`usage_ping.topology.queries` expects (and that prometheus-fastapi-instrumentator uses too):

- ``http_requests_total{method, handler, status}``;
- ``http_request_duration_seconds{method, handler}``, a histogram with buckets at the apdex
  threshold (0.5 s) and four times it (2 s);
- ``usage_ping_app_server_info{server}``, the application server (uvicorn, gunicorn...);
- ``process_*`` from prometheus-client's process collector (resident memory, CPU, start time),
  plus ``process_unique_memory_bytes`` and ``process_proportional_memory_bytes`` (USS and PSS,
  from ``/proc/self/smaps_rollup`` where Linux has it).

``handler`` is the route's path template (``/issues/{id}``), never the raw path, so that the
number of series stays bounded; requests that match no route count as ``none``. The metrics
endpoint itself is not counted (Prometheus scraping it would swamp the request rate).

Needs ``prometheus-client``. With Starlette or FastAPI, :func:`instrument` does all of it::

    from usage_ping.topology.exporter import instrument

    app = FastAPI()
    instrument(app)          # the middleware, and GET /metrics

and the Prometheus job that scrapes the application is mapped to a service name in
``usage-ping.yml`` (``prometheus: {services: {myapp: web}}``). Any ASGI application can use the
parts: ``PrometheusMiddleware(app, metrics=RequestMetrics())`` and ``metrics.asgi_app()``.

One process is one target: an application served by several worker processes needs
prometheus-client's multiprocess mode, or one metrics port per worker.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, Info
from prometheus_client.asgi import make_asgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from usage_ping.topology.queries import PROPORTIONAL_MEMORY, UNIQUE_MEMORY

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = [
    "DEFAULT_BUCKETS",
    "MemoryCollector",
    "PrometheusMiddleware",
    "RequestMetrics",
    "instrument",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
"""Request duration buckets; 0.5 and 2.0 are the default apdex threshold T and 4T."""

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_SERVERS = ("gunicorn", "hypercorn", "granian", "daphne", "uvicorn")
_SMAPS = Path("/proc/self/smaps_rollup")
_SMAPS_LINE = re.compile(r"^(\w+):\s+(\d+) kB$", re.MULTILINE)


def _server() -> str:
    """The application server this process runs under, from what it imported."""
    return next((name for name in _SERVERS if name in sys.modules), "unknown")


class MemoryCollector(Collector):
    """USS and PSS of this process from ``/proc/self/smaps_rollup`` (nothing where it is absent).

    RSS counts shared pages once per process, so it overstates a service of many processes;
    USS (private pages) and PSS (shared pages divided among their users) do not.
    """

    def __init__(self, path: Path = _SMAPS) -> None:
        self.path = path

    def collect(self) -> Iterator[Metric]:
        try:
            text = self.path.read_text()
        except OSError:
            return
        kib = {name: int(value) for name, value in _SMAPS_LINE.findall(text)}
        if "Pss" not in kib:
            return
        private = sum(kib.get(k, 0) for k in ("Private_Clean", "Private_Dirty", "Private_Hugetlb"))
        yield GaugeMetricFamily(
            UNIQUE_MEMORY, "Memory used by this process alone (USS), in bytes.", private * 1024
        )
        yield GaugeMetricFamily(
            PROPORTIONAL_MEMORY,
            "This process's proportional share of the memory it uses (PSS), in bytes.",
            kib["Pss"] * 1024,
        )


class RequestMetrics:
    """The application's metrics, registered once in a registry.

    Args:
        registry: where they are registered (default prometheus-client's global one, which
            already holds the process collector; a fresh registry gets one of its own).
        buckets: the request duration buckets (keep the apdex threshold T and 4T among them).
        server: the application server's name (default: detected from what was imported).

    Raises:
        ValueError: the metrics are already registered in ``registry`` (make one
            ``RequestMetrics`` per registry and share it).

    Example:
        >>> from prometheus_client import CollectorRegistry
        >>> metrics = RequestMetrics(CollectorRegistry(), server="uvicorn")
        >>> metrics.observe("GET", "/issues", 200, 0.012)
    """

    def __init__(
        self,
        registry: CollectorRegistry = REGISTRY,
        *,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        server: str | None = None,
    ) -> None:
        self.registry = registry
        self.requests = Counter(
            "http_requests",
            "Requests the application answered.",
            ["method", "handler", "status"],
            registry=registry,
        )
        self.durations = Histogram(
            "http_request_duration_seconds",
            "Time the application took to answer a request, in seconds.",
            ["method", "handler"],
            buckets=tuple(buckets),
            registry=registry,
        )
        info = Info("usage_ping_app_server", "The application server.", registry=registry)
        info.info({"server": server or _server()})
        if registry is not REGISTRY:  # the global registry has prometheus-client's own
            ProcessCollector(registry=registry)
        registry.register(MemoryCollector())

    def observe(self, method: str, handler: str, status: int, seconds: float) -> None:
        """Count one answered request and its duration."""
        method = method if method in _METHODS else "other"
        self.requests.labels(method, handler, str(status)).inc()
        self.durations.labels(method, handler).observe(seconds)

    def asgi_app(self) -> ASGIApp:
        """An ASGI app serving the registry in Prometheus's text format (mount it at /metrics)."""
        return _MetricsApp(self.registry)


class _MetricsApp:
    """prometheus-client's ASGI app as a class, which Starlette's ``Route`` serves as ASGI."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._app: ASGIApp = make_asgi_app(registry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def _handler(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) and path else "none"


class PrometheusMiddleware:
    """ASGI middleware that counts and times every HTTP request (see the module's documentation).

    Args:
        app: the application.
        metrics: where requests are counted.
        skip_paths: paths not counted (the metrics endpoint).
    """

    def __init__(
        self, app: ASGIApp, *, metrics: RequestMetrics, skip_paths: Sequence[str] = ("/metrics",)
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.skip_paths = frozenset(skip_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.skip_paths:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before it starts a response

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe(
                scope.get("method", "GET"), _handler(scope), status, time.perf_counter() - started
            )


def instrument(
    app: Starlette, metrics: RequestMetrics | None = None, *, path: str = "/metrics"
) -> RequestMetrics:
    """Count a Starlette or FastAPI application's requests and serve its metrics at ``path``.

    Call it before the application starts. Returns the metrics (made in the global registry
    when none are given).
    """
    from starlette.routing import Route

    metrics = metrics or RequestMetrics()
    app.add_middleware(PrometheusMiddleware, metrics=metrics, skip_paths=(path,))
    app.router.routes.append(
        Route(path, endpoint=metrics.asgi_app(), methods=["GET"], include_in_schema=False)
    )
    return metrics
