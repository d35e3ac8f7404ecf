"""usage-ping: usage telemetry for self-managed software.

The public API is what ``__all__`` lists. Counting never raises into the host application for
database errors: it returns a :class:`Fallback` code (-1) and logs to the ``usage_ping`` logger.
Bad arguments raise :class:`InvalidRelationError` (a ``ValueError``) at call time.
"""

from usage_ping.errors import BatchTimeoutError, InvalidRelationError, UsagePingError
from usage_ping.fallback import ESTIMATE_FAILED, FAILED, QUERIES_MODE, Fallback
from usage_ping.sql import (
    BatchQueryError,
    HllSketch,
    count,
    distinct_count,
    estimate_distinct_count,
    estimate_distinct_sketch,
    memoized_bounds,
    sum,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "ESTIMATE_FAILED",
    "FAILED",
    "QUERIES_MODE",
    "BatchQueryError",
    "BatchTimeoutError",
    "Fallback",
    "HllSketch",
    "InvalidRelationError",
    "UsagePingError",
    "__version__",
    "count",
    "distinct_count",
    "estimate_distinct_count",
    "estimate_distinct_sketch",
    "memoized_bounds",
    "sum",
]
