"""The metric dictionary: every metric of the payload declared in YAML."""

from usage_ping.metrics.definition import (
    CallableInstrumentation,
    DatabaseInstrumentation,
    Instrumentation,
    MetricDefinition,
    MetricDefinitionError,
    MetricDictionary,
    RedisHLLInstrumentation,
    RedisInstrumentation,
)
from usage_ping.metrics.timeframes import database_window

__all__ = [
    "CallableInstrumentation",
    "DatabaseInstrumentation",
    "Instrumentation",
    "MetricDefinition",
    "MetricDefinitionError",
    "MetricDictionary",
    "RedisHLLInstrumentation",
    "RedisInstrumentation",
    "database_window",
]
