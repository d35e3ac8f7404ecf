"""A mergeable HyperLogLog sketch with Ertl's improved estimator.

The registers are computed wherever the data is (in SQL, per batch; in Redis; in Python) and merged
here by taking the per-register maximum. The estimate uses the improved raw estimator from Otmar
Ertl, "New cardinality estimation algorithms for HyperLogLog sketches" (2017), which needs neither
the small-range (linear counting) switch nor a large-range correction, so it has no bias at either
end. With 2^14 registers its standard error is about 1.04 / sqrt(16384) = 0.81 %.

A register holds the HLL rank of the hashed values that fell into it: 1 + the number of leading
zeros of the q = 64 - p hash bits left after the p index bits (0 when the register is empty, q + 1
when those bits are all zero).
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DEFAULT_PRECISION", "HllSketch", "hash64"]

DEFAULT_PRECISION = 14
"""log2 of the register count: 2^14 = 16,384 registers, 0.81 % standard error."""

_MAGIC = b"UPHL"
_FORMAT_VERSION = 1
_MASK64 = (1 << 64) - 1

U64Array = npt.NDArray[np.uint64]
U8Array = npt.NDArray[np.uint8]


def _splitmix64(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def hash64(value: Any) -> int:
    """The 64-bit hash of the ``usage_ping`` hash family, as an unsigned integer.

    Integers are mixed with SplitMix64; everything else is hashed as text (bytes as they are) with
    BLAKE2b. SQLite computes estimates with this same function, so sketches built in Python with
    :meth:`HllSketch.add` merge with sketches from SQLite.
    """
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return _splitmix64(value & _MASK64)
    data = value if isinstance(value, bytes) else str(value).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _bit_length(values: U64Array) -> U64Array:
    """Exact bit length of each unsigned 64-bit value (0 for 0), without float rounding."""
    v = values.copy()
    n = np.zeros(v.shape, dtype=np.uint64)
    for shift in (32, 16, 8, 4, 2, 1):
        big = v >= np.uint64(1 << shift)
        n[big] += np.uint64(shift)
        v[big] >>= np.uint64(shift)
    n += (v > 0).astype(np.uint64)
    return n


def _sigma(x: float) -> float:
    if x == 1.0:
        return math.inf
    y = 1.0
    z = x
    while True:
        x *= x
        z_old = z
        z += x * y
        y += y
        if z == z_old:
            return z


def _tau(x: float) -> float:
    if x in (0.0, 1.0):
        return 0.0
    y = 1.0
    z = 1.0 - x
    while True:
        x = math.sqrt(x)
        z_old = z
        y *= 0.5
        z -= (1.0 - x) ** 2 * y
        if z == z_old:
            return z / 3.0


class HllSketch:
    """A HyperLogLog sketch: mergeable, serializable, and estimated without bias.

    Sketches merge only within one hash family (the function that hashed the values) and one
    precision, since registers built from different hashes describe different things.

    Args:
        hash_family: names the hash that produced the registers, e.g. ``"postgresql:hashextended"``.
        precision: log2 of the register count (4 to 18).
        registers: the register values (ranks), one byte each; empty when omitted.

    Example:
        >>> a = HllSketch.of(range(1000))
        >>> b = HllSketch.of(range(500, 1500))
        >>> round((a | b).estimate(), -2)
        1500.0
    """

    __slots__ = ("_registers", "hash_family", "precision")

    def __init__(
        self,
        hash_family: str = "usage_ping:splitmix64",
        precision: int = DEFAULT_PRECISION,
        registers: U8Array | None = None,
    ) -> None:
        if not 4 <= precision <= 18:
            raise ValueError(f"precision must be between 4 and 18, got {precision}")
        self.hash_family = hash_family
        self.precision = precision
        m = 1 << precision
        if registers is None:
            registers = np.zeros(m, dtype=np.uint8)
        elif registers.shape != (m,):
            raise ValueError(f"expected {m} registers, got shape {registers.shape}")
        self._registers: U8Array = registers.astype(np.uint8, copy=False)

    # -- building -----------------------------------------------------------------------------

    @classmethod
    def of(cls, values: Iterable[Any], precision: int = DEFAULT_PRECISION) -> HllSketch:
        """A sketch of ``values`` hashed with :func:`hash64` (the ``usage_ping`` family)."""
        hashes = np.fromiter((hash64(v) for v in values), dtype=np.uint64)
        sketch = cls(precision=precision)
        sketch.add_hashes(hashes)
        return sketch

    @classmethod
    def from_residual_minima(
        cls, hash_family: str, minima: U64Array, precision: int = DEFAULT_PRECISION
    ) -> HllSketch:
        """Build from, per register, the smallest ``hash >> precision`` seen (``2**q`` if none).

        This is what the SQL counters compute per batch: ``min()`` is the cheapest aggregate in
        SQL, and the rank of the smallest residual is the largest rank in the register.
        """
        q = 64 - precision
        ranks = np.uint64(q + 1) - _bit_length(minima.astype(np.uint64))
        return cls(hash_family, precision, ranks.astype(np.uint8))

    def add(self, value: Any) -> None:
        """Add one value, hashed with :func:`hash64`."""
        self.add_hashes(np.array([hash64(value)], dtype=np.uint64))

    def add_hashes(self, hashes: U64Array) -> None:
        """Add already-hashed unsigned 64-bit values."""
        hashes = hashes.astype(np.uint64, copy=False)
        p = self.precision
        index = (hashes & np.uint64((1 << p) - 1)).astype(np.intp)
        residual = hashes >> np.uint64(p)
        ranks = (np.uint64(64 - p + 1) - _bit_length(residual)).astype(np.uint8)
        np.maximum.at(self._registers, index, ranks)

    # -- merging ------------------------------------------------------------------------------

    def _check_compatible(self, other: HllSketch) -> None:
        if (self.hash_family, self.precision) != (other.hash_family, other.precision):
            raise ValueError(
                "cannot merge HLL sketches of different kinds: "
                f"{self.hash_family}/p={self.precision} and {other.hash_family}/p={other.precision}"
            )

    def update(self, other: HllSketch) -> None:
        """Merge ``other`` into this sketch in place."""
        self._check_compatible(other)
        np.maximum(self._registers, other._registers, out=self._registers)

    def __or__(self, other: HllSketch) -> HllSketch:
        self._check_compatible(other)
        return HllSketch(
            self.hash_family, self.precision, np.maximum(self._registers, other._registers)
        )

    @classmethod
    def union(cls, sketches: Iterable[HllSketch]) -> HllSketch:
        """The union of one or more sketches of the same kind."""
        it = iter(sketches)
        try:
            result = next(it).copy()
        except StopIteration:
            raise ValueError("union of no sketches") from None
        for s in it:
            result.update(s)
        return result

    def copy(self) -> HllSketch:
        return HllSketch(self.hash_family, self.precision, self._registers.copy())

    # -- reading ------------------------------------------------------------------------------

    @property
    def registers(self) -> U8Array:
        """A read-only view of the registers."""
        view = self._registers.view()
        view.flags.writeable = False
        return view

    def is_empty(self) -> bool:
        return not bool(self._registers.any())

    def estimate(self) -> float:
        """The estimated number of distinct values (Ertl's improved raw estimator)."""
        m = 1 << self.precision
        q = 64 - self.precision
        counts = np.bincount(self._registers, minlength=q + 2).tolist()
        z = m * _tau((m - counts[q + 1]) / m)
        for k in range(q, 0, -1):
            z = 0.5 * (z + counts[k])
        z += m * _sigma(counts[0] / m)
        if math.isinf(z):
            return 0.0
        return m * m / (2.0 * math.log(2.0)) / z

    def __int__(self) -> int:
        return round(self.estimate())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HllSketch):
            return NotImplemented
        return (
            self.hash_family == other.hash_family
            and self.precision == other.precision
            and bool(np.array_equal(self._registers, other._registers))
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"HllSketch(hash_family={self.hash_family!r}, precision={self.precision}, "
            f"estimate={self.estimate():.0f})"
        )

    # -- bytes --------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Serialize: magic, format version, precision, hash family, zlib-compressed registers."""
        family = self.hash_family.encode()
        header = _MAGIC + struct.pack("BBB", _FORMAT_VERSION, self.precision, len(family))
        return header + family + zlib.compress(self._registers.tobytes(), 6)

    @classmethod
    def from_bytes(cls, data: bytes) -> HllSketch:
        """Read what :meth:`to_bytes` wrote; raises ``ValueError`` on anything else."""
        if len(data) < 7 or data[:4] != _MAGIC:
            raise ValueError("not a usage_ping HLL sketch")
        version, precision, family_len = struct.unpack("BBB", data[4:7])
        if version != _FORMAT_VERSION:
            raise ValueError(f"unsupported HLL sketch format version {version}")
        if not 4 <= precision <= 18:
            raise ValueError(f"bad HLL sketch precision {precision}")
        family = data[7 : 7 + family_len].decode()
        try:
            raw = zlib.decompress(data[7 + family_len :])
        except zlib.error as exc:
            raise ValueError(f"corrupt HLL sketch registers: {exc}") from None
        registers = np.frombuffer(raw, dtype=np.uint8).copy()
        if registers.shape != (1 << precision,):
            raise ValueError("corrupt HLL sketch: wrong register count")
        if int(registers.max(initial=0)) > 64 - precision + 1:
            raise ValueError("corrupt HLL sketch: register value out of range")
        return cls(family, precision, registers)
