"""SQL counters: exact batch counts and HyperLogLog distinct estimates that never run long."""

from usage_ping.sql.batching import BatchQueryError, Progress, memoized_bounds
from usage_ping.sql.counters import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_TARGET_TIME,
    DEFAULT_TIMEOUT,
    MIN_BATCH_SIZE,
    count,
    distinct_count,
    sum,
)
from usage_ping.sql.estimate import estimate_distinct_count, estimate_distinct_sketch
from usage_ping.sql.mode import non_sql_mode, sql_disabled
from usage_ping.sql.sketch import HllSketch, hash64

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_TARGET_TIME",
    "DEFAULT_TIMEOUT",
    "MIN_BATCH_SIZE",
    "BatchQueryError",
    "HllSketch",
    "Progress",
    "count",
    "distinct_count",
    "estimate_distinct_count",
    "estimate_distinct_sketch",
    "hash64",
    "memoized_bounds",
    "non_sql_mode",
    "sql_disabled",
    "sum",
]
