"""The instance's facts: the top of every payload, before the metrics.

``uuid`` identifies the instance (generated once and persisted, see :mod:`usage_ping.state`);
``recorded_at`` is when the payload was built and, with the uuid, the payload's identity;
``hostname``, ``version``, ``installation_type`` and ``edition`` describe the install;
``active_user_count`` and the optional ``license`` block come from the host application, as values
or as callables that the builder runs inside the fail-safe boundary like any metric.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FACT_KEYS", "InstanceFacts"]

FACT_KEYS = (
    "uuid",
    "hostname",
    "version",
    "installation_type",
    "edition",
    "recorded_at",
    "active_user_count",
    "license",
)
"""The top-level keys the facts may fill, in payload order."""


@dataclass(frozen=True)
class InstanceFacts:
    """What the payload says about the instance itself.

    Args:
        uuid: the instance's identity (see :meth:`usage_ping.state.InstanceState.uuid`).
        version: the host application's version.
        hostname: the instance's host name (default: this machine's fully qualified name).
        installation_type: how it was installed (``source``, ``docker``, ``helm``, ``package``...).
        edition: the edition (``CE``, ``EE``...).
        active_user_count: a number, or a callable returning it; None leaves it to the metric
            dictionary (a metric with key path ``active_user_count``) or out of the payload.
        license: a mapping, or a callable returning one; None for no ``license`` block.

    Example:
        >>> facts = InstanceFacts(uuid="0b6d…", version="16.2.0", edition="EE")  # doctest: +SKIP
    """

    uuid: str
    version: str
    hostname: str = field(default_factory=socket.getfqdn)
    installation_type: str = "source"
    edition: str = "CE"
    active_user_count: int | Callable[[], int] | None = None
    license: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None

    def provided(self) -> tuple[str, ...]:
        """The top-level keys these facts fill (``recorded_at`` is always the builder's)."""
        optional = {"active_user_count": self.active_user_count, "license": self.license}
        return tuple(key for key in FACT_KEYS if optional.get(key, key) is not None)
