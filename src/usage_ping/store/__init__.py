"""Counter stores: Redis (standalone or Cluster) and SQLite (embedded), behind one protocol."""

from usage_ping.store.buffered import BufferedStore, BufferStats
from usage_ping.store.protocol import (
    CounterStore,
    CrossSlotError,
    HIncr,
    Incr,
    Op,
    PfAdd,
    StoreError,
    WriteDroppedError,
    hash_tag,
)
from usage_ping.store.sqlite import SQLiteStore

__all__ = [
    "BufferStats",
    "BufferedStore",
    "CounterStore",
    "CrossSlotError",
    "HIncr",
    "Incr",
    "Op",
    "PfAdd",
    "RedisStore",
    "SQLiteStore",
    "StoreError",
    "WriteDroppedError",
    "hash_tag",
]


def __getattr__(name: str) -> object:
    # RedisStore needs the optional redis package: import it only when asked for.
    if name == "RedisStore":
        from usage_ping.store.redis import RedisStore

        return RedisStore
    raise AttributeError(name)
