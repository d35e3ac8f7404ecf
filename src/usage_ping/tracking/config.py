"""How the backend tracker is configured: :class:`TrackingConfig`, from arguments or the Settings.

A configuration is checked when it is made (a bad method or URL raises
:class:`TrackingConfigError` at once); using it never raises.

The library's settings file has no tracking keys yet; :meth:`TrackingConfig.from_settings` reads
these if a later version of :class:`~usage_ping.settings.Settings` has them, and uses the defaults
otherwise:

- ``tracking_enabled`` (default false: events carry user ids, so the administrator opts in),
- ``tracking_url`` (default: ``collector_url``, the central service, which also collects events),
- ``tracking_app_id``, ``environment`` and ``plan``.

``enabled: false`` in the settings locks tracking off too, whatever the arguments say.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from usage_ping.errors import UsagePingError
from usage_ping.tracking.context import PYTHON_SOURCE

if TYPE_CHECKING:
    from usage_ping.settings import Settings

__all__ = ["METHODS", "TrackingConfig", "TrackingConfigError"]

METHODS = ("get", "post")
"""HTTP methods of the Snowplow protocol: GET ``/i`` (one event a request), POST ``.../tp2``."""


class TrackingConfigError(UsagePingError, ValueError):
    """The tracking configuration is invalid; the message names the field."""


@dataclass(frozen=True)
class TrackingConfig:
    """The backend tracker's configuration.

    Args:
        enabled: False makes every tracking call a no-op that constructs nothing.
        endpoint: the collector's base URL (``https://collector.example.com``); the Snowplow
            paths are added to it. None disables tracking as well.
        app_id: the application id sent as ``aid`` (None: not sent).
        tracker_namespace: the Snowplow tracker namespace sent as ``tna``.
        environment: the standard context's ``environment``.
        source: the standard context's ``source``.
        plan: the standard context's ``plan``.
        method: ``"post"`` (batched, the default) or ``"get"`` (one request per event).
        batch_size: events buffered before a send; default 10 for POST, 1 for GET.
        encode_base64: contexts as base64url ``cx`` (default) or as plain JSON ``co``.
        flush_interval: seconds between background sends of a partly filled batch (None: only
            when the batch is full, on :meth:`~usage_ping.tracking.Tracking.flush` and at exit).
        request_timeout: seconds to connect, and again to read the collector's answer.
        shutdown_timeout: seconds the interpreter's exit may wait for the last events.

    Example:
        >>> TrackingConfig(endpoint="http://127.0.0.1:9090", app_id="shop").active
        True
    """

    enabled: bool = True
    endpoint: str | None = None
    app_id: str | None = None
    tracker_namespace: str = "usage-ping"
    environment: str = "production"
    source: str = PYTHON_SOURCE
    plan: str | None = None
    method: str = "post"
    batch_size: int | None = None
    encode_base64: bool = True
    flush_interval: float | None = 10.0
    request_timeout: float = 5.0
    shutdown_timeout: float = 2.0

    def __post_init__(self) -> None:
        method = self.method.lower() if isinstance(self.method, str) else self.method
        if method not in METHODS:
            raise TrackingConfigError(f"method: {self.method!r} is not one of GET, POST")
        object.__setattr__(self, "method", method)
        if self.endpoint is not None:
            parts = urlsplit(self.endpoint)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise TrackingConfigError(
                    f"endpoint: {self.endpoint!r} is not an http:// or https:// URL"
                )
        if self.batch_size is not None and self.batch_size < 1:
            raise TrackingConfigError(f"batch_size: {self.batch_size} is below 1")
        for name in ("request_timeout", "shutdown_timeout"):
            if getattr(self, name) <= 0:
                raise TrackingConfigError(f"{name}: {getattr(self, name)} is not positive")
        if self.flush_interval is not None and self.flush_interval <= 0:
            raise TrackingConfigError(f"flush_interval: {self.flush_interval} is not positive")
        for name in ("tracker_namespace", "environment", "source"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise TrackingConfigError(f"{name}: must be a non-empty string")

    @property
    def active(self) -> bool:
        """Whether events are sent: enabled, with an endpoint."""
        return self.enabled and self.endpoint is not None

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> TrackingConfig:
        """The configuration that ``settings`` describe, with ``overrides`` on top.

        Settings that lock usage ping off (``enabled: false``) keep tracking off, even when
        ``overrides`` say ``enabled=True``.

        Example:
            >>> from usage_ping.settings import Settings
            >>> config = TrackingConfig.from_settings(
            ...     Settings(collector_url="https://usage.example.com"), enabled=True)
            >>> config.endpoint, config.active
            ('https://usage.example.com', True)
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TrackingConfigError(f"unknown tracking option(s): {', '.join(unknown)}")
        values: dict[str, Any] = {
            "enabled": bool(getattr(settings, "tracking_enabled", False)),
            "endpoint": getattr(settings, "tracking_url", None) or settings.collector_url,
        }
        for key, setting in (
            ("app_id", "tracking_app_id"),
            ("environment", "environment"),
            ("plan", "plan"),
        ):
            value = getattr(settings, setting, None)
            if value is not None:
                values[key] = value
        values.update(overrides)
        if settings.locked_off:
            values["enabled"] = False
        return cls(**values)
