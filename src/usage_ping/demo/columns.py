"""Columns of generated rows, and the random draws that fill them.

A chunk of rows is a mapping of column names to :class:`Column` (numpy arrays and a NULL mask),
which the writers turn into each database's text or parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "Bool",
    "Chunk",
    "Column",
    "Int",
    "Obj",
    "boolean",
    "chance",
    "choice",
    "date",
    "existing",
    "id_column",
    "integer",
    "labels",
    "later",
    "objects",
    "recent",
    "skewed",
    "stamp",
    "text",
]

Int = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]
Obj = npt.NDArray[np.object_]
Kind = Literal["int", "bool", "stamp", "date", "text"]


@dataclass(frozen=True)
class Column:
    """One column of a chunk: values and where they are NULL.

    ``int``: int64 values; ``bool``: booleans; ``stamp``: seconds since the epoch (UTC);
    ``date``: days since the epoch; ``text``: an object array of ``str``.
    """

    kind: Kind
    values: npt.NDArray[Any]
    null: Bool | None = None


Chunk = dict[str, Column]
"""Column name to column, in the order the writer sends them."""


def objects(values: list[str]) -> Obj:
    """An object array of ``values`` (fancy indexing it is fast, its items stay ``str``)."""
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def existing(times: Int, at: Int) -> Int:
    """How many of the things created at ``times`` (sorted) existed at each of ``at``."""
    return np.searchsorted(times, at, side="right").astype(np.int64)


def skewed(rng: np.random.Generator, count: Int, power: float) -> Int:
    """An id in ``1..count`` for each count: low ids are heavy (power law of ``power``)."""
    count = np.maximum(count, 1)
    return np.minimum(1 + np.floor(count * rng.random(len(count)) ** power).astype(np.int64), count)


def recent(rng: np.random.Generator, count: Int) -> Int:
    """An id in ``1..count`` for each count, favouring the newest (comments on fresh issues)."""
    count = np.maximum(count, 1)
    back = np.floor(count * rng.random(len(count)) ** 3).astype(np.int64)
    found: Int = np.maximum(count - back, 1)
    return found


def choice(rng: np.random.Generator, n: int, weights: Mapping[Any, float]) -> npt.NDArray[Any]:
    """``n`` draws of the keys of ``weights`` with those weights (an object array for strings)."""
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=float)
    codes = rng.choice(len(keys), size=n, p=p / p.sum())
    if all(isinstance(k, str) for k in keys):
        return objects(keys)[codes]
    return np.array(keys, dtype=np.int64)[codes]


def chance(rng: np.random.Generator, n: int, p: float) -> Bool:
    """``n`` coin flips that come up True with probability ``p``."""
    return rng.random(n) < p


def text(values: Obj) -> Column:
    return Column("text", values)


def integer(values: Int, null: Bool | None = None) -> Column:
    return Column("int", values.astype(np.int64), null if null is not None and null.any() else None)


def boolean(values: Bool) -> Column:
    return Column("bool", values.astype(np.bool_))


def stamp(values: Int, null: Bool | None = None) -> Column:
    return Column(
        "stamp", values.astype(np.int64), null if null is not None and null.any() else None
    )


def date(days: Int, null: Bool | None = None) -> Column:
    return Column("date", days.astype(np.int64), null if null is not None and null.any() else None)


def id_column(lo: int, hi: int) -> Column:
    return integer(np.arange(lo + 1, hi + 1, dtype=np.int64))


def labels(prefix: str, ids: Int) -> Obj:
    return objects([f"{prefix}{i}" for i in ids.tolist()])


def later(rng: np.random.Generator, start: Int, now: int, power: float = 1.0) -> Int:
    """A time between each ``start`` and ``now``, nearer ``start`` for a higher ``power``."""
    return start + np.floor((now - 1 - start) * rng.random(len(start)) ** power).astype(np.int64)
