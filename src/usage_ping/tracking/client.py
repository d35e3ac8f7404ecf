"""The backend tracker: :class:`Tracking` sends Snowplow events with the standard context attached.

Built on the official ``snowplow-tracker`` package with its asynchronous emitter: a tracking call
builds the event and appends it to a buffer; a worker thread sends batches to the collector and
retries failures with capped backoff. The host's thread never waits on the network.

- Disabled (or without an endpoint), every call is a no-op that constructs nothing (the package
  is not even imported).
- Every public method goes through the fail-safe boundary (:mod:`usage_ping.fallback`): a bad
  argument or a broken collector is logged to the ``usage_ping`` logger, never raised.
- The buffer is flushed when the interpreter exits (waiting at most ``shutdown_timeout``), and on
  :meth:`Tracking.flush`.
- After ``os.fork()`` (pre-forking servers) the child builds its own worker on first use.
- Importing the package calls ``logging.basicConfig()``; :func:`snowplow` undoes that, so the host's
  logging stays as the host configured it.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import ModuleType
from typing import TYPE_CHECKING, Any

from usage_ping.fallback import call_safely
from usage_ping.tracking.config import TrackingConfig
from usage_ping.tracking.context import HasId, StandardContext, id_of

if TYPE_CHECKING:
    import requests
    from snowplow_tracker.events.event import Event
    from snowplow_tracker.self_describing_json import SelfDescribingJson
    from snowplow_tracker.tracker import Tracker

    from usage_ping.tracking._snowplow import Emitter

__all__ = ["Entity", "Tracking", "snowplow"]

Entity = Mapping[str, Any]
"""A context entity: a self-describing JSON ``{"schema": "iglu:...", "data": {...}}``.

The package's ``SelfDescribingJson`` objects are accepted as well.
"""

_import_lock = threading.Lock()


def snowplow() -> ModuleType:
    """:mod:`usage_ping.tracking._snowplow`, imported without touching the host's logging.

    ``snowplow_tracker`` runs ``logging.basicConfig()`` (a stderr handler on the root logger, when
    it has none) and sets its emitter logger to INFO at import. Here the root logger gets a
    placeholder handler for the import, so basicConfig does nothing. The emitter logger would log
    every request (INFO) and every failed one with its events (WARNING); it is set to ERROR
    instead (a full buffer still shows), as usage-ping logs outages once to its own logger. And
    the package's loggers get a NullHandler, so they stay silent unless the host configures
    logging.
    """
    module = sys.modules.get("usage_ping.tracking._snowplow")
    if module is not None:
        return module
    with _import_lock:
        root = logging.getLogger()
        placeholder = logging.NullHandler()
        root.addHandler(placeholder)
        try:
            from usage_ping.tracking import _snowplow
        finally:
            root.removeHandler(placeholder)
        emitters = logging.getLogger("snowplow_tracker.emitters")
        if emitters.level == logging.INFO:  # the package's own setting, not the host's
            emitters.setLevel(logging.ERROR)
        package = logging.getLogger("snowplow_tracker")
        if not any(isinstance(h, logging.NullHandler) for h in package.handlers):
            package.addHandler(logging.NullHandler())
        return _snowplow


@dataclass(frozen=True)
class _Sender:
    """One process's emitter (with its worker thread), tracker and HTTP session."""

    pid: int
    session: requests.Session
    emitter: Emitter
    tracker: Tracker

    @classmethod
    def start(cls, config: TrackingConfig) -> _Sender:
        sp = snowplow()
        import requests

        session = requests.Session()
        emitter = sp.Emitter(config, session)
        if config.flush_interval is not None:
            emitter.set_flush_timer(config.flush_interval)
        return cls(os.getpid(), session, emitter, sp.new_tracker(config, emitter))

    def close(self, timeout: float) -> bool:
        """Send what is left (waiting at most ``timeout`` s), then end the worker."""
        try:
            return self.emitter.close(timeout)
        finally:
            self.session.close()


