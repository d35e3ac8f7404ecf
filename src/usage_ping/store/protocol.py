"""The counter store: one small protocol that Redis and SQLite both implement.

Writes come as typed operations applied in one round trip (a Redis pipeline, one SQLite
transaction), so that a tracker can buffer many events and write them together. Reads are plain
calls. Keys that are counted together (one ``pfcount`` over several keys) must share a
``{hash-tag}``, so that they live in one Redis Cluster slot; every backend checks this, so that
code tested on SQLite or a single Redis also works on a cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from usage_ping.errors import UsagePingError

__all__ = [
    "CounterStore",
    "CrossSlotError",
    "HIncr",
    "Incr",
    "Op",
    "PfAdd",
    "StoreError",
    "WriteDroppedError",
    "hash_tag",
]


class StoreError(UsagePingError):
    """The store could not be reached or refused an operation."""


class WriteDroppedError(StoreError):
    """A buffered store dropped the write (queue full or store down); it counted it already.

    Callers return "not written" without logging: the buffer logs once per outage, not per call.
    """


class CrossSlotError(UsagePingError, ValueError):
    """Keys counted together do not share one ``{hash-tag}``."""


@dataclass(frozen=True)
class Incr:
    """Add ``amount`` to the integer at ``key`` (INCRBY); ``ttl`` seconds of expiry if given."""

    key: str
    amount: int = 1
    ttl: float | None = None


@dataclass(frozen=True)
class HIncr:
    """Add ``amount`` to ``field`` of the hash at ``key`` (HINCRBY)."""

    key: str
    field: str
    amount: int = 1


@dataclass(frozen=True)
class PfAdd:
    """Add ``values`` to the HyperLogLog at ``key``; the expiry restarts at ``ttl`` seconds."""

    key: str
    values: tuple[str, ...] = field(default=())
    ttl: float | None = None


Op = Incr | HIncr | PfAdd


def hash_tag(key: str) -> str:
    """The part of ``key`` that Redis Cluster hashes: the first non-empty ``{...}``, or the key."""
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def check_same_slot(keys: Sequence[str]) -> None:
    """Refuse keys that a cluster could not count together (different hash tags)."""
    tags = {hash_tag(k) for k in keys}
    if len(tags) > 1:
        raise CrossSlotError(
            f"keys counted together must share one {{hash-tag}}: {', '.join(sorted(keys))}"
        )


@runtime_checkable
class CounterStore(Protocol):
    """Where counters and unique-value sketches live."""

    def apply(self, ops: Iterable[Op]) -> None:
        """Apply writes in one round trip; raises :class:`StoreError` when the store fails."""

    def get(self, keys: Sequence[str]) -> list[int | None]:
        """The integers at ``keys`` (None where a key is missing or expired)."""

    def hgetall(self, key: str) -> dict[str, int]:
        """The fields of the hash at ``key`` ({} when missing)."""

    def pfcount(self, keys: Sequence[str]) -> int:
        """The estimated number of distinct values in the union of the sketches at ``keys``."""

    def delete(self, keys: Sequence[str]) -> None:
        """Remove ``keys``."""

    def close(self) -> None:
        """Release connections."""
