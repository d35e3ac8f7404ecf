"""The parts built on the official ``snowplow-tracker`` package (imported only when tracking is on).

Import this module through :func:`usage_ping.tracking.client.snowplow`, which keeps the package's
import-time ``logging.basicConfig()`` from configuring the host's logging.

:class:`Emitter` is the package's ``AsyncEmitter`` (sends happen on a worker thread, so the host's
thread only appends to a buffer) with four changes that an SDK inside a host needs:

- the worker survives any error in a send (the package's worker would die, and with it tracking),
  and it can be stopped;
- :meth:`Emitter.drain` waits for the worker with a time limit (the package's ``sync_flush``
  loops for ever while the collector is down, which would hang the host's exit);
- :meth:`Emitter.close` makes one last attempt: failed events are dropped (and counted) instead
  of re-buffered behind a retry timer, whose thread Python 3.12+ refuses to start at exit;
- the buffer is re-filled under the emitter's lock, and a collector outage is logged once to the
  ``usage_ping`` logger, not once per attempt. (The package itself logs each failed request,
  with the event in it, at WARNING: :func:`usage_ping.tracking.client.snowplow` raises its
  ``snowplow_tracker.emitters`` logger to ERROR, which the host may lower again.)
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from datetime import time as clock_time
from typing import Any

import requests
from snowplow_tracker.emitters import AsyncEmitter
from snowplow_tracker.events.event import Event
from snowplow_tracker.events.page_view import PageView
from snowplow_tracker.events.self_describing import SelfDescribing
from snowplow_tracker.events.structured_event import StructuredEvent
from snowplow_tracker.self_describing_json import SelfDescribingJson
from snowplow_tracker.subject import Subject
from snowplow_tracker.tracker import Tracker

from usage_ping.fallback import logger, report
from usage_ping.tracking.config import TrackingConfig

__all__ = [
    "Emitter",
    "SelfDescribingJson",
    "entity",
    "new_tracker",
    "page_view",
    "self_describing",
    "structured",
]

_STOP = object()
"""Put on the emitter's queue to end its worker."""


class Emitter(AsyncEmitter):
    """The package's AsyncEmitter, made safe to run inside a host (see the module)."""

    def __init__(self, config: TrackingConfig, session: requests.Session) -> None:
        if config.endpoint is None:
            raise ValueError("an emitter needs an endpoint")
        # Set before the base class starts the worker thread, which reads them.
        self.closing = False
        self.failing = False
        self.dropped = 0
        super().__init__(
            endpoint=config.endpoint,
            method="get" if config.method == "get" else "post",
            batch_size=config.batch_size,
            on_success=self._on_success,
            on_failure=self._on_failure,
            request_timeout=config.request_timeout,
            session=session,
        )

    def consume(self) -> None:
        """The worker: send each queued batch; never die of an error; end on ``_STOP``."""
        while True:
            batch = self.queue.get()
            try:
                if batch is _STOP:
                    return
                self.send_events(batch)
            except Exception as exc:
                # A test may ask the boundary to re-raise: this thread has no caller to tell.
                with contextlib.suppress(Exception):
                    report(exc, "sending tracked events", {"endpoint": self.endpoint})
            finally:
                self.queue.task_done()

    def _retry_failed_events(self, failed_events: list[dict[str, Any]]) -> None:
        with self.lock:
            if self.closing:  # no retry timer: its thread may not start during interpreter exit
                self.dropped += len(failed_events)
                return
            super()._retry_failed_events(failed_events)

    def _on_failure(self, sent: int, failed: list[dict[str, Any]]) -> None:
        if not self.failing:
            self.failing = True
            logger.warning(
                "usage_ping: cannot deliver %d tracked event(s) to %s; retrying in the background",
                len(failed),
                self.endpoint,
            )

    def _on_success(self, sent: list[dict[str, Any]]) -> None:
        if self.failing:
            self.failing = False
            logger.info("usage_ping: %s accepts tracked events again", self.endpoint)

    def drain(self, timeout: float) -> bool:
        """Send what is buffered and wait up to ``timeout`` seconds; True if nothing is left."""
        deadline = time.monotonic() + timeout
        self.flush()
        done = self.queue.all_tasks_done
        with done:
            while self.queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                done.wait(left)
        return self.event_store.size() == 0

    def close(self, timeout: float) -> bool:
        """Make a last attempt at what is buffered (for up to ``timeout`` s), then end the worker.

        Events that fail now are dropped, not retried. True if everything was delivered.
        """
        with self.lock:
            self.closing = True
        self.cancel_flush_timer()
        self._cancel_retry_timer()
        try:
            delivered = self.drain(timeout) and self.dropped == 0
            if not delivered:
                logger.warning(
                    "usage_ping: tracked events left undelivered to %s at close "
                    "(%d failed, %d still buffered)",
                    self.endpoint,
                    self.dropped,
                    self.event_store.size(),
                )
            return delivered
        finally:
            self.queue.put(_STOP)


def _json_default(value: object) -> object:
    """What JSON cannot encode in a context: dates as ISO 8601, sets as lists, the rest as str."""
    if isinstance(value, datetime | date | clock_time):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


def new_tracker(config: TrackingConfig, emitter: Emitter) -> Tracker:
    """A tracker on ``emitter``: the configured namespace, app id and encoding; platform srv."""
    return Tracker(
        config.tracker_namespace,
        emitter,
        subject=Subject().set_platform("srv"),
        app_id=config.app_id,
        encode_base64=config.encode_base64,
        json_encoder=_json_default,
    )


def entity(value: Mapping[str, Any] | SelfDescribingJson) -> SelfDescribingJson:
    """A context entity from ``{"schema": "iglu:...", "data": {...}}`` (or one already built)."""
    if isinstance(value, SelfDescribingJson):
        return value
    schema = value.get("schema")
    if not isinstance(schema, str) or not schema.startswith("iglu:") or "data" not in value:
        raise ValueError(
            'a context entity is {"schema": "iglu:...", "data": {...}}; got '
            + json.dumps(value, default=str)[:200]
        )
    return SelfDescribingJson(schema, value["data"])


def structured(
    *,
    category: str,
    action: str,
    label: str | None,
    property_: str | None,
    value: float | None,
    context: Sequence[SelfDescribingJson],
) -> Event:
    """A structured (``se``) event."""
    return StructuredEvent(
        category=category,
        action=action,
        label=label,
        property_=property_,
        value=value,
        context=list(context),
    )


def page_view(
    *, url: str, title: str | None, referrer: str | None, context: Sequence[SelfDescribingJson]
) -> Event:
    """A page view (``pv``) event."""
    return PageView(page_url=url, page_title=title, referrer=referrer, context=list(context))


def self_describing(
    *, schema: str, data: Mapping[str, Any], context: Sequence[SelfDescribingJson]
) -> Event:
    """A self-describing (``ue``) event under ``schema``."""
    return SelfDescribing(SelfDescribingJson(schema, dict(data)), context=list(context))
