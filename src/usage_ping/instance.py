"""One instance's usage ping, wired from its configuration: the entry point for host applications.

:class:`UsagePing` ties the settings (:mod:`usage_ping.settings`), the persisted state (uuid and
switches, :mod:`usage_ping.state`), the metric dictionary, the counter store and the instance's
facts into payload builds.

Example:
    >>> ping = UsagePing.from_config("usage-ping.yml")  # doctest: +SKIP
    >>> ping.enabled
    True
    >>> payload = ping.build()          # None when usage ping is switched off
    >>> ping.disable()                  # the admin's master switch
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from usage_ping.errors import UsagePingError
from usage_ping.events.counter import EventCounter
from usage_ping.events.definitions import KnownEvents
from usage_ping.events.plain import HasTotals
from usage_ping.fallback import logger
from usage_ping.metrics import MetricDictionary
from usage_ping.payload import InstanceFacts, MetricOutcome, Mode, PayloadBuilder
from usage_ping.settings import Settings
from usage_ping.state import InstanceState
from usage_ping.store import CounterStore, SQLiteStore

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler

    from usage_ping.delivery.outbox import Outbox, OutboxRow
    from usage_ping.delivery.schedule import Slot
    from usage_ping.delivery.submit import SubmitResult
    from usage_ping.delivery.transport import Transport

__all__ = ["UsagePing", "open_store"]

_SWITCH_TTL = 30.0
"""Seconds the master switch is cached for event tracking (which must not query per event)."""


def open_store(url: str) -> CounterStore:
    """The counter store at ``sqlite:///PATH``, ``redis://...`` or ``redis+cluster://...``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"store_url {url!r} is not a URL (sqlite:///PATH or redis://HOST:PORT)")
    if scheme == "sqlite":
        return SQLiteStore(rest[1:] if rest.startswith("/") else rest)
    if scheme in ("redis", "rediss", "redis+cluster"):
        from usage_ping.store.redis import RedisStore  # the optional redis extra

        if scheme == "redis+cluster":
            return RedisStore.from_url(f"redis://{rest}", cluster=True)
        return RedisStore.from_url(url)
    raise ValueError(f"store_url {url!r}: unknown scheme {scheme!r} (sqlite, redis, redis+cluster)")


