"""The non-SQL mode: SQL counters answer -3 instead of querying the database.

Inside :func:`non_sql_mode`, :func:`~usage_ping.count`, :func:`~usage_ping.distinct_count`,
:func:`~usage_ping.sum` and the distinct estimates return
:data:`~usage_ping.fallback.QUERIES_MODE` (-3) at once, without touching the database. The payload
builder turns it on to compute everything except SQL (for example to check a payload's other
sources on a host whose database must not be queried), and while it renders queries: a callable
metric that calls the counters then gets -3 rather than running SQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["non_sql_mode", "sql_disabled"]

_DISABLED: ContextVar[bool] = ContextVar("usage_ping_non_sql", default=False)


@contextmanager
def non_sql_mode() -> Iterator[None]:
    """Within this block (and threads started with its context) SQL counters return -3."""
    token = _DISABLED.set(True)
    try:
        yield
    finally:
        _DISABLED.reset(token)


def sql_disabled() -> bool:
    """Whether the current context is in the non-SQL mode."""
    return _DISABLED.get()
