"""Writing metric definition files for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

BASE: dict[str, Any] = {
    "key_path": "counts.issues",
    "description": "Issues, all time",
    "product_section": "dev",
    "product_stage": "plan",
    "product_group": "project_management",
    "value_type": "number",
    "status": "active",
    "time_frame": "all",
    "data_source": "database",
    "data_category": "optional",
    "tier": ["free", "premium", "ultimate"],
    "milestone": "1.0",
    "instrumentation": {"table": "issues", "operation": "count"},
}

_REMOVE = object()


def write_metric(directory: Path, name: str, **changes: Any) -> Path:
    """A valid definition with ``changes`` applied (a value of REMOVE drops the field)."""
    data = dict(BASE)
    for key, value in changes.items():
        if value is REMOVE:
            data.pop(key, None)
        else:
            data[key] = value
    path = directory / f"{name}.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


REMOVE = _REMOVE
