"""The payload: the instance's facts and every metric of the dictionary, built in isolation."""

from usage_ping.payload.builder import (
    BuildContext,
    MetricOutcome,
    Mode,
    PayloadBuilder,
    current_build,
    set_path,
)
from usage_ping.payload.facts import FACT_KEYS, InstanceFacts

__all__ = [
    "FACT_KEYS",
    "BuildContext",
    "InstanceFacts",
    "MetricOutcome",
    "Mode",
    "PayloadBuilder",
    "current_build",
    "set_path",
]
