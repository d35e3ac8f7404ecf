"""Count, mean, maximum and percentiles of values per group: in the database where it has
percentiles (PostgreSQL's ``percentile_cont``), else in Python over the fetched values.

Both give the same numbers: ``percentile_cont`` and numpy's default both interpolate linearly
between the closest ranks.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

__all__ = ["Summary", "summarize", "summarize_arrays"]


@dataclass(frozen=True)
class Summary:
    """Values of one group."""

    count: int
    mean: float
    maximum: float
    quantiles: tuple[float, ...]


def summarize(
    conn: sa.Connection, source: sa.Select[Any], quantiles: Sequence[float]
) -> dict[Hashable, Summary]:
    """``{group: Summary}`` for a query selecting ``group`` and ``value`` columns (NULLs skipped).

    Args:
        conn: the connection.
        source: a SELECT whose columns are labelled ``grp`` and ``value``.
        quantiles: fractions in [0, 1], e.g. ``(0.5, 0.9)``.
    """
    rows = source.subquery()
    value = rows.c["value"]
    found: dict[Hashable, Summary] = {}
    if conn.dialect.name == "postgresql":
        query = (
            sa.select(
                rows.c["grp"],
                sa.func.count(value),
                sa.func.avg(value),
                sa.func.max(value),
                *(sa.func.percentile_cont(q).within_group(value) for q in quantiles),
            )
            .where(value.is_not(None))
            .group_by(rows.c["grp"])
        )
        for group, count, mean, maximum, *qs in conn.execute(query):
            found[group] = Summary(
                int(count), float(mean), float(maximum), tuple(float(q) for q in qs)
            )
        return found
    values: dict[Hashable, list[float]] = {}
    for group, number in conn.execute(sa.select(rows.c["grp"], value).where(value.is_not(None))):
        values.setdefault(group, []).append(float(number))
    for group, numbers in values.items():
        found[group] = _summary(np.asarray(numbers, dtype=float), quantiles)
    return found


def _summary(array: np.ndarray, quantiles: Sequence[float]) -> Summary:
    return Summary(
        len(array),
        float(array.mean()),
        float(array.max()),
        tuple(float(q) for q in np.quantile(array, list(quantiles))),
    )


def summarize_arrays(
    groups: np.ndarray, values: np.ndarray, quantiles: Sequence[float]
) -> dict[int, Summary]:
    """``{group: Summary}`` of ``values`` by the integer group at the same position (NaN skipped),
    computed like :func:`summarize`."""
    keep = ~np.isnan(values)
    groups, values = groups[keep], values[keep]
    order = np.argsort(groups, kind="stable")
    groups, values = groups[order], values[order]
    if not len(groups):
        return {}
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]]).tolist()
    ends = [*starts[1:], len(groups)]
    return {
        int(groups[a]): _summary(values[a:b], quantiles) for a, b in zip(starts, ends, strict=True)
    }
