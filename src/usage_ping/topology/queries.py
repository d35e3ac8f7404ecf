"""The PromQL of the topology block: one named instant query per fact.

GitLab's topology read Omnibus recording rules (``gitlab_usage_ping:ops:rate5m``...). A generic
Prometheus has none, so these queries read the raw series over the configured window (``1w``): the
average of a gauge is ``avg_over_time``, a weekly rate is ``rate(...[1w])``. Every selector is
limited to the jobs of the configured services, so a shared Prometheus reveals nothing else.

The series they read:

- node_exporter: ``node_memory_MemTotal_bytes``, ``node_memory_MemAvailable_bytes``,
  ``node_cpu_seconds_total``, ``node_uname_info``;
- every Prometheus client library: ``process_start_time_seconds``,
  ``process_resident_memory_bytes``;
- :mod:`usage_ping.topology.exporter` (or any exporter using the same names, such as
  prometheus-fastapi-instrumentator): ``http_requests_total``, the
  ``http_request_duration_seconds`` histogram, ``process_unique_memory_bytes``,
  ``process_proportional_memory_bytes`` and ``usage_ping_app_server_info{server}``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

from usage_ping.topology.config import TopologySettings

__all__ = [
    "PROPORTIONAL_MEMORY",
    "REQUESTS_TOTAL",
    "REQUEST_DURATION",
    "SERVER_INFO",
    "UNIQUE_MEMORY",
    "Query",
    "topology_queries",
]

REQUESTS_TOTAL = "http_requests_total"
"""Counter of the application's requests (labels ``method``, ``handler``, ``status``)."""
REQUEST_DURATION = "http_request_duration_seconds"
"""Histogram of the application's request durations (labels ``method``, ``handler``)."""
SERVER_INFO = "usage_ping_app_server_info"
"""Info metric whose ``server`` label names the application server (uvicorn, gunicorn...)."""
UNIQUE_MEMORY = "process_unique_memory_bytes"
"""Gauge: memory only this process uses (USS)."""
PROPORTIONAL_MEMORY = "process_proportional_memory_bytes"
"""Gauge: this process's share of the memory it uses (PSS)."""

Scope = Literal["block", "node", "service"]


@dataclass(frozen=True)
class Query:
    """One instant query and what its answer describes.

    ``scope`` says how its samples are read: ``block`` one value for the whole block, ``node`` one
    per ``instance`` (a host), ``service`` one per ``instance`` and ``job``.
    """

    name: str
    promql: str
    scope: Scope


def _string(text: str) -> str:
    """A PromQL double-quoted string literal (Go's escapes, of which JSON's are a subset)."""
    return json.dumps(text, ensure_ascii=False)


def _alternatives(values: list[str]) -> str:
    # Go's regexp (RE2) takes any escaped ASCII punctuation or space literally, as re.escape does.
    return "|".join(re.escape(v) for v in values)


def _le(seconds: float) -> str:
    """A matcher for a histogram bucket bound however the exporter formatted it ("2" or "2.0")."""
    forms = sorted({f"{seconds:g}", repr(float(seconds))})
    return f"le=~{_string(_alternatives(forms))}"


def topology_queries(settings: TopologySettings) -> tuple[Query, ...]:
    """The queries of the topology block, in payload order, for these settings.

    Example:
        >>> queries = topology_queries(TopologySettings("http://prometheus:9090"))
        >>> queries[0].name
        'application_requests_per_hour'
    """
    jobs = f"job=~{_string(_alternatives(sorted(settings.services)))}"
    window = f"[{settings.window}]"
    threshold = settings.apdex_threshold_s

    def series(metric: str, *matchers: str) -> str:
        return f"{metric}{{{', '.join((jobs, *matchers))}}}"

    def node_avg(metric: str) -> str:
        return f"avg by (instance) (avg_over_time({series(metric)}{window}))"

    def service_avg(metric: str) -> str:
        return f"avg by (instance, job) (avg_over_time({series(metric)}{window}))"

    buckets = f"{REQUEST_DURATION}_bucket"
    satisfied = f"sum(rate({series(buckets, _le(threshold))}{window}))"
    tolerated = f"sum(rate({series(buckets, _le(4 * threshold))}{window}))"
    requests = f"sum(rate({series(f'{REQUEST_DURATION}_count')}{window}))"
    idle = series("node_cpu_seconds_total", 'mode="idle"')
    return (
        Query(
            "application_requests_per_hour",
            f"sum(rate({series(REQUESTS_TOTAL)}{window})) * 3600",
            "block",
        ),
        # Apdex: (satisfied + tolerated / 2) / all; the le="4T" bucket counts the satisfied too.
        Query(
            "query_apdex_weekly_average", f"({satisfied} + {tolerated}) / 2 / {requests}", "block"
        ),
        Query("node_memory_total_bytes", node_avg("node_memory_MemTotal_bytes"), "node"),
        Query(
            "node_memory_utilization",
            f"1 - {node_avg('node_memory_MemAvailable_bytes')}"
            f" / {node_avg('node_memory_MemTotal_bytes')}",
            "node",
        ),
        Query("node_cpus", f"count by (instance) ({idle})", "node"),
        Query("node_cpu_utilization", f"1 - avg by (instance) (rate({idle}{window}))", "node"),
        # Only the labels the payload sends: not nodename (the host's name) or version.
        Query(
            "node_uname_info",
            f"max by (instance, machine, sysname, release) ({series('node_uname_info')})",
            "node",
        ),
        Query(
            "service_process_count",
            f"count by (instance, job) ({series('process_start_time_seconds')})",
            "service",
        ),
        Query(
            "service_process_memory_rss", service_avg("process_resident_memory_bytes"), "service"
        ),
        Query("service_process_memory_uss", service_avg(UNIQUE_MEMORY), "service"),
        Query("service_process_memory_pss", service_avg(PROPORTIONAL_MEMORY), "service"),
        Query(
            "service_app_server",
            f"count by (instance, job, server) ({series(SERVER_INFO)})",
            "service",
        ),
    )
