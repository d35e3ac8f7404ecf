"""The payload as JSON: one serializer for the preview, the export and the request body."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

__all__ = ["to_json"]


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_json(payload: Any, *, indent: int | None = None) -> str:
    """The payload's JSON text: UTF-8 characters kept, key order kept, dates as ISO 8601."""
    separators = (",", ": ") if indent is not None else (",", ":")
    return json.dumps(
        payload, indent=indent, ensure_ascii=False, default=_default, separators=separators
    )
