"""The ``topology`` block of the payload: the instance's nodes and services, read from Prometheus.

Shape (from a test run on loopback: node_exporter, Prometheus and a uvicorn app, one node)::

    "topology": {
      "duration_s": 0.107,
      "application_requests_per_hour": 47,
      "query_apdex_weekly_average": 0.954,
      "failures": {},
      "nodes": [
        {
          "node_memory_total_bytes": 25276502016,
          "node_memory_utilization": 0.071,
          "node_cpus": 2,
          "node_cpu_utilization": 0.31,
          "node_uname_info": {"machine": "x86_64", "sysname": "Linux", "release": "6.1.0"},
          "node_services": [
            {"name": "node-exporter", "process_count": 1, "process_memory_rss": 19033293},
            {"name": "prometheus", "process_count": 1, "process_memory_rss": 54652518},
            {"name": "web", "process_count": 1, "process_memory_rss": 152882381,
             "process_memory_uss": 115246694, "process_memory_pss": 124638310, "server": "uvicorn"}
          ]
        }
      ]
    }

``failures`` maps each query that gave nothing to why: ``timeout`` (its own deadline),
``total_timeout`` (the block's deadline came first), ``empty_result``, ``not_a_number`` (e.g. an
apdex over no requests), or the class of the error (``ConnectError``, ``PrometheusError``...).
The two block values are -1 (:data:`~usage_ping.fallback.FAILED`) when their query failed; a node or
service lacks the fields whose queries failed. Nodes are the hosts of the scraped targets (the
``instance`` label without its port; loopback addresses are one node), but neither host names nor
job names are sent: a node is known by its facts, a service by its configured name.

The block is built within ``total_timeout_s`` whatever Prometheus does: the queries run at once,
each under ``query_timeout_s``, all under ``total_timeout_s``, in a thread of their own that the
caller stops waiting for shortly after the deadline in any case.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx

from usage_ping.fallback import FAILED, logger, report
from usage_ping.topology.client import PrometheusClient, PrometheusError, Sample
from usage_ping.topology.config import TopologySettings
from usage_ping.topology.queries import Query, topology_queries

__all__ = ["Topology", "node_of"]

_GRACE = 1.0
"""Seconds past the block's deadline that :meth:`Topology.collect` waits for its thread at most."""

_LOOPBACK = ("localhost", "::1", "0:0:0:0:0:0:0:1")

_SERVICE_FIELDS = {
    "service_process_memory_rss": "process_memory_rss",
    "service_process_memory_uss": "process_memory_uss",
    "service_process_memory_pss": "process_memory_pss",
}


def node_of(instance: str) -> str:
    """The host of a target's ``instance`` label: the port dropped, loopback as ``localhost``.

    Example:
        >>> node_of("127.0.0.1:9100"), node_of("[::1]:8000"), node_of("db-1.internal:9187")
        ('localhost', 'localhost', 'db-1.internal')
    """
    host = instance
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    if host in _LOOPBACK or host.startswith("127."):
        return "localhost"
    return host


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timeout"
    return type(exc).__name__


class _Answers:
    """What the queries of one collection answered so far, shared with the collecting thread."""

    def __init__(self) -> None:
        self.samples: dict[str, list[Sample]] = {}
        self.failures: dict[str, str] = {}
        self.unexpected: list[Exception] = []
        self.lock = threading.Lock()

    def answer(self, name: str, samples: list[Sample]) -> None:
        with self.lock:
            if name not in self.failures:
                self.samples[name] = samples

    def fail(self, name: str, reason: str) -> None:
        with self.lock:
            if name not in self.samples:
                self.failures.setdefault(name, reason)

    def snapshot(self) -> tuple[dict[str, list[Sample]], dict[str, str]]:
        with self.lock:
            return dict(self.samples), dict(self.failures)


