"""Known events and unique-value counting per event (Redis HLL or the SQLite store)."""

from usage_ping.events.aggregates import (
    MAX_AND_EVENTS,
    TIME_FRAMES,
    AggregatedMetric,
    AggregatedMetricError,
    AggregatedMetrics,
    AggregateTimeFrame,
    Operator,
    aggregated_value,
    aggregated_values,
    inclusion_exclusion,
)
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
    "MAX_AND_EVENTS",
    "TIME_FRAMES",
    "AggregateTimeFrame",
    "AggregatedMetric",
    "AggregatedMetricError",
    "AggregatedMetrics",
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
    "Operator",
    "SlotMismatchError",
    "UnknownEventError",
    "Window",
    "aggregated_value",
    "aggregated_values",
    "inclusion_exclusion",
    "redis_usage_data",
    "window",
]
