"""The Redis counter store: a single Redis or a Redis Cluster, through redis-py.

Writes go through one non-transactional pipeline per :meth:`RedisStore.apply`. A cluster pipeline
groups commands by node. Connections use short socket timeouts, so that a Redis that is down
costs the host a quick error, not a hang.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import redis
from redis.cluster import RedisCluster

from usage_ping.store.protocol import Incr, Op, PfAdd, StoreError, check_same_slot

__all__ = ["RedisStore"]

DEFAULT_SOCKET_TIMEOUT = 0.25
"""Seconds to connect or wait for a reply before giving up."""

_PFADD_SLICE = 1_000
"""Values per PFADD command: large enough to amortize the round trip, small enough not to stall
the server (Redis is single-threaded)."""


class RedisStore:
    """Counters in Redis: ``INCRBY``, ``HINCRBY`` and ``PFADD``/``PFCOUNT`` with expiry.

    Args:
        client: a ``redis.Redis`` or ``redis.cluster.RedisCluster``; or use :meth:`from_url`.

    Example:
        >>> store = RedisStore.from_url("redis://127.0.0.1:6379/0")  # doctest: +SKIP
        >>> store.apply([PfAdd("{search}-2026-47", ("alice", "bob"), ttl=6 * 7 * 86400)])
        >>> store.pfcount(["{search}-2026-47"])
        2
    """

    def __init__(self, client: redis.Redis | RedisCluster) -> None:
        self.client = client

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        cluster: bool = False,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    ) -> RedisStore:
        """Connect to ``url``; ``cluster=True`` for a Redis Cluster (any node's address)."""
        options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
        }
        if cluster:
            return cls(RedisCluster.from_url(url, **options))
        return cls(redis.Redis.from_url(url, **options))

    def apply(self, ops: Iterable[Op]) -> None:
        pipe = self.client.pipeline(transaction=False)
        queued = False
        for op in ops:
            queued = True
            if isinstance(op, PfAdd):
                for i in range(0, len(op.values), _PFADD_SLICE):
                    pipe.pfadd(op.key, *op.values[i : i + _PFADD_SLICE])
                if op.ttl is not None:
                    pipe.expire(op.key, max(1, math.ceil(op.ttl)))
            elif isinstance(op, Incr):
                pipe.incrby(op.key, op.amount)
                if op.ttl is not None:
                    pipe.expire(op.key, max(1, math.ceil(op.ttl)))
            else:
                pipe.hincrby(op.key, op.field, op.amount)
        if not queued:
            return
        try:
            pipe.execute()
        except redis.RedisError as exc:
            raise StoreError(f"redis write failed: {exc}") from exc

    def get(self, keys: Sequence[str]) -> list[int | None]:
        if not keys:
            return []
        try:
            # One GET per key in a pipeline: an MGET across slots would fail on a cluster.
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.get(key)
            values = pipe.execute()
        except redis.RedisError as exc:
            raise StoreError(f"redis read failed: {exc}") from exc
        return [None if v is None else int(v) for v in values]

    def hgetall(self, key: str) -> dict[str, int]:
        try:
            raw: dict[Any, Any] = self.client.hgetall(key)
        except redis.RedisError as exc:
            raise StoreError(f"redis read failed: {exc}") from exc
        return {_text(k): int(v) for k, v in raw.items()}

    def pfcount(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        check_same_slot(keys)
        try:
            return int(self.client.pfcount(*keys))
        except redis.RedisError as exc:
            raise StoreError(f"redis read failed: {exc}") from exc

    def delete(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.delete(key)
            pipe.execute()
        except redis.RedisError as exc:
            raise StoreError(f"redis delete failed: {exc}") from exc

    def close(self) -> None:
        self.client.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