class Topology:
    """Builds the ``topology`` block from Prometheus (see the module's documentation).

    Args:
        settings: where Prometheus is, the deadlines, the window and the job -> service map.
        clock: a monotonic clock in seconds, replaceable in tests.

    Example:
        >>> topology = Topology(TopologySettings("http://127.0.0.1:9090"))
        >>> block = topology.collect()  # doctest: +SKIP
        >>> block["failures"]  # doctest: +SKIP
        {}
    """

    def __init__(
        self, settings: TopologySettings, *, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.settings = settings
        self.queries = topology_queries(settings)
        self.clock = clock

    def describe(self) -> dict[str, str]:
        """The PromQL of every query by name, run nowhere (the payload's queries mode)."""
        return {query.name: query.promql for query in self.queries}

    def unavailable(self, reason: str, duration: float = 0.0) -> dict[str, Any]:
        """The block when no query could answer, each failing for ``reason``."""
        return self._block({}, {q.name: reason for q in self.queries}, duration)

    # -- collecting ------------------------------------------------------------------------------

    def collect(self) -> dict[str, Any]:
        """Query Prometheus and build the block, within the deadline whatever Prometheus does.

        The queries run on an event loop in a thread of their own, so this works from any thread,
        including one that runs an event loop. Prometheus's and the network's errors become
        ``failures``; any other error (a bug) also goes through the fail-safe boundary once the
        block is built, which logs it (and re-raises it only in tests, see
        :mod:`usage_ping.testing`).
        """
        started = self.clock()
        answers = _Answers()
        done = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self._gather(answers))
            except Exception as exc:  # a bug in _gather itself; its queries record their own
                answers.unexpected.append(exc)
            finally:
                # Waits for nothing: an abandoned DNS lookup must not hold this thread.
                loop.close()
                done.set()

        threading.Thread(target=run, name="usage_ping-topology", daemon=True).start()
        if not done.wait(self.settings.total_timeout_s + _GRACE):
            logger.warning(
                "usage_ping: the topology queries outlived their %g s deadline: given up",
                self.settings.total_timeout_s,
            )
        samples, failures = answers.snapshot()
        for query in self.queries:
            if query.name not in samples:
                failures.setdefault(query.name, "total_timeout")
        block = self._block(samples, failures, self.clock() - started)
        for exc in answers.unexpected[:1]:
            report(exc, "topology")
        return block

    async def collect_async(self) -> dict[str, Any]:
        """:meth:`collect` for a caller on an event loop (it runs in a worker thread)."""
        return await asyncio.to_thread(self.collect)

    async def _gather(self, answers: _Answers) -> None:
        total = self.settings.total_timeout_s
        deadline = time.monotonic() + total
        async with PrometheusClient(self.settings.url, timeout=self.settings.query_timeout_s) as pc:

            async def one(query: Query) -> None:
                limit = min(self.settings.query_timeout_s, deadline - time.monotonic())
                try:
                    samples = await pc.query(query.promql, timeout=max(limit, 0.001))
                except (TimeoutError, httpx.HTTPError, PrometheusError) as exc:
                    # Prometheus down, slow or refusing: the block's business, not a bug.
                    reason = _reason(exc)
                    if reason == "timeout" and limit < self.settings.query_timeout_s:
                        reason = "total_timeout"  # the block's deadline was the nearer one
                    answers.fail(query.name, reason)
                    logger.info("usage_ping: topology query %s failed: %r", query.name, exc)
                except Exception as exc:
                    answers.fail(query.name, type(exc).__name__)
                    answers.unexpected.append(exc)
                else:
                    if not samples:
                        answers.fail(query.name, "empty_result")
                    else:
                        answers.answer(query.name, samples)

            try:
                async with asyncio.timeout(total):
                    async with asyncio.TaskGroup() as group:
                        for query in self.queries:
                            group.create_task(one(query))
            except TimeoutError:
                for query in self.queries:
                    answers.fail(query.name, "total_timeout")

    # -- the block -------------------------------------------------------------------------------

    def _block(
        self, samples: Mapping[str, list[Sample]], failures: dict[str, str], duration: float
    ) -> dict[str, Any]:
        failures = dict(failures)
        block: dict[str, Any] = {"duration_s": round(duration, 3)}
        for name, digits in (
            ("application_requests_per_hour", 0),
            ("query_apdex_weekly_average", 3),
        ):
            value = self._scalar(name, samples, failures)
            if value is None:
                block[name] = int(FAILED)
            else:
                block[name] = round(value) if digits == 0 else round(value, digits)
        # In query order, not in the order the answers came.
        block["failures"] = {q.name: failures[q.name] for q in self.queries if q.name in failures}
        block["nodes"] = self._nodes(samples)
        return block

    @staticmethod
    def _scalar(
        name: str, samples: Mapping[str, list[Sample]], failures: dict[str, str]
    ) -> float | None:
        if name not in samples:
            return None
        value = samples[name][0].value
        if not math.isfinite(value):
            failures[name] = "not_a_number"
            return None
        return value

    def _nodes(self, samples: Mapping[str, list[Sample]]) -> list[dict[str, Any]]:
        nodes: dict[str, dict[str, Any]] = defaultdict(dict)
        for query in self.queries:
            if query.scope != "node":
                continue
            for sample in samples.get(query.name, ()):
                node = nodes[node_of(sample.labels.get("instance", ""))]
                if query.name == "node_uname_info":
                    node[query.name] = {
                        k: sample.labels.get(k, "") for k in ("machine", "sysname", "release")
                    }
                elif math.isfinite(sample.value):
                    if query.name in ("node_memory_total_bytes", "node_cpus"):
                        node[query.name] = round(sample.value)
                    else:
                        node[query.name] = round(sample.value, 3)
        for host, services in self._services(samples).items():
            nodes[host]["node_services"] = services
        order = ("node_memory_total_bytes", "node_memory_utilization", "node_cpus",
                 "node_cpu_utilization", "node_uname_info", "node_services")  # fmt: skip
        ordered = []
        for host in sorted(nodes):
            node = nodes[host]
            ordered.append({key: node[key] for key in order if key in node})
        return ordered

    def _services(self, samples: Mapping[str, list[Sample]]) -> dict[str, list[dict[str, Any]]]:
        """Per node, its services: the targets of each mapped job on that host, folded."""
        names = self.settings.services
        # (host, service) -> (instance, job) -> field -> value
        targets: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = defaultdict(
            lambda: defaultdict(dict)
        )

        def each(name: str) -> Iterable[tuple[dict[str, Any], Sample]]:
            for sample in samples.get(name, ()):
                instance, job = sample.labels.get("instance", ""), sample.labels.get("job", "")
                if job in names:
                    yield targets[(node_of(instance), names[job])][(instance, job)], sample

        for fields, sample in each("service_process_count"):
            fields["process_count"] = round(sample.value)
        for query, key in _SERVICE_FIELDS.items():
            for fields, sample in each(query):
                if math.isfinite(sample.value):
                    fields[key] = sample.value
        for fields, sample in each("service_app_server"):
            if sample.labels.get("server"):
                fields["server"] = sample.labels["server"]
        found: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for (host, service), by_target in sorted(targets.items()):
            found[host].append(_fold(service, list(by_target.values())))
        return found


def _fold(service: str, targets: list[dict[str, Any]]) -> dict[str, Any]:
    """One service on one node from its targets: processes added, memory averaged per process."""
    entry: dict[str, Any] = {"name": service}
    counts = [t["process_count"] for t in targets if "process_count" in t]
    if counts:
        entry["process_count"] = sum(counts)
    for key in _SERVICE_FIELDS.values():
        weighted = [(t[key], t.get("process_count", 1)) for t in targets if key in t]
        if weighted:
            weight = sum(w for _, w in weighted) or 1
            entry[key] = round(sum(v * w for v, w in weighted) / weight)
    servers = sorted({t["server"] for t in targets if "server" in t})
    if servers:
        entry["server"] = ",".join(servers)
    return entry
