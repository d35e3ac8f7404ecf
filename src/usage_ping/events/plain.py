"""Plain counters: how many times each known event happened, and ``redis_usage_data``.

A counter has a ``prefix`` (``"wiki_pages"``) and its known ``events`` (``"create"``,
``"update"``, ``"delete"``). :class:`Counter` keeps one integer per event (``INCRBY``/``GET``);
:class:`HashCounter` keeps one hash per prefix with a field per event (``HINCRBY``/``HGETALL``).
Both give the same payload: ``totals()`` is ``{"<prefix>_<event>": value}`` for every known event,
0 for one never incremented. Values never expire: they are running totals since the install.

**Keys.** ``usage_ping:counter:<prefix>:<event>`` for :class:`Counter`, and
``usage_ping:hash_counter:<prefix>`` (fields ``<event>``) for :class:`HashCounter`. Prefixes and
events match ``^[a-z][a-z0-9_]*$``, so a key holds no ``{`` (no hash tag: each key hashes to its own
Redis Cluster slot, which is fine, since reads of several keys use ``get``, one GET per key) and no
``:`` (two counters cannot share a key). A :class:`Counter` and a :class:`HashCounter` with the same
prefix use different keys.

**Errors.** Definitions fail loudly: a bad prefix or event name, a duplicate event or no events at
all raise :class:`CounterDefinitionError` (a ``ValueError``) when the counter is made.
``increment`` runs in the host's request path and never raises there: an unknown event or a bad
amount is logged to the ``usage_ping`` logger and dropped (it returns False), unless the counter is
``strict`` (development and tests), where those mistakes raise; a store failure is always logged
and dropped. ``read`` and ``totals`` run when the payload is built and are loud (unknown events,
:class:`~usage_ping.store.StoreError`); :func:`redis_usage_data` is their fail-safe wrapper, which
keeps the payload's shape with -1 (:data:`~usage_ping.fallback.FAILED`) per metric.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar, overload, runtime_checkable

from usage_ping.errors import UsagePingError
from usage_ping.events.counter import EventError, UnknownEventError
from usage_ping.fallback import FAILED, Fallback, call_safely, report
from usage_ping.store import CounterStore, HIncr, Incr, Op, WriteDroppedError

__all__ = [
    "Counter",
    "CounterDefinitionError",
    "HasTotals",
    "HashCounter",
    "redis_usage_data",
]

NAME = re.compile(r"[a-z][a-z0-9_]*")
"""What a prefix or an event name must match, whole: lower-case ASCII, digits and underscores."""

T = TypeVar("T")


class CounterDefinitionError(UsagePingError, ValueError):
    """A counter is defined with a bad prefix or event name, duplicate events or no events."""


def _check_name(what: str, name: object) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise CounterDefinitionError(
            f"{what} {name!r} must match ^[a-z][a-z0-9_]*$ (lower case, digits, underscores)"
        )
    return name


def _check_events(prefix: str, events: Sequence[str]) -> tuple[str, ...]:
    if isinstance(events, str):  # a str is a Sequence[str] of its letters
        raise CounterDefinitionError(
            f"events of {prefix} must be a list of names, not the string {events!r}"
        )
    names = tuple(_check_name(f"event of {prefix}", e) for e in events)
    if not names:
        raise CounterDefinitionError(f"counter {prefix} has no events")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise CounterDefinitionError(
            f"counter {prefix} declares events more than once: {', '.join(duplicates)}"
        )
    return names


@runtime_checkable
class HasTotals(Protocol):
    """What :func:`redis_usage_data` accepts besides a callable: a counter's totals and names."""

    def totals(self) -> dict[str, int]:
        """``{metric name: value}``; may raise when the store fails."""

    def metric_names(self) -> list[str]:
        """The names that ``totals`` returns, without reading the store (it must not raise)."""


class _BaseCounter:
    """What :class:`Counter` and :class:`HashCounter` share: names, checks and ``increment``."""

    def __init__(
        self,
        store: CounterStore,
        prefix: str,
        events: Sequence[str],
        *,
        strict: bool = False,
    ) -> None:
        self.store = store
        self.prefix = _check_name("prefix", prefix)
        self.events: tuple[str, ...] = _check_events(prefix, events)
        self.strict = strict
        self._known = frozenset(self.events)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.prefix!r}, {list(self.events)!r})"

    def metric_names(self) -> list[str]:
        """``<prefix>_<event>`` for every known event, in the order they were declared.

        Example:
            >>> Counter(store, "wiki_pages", ["create", "delete"]).metric_names()  # doctest: +SKIP
            ['wiki_pages_create', 'wiki_pages_delete']
        """
        return [f"{self.prefix}_{event}" for event in self.events]

    def _known_event(self, event: str) -> str:
        if not isinstance(event, str) or event not in self._known:  # a list is unhashable
            raise UnknownEventError(
                f"unknown event {event!r} of counter {self.prefix}: "
                f"declare it in its events ({', '.join(self.events)})"
            )
        return event

    def _op(self, event: str, amount: int) -> Op:
        raise NotImplementedError

    def increment(self, event: str, amount: int = 1) -> bool:
        """Add ``amount`` (a positive integer) to ``event``; True if the store took it.

        Never raises into the host unless ``strict``, and then only for an unknown event or a bad
        amount; a store failure is logged and returns False (see the module documentation).

        Example:
            >>> counter = Counter(store, "wiki_pages", ["create", "delete"])  # doctest: +SKIP
            >>> counter.increment("create")
            True
        """
        description = f"increment {self.prefix}_{event}"
        try:
            self._known_event(event)
            if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
                raise EventError(f"amount must be a positive integer, got {amount!r}")
        except EventError as exc:
            if self.strict:
                raise
            report(exc, description)
            return False
        try:
            self.store.apply([self._op(event, amount)])
        except WriteDroppedError:
            return False  # counted by the buffer, which logs once per outage
        except Exception as exc:
            report(exc, description, {"counter": self.prefix, "event": event})
            return False
        return True


