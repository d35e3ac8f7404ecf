"""The batch-size controller: grows on fast queries, shrinks on slow ones, respects the floor."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from usage_ping.sql.batching import RangePlan, _Ranges


def _plan(**overrides: object) -> RangePlan:
    values: dict[str, object] = {
        "table": "t",
        "low": 1,
        "high": 10_000_000,
        "size": 10_000,
        "floor": 1_000,
        "target_time": 0.1,
        "timeout": 1.0,
        "parallel": 1,
    }
    values.update(overrides)
    return RangePlan(**values)  # type: ignore[arg-type]


def test_fast_batches_grow_at_most_twofold() -> None:
    """A batch far under the aim doubles the next one."""
    ranges = _Ranges(_plan())
    ranges.observe(10_000, 0.001)
    assert ranges.size == 20_000


def test_batches_over_the_aim_shrink_at_most_by_half() -> None:
    """A batch over the aim (but within target_time) halves the next one at most."""
    ranges = _Ranges(_plan())
    ranges.observe(10_000, 0.09)
    assert ranges.size == 5_555  # 10,000 * 0.05 / 0.09, rounded down
    ranges.observe(10_000, 0.1)
    assert ranges.size == 5_000


def test_batches_over_target_time_shrink_to_what_their_rate_implies() -> None:
    """A batch over target_time shrinks the next one straight to rate * aim, not just by half."""
    ranges = _Ranges(_plan())
    ranges.observe(10_000, 0.5)  # 20,000 ids/s; aim 0.05 s
    assert ranges.size == 1_000
    ranges = _Ranges(_plan(floor=10))
    ranges.observe(10_000, 5.0)
    assert ranges.size == 100


def test_size_settles_where_batches_take_half_the_target() -> None:
    """With a steady rate, the size converges to rate * target_time / 2."""
    ranges = _Ranges(_plan())
    rate = 1_000_000  # ids per second
    for _ in range(30):
        ranges.observe(ranges.size, ranges.size / rate)
    assert abs(ranges.size - rate * 0.05) <= 1


def test_ranges_tile_the_whole_span_without_overlap() -> None:
    """Ranges handed out are contiguous, inclusive, and end exactly at high."""
    ranges = _Ranges(_plan(low=5, high=123_456, size=1_000))
    got = []
    while (r := ranges.next()) is not None:
        got.append(r)
        ranges.observe(r[1] - r[0] + 1, 0.01)
    assert got[0][0] == 5
    assert got[-1][1] == 123_456
    assert all(b[0] == a[1] + 1 for a, b in pairwise(got))


@given(st.lists(st.floats(min_value=1e-6, max_value=10.0), max_size=50))
def test_size_never_drops_below_the_floor(durations: list[float]) -> None:
    """Whatever the timings, the size stays at or above the floor."""
    ranges = _Ranges(_plan())
    for seconds in durations:
        ranges.observe(ranges.size, seconds)
        ranges.shrink(ranges.size // 2)
        assert ranges.size >= 1_000
