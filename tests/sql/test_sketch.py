"""HllSketch: accuracy, merging laws, serialization."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usage_ping import HllSketch
from usage_ping.sql.sketch import hash64

values = st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=300)


def _sketch(items: list[int], precision: int = 8) -> HllSketch:
    sketch = HllSketch(precision=precision)
    for item in items:
        sketch.add(item)
    return sketch


@given(values, values, values)
@settings(max_examples=60, deadline=None)
def test_merge_is_associative_commutative_and_idempotent(
    a: list[int], b: list[int], c: list[int]
) -> None:
    """Union laws hold register for register."""
    sa, sb, sc = _sketch(a), _sketch(b), _sketch(c)
    assert (sa | sb) | sc == sa | (sb | sc)
    assert sa | sb == sb | sa
    assert sa | sa == sa


@given(values, values)
@settings(max_examples=60, deadline=None)
def test_sketch_of_union_equals_union_of_sketches(a: list[int], b: list[int]) -> None:
    """Adding everything to one sketch is the same as merging two."""
    assert _sketch(a + b) == _sketch(a) | _sketch(b)


@given(values, st.integers(min_value=4, max_value=16))
@settings(max_examples=60, deadline=None)
def test_bytes_round_trip(items: list[int], precision: int) -> None:
    """to_bytes/from_bytes give back an equal sketch."""
    sketch = _sketch(items, precision)
    assert HllSketch.from_bytes(sketch.to_bytes()) == sketch


@pytest.mark.parametrize("n", [0, 1, 10, 100, 1_000, 10_000, 100_000, 1_000_000])
def test_estimate_error_is_small_at_every_cardinality(n: int) -> None:
    """No bias at small or large cardinalities: within 4 standard errors (3.3 %) everywhere."""
    rng = np.random.default_rng(n)
    sketch = HllSketch()
    sketch.add_hashes(rng.integers(0, 2**64, size=n, dtype=np.uint64, endpoint=False))
    if n == 0:
        assert sketch.estimate() == 0
    else:
        assert abs(sketch.estimate() / n - 1) < 0.033


def test_mean_error_over_many_sketches_shows_no_bias() -> None:
    """Over 40 sketches of 50,000 values the mean relative error is about zero (< 0.5 %)."""
    rng = np.random.default_rng(42)
    errors = []
    for _ in range(40):
        sketch = HllSketch()
        sketch.add_hashes(rng.integers(0, 2**64, size=50_000, dtype=np.uint64, endpoint=False))
        errors.append(sketch.estimate() / 50_000 - 1)
    assert abs(float(np.mean(errors))) < 0.005
    assert 0.004 < float(np.std(errors)) < 0.012  # about 1.04 / sqrt(16384) = 0.81 %


def test_sketches_of_different_kinds_do_not_merge() -> None:
    """A different hash family or precision is refused with a clear error."""
    with pytest.raises(ValueError, match="different kinds"):
        HllSketch("postgresql:hll") | HllSketch("mysql:md5")
    with pytest.raises(ValueError, match="different kinds"):
        HllSketch(precision=10).update(HllSketch(precision=11))


@pytest.mark.parametrize(
    "data",
    [b"", b"nope", b"UPHL\x02\x0e\x00", b"UPHL\x01\x0e\x00garbage", b"UPHL\x01\x03\x00"],
)
def test_from_bytes_rejects_what_it_did_not_write(data: bytes) -> None:
    """Anything but a serialized sketch is a ValueError, never a wrong sketch."""
    with pytest.raises(ValueError, match="sketch"):
        HllSketch.from_bytes(data)


def test_from_bytes_rejects_impossible_register_values() -> None:
    """A register above q + 1 cannot come from a hash: refused."""
    import zlib

    bad = b"UPHL\x01\x04\x01x" + zlib.compress(bytes([70] * 16))
    with pytest.raises(ValueError, match="out of range"):
        HllSketch.from_bytes(bad)


def test_union_and_ranks_of_known_hashes() -> None:
    """Register index is the low bits; rank counts leading zeros of the rest, plus one."""
    sketch = HllSketch(precision=4)
    top_bit = 1 << 63
    sketch.add_hashes(np.array([top_bit | 3, 0, 5 | (1 << 20)], dtype=np.uint64))
    regs = sketch.registers
    assert regs[3] == 1  # residual has its top bit set
    assert regs[0] == 61  # residual all zero: q + 1 = 60 + 1
    assert regs[5] == 60 - 17 + 1  # residual 1 << 16 has bit length 17
    assert HllSketch.union([sketch, HllSketch(precision=4)]) == sketch
    with pytest.raises(ValueError, match="no sketches"):
        HllSketch.union([])


def test_hash64_is_stable_and_typed() -> None:
    """The usage_ping hash family is fixed, so SQLite and Python sketches agree across versions."""
    assert hash64(0) == 0xE220A8397B1DCDAF
    assert hash64(True) == hash64(1)
    assert hash64("a") == hash64(b"a")
    assert hash64(1) != hash64("1")
