"""A payload flattened to ``key_path -> number`` rows, for analytics across pings.

Numbers (and booleans, as 1/0) at any depth become rows named by their dotted key path; strings,
nulls and lists are left to the raw payload; non-finite numbers are skipped; the ``meta`` block
is read separately (:func:`meta_rows`). Any JSON document flattens without raising.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["MAX_KEY_PATH", "flatten", "meta_rows"]

MAX_KEY_PATH = 255
"""Key paths longer than this are not stored as rows (the raw payload keeps them)."""

_MAX_DEPTH = 32
"""Dicts nested deeper than this are not walked."""

_INT_LIMIT = 2**1023
"""Integers at or beyond this (in absolute value) are not made floats (they may not fit)."""


def _walk(node: dict[Any, Any], prefix: str, depth: int, rows: dict[str, float]) -> None:
    # A plain recursive function writing into one dict (not nested generators), and exact type
    # checks first: ~500 leaves per ping make this part of every ingest's hot path.
    for key, value in node.items():
        kind = type(value)
        if kind is float:
            if not math.isfinite(value):
                continue
            number = value
        elif kind is int:
            if not -_INT_LIMIT < value < _INT_LIMIT:
                continue
            number = float(value)
        elif kind is dict:
            if depth < _MAX_DEPTH:
                _walk(value, f"{prefix}{key}.", depth + 1, rows)
            continue
        elif kind is bool:
            number = 1.0 if value else 0.0
        elif isinstance(value, dict):  # subclasses: the same rules as above
            if depth < _MAX_DEPTH:
                _walk(value, f"{prefix}{key}.", depth + 1, rows)
            continue
        elif isinstance(value, bool):
            number = 1.0 if value else 0.0
        elif isinstance(value, int):
            if not -_INT_LIMIT < value < _INT_LIMIT:
                continue
            number = float(value)
        elif isinstance(value, float) and math.isfinite(value):
            number = float(value)
        else:
            continue
        path = f"{prefix}{key}"
        if 0 < len(path) <= MAX_KEY_PATH and "\x00" not in path:
            rows[path] = number


def flatten(payload: Any) -> dict[str, float]:
    """``{key_path: value}`` for every number in the payload outside ``meta``."""
    if not isinstance(payload, dict):
        return {}
    rows: dict[str, float] = {}
    _walk({k: v for k, v in payload.items() if k != "meta"}, "", 0, rows)
    return rows


def meta_rows(payload: Any) -> dict[str, tuple[float | None, str | None]]:
    """``{key_path: (duration_ms, error)}`` from the payload's ``meta.metrics`` list."""
    meta = payload.get("meta") if isinstance(payload, dict) else None
    entries = meta.get("metrics") if isinstance(meta, dict) else None
    rows: dict[str, tuple[float | None, str | None]] = {}
    if not isinstance(entries, list):
        return rows
    for entry in entries:
        if type(entry) is not dict and not isinstance(entry, dict):
            continue
        key = entry.get("key_path")
        if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_PATH or "\x00" in key:
            continue
        duration = entry.get("duration_ms")
        error = entry.get("error")
        ms: float | None = None
        if isinstance(duration, float):
            ms = float(duration) if math.isfinite(duration) else None
        elif isinstance(duration, int) and not isinstance(duration, bool):
            # float() of a huge integer would raise: such a duration is no duration
            ms = float(duration) if -_INT_LIMIT < duration < _INT_LIMIT else None
        text = str(error).replace("\x00", "")[:300] if error is not None else None
        rows[key] = (ms, text)
    return rows
