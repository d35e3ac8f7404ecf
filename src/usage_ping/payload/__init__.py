"""The payload: the instance's facts and every metric of the dictionary, built in isolation."""

from usage_ping.payload.builder import MetricOutcome, Mode, PayloadBuilder, set_path
from usage_ping.payload.facts import FACT_KEYS, InstanceFacts

__all__ = ["FACT_KEYS", "InstanceFacts", "MetricOutcome", "Mode", "PayloadBuilder", "set_path"]
