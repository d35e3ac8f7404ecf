"""Where the topology block finds Prometheus, how long it may wait, and which jobs it reports.

The ``prometheus`` key of ``usage-ping.yml`` (every key but ``url`` optional)::

    prometheus:
      url: http://127.0.0.1:9090     # the Prometheus that scrapes this instance
      query_timeout_s: 5             # hard deadline of one query
      total_timeout_s: 15            # hard deadline of the whole topology block
      window: 1w                     # the range the averages and rates cover
      apdex_threshold_s: 0.5         # requests up to this are satisfied, up to 4x tolerated
      services:                      # Prometheus job -> service name, added to the defaults
        web: web                     # (node: node-exporter, prometheus: prometheus);
        prometheus: null             # null drops a default job

Only the jobs named under ``services`` are queried and reported: a shared Prometheus that
scrapes other teams' applications tells the payload nothing about them, and a job name (which
may say anything about the operator's setup) never leaves the instance, only its service name.
Without a ``prometheus`` key there is no topology block in the payload.

This module imports nothing heavy: the settings read it at start-up.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "DEFAULT_QUERY_TIMEOUT",
    "DEFAULT_SERVICES",
    "DEFAULT_TOTAL_TIMEOUT",
    "DEFAULT_WINDOW",
    "TopologySettings",
]

DEFAULT_QUERY_TIMEOUT = 5.0
"""Seconds one Prometheus query may take (GitLab's hung for a minute; users asked for 5-10 s)."""
DEFAULT_TOTAL_TIMEOUT = 15.0
"""Seconds the whole topology block may take."""
DEFAULT_WINDOW = "1w"
"""The range of the weekly averages and rates (tests pass a shorter one)."""
DEFAULT_APDEX_THRESHOLD = 0.5
"""Seconds within which a request counts as satisfied (tolerated up to four times this)."""
DEFAULT_SERVICES: Mapping[str, str] = MappingProxyType(
    {"node": "node-exporter", "prometheus": "prometheus"}
)
"""The jobs every Prometheus setup tends to have; the host adds its own (``web``, ``worker``)."""

_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")

SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "additionalProperties": False,
    "required": ["url"],
    "properties": {
        "url": {"type": "string", "pattern": "^https?://"},
        "query_timeout_s": {"type": "number", "exclusiveMinimum": 0},
        "total_timeout_s": {"type": "number", "exclusiveMinimum": 0},
        "window": {"type": "string", "pattern": _DURATION.pattern},
        "apdex_threshold_s": {"type": "number", "exclusiveMinimum": 0},
        "services": {
            "type": "object",
            "additionalProperties": {"type": ["string", "null"], "minLength": 1},
        },
    },
}
"""The JSON Schema of the ``prometheus`` key (used by :mod:`usage_ping.settings`)."""


@dataclass(frozen=True)
class TopologySettings:
    """How the topology block queries Prometheus.

    Args:
        url: the Prometheus server (``http://host:9090``; a path prefix is kept).
        query_timeout_s: hard deadline of one query, in seconds.
        total_timeout_s: hard deadline of the whole block, in seconds.
        window: PromQL range of the averages and rates (``1w`` in production).
        apdex_threshold_s: the apdex threshold T; the request duration histogram must have
            buckets at T and 4T (the exporter's default buckets have them for 0.5 s).
        services: Prometheus job name -> service name; other jobs are neither queried nor sent.

    Raises:
        ValueError: for a non-positive timeout or threshold, or a window PromQL cannot read.

    Example:
        >>> TopologySettings("http://127.0.0.1:9090", services={"web": "web"}).services["web"]
        'web'
    """

    url: str
    query_timeout_s: float = DEFAULT_QUERY_TIMEOUT
    total_timeout_s: float = DEFAULT_TOTAL_TIMEOUT
    window: str = DEFAULT_WINDOW
    apdex_threshold_s: float = DEFAULT_APDEX_THRESHOLD
    services: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_SERVICES))

    def __post_init__(self) -> None:
        for name in ("query_timeout_s", "total_timeout_s", "apdex_threshold_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if not _DURATION.match(self.window):
            raise ValueError(f"window must be a PromQL duration such as 1w or 30s: {self.window!r}")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://: {self.url!r}")
        object.__setattr__(self, "services", MappingProxyType(dict(self.services)))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> TopologySettings:
        """Settings from the (schema-checked) ``prometheus`` mapping of the configuration.

        Its ``services`` are added to :data:`DEFAULT_SERVICES`; a job mapped to None is dropped.
        """
        known = {
            "url",
            "query_timeout_s",
            "total_timeout_s",
            "window",
            "apdex_threshold_s",
            "services",
        }
        options = {k: v for k, v in data.items() if k in known}
        for key in ("query_timeout_s", "total_timeout_s", "apdex_threshold_s"):
            if key in options:
                options[key] = float(options[key])
        services = {**DEFAULT_SERVICES, **options.get("services", {})}
        options["services"] = {job: name for job, name in services.items() if name is not None}
        return cls(**options)
