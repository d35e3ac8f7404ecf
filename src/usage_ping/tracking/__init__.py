"""Event tracking for the host application: Snowplow events with a standard context.

Backend: configure once at start-up, then track from anywhere. Nothing here raises into the host
(errors go to the ``usage_ping`` logger), and nothing is sent, or even constructed, until tracking
is configured and enabled. Events are sent from a worker thread and flushed when the interpreter
exits. See :class:`Tracking` for the details.

Example::

    from usage_ping import tracking

    tracking.configure(endpoint="https://collector.example.com", app_id="shop",
                       environment="production", plan="premium")
    # or: tracking.configure(settings=Settings.load(), enabled=True)

    tracking.event("projects", "create", label="template", property="blank",
                   user=current_user, project=project, namespace=group, via="api")

Frontend: ``frontend/src/tracking.js``, bundled by ``make js`` into :func:`bundle_path`, does the
same in the browser (``Tracking.event`` and ``data-track-*`` attributes); serve that file, and put
``config_script(frontend_options(user=..., project=...))`` in the page (see ``frontend/README.md``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from usage_ping.tracking.client import Entity, Tracking
from usage_ping.tracking.config import METHODS, TrackingConfig, TrackingConfigError
from usage_ping.tracking.context import (
    JS_SOURCE,
    PYTHON_SOURCE,
    STANDARD_CONTEXT_SCHEMA,
    HasId,
    StandardContext,
)
from usage_ping.tracking.frontend import (
    BUNDLE_NAME,
    CONFIG_ELEMENT_ID,
    bundle_path,
    config_script,
)

if TYPE_CHECKING:
    from snowplow_tracker.self_describing_json import SelfDescribingJson

    from usage_ping.settings import Settings

__all__ = [
    "BUNDLE_NAME",
    "CONFIG_ELEMENT_ID",
    "JS_SOURCE",
    "METHODS",
    "PYTHON_SOURCE",
    "STANDARD_CONTEXT_SCHEMA",
    "Entity",
    "HasId",
    "StandardContext",
    "Tracking",
    "TrackingConfig",
    "TrackingConfigError",
    "bundle_path",
    "config_script",
    "configure",
    "enabled",
    "event",
    "flush",
    "frontend_options",
    "get_tracking",
    "page_view",
    "self_describing",
]

_default = Tracking(TrackingConfig(enabled=False))
_default_lock = threading.Lock()


def configure(
    config: TrackingConfig | None = None, /, *, settings: Settings | None = None, **options: Any
) -> Tracking:
    """Set up the default tracker (the one this module's functions use) and return it.

    Args:
        config: a whole configuration; or
        settings: the instance's settings to read it from (see
            :meth:`TrackingConfig.from_settings`);
        **options: :class:`TrackingConfig` fields, on top of either.

    The previous default tracker is flushed and closed, and the new one's worker thread is
    started (when tracking is on). Until the first call, tracking is off.

    Raises:
        TrackingConfigError: the configuration is invalid (a definition error, raised at once).
    """
    if config is not None and settings is not None:
        raise TypeError("configure() takes a config or settings, not both")
    if settings is not None:
        new_config = TrackingConfig.from_settings(settings, **options)
    elif config is not None:
        new_config = replace(config, **options)
    else:
        new_config = TrackingConfig(**options)
    tracking = Tracking(new_config)
    global _default
    with _default_lock:
        previous, _default = _default, tracking
    previous.close()
    tracking.start()
    return tracking


def get_tracking() -> Tracking:
    """The default tracker (disabled until :func:`configure`)."""
    return _default


def enabled() -> bool:
    """Whether the default tracker sends events."""
    return _default.enabled


def event(  # noqa: PLR0917 (GitLab's signature: label, property, value... positional)
    category: str,
    action: str,
    label: str | None = None,
    property: str | None = None,
    value: float | None = None,
    context: Sequence[Entity | SelfDescribingJson] | None = None,
    user: int | HasId | None = None,
    project: int | HasId | None = None,
    namespace: int | HasId | None = None,
    **extra: Any,
) -> str | None:
    """Track a structured event on the default tracker; see :meth:`Tracking.event`.

    Example:
        >>> event("issues", "close", label="board", user=3, project=42, via="keyboard")
    """
    return _default.event(
        category,
        action,
        label,
        property,
        value,
        context,
        user=user,
        project=project,
        namespace=namespace,
        **extra,
    )


def page_view(
    url: str,
    title: str | None = None,
    referrer: str | None = None,
    *,
    context: Sequence[Entity | SelfDescribingJson] | None = None,
    user: int | HasId | None = None,
    project: int | HasId | None = None,
    namespace: int | HasId | None = None,
    **extra: Any,
) -> str | None:
    """Track a page view on the default tracker; see :meth:`Tracking.page_view`."""
    return _default.page_view(
        url,
        title,
        referrer,
        context=context,
        user=user,
        project=project,
        namespace=namespace,
        **extra,
    )


def self_describing(
    schema: str,
    data: Mapping[str, Any],
    *,
    context: Sequence[Entity | SelfDescribingJson] | None = None,
    user: int | HasId | None = None,
    project: int | HasId | None = None,
    namespace: int | HasId | None = None,
    **extra: Any,
) -> str | None:
    """Track a self-describing event (default tracker); see :meth:`Tracking.self_describing`."""
    return _default.self_describing(
        schema, data, context=context, user=user, project=project, namespace=namespace, **extra
    )


def flush(timeout: float = 5.0) -> bool:
    """Send the default tracker's buffered events now; see :meth:`Tracking.flush`."""
    return _default.flush(timeout)


def frontend_options(
    user: int | HasId | None = None,
    project: int | HasId | None = None,
    namespace: int | HasId | None = None,
) -> dict[str, Any] | None:
    """The JavaScript module's options for a page; see :meth:`Tracking.frontend_options`."""
    return _default.frontend_options(user, project, namespace)
