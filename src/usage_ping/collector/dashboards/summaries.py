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

__all__ = ["Summary", "summarize"]


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
        array = np.asarray(numbers, dtype=float)
        found[group] = Summary(
            len(numbers),
            float(array.mean()),
            float(array.max()),
            tuple(float(q) for q in np.quantile(array, list(quantiles))),
        )
    return found
