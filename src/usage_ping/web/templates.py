"""The admin page's Jinja2 environment: templates from the package, autoescaped, and filters."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import jinja2
from markupsafe import Markup

__all__ = ["environment", "render", "script_json"]

_SCRIPT_ESCAPES = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def script_json(value: Any) -> Markup:
    """JSON safe inside a ``<script type="application/json">`` element: no ``<``, ``>`` or ``&``
    (so text cannot close the element), NaN and infinities as null."""
    text = json.dumps(_finite(value), allow_nan=False, separators=(",", ":"), default=str)
    for char, escape in _SCRIPT_ESCAPES:
        text = text.replace(char, escape)
    return Markup(text)


def _when(value: datetime | None) -> str:
    return "never" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _number(value: float | None) -> str:
    if value is None:
        return "n/a"
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.3g}" if abs(value) < 1 else f"{value:,.2f}".rstrip("0").rstrip(".")


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} %"


def environment() -> jinja2.Environment:
    """The environment over ``usage_ping/web/templates``."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("usage_ping.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["number"] = _number
    env.filters["percent"] = _percent
    env.filters["script_json"] = script_json
    return env


_ENV = environment()


def render(name: str, **context: Any) -> str:
    """The template ``name`` rendered with ``context``."""
    return _ENV.get_template(name).render(**context)
