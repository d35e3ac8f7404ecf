"""Building the usage ping payload from the metric dictionary."""

from usage_ping.payload.builder import MetricOutcome, PayloadBuilder, set_path

__all__ = ["MetricOutcome", "PayloadBuilder", "set_path"]