class Tracking:
    """A backend event tracker (the module functions of :mod:`usage_ping.tracking` use a default).

    Args:
        config: the configuration; or give its fields as keyword arguments.

    Raises:
        TrackingConfigError: at construction, for an invalid configuration. Nothing raises after.

    Example::

        tracking = Tracking(endpoint="https://collector.example.com", app_id="shop")
        event_id = tracking.event("projects", "create", label="template", user=current_user,
                                  project=7, via="api")   # returns at once; sent in the background
        tracking.flush()                                  # True once the collector has it all
    """

    def __init__(self, config: TrackingConfig | None = None, /, **options: Any) -> None:
        if config is None:
            config = TrackingConfig(**options)
        elif options:
            config = replace(config, **options)
        self._config = config
        self._lock = threading.Lock()
        self._sender: _Sender | None = None
        self._closed = False
        self._exit_hook = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "on" if self._config.active else "off"
        return f"<Tracking {state} endpoint={self._config.endpoint!r}>"

    @property
    def config(self) -> TrackingConfig:
        """The configuration (immutable: configure a new tracker to change it)."""
        return self._config

    @property
    def enabled(self) -> bool:
        """Whether events are sent (enabled, with an endpoint, and not closed)."""
        return self._config.active and not self._closed

    # -- tracking ---------------------------------------------------------------------------------

    def event(  # noqa: PLR0917 (GitLab's signature: label, property, value... positional)
        self,
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
        """Track a structured event with the standard context (then ``context``'s entities).

        Args:
            category: what the event is about, e.g. the page or controller (``projects:show``).
            action: what happened (``click_button``, ``create``).
            label, property, value: the event's optional label, property and number.
            context: more context entities, each ``{"schema": "iglu:...", "data": {...}}``.
            user, project, namespace: an int id or an object with an ``.id`` (a model).
            **extra: anything else; sent as the standard context's ``extra`` object.

        Returns:
            The event id, or None when tracking is off or the event could not be built (the
            reason is logged to the ``usage_ping`` logger).
        """
        if not self.enabled:
            return None

        def build(sp: ModuleType, entities: list[SelfDescribingJson]) -> Event:
            _check_text(label=label, property=property)
            if isinstance(value, bool) or not isinstance(value, int | float | None):
                raise TypeError(f"value: expected a number, got {type(value).__name__}")
            event: Event = sp.structured(
                category=category,
                action=action,
                label=label,
                property_=property,
                value=value,
                context=entities,
            )
            return event

        return call_safely(
            lambda: self._track(
                build, context=context, user=user, project=project, namespace=namespace, extra=extra
            ),
            fallback=None,
            description=f"tracking event {category!r}/{action!r}",
        )

    def page_view(
        self,
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
        """Track a page view (a server-rendered page, an API call) with the standard context."""
        if not self.enabled:
            return None

        def build(sp: ModuleType, entities: list[SelfDescribingJson]) -> Event:
            _check_text(title=title, referrer=referrer)
            event: Event = sp.page_view(url=url, title=title, referrer=referrer, context=entities)
            return event

        return call_safely(
            lambda: self._track(
                build, context=context, user=user, project=project, namespace=namespace, extra=extra
            ),
            fallback=None,
            description=f"tracking page view {url!r}",
        )

    def self_describing(
        self,
        schema: str,
        data: Mapping[str, Any],
        *,
        context: Sequence[Entity | SelfDescribingJson] | None = None,
        user: int | HasId | None = None,
        project: int | HasId | None = None,
        namespace: int | HasId | None = None,
        **extra: Any,
    ) -> str | None:
        """Track a self-describing event (``data`` under the Iglu ``schema``)."""
        if not self.enabled:
            return None

        def build(sp: ModuleType, entities: list[SelfDescribingJson]) -> Event:
            if not isinstance(schema, str) or not schema.startswith("iglu:"):
                raise ValueError(f"schema: {schema!r} is not an iglu: URI")
            event: Event = sp.self_describing(schema=schema, data=data, context=entities)
            return event

        return call_safely(
            lambda: self._track(
                build, context=context, user=user, project=project, namespace=namespace, extra=extra
            ),
            fallback=None,
            description=f"tracking self-describing event {schema!r}",
        )

    def frontend_options(
        self,
        user: int | HasId | None = None,
        project: int | HasId | None = None,
        namespace: int | HasId | None = None,
    ) -> dict[str, Any] | None:
        """The JavaScript module's options for this page, or None when tracking is off.

        Render them into the page as JSON (``<script type="application/json"
        id="usage-ping-tracking-config">``), or as the ``data-*`` attributes of the bundle's
        ``<script>`` tag; see ``frontend/README.md``.
        """
        if not self.enabled:
            return None

        def options() -> dict[str, Any]:
            config = self._config
            return {
                "collectorUrl": config.endpoint,
                "appId": config.app_id or "",
                "trackerNamespace": config.tracker_namespace,
                "environment": config.environment,
                "plan": config.plan,
                "namespaceId": id_of(namespace, "namespace"),
                "projectId": id_of(project, "project"),
                "userId": id_of(user, "user"),
            }

        return call_safely(options, fallback=None, description="tracking frontend options")

    # -- delivery ---------------------------------------------------------------------------------

    def start(self) -> bool:
        """Start the sender now (import the package, start the worker thread), if tracking is on.

        Otherwise the first event does it, and pays for it (a fraction of a second, once).
        :func:`usage_ping.tracking.configure` calls this. Returns whether tracking is on.
        """
        if not self.enabled:
            return False
        return call_safely(
            lambda: self._current_sender() is not None, fallback=False, description="tracking start"
        )

    def flush(self, timeout: float = 5.0) -> bool:
        """Send the buffered events now and wait up to ``timeout`` seconds for the collector.

        Returns:
            True when nothing is left to send (or tracking is off); False when events are still
            buffered (the collector is down or slow: they are retried in the background).
        """
        sender = self._sender
        if sender is None or sender.pid != os.getpid():
            return True
        return call_safely(
            lambda: sender.emitter.drain(timeout), fallback=False, description="tracking flush"
        )

    def close(self, timeout: float | None = None) -> bool:
        """Send what is left (waiting at most ``timeout``, default ``shutdown_timeout``), then stop.

        Afterwards every tracking call is a no-op. Returns what :meth:`flush` would.
        """
        with self._lock:
            self._closed = True
            sender, self._sender = self._sender, None
            if self._exit_hook:
                atexit.unregister(self._at_exit)
                self._exit_hook = False
        if sender is None or sender.pid != os.getpid():
            return True
        wait = self._config.shutdown_timeout if timeout is None else timeout
        return call_safely(lambda: sender.close(wait), fallback=False, description="tracking close")

    def _at_exit(self) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------------

    def _track(
        self,
        build: Callable[[ModuleType, list[SelfDescribingJson]], Event],
        *,
        context: Sequence[Entity | SelfDescribingJson] | None,
        user: int | HasId | None,
        project: int | HasId | None,
        namespace: int | HasId | None,
        extra: Mapping[str, Any],
    ) -> str | None:
        sp = snowplow()
        standard = StandardContext(
            environment=self._config.environment,
            source=self._config.source,
            plan=self._config.plan,
            namespace_id=id_of(namespace, "namespace"),
            project_id=id_of(project, "project"),
            user_id=id_of(user, "user"),
            extra=extra,
        ).to_json()
        entities = [sp.entity(standard), *(sp.entity(item) for item in context or ())]
        event = build(sp, entities)
        sender = self._current_sender()
        if sender is None:  # closed meanwhile
            return None
        event_id: str | None = sender.tracker.track(event)
        return event_id

    def _current_sender(self) -> _Sender | None:
        """This process's sender, started on first use (and again in a forked child)."""
        sender = self._sender
        pid = os.getpid()
        if sender is not None and sender.pid == pid:
            return sender
        with self._lock:
            if self._closed:
                return None
            if self._sender is None or self._sender.pid != pid:
                # In a forked child the parent's worker thread does not exist; its buffer is the
                # parent's to send. Start afresh.
                self._sender = _Sender.start(self._config)
                if not self._exit_hook:
                    atexit.register(self._at_exit)
                    self._exit_hook = True
            return self._sender


def _check_text(**values: object) -> None:
    for name, value in values.items():
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name}: expected a string, got {type(value).__name__}")
