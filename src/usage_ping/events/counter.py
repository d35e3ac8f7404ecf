"""Counting unique values per event: ``track_event`` and ``unique_events``.

``track_event`` is called from the host's request path, so it never raises there: a store that is
down, a value of the wrong type or an unknown event is logged to the ``usage_ping`` logger and
dropped (it returns False). With ``strict=True`` (development and tests) mistakes in the call
itself (unknown events, bad values, contexts outside the allowed list) raise instead, so they are
found before production. Store failures never raise.

``unique_events`` runs when the payload is built; its errors are loud, and the payload builder
isolates them per metric.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from usage_ping.errors import UsagePingError
from usage_ping.events.definitions import KnownEvent, KnownEvents
from usage_ping.events.windows import TimeFrame, key, period, periods, window
from usage_ping.fallback import report
from usage_ping.store import CounterStore, Op, PfAdd, WriteDroppedError

__all__ = [
    "AggregationMismatchError",
    "CategoryMismatchError",
    "EventCounter",
    "EventError",
    "FeatureFlags",
    "InvalidContextError",
    "InvalidValueError",
    "SlotMismatchError",
    "UnknownEventError",
]

FRAMES: tuple[TimeFrame, ...] = ("weekly", "monthly")

MAX_VALUE_LENGTH = 255
"""Longest value accepted (characters): values are ids, not documents."""


class EventError(UsagePingError, ValueError):
    """A call about events that cannot be honoured."""


class UnknownEventError(EventError):
    """The event is not declared in the known events."""


class InvalidValueError(EventError):
    """A tracked value is not a non-empty string or integer of at most 255 characters."""


class InvalidContextError(EventError):
    """The context is not one of the allowed contexts."""


class SlotMismatchError(EventError):
    """Events counted together live in different slots."""


class CategoryMismatchError(EventError):
    """Events counted together belong to different categories."""


class AggregationMismatchError(EventError):
    """Events counted together are aggregated differently (daily and weekly)."""


class FeatureFlags:
    """Feature flags: values set by the host (settings or its database) over defaults.

    A flag's value is, in order: what the host set (``values``, :meth:`set`, or rows loaded with
    :meth:`from_table`); the default its definition gives (``defaults``); else ``default``.

    Example:
        >>> flags = FeatureFlags({"new_search": True}, defaults={"beta_ide": True})
        >>> flags.enabled("new_search"), flags.enabled("beta_ide"), flags.enabled("other")
        (True, True, False)
    """

    def __init__(
        self,
        values: Mapping[str, bool] | None = None,
        *,
        defaults: Mapping[str, bool] | None = None,
        default: bool = False,
    ) -> None:
        self._values = dict(values or {})
        self._defaults = dict(defaults or {})
        self.default = default

    def enabled(self, name: str) -> bool:
        if name in self._values:
            return self._values[name]
        return self._defaults.get(name, self.default)

    def set(self, name: str, value: bool) -> None:
        self._values[name] = value

    @classmethod
    def from_table(
        cls,
        engine: sa.Engine,
        table: str = "usage_ping_feature_flags",
        *,
        defaults: Mapping[str, bool] | None = None,
        default: bool = False,
    ) -> FeatureFlags:
        """Flags stored by the host in a table with ``name`` and ``enabled`` columns.

        A missing table means no flags set (only defaults): the host may not have created it.
        """
        flags = sa.table(table, sa.column("name", sa.String), sa.column("enabled", sa.Boolean))
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.select(flags.c.name, flags.c.enabled)).all()
        except sa.exc.DBAPIError as exc:
            if not sa.inspect(engine).has_table(table):
                rows = []
            else:
                raise EventError(f"cannot read feature flags from {table}: {exc}") from exc
        values = {str(name): bool(enabled) for name, enabled in rows}
        return cls(values, defaults=defaults, default=default)


def _values(values: Any) -> tuple[str, ...]:
    items = [values] if isinstance(values, str | int) else values
    if isinstance(items, Mapping | bytes):  # iterating them would track keys or byte values
        raise InvalidValueError(
            f"values must be a string, an integer or a list of them, got {type(values).__name__}"
        )
    try:
        items = list(items)
    except TypeError:
        raise InvalidValueError(
            f"values must be a string, an integer or a list of them, got {type(values).__name__}"
        ) from None
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise InvalidValueError(f"value {item!r} is not a string or an integer")
        text = str(item)
        if not text:
            raise InvalidValueError("an empty string is not a value")
        if len(text) > MAX_VALUE_LENGTH:
            raise InvalidValueError(
                f"value of {len(text)} characters is longer than {MAX_VALUE_LENGTH}"
            )
        out.append(text)
    return tuple(out)


class EventCounter:
    """Tracks unique values per known event in a counter store, and counts them.

    Args:
        store: where the sketches live (Redis, Redis Cluster or SQLite).
        events: the known events.
        flags: feature flags gating events that name one (default: all flags off).
        contexts: the allowed contexts (e.g. plan names) for ``track_event(context=...)``.
        counting: whether to count at all; the host ties it to the usage ping setting (off
            means nothing is tracked, unless the admin chose to keep counting while not sending).
        strict: raise on mistakes in calls instead of logging and dropping them.
        clock: the current time (UTC), replaceable in tests.

    Example:
        >>> counter = EventCounter(store, KnownEvents.load("known_events"))  # doctest: +SKIP
        >>> counter.track_event("i_search_total", user.id)
        True
    """

    def __init__(
        self,
        store: CounterStore,
        events: KnownEvents,
        *,
        flags: FeatureFlags | None = None,
        contexts: Collection[str] = (),
        counting: Callable[[], bool] = lambda: True,
        strict: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.events = events
        self.flags = flags or FeatureFlags()
        self.contexts = frozenset(contexts)
        self.counting = counting
        self.strict = strict
        self.clock = clock

    # -- tracking ---------------------------------------------------------------------------------

    def ops(
        self, name: str, values: Any, *, time: datetime | None = None, context: str = ""
    ) -> list[Op]:
        """The store writes that tracking would make (empty when the event is switched off).

        Raises:
            EventError: unknown event, bad values or an unknown context.
        """
        event = self._event(name)
        if context and context not in self.contexts:
            raise InvalidContextError(
                f"context {context!r} is not one of {sorted(self.contexts) or 'the (none) allowed'}"
            )
        tracked = _values(values)
        if not tracked or (event.feature_flag and not self.flags.enabled(event.feature_flag)):
            return []
        day = (time or self.clock()).astimezone(UTC).date()
        return [
            PfAdd(
                key(event, period(event, day), context),
                tracked,
                ttl=event.expiry_days * 86_400,
            )
        ]

    def track_event(
        self, name: str, values: Any, *, time: datetime | None = None, context: str = ""
    ) -> bool:
        """Count ``values`` (one or many user ids, say) for event ``name``; True if written.

        Never raises into the host unless ``strict``; see the module documentation.
        """
        if not self.counting():
            return False
        try:
            ops = self.ops(name, values, time=time, context=context)
        except EventError as exc:
            if self.strict:
                raise
            report(exc, f"track_event {name}")
            return False
        if not ops:
            return False
        try:
            self.store.apply(ops)
        except WriteDroppedError:
            return False  # counted by the buffer, which logs once per outage
        except Exception as exc:
            report(exc, f"track_event {name}", {"event": name})
            return False
        return True

    def track_event_in_context(self, name: str, values: Any, context: str) -> bool:
        """``track_event`` under a context (e.g. the plan); a blank context tracks nothing."""
        if not context:
            return False
        return self.track_event(name, values, context=context)

    # -- counting ---------------------------------------------------------------------------------

    def _event(self, name: str) -> KnownEvent:
        try:
            return self.events[name]
        except KeyError:
            raise UnknownEventError(f"unknown event {name!r}: declare it in known events") from None

    def _compatible(self, names: Sequence[str]) -> list[KnownEvent]:
        if not names:
            raise EventError("no events given")
        events = [self._event(n) for n in names]
        first = events[0]
        for event in events[1:]:
            if event.slot != first.slot:
                raise SlotMismatchError(
                    f"{first.name} (slot {first.slot}) and {event.name} (slot {event.slot}) "
                    "cannot be counted together"
                )
            if event.category != first.category:
                raise CategoryMismatchError(
                    f"{first.name} ({first.category}) and {event.name} ({event.category}) "
                    "are in different categories"
                )
            if event.aggregation != first.aggregation:
                raise AggregationMismatchError(
                    f"{first.name} is {first.aggregation}, {event.name} is {event.aggregation}"
                )
        return events

    def keys(self, names: Sequence[str], start: date, end: date, context: str = "") -> list[str]:
        """The keys holding ``names`` from ``start`` to ``end`` (see :mod:`.windows`)."""
        events = self._compatible(names)
        labels = periods(events[0], start, end)
        if not labels:
            raise EventError(
                f"{start}..{end} holds no complete ISO week for weekly events {', '.join(names)}"
            )
        return [key(e, label, context) for e in events for label in labels]

    def unique_events(
        self,
        names: str | Sequence[str],
        start_date: date,
        end_date: date,
        context: str = "",
    ) -> int:
        """Distinct values tracked for any of ``names`` from ``start_date`` to ``end_date``.

        Both dates are included; weekly events count the ISO weeks lying wholly inside.

        Raises:
            EventError: unknown events, events that cannot be counted together, or a range
                with no complete week for weekly events.
            StoreError: the store failed.
        """
        names = [names] if isinstance(names, str) else list(names)
        return self.store.pfcount(self.keys(names, start_date, end_date, context))

    def count(self, names: str | Sequence[str], frame: TimeFrame, today: date | None = None) -> int:
        """``unique_events`` over the ``weekly`` or ``monthly`` window ending before ``today``."""
        names = [names] if isinstance(names, str) else list(names)
        first = self._event(names[0])
        span = window(first.aggregation, frame, today or self.clock().astimezone(UTC).date())
        return self.unique_events(names, span.start, span.end)

    def totals(self, today: date | None = None) -> dict[str, dict[str, int]]:
        """``{category: {<event>_weekly, <event>_monthly, [<category>_total_unique_counts_*]}}``.

        A category total is added when the category has more than one event and they all share
        one slot and one aggregation (otherwise they cannot be united in one count).
        """
        result: dict[str, dict[str, int]] = {}
        for category in self.events.categories():
            members = self.events.in_category(category)
            values: dict[str, int] = {}
            for event in members:
                for frame in FRAMES:
                    values[f"{event.name}_{frame}"] = self.count(event.name, frame, today)
            same = {(e.slot, e.aggregation) for e in members}
            if len(members) > 1 and len(same) == 1:
                names = [e.name for e in members]
                for frame in FRAMES:
                    values[f"{category}_total_unique_counts_{frame}"] = self.count(
                        names, frame, today
                    )
            result[category] = values
        return result
