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
from usage_ping.events.plain import (
    Counter,
    CounterDefinitionError,
    HashCounter,
    HasTotals,
    redis_usage_data,
)
from usage_ping.events.windows import Window, window

__all__ = [
    "AggregationMismatchError",
    "CategoryMismatchError",
    "Counter",
    "CounterDefinitionError",
    "EventCounter",
    "EventDefinitionError",
    "EventError",
    "FeatureFlags",
    "HasTotals",
    "HashCounter",
    "InvalidContextError",
    "InvalidValueError",
    "KnownEvent",
    "KnownEvents",
    "SlotMismatchError",
    "UnknownEventError",
    "Window",
    "redis_usage_data",
    "window",
]
