"""A small client of Prometheus's HTTP API: instant queries, each with a hard deadline.

Why httpx and not a Prometheus client package: the API the topology block needs is one endpoint
(``GET /api/v1/query``) and a JSON answer of a few lines, while ``prometheus-api-client`` brings
requests, pandas, numpy, matplotlib and dateparser, has no asyncio interface, and its timeouts,
like requests' own, bound each socket operation rather than the whole call: a server that trickles
bytes, or accepts the connection and never answers, holds it far longer than the timeout says
(GitLab's hung for about a minute). httpx is already a dependency of the library; its asyncio
client runs under ``asyncio.timeout``, which bounds the whole call (connect, send, wait, read),
and the queries of a block run at once.

Each query is bounded three times: ``asyncio.timeout`` around the call (the hard deadline), httpx's
own per-operation timeouts (no socket operation outlives it even if cancellation were delayed), and
Prometheus's ``timeout`` parameter (the server stops evaluating it too).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from usage_ping.topology.config import DEFAULT_QUERY_TIMEOUT

__all__ = ["PrometheusClient", "PrometheusError", "Sample"]


class PrometheusError(Exception):
    """Prometheus answered, but with an error (a bad query, an overloaded server...).

    ``error_type`` is Prometheus's own (``bad_data``, ``timeout``, ``execution``...), or ``http``
    when the answer was not the API's JSON.
    """

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type


@dataclass(frozen=True)
class Sample:
    """One element of an instant query's answer: its labels and its value (NaN stays NaN)."""

    labels: Mapping[str, str]
    value: float


def _value(pair: Any) -> float:
    # The API sends [unix time, "value"]; values are strings so that NaN and +Inf survive JSON.
    return float(pair[1])


def _samples(body: Any) -> list[Sample]:
    if not isinstance(body, dict):
        raise PrometheusError("http", "the answer is not a JSON object")
    if body.get("status") != "success":
        raise PrometheusError(
            str(body.get("errorType", "unknown")), str(body.get("error", "no message"))[:200]
        )
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "vector" and isinstance(result, list):
        return [Sample(dict(item.get("metric", {})), _value(item["value"])) for item in result]
    if kind == "scalar":
        return [Sample({}, _value(result))]
    raise PrometheusError("bad_data", f"an instant query answered a {kind!r}")


class PrometheusClient:
    """Instant queries against one Prometheus server, each within a hard deadline.

    Use it as an async context manager (it holds one connection pool).

    Args:
        url: the server, e.g. ``http://127.0.0.1:9090`` (a path prefix such as ``/prometheus``
            is kept).
        timeout: the default deadline of one query, in seconds.
        headers: extra HTTP headers (e.g. ``Authorization`` for a proxy in front of Prometheus).

    Example:
        >>> async with PrometheusClient("http://127.0.0.1:9090") as prometheus:  # doctest: +SKIP
        ...     samples = await prometheus.query("count by (instance) (up)")
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_QUERY_TIMEOUT,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            headers=dict(headers or {}),
            follow_redirects=False,
            trust_env=False,  # a proxy from the environment is not on the way to a local server
        )

    async def __aenter__(self) -> PrometheusClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def query(self, promql: str, *, timeout: float | None = None) -> list[Sample]:
        """The samples of an instant query, evaluated now.

        Args:
            promql: the expression.
            timeout: this query's deadline in seconds (default: the client's).

        Raises:
            TimeoutError: the deadline passed (whatever the server was doing).
            httpx.HTTPError: the server could not be reached or the transfer failed.
            PrometheusError: the server answered with an error, or not with the API's JSON.
        """
        limit = self.timeout if timeout is None else timeout
        async with asyncio.timeout(limit):
            response = await self._http.get(
                f"{self.url}/api/v1/query",
                params={"query": promql, "timeout": f"{limit:.3f}"},
                timeout=httpx.Timeout(limit),
            )
        try:
            body = response.json()
        except ValueError:
            raise PrometheusError(
                "http", f"HTTP {response.status_code}, not the API's JSON"
            ) from None
        return _samples(body)
