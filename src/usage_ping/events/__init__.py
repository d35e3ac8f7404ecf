"""Known events and unique-value counting per event (Redis HLL or the SQLite store)."""

from usage_ping.events.counter import (
    AggregationMismatchError,
    CategoryMismatchError,
    EventCounter,
    EventError,
    FeatureFlags,
    InvalidContextError,
    InvalidValueError,
    SlotMismatchError,
    UnknownEventError,
)
from usage_ping.events.definitions import EventDefinitionError, KnownEvent, KnownEvents
from usage_ping.events.windows import Window, window

__all__ = [
    "AggregationMismatchError",
    "CategoryMismatchError",
    "EventCounter",
    "EventDefinitionError",
    "EventError",
    "FeatureFlags",
    "InvalidContextError",
    "InvalidValueError",
    "KnownEvent",
    "KnownEvents",
    "SlotMismatchError",
    "UnknownEventError",
    "Window",
    "window",
]
