"""A payload flattened to ``key_path -> number`` rows, for analytics across pings.

Numbers (and booleans, as 1/0) at any depth become rows named by their dotted key path; strings,
nulls and lists are left to the raw payload; non-finite numbers are skipped; the ``meta`` block
is read separately (:func:`meta_rows`). Any JSON document flattens without raising.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

__all__ = ["MAX_KEY_PATH", "flatten", "meta_rows"]

MAX_KEY_PATH = 255
"""Key paths longer than this are not stored as rows (the raw payload keeps them)."""


def _walk(node: Any, prefix: str, depth: int) -> Iterator[tuple[str, float]]:
    if depth > 32 or not isinstance(node, dict):
        return
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _walk(value, path + ".", depth + 1)
        elif isinstance(value, bool):
            yield path, 1.0 if value else 0.0
        elif isinstance(value, int | float):
            number = float(value) if not isinstance(value, int) or abs(value) < 2**1023 else None
            if number is not None and math.isfinite(number):
                yield path, number


def flatten(payload: Any) -> dict[str, float]:
    """``{key_path: value}`` for every number in the payload outside ``meta``."""
    if not isinstance(payload, dict):
        return {}
    rows: dict[str, float] = {}
    body = {k: v for k, v in payload.items() if k != "meta"}
    for path, value in _walk(body, "", 0):
        if 0 < len(path) <= MAX_KEY_PATH and "\x00" not in path:
            rows[path] = value
    return rows


def meta_rows(payload: Any) -> dict[str, tuple[float | None, str | None]]:
    """``{key_path: (duration_ms, error)}`` from the payload's ``meta.metrics`` list."""
    meta = payload.get("meta") if isinstance(payload, dict) else None
    entries = meta.get("metrics") if isinstance(meta, dict) else None
    rows: dict[str, tuple[float | None, str | None]] = {}
    if not isinstance(entries, list):
        return rows
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        key = entry.get("key_path")
        if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_PATH or "\x00" in key:
            continue
        duration = entry.get("duration_ms")
        error = entry.get("error")
        ms = (
            float(duration)
            if isinstance(duration, int | float)
            and not isinstance(duration, bool)
            and math.isfinite(float(duration))
            else None
        )
        text = str(error).replace("\x00", "")[:300] if error is not None else None
        rows[key] = (ms, text)
    return rows