class UsagePing:
    """An instance's usage ping.

    Args:
        settings: the configuration.
        engine: the host's database (default: one made from ``settings.database_url``).
        store: the counter store (default: opened from ``settings.store_url`` when needed).
        counters: the host's plain counters by prefix, for ``redis`` metrics.
        active_user_count: the host's count of active users (a number or a callable).
        license: the host's license block (a mapping or a callable), if it has one.
        clock: the current time (UTC), replaceable in tests.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        engine: sa.Engine | None = None,
        store: CounterStore | None = None,
        counters: Mapping[str, HasTotals] | None = None,
        active_user_count: int | Callable[[], int] | None = None,
        license: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings or Settings()
        self.engine = engine or sa.create_engine(self.settings.database_url)
        self._store = store
        self.counters = dict(counters or {})
        self.active_user_count = active_user_count
        self.license = license
        self.clock = clock
        self.state = InstanceState(self.engine, locked_off=self.settings.locked_off)
        self._switch: tuple[float, bool] | None = None
        self._switch_lock = threading.Lock()

    @classmethod
    def from_config(cls, path: Path | str | None = None, **options: Any) -> UsagePing:
        """Load the configuration file (see :meth:`Settings.load`) and wire the instance."""
        return cls(Settings.load(path), **options)

    # -- switches ---------------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """Whether payloads are built: the admin's switch, unless the configuration locks it off."""
        return self.state.enabled

    def enable(self) -> None:
        """Turn usage ping on; raises SwitchLockedError when the configuration locks it off."""
        self.state.set_enabled(True)
        self._switch = None

    def disable(self) -> None:
        """Turn usage ping off: nothing is built, sent or counted."""
        self.state.set_enabled(False)
        self._switch = None

    def counting(self) -> bool:
        """The master switch for event tracking, read at most every 30 s; False if unreadable."""
        now = time.monotonic()
        cached = self._switch
        if cached is not None and now - cached[0] < _SWITCH_TTL:
            return cached[1]
        with self._switch_lock:
            try:
                value = self.enabled
            except Exception as exc:  # the host's database may be down: count nothing then
                logger.warning("cannot read the usage ping switch: %s", exc)
                value = False
            self._switch = (now, value)
            return value

    # -- parts ------------------------------------------------------------------------------------

    @cached_property
    def dictionary(self) -> MetricDictionary:
        """The metric dictionary named by ``settings.metrics`` (loaded once; raises if invalid)."""
        return MetricDictionary.load(*self.settings.metrics)

    @property
    def store(self) -> CounterStore:
        """The counter store (opened from ``settings.store_url`` on first use)."""
        if self._store is None:
            self._store = open_store(self.settings.store_url)
        return self._store

    @cached_property
    def events(self) -> EventCounter | None:
        """The event counter over the known events of ``settings.events`` (None without any)."""
        if not self.settings.events:
            return None
        return EventCounter(
            self.store, KnownEvents.load(*self.settings.events), counting=self.counting
        )

    def facts(self) -> InstanceFacts:
        """The instance's facts for the top of the payload."""
        extra: dict[str, Any] = {}
        if self.settings.hostname is not None:
            extra["hostname"] = self.settings.hostname
        return InstanceFacts(
            uuid=self.state.uuid,
            version=self.settings.version,
            installation_type=self.settings.installation_type,
            edition=self.settings.edition,
            active_user_count=self.active_user_count,
            license=self.license,
            **extra,
        )

    def builder(
        self, mode: Mode = "values", on_outcome: Callable[[MetricOutcome], None] | None = None
    ) -> PayloadBuilder:
        """A payload builder for this instance (its categories, limits and facts)."""
        needs_events = any(m.data_source == "redis_hll" for m in self.dictionary.active())
        topology = None
        if self.settings.prometheus is not None:  # the topology block, read from Prometheus
            from usage_ping.topology.block import Topology

            topology = Topology(self.settings.prometheus)
        return PayloadBuilder(
            self.dictionary,
            engine=self.engine,
            events=self.events if needs_events else None,
            counters=self.counters,
            facts=self.facts(),
            categories=self.state.categories,
            concurrency=self.settings.concurrency,
            metric_timeout=self.settings.metric_timeout,
            mode=mode,
            on_outcome=on_outcome,
            clock=self.clock,
            topology=topology,
        )

    def build(
        self, mode: Mode = "values", on_outcome: Callable[[MetricOutcome], None] | None = None
    ) -> dict[str, Any] | None:
        """Build the payload; None (and nothing computed) when usage ping is switched off.

        The queries mode computes nothing, so it works while usage ping is off too.
        """
        if mode != "queries" and not self.enabled:
            why = "locked off in " + self.settings.source if self.settings.locked_off else "off"
            logger.info("usage ping is disabled (%s): no payload built", why)
            return None
        return self.builder(mode, on_outcome).build()

    # -- delivery ---------------------------------------------------------------------------------

    @cached_property
    def outbox(self) -> Outbox:
        """The outbox of built payloads in the host's database."""
        from usage_ping.delivery.outbox import Outbox

        return Outbox(
            self.engine, retention=timedelta(days=self.settings.retention_days), clock=self.clock
        )

    def transport(self) -> Transport:
        """A transport to the configured central service (``collector_url``)."""
        from usage_ping.delivery.transport import Transport

        if not self.settings.collector_url:
            raise UsagePingError(
                f"no collector_url in {self.settings.source}: set the central service's URL, "
                "or use usage-ping export for an air-gapped instance"
            )
        return Transport(self.settings.collector_url, max_attempts=self.settings.send_attempts)

    def submit(self, transport: Transport | None = None) -> SubmitResult:
        """Build today's payload (once a day at most) and send every pending one.

        See :func:`usage_ping.delivery.submit.submit`; errors of building raise.
        """
        from usage_ping.delivery.submit import submit

        return submit(self, transport)

    def export(self, out: Path) -> OutboxRow | None:
        """Write the payload to ``out`` for an air-gapped upload (None when disabled)."""
        from usage_ping.delivery.submit import export

        return export(self, out)

    def slot(self) -> Slot:
        """This instance's weekly slot, derived from its uuid."""
        from usage_ping.delivery.schedule import weekly_slot

        return weekly_slot(self.state.uuid)

    def start_scheduler(self, *, splay_seconds: float = 60.0) -> BackgroundScheduler:
        """Run :meth:`submit` in this process at the instance's weekly slot (one call to start).

        A background APScheduler job fires at the slot plus up to ``splay_seconds`` of random
        delay; the instance lock keeps other processes of the instance from submitting too, and
        errors are logged, never raised into the host. Stop it with ``.shutdown()``.
        """
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.cron import CronTrigger

        slot = self.slot()
        trigger = CronTrigger(
            day_of_week=slot.weekday,
            hour=slot.hour,
            minute=slot.minute,
            timezone=UTC,
            jitter=int(splay_seconds) or None,
        )
        scheduler = BackgroundScheduler(timezone=UTC, daemon=True)
        scheduler.add_job(
            self._scheduled_submit,
            trigger,
            id="usage_ping_submit",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=6 * 24 * 3600,
        )
        scheduler.start()
        return scheduler

    def _scheduled_submit(self) -> None:
        try:
            result = self.submit()
        except Exception as exc:
            logger.warning("scheduled usage ping submission failed: %s", exc)
            return
        logger.info("scheduled usage ping submission: %s", result.describe())
