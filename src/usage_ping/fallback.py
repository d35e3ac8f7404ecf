"""The one fail-safe boundary, and the fallback codes that stand in for failed values.

Everything that runs inside the host application at use time (counting, building the payload,
tracking events, sending) goes through :func:`call_safely` or :func:`swallow`. An exception there
is logged to the ``usage_ping`` logger (never the host's, and the library never configures logging)
and replaced by a fallback value, so an error in telemetry can never break the host.

Tests see the swallowed errors: :mod:`usage_ping.testing` can make the boundary re-raise them or
collect them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import IntEnum
from typing import Any, TypeVar

__all__ = [
    "ESTIMATE_FAILED",
    "FAILED",
    "QUERIES_MODE",
    "Fallback",
    "call_safely",
    "collecting",
    "logger",
    "report",
    "swallow",
]

logger = logging.getLogger("usage_ping")
# Silent unless the host configures logging (Python's advice for libraries).
logger.addHandler(logging.NullHandler())

T = TypeVar("T")
F = TypeVar("F")


class Fallback(IntEnum):
    """Values that stand in for a metric that could not be computed."""

    FAILED = -1
    """Counting failed: a database or store error, or a query that kept timing out."""
    ESTIMATE_FAILED = -2
    """A distinct-count estimate failed for a reason other than the database."""
    QUERIES_MODE = -3
    """An SQL metric in queries mode: its SQL was exported instead of run."""


FAILED = Fallback.FAILED
ESTIMATE_FAILED = Fallback.ESTIMATE_FAILED
QUERIES_MODE = Fallback.QUERIES_MODE

# Observers of swallowed exceptions, installed by usage_ping.testing. Each gets the exception and
# the description; one that returns True makes the boundary re-raise instead of swallowing.
Observer = Callable[[BaseException, str], bool]
_observers: list[Observer] = []
_observers_lock = threading.Lock()


def _add_observer(observer: Observer) -> None:
    with _observers_lock:
        _observers.append(observer)


def _remove_observer(observer: Observer) -> None:
    with _observers_lock:
        _observers.remove(observer)


# Per-task collection of swallowed errors (see collecting()): the payload builder uses it to say
# in `meta` why a metric fell back, although the counter itself already returned -1.
_collected: ContextVar[list[BaseException] | None] = ContextVar(
    "usage_ping_collected", default=None
)


@contextmanager
def collecting() -> Iterator[list[BaseException]]:
    """Collect what the boundary swallows in this context (this thread or task) into a list."""
    seen: list[BaseException] = []
    token = _collected.set(seen)
    try:
        yield seen
    finally:
        _collected.reset(token)


def _record(exc: BaseException, description: str, context: dict[str, Any]) -> bool:
    """Log a swallowed exception; return True when a test asked for it to be re-raised."""
    collected = _collected.get()
    if collected is not None:
        collected.append(exc)
    logger.warning(
        "usage_ping: %s failed: %s: %s",
        description,
        type(exc).__name__,
        exc,
        exc_info=exc,
        extra={"usage_ping": {"what": description, **context}},
    )
    with _observers_lock:
        observers = list(_observers)
    reraise = False
    for observer in observers:
        reraise = observer(exc, description) or reraise
    return reraise


def call_safely(
    func: Callable[[], T],
    *,
    fallback: F,
    description: str,
    context: dict[str, Any] | None = None,
    fallback_for: Callable[[Exception], F] | None = None,
) -> T | F:
    """Run ``func`` and return its result, or ``fallback`` if it raises.

    Args:
        func: the work, taking no arguments (bind them with a lambda or ``functools.partial``).
        fallback: what to return instead of raising, usually a :class:`Fallback` code.
        description: what was being done, for the log line ("count issues", "track_event x").
        context: extra fields for the log record (table, range, SQL, ...).
        fallback_for: picks the fallback from the exception, when it depends on what failed.

    Example:
        >>> call_safely(lambda: 1 // 0, fallback=FAILED, description="divide")
        <Fallback.FAILED: -1>
    """
    try:
        return func()
    except Exception as exc:
        if _record(exc, description, context or {}):
            raise
        return fallback if fallback_for is None else fallback_for(exc)


def report(exc: Exception, description: str, context: dict[str, Any] | None = None) -> None:
    """Record an error that the caller has already caught (logged; re-raised only in tests)."""
    if _record(exc, description, context or {}):
        raise exc


@contextmanager
def swallow(description: str, context: dict[str, Any] | None = None) -> Iterator[None]:
    """Run a block whose errors must not reach the host; they are logged and dropped."""
    try:
        yield
    except Exception as exc:
        if _record(exc, description, context or {}):
            raise
