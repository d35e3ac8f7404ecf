"""Packed durations (one ``ping_meta`` row per ping) and their summaries by key path."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from usage_ping.collector.dashboards.summaries import summarize_arrays
from usage_ping.collector.durations import pack, unpack, unpack_rows

_IDS = st.integers(min_value=-(2**31), max_value=2**31 - 1)
_MS = st.floats(allow_nan=False, allow_infinity=False)


@given(st.lists(st.tuples(_IDS, _MS), max_size=600))
def test_unpack_gives_back_what_was_packed_as_float32(pairs: list[tuple[int, float]]) -> None:
    """Ids exactly, durations as float32 (clipped to its range), in order; none: no row."""
    packed = pack([key for key, _ in pairs], [ms for _, ms in pairs])
    if not pairs:
        assert packed is None
        return
    assert packed is not None
    ids, durations = unpack(*packed)
    assert ids.tolist() == [key for key, _ in pairs]
    limit = float(np.finfo(np.float32).max)
    expected = np.array([min(max(ms, -limit), limit) for _, ms in pairs], dtype=np.float32)
    assert durations.tolist() == expected.astype(np.float64).tolist()
    assert all(math.isfinite(value) for value in durations.tolist())


def test_rows_of_unequal_lengths_give_their_common_part() -> None:
    """A damaged row (strings of different lengths) is read as far as both go."""
    packed = pack([1, 3], [2.0, 4.0])
    assert packed is not None
    ids, durations = unpack(packed[0], packed[1][:4])
    assert (ids.tolist(), durations.tolist()) == ([1], [2.0])
    empty = unpack_rows([])
    assert (len(empty[0]), len(empty[1])) == (0, 0)


@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.floats(-1e6, 1e6, allow_nan=False) | st.just(math.nan)),
        max_size=200,
    )
)
def test_summaries_by_group_match_numpy_per_group(rows: list[tuple[int, float]]) -> None:
    """Each group's count, mean, max and quantiles are numpy's over its values, NaN skipped."""
    groups = np.array([g for g, _ in rows], dtype=np.int64)
    values = np.array([v for _, v in rows], dtype=np.float64)
    found = summarize_arrays(groups, values, (0.5, 0.95))
    expected: dict[int, list[float]] = {}
    for group, value in rows:
        if not math.isnan(value):
            expected.setdefault(group, []).append(value)
    assert set(found) == set(expected)
    for group, numbers in expected.items():
        summary = found[group]
        assert summary.count == len(numbers)
        assert summary.maximum == max(numbers)
        assert summary.mean == pytest.approx(float(np.mean(numbers)))
        assert summary.quantiles == pytest.approx(tuple(np.quantile(numbers, [0.5, 0.95])))
