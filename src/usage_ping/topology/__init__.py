"""Topology from Prometheus: the instance's nodes and services in the payload's ``topology`` block.

- :mod:`~usage_ping.topology.config`: :class:`TopologySettings` (the ``prometheus`` key of
  ``usage-ping.yml``: URL, deadlines, window, job -> service map);
- :mod:`~usage_ping.topology.queries`: the PromQL of each fact;
- :mod:`~usage_ping.topology.client`: :class:`PrometheusClient`, instant queries with a hard
  deadline each;
- :mod:`~usage_ping.topology.block`: :class:`Topology`, which builds the block within its deadline
  whatever Prometheus does, and says in ``failures`` why a fact is missing;
- :mod:`~usage_ping.topology.exporter`: the other side, for the host application: request and
  process metrics for Prometheus to scrape (needs ``prometheus-client``).

The settings import this package at start-up, so the HTTP client is imported only when used.

Example:
    >>> from usage_ping.topology import Topology, TopologySettings
    >>> topology = Topology(TopologySettings("http://127.0.0.1:9090", services={"web": "web"}))
    >>> topology.collect()["failures"]  # doctest: +SKIP
    {}
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from usage_ping.topology.config import DEFAULT_SERVICES, TopologySettings

if TYPE_CHECKING:
    from usage_ping.topology.block import Topology
    from usage_ping.topology.client import PrometheusClient, PrometheusError, Sample

__all__ = [
    "DEFAULT_SERVICES",
    "PrometheusClient",
    "PrometheusError",
    "Sample",
    "Topology",
    "TopologySettings",
]

_LAZY = {
    "Topology": "usage_ping.topology.block",
    "PrometheusClient": "usage_ping.topology.client",
    "PrometheusError": "usage_ping.topology.client",
    "Sample": "usage_ping.topology.client",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
