"""A ping's metric durations, packed into one ``ping_meta`` row instead of a row per metric.

The ``meta`` block times every metric, ~500 per ping, and the dashboards only ever read them a
ping at a time (the latest pings' slowest metrics). One row holds them as two byte strings of
equal count: ``key_path_ids`` as big-endian int32, ``durations_ms`` as big-endian float32 (about
seven significant digits), in the same order. Big-endian is what PostgreSQL's ``int4send`` and
``float4send`` write, so SQL can build the same bytes (migration 0008). Metrics without a duration
are left out; errors are rows of their own (``metric_errors``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["pack", "unpack", "unpack_rows"]

_IDS = np.dtype(">i4")
_DURATIONS = np.dtype(">f4")
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def pack(key_path_ids: Sequence[int], durations: Sequence[float]) -> tuple[bytes, bytes] | None:
    """``(key_path_ids, durations_ms)`` bytes of ids and their (finite) durations, in order;
    None if there are none. Durations beyond float32's range are clipped to it."""
    count = len(key_path_ids)
    if not count:
        return None
    ids = struct.pack(f">{count}i", *key_path_ids)
    try:
        return ids, struct.pack(f">{count}f", *durations)
    except OverflowError:  # rare: one is beyond float32's range
        limit = _FLOAT32_MAX
        bounded = [min(max(ms, -limit), limit) for ms in durations]
        return ids, struct.pack(f">{count}f", *bounded)


def unpack(ids: bytes, durations: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The key path ids (int64) and durations (float64) of a ``ping_meta`` row; a row whose two
    strings disagree in length gives its common part."""
    count = min(len(ids) // 4, len(durations) // 4)
    return (
        np.frombuffer(ids, dtype=_IDS, count=count).astype(np.int64),
        np.frombuffer(durations, dtype=_DURATIONS, count=count).astype(np.float64),
    )


def unpack_rows(rows: Iterable[tuple[bytes, bytes]]) -> tuple[np.ndarray, np.ndarray]:
    """The key path ids and durations of several ``ping_meta`` rows, concatenated."""
    parts = [unpack(ids, durations) for ids, durations in rows]
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
