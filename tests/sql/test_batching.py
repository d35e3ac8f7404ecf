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


def test_a_cost_per_query_grows_the_batches_instead_of_shrinking_them() -> None:
    """When every batch takes 0.2 s whatever its width, batches grow rather than hit the floor.

    This is the plan of a distinct count over a time window: each range of the counted column is
    read through the time column's index, so a narrower range saves nothing.
    """
    ranges = _Ranges(_plan())
    sizes = []
    for _ in range(12):
        ranges.observe(ranges.size, 0.2)
        sizes.append(ranges.size)
    assert sizes[0] == 2_500  # the first slow batch shrinks by its rate, as before
    assert sizes[1] == 5_000  # a 4x narrower batch was no faster: grow instead
    assert sizes[-1] == 2_500 * 2**11
    # Before, the size fell to the floor and stayed there: 12 queries would have covered
    # 12,000 ids instead of about 10 million.


def test_per_query_mode_holds_near_the_timeout_and_ends_on_a_timeout() -> None:
    """Batches stop growing past a quarter of the timeout; a timeout returns to rate sizing."""
    ranges = _Ranges(_plan())
    ranges.observe(10_000, 0.4)
    ranges.observe(ranges.size, 0.4)  # 1,250 ids, just as slow: cost per query
    assert ranges.size == 1_250  # 0.4 s is over timeout / 4: hold
    ranges.shrink(600)
    ranges.observe(600, 0.01)
    assert ranges.size == 1_200  # plain doubling by rate again


def test_a_cost_that_follows_the_width_again_leaves_per_query_mode() -> None:
    """Once a wider batch is proportionally slower, sizing goes back to the rate."""
    ranges = _Ranges(_plan())
    ranges.observe(10_000, 0.2)
    ranges.observe(2_500, 0.2)
    assert ranges.size == 5_000
    ranges.observe(5_000, 0.2)
    ranges.observe(10_000, 0.2)
    assert ranges.size == 20_000
    ranges.observe(20_000, 0.4)  # twice the width, twice the time: rate-bound now
    assert ranges.size == 2_500  # 20,000 * 0.05 / 0.4