class Counter(_BaseCounter):
    """One integer per known event (``INCRBY``/``GET``), under ``usage_ping:counter:<prefix>:``.

    Args:
        store: where the counts live (Redis, Redis Cluster or SQLite).
        prefix: the counter's name, also the start of its metric names (``wiki_pages``).
        events: the known events (``create``, ``update``...), each counted separately.
        strict: raise on mistakes in ``increment`` calls instead of logging and dropping them.

    Raises:
        CounterDefinitionError: a bad prefix or event name, a duplicate event, or no events.

    Example:
        >>> events = ["create", "update", "delete"]
        >>> wiki_pages = Counter(store, "wiki_pages", events)  # doctest: +SKIP
        >>> wiki_pages.increment("create")
        True
        >>> wiki_pages.totals()
        {'wiki_pages_create': 1, 'wiki_pages_update': 0, 'wiki_pages_delete': 0}
    """

    def key(self, event: str) -> str:
        """The store key holding ``event``'s count.

        Raises:
            UnknownEventError: ``event`` is not one of the counter's events.
        """
        return f"usage_ping:counter:{self.prefix}:{self._known_event(event)}"

    def _op(self, event: str, amount: int) -> Op:
        return Incr(self.key(event), amount)

    def read(self, event: str) -> int:
        """How many times ``event`` happened (0 if never).

        Raises:
            UnknownEventError: ``event`` is not one of the counter's events.
            StoreError: the store failed.
        """
        (value,) = self.store.get([self.key(event)])
        return value or 0

    def totals(self) -> dict[str, int]:
        """``{"<prefix>_<event>": count}`` for every known event, read in one store call.

        Raises:
            StoreError: the store failed (:func:`redis_usage_data` turns that into -1 per metric).
        """
        values = self.store.get([self.key(e) for e in self.events])
        return {name: value or 0 for name, value in zip(self.metric_names(), values, strict=True)}


class HashCounter(_BaseCounter):
    """One hash per counter, a field per known event (``HINCRBY``/``HGETALL``).

    The hash lives at ``usage_ping:hash_counter:<prefix>``. Same arguments, errors and payload
    as :class:`Counter`; fields in the hash that are not known events (say, an event that was
    removed) are left out of ``totals``.

    Example:
        >>> pod_logs = HashCounter(store, "pod_logs", ["requests", "errors"])  # doctest: +SKIP
        >>> pod_logs.increment("requests", 3)
        True
        >>> pod_logs.totals()
        {'pod_logs_requests': 3, 'pod_logs_errors': 0}
    """

    @property
    def key(self) -> str:
        """The store key of the hash that holds every event of this counter."""
        return f"usage_ping:hash_counter:{self.prefix}"

    def _op(self, event: str, amount: int) -> Op:
        return HIncr(self.key, event, amount)

    def read(self, event: str) -> int:
        """How many times ``event`` happened (0 if never).

        Raises:
            UnknownEventError: ``event`` is not one of the counter's events.
            StoreError: the store failed.
        """
        self._known_event(event)
        return self.store.hgetall(self.key).get(event, 0)

    def totals(self) -> dict[str, int]:
        """``{"<prefix>_<event>": count}`` for every known event, read in one ``hgetall``.

        Raises:
            StoreError: the store failed (:func:`redis_usage_data` turns that into -1 per metric).
        """
        fields = self.store.hgetall(self.key)
        return {
            name: fields.get(event, 0)
            for name, event in zip(self.metric_names(), self.events, strict=True)
        }


@overload
def redis_usage_data(source: HasTotals) -> dict[str, int]: ...
@overload
def redis_usage_data(source: Callable[[], T]) -> T | Fallback: ...
def redis_usage_data(source: HasTotals | Callable[[], T]) -> dict[str, int] | T | Fallback:
    """A counter's totals, or a callable's value, with -1 in place of what could not be read.

    For a counter (anything with ``totals()`` and ``metric_names()``, see :class:`HasTotals`):
    its totals, or, when reading them fails, every one of its metric names mapped to -1
    (:data:`~usage_ping.fallback.FAILED`), so that the payload keeps its shape. For a callable
    taking no arguments: its value, or -1 when it raises. Errors are logged to the ``usage_ping``
    logger, never raised (tests can make them raise, see :mod:`usage_ping.testing`).

    Example:
        >>> redis_usage_data(wiki_pages)  # doctest: +SKIP
        {'wiki_pages_create': 3, 'wiki_pages_update': 0, 'wiki_pages_delete': 1}
        >>> redis_usage_data(wiki_pages)  # with the store down  # doctest: +SKIP
        {'wiki_pages_create': -1, 'wiki_pages_update': -1, 'wiki_pages_delete': -1}
        >>> redis_usage_data(lambda: pod_logs.read("requests"))  # doctest: +SKIP
        3
    """
    if isinstance(source, HasTotals):
        totals = call_safely(
            source.totals, fallback=None, description=f"redis_usage_data {source!r}"
        )
        if totals is None:
            failed: dict[str, int] = dict.fromkeys(source.metric_names(), FAILED)
            return failed
        return totals
    name = getattr(source, "__qualname__", None) or repr(source)
    return call_safely(source, fallback=FAILED, description=f"redis_usage_data {name}")
