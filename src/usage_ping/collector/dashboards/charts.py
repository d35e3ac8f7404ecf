"""Plotly figures as plain JSON specs, and how a page embeds them.

A :class:`Chart` is a Plotly ``data`` list and ``layout`` dict. A page renders it as a ``<div
data-chart="key">`` followed by a ``<script type="application/json">`` holding the figure and a
one-line script calling ``Plotly.newPlot``; the JSON is escaped for a script element (``<``, ``>``
and ``&`` as ``\\u`` escapes), so text from pings (hostnames, key paths) cannot close the script.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

__all__ = ["Chart", "bars", "heatmap", "lines", "pie", "script_json"]

_EMPTY = "No data in this window."
_FONT = "system-ui, -apple-system, Segoe UI, Roboto, sans-serif"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def script_json(value: Any) -> Markup:
    """JSON that is safe inside a ``<script>`` element (no ``<``, ``>``, ``&``; NaN as null)."""
    text = json.dumps(_clean(value), allow_nan=False, separators=(",", ":"), default=str)
    for char, escape in (
        ("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
        ("\u2028", "\\u2028"), ("\u2029", "\\u2029"),
    ):  # fmt: skip
        text = text.replace(char, escape)
    return Markup(text)


def _layout(y_title: str | None = None, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "margin": {"l": 56, "r": 16, "t": 16, "b": 48},
        "font": {"family": _FONT, "size": 12},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "hovermode": "x unified",
        "legend": {"orientation": "h", "y": -0.2},
        "xaxis": {"gridcolor": "#eceef1"},
        "yaxis": {"gridcolor": "#eceef1", "rangemode": "tozero"},
    }
    if y_title:
        layout["yaxis"]["title"] = {"text": y_title}
    layout.update(extra)
    return layout


@dataclass(frozen=True)
class Chart:
    """One figure of a page: ``key`` names it (the div's ``data-chart`` and ``id``)."""

    key: str
    title: str
    data: list[dict[str, Any]]
    layout: dict[str, Any] = field(default_factory=_layout)
    note: str = ""
    empty: str = _EMPTY

    @property
    def has_data(self) -> bool:
        """Whether any trace has a point to draw."""
        for trace in self.data:
            for axis in ("y", "values", "z", "x"):
                points = trace.get(axis)
                if points and any(p is not None for p in points):
                    return True
        return False

    @property
    def figure_json(self) -> Markup:
        """``{"data": ..., "layout": ...}`` escaped for a script element."""
        return script_json({"data": self.data, "layout": self.layout})


def lines(
    key: str,
    title: str,
    x: Sequence[Any],
    series: Mapping[str, Sequence[float | None]],
    *,
    y_title: str | None = None,
    stacked: bool = False,
    mode: str = "lines+markers",
    note: str = "",
    empty: str = _EMPTY,
) -> Chart:
    """One line per series over ``x`` (stacked areas with ``stacked``)."""
    data: list[dict[str, Any]] = []
    for name, ys in series.items():
        trace: dict[str, Any] = {
            "type": "scatter",
            "mode": "lines" if stacked else mode,
            "name": name,
            "x": list(x),
            "y": list(ys),
        }
        if stacked:
            trace["stackgroup"] = "one"
        data.append(trace)
    layout = _layout(y_title)
    if len(series) == 1:
        layout["showlegend"] = False
    return Chart(key, title, data, layout, note=note, empty=empty)


def bars(
    key: str,
    title: str,
    x: Sequence[Any],
    series: Mapping[str, Sequence[float | None]],
    *,
    y_title: str | None = None,
    horizontal: bool = False,
    stacked: bool = False,
    text: Mapping[str, Sequence[str]] | None = None,
    note: str = "",
    empty: str = _EMPTY,
) -> Chart:
    """Grouped (or stacked) bars, one colour per series (horizontal: categories on the y axis)."""
    data: list[dict[str, Any]] = []
    for name, values in series.items():
        trace: dict[str, Any] = {"type": "bar", "name": name}
        if horizontal:
            trace.update(orientation="h", y=list(x), x=list(values))
        else:
            trace.update(x=list(x), y=list(values))
        if text and name in text:
            trace.update(text=list(text[name]), textposition="auto")
        data.append(trace)
    layout = _layout(
        y_title,
        barmode="stack" if stacked else "group",
        hovermode="closest" if horizontal else "x unified",
    )
    if horizontal:
        layout["yaxis"] = {"automargin": True, "autorange": "reversed"}
        layout["xaxis"] = {"gridcolor": "#eceef1", "title": {"text": y_title or ""}}
        layout["height"] = max(260, 28 * len(x) + 80)
        layout["legend"] = {"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom"}
        layout["margin"] = {**layout["margin"], "t": 36}
    if len(series) == 1:
        layout["showlegend"] = False
    return Chart(key, title, data, layout, note=note, empty=empty)


def pie(
    key: str,
    title: str,
    counts: Sequence[tuple[str, int]],
    *,
    note: str = "",
    empty: str = _EMPTY,
) -> Chart:
    """Shares of a whole (a donut)."""
    data = [
        {
            "type": "pie",
            "hole": 0.45,
            "labels": [label for label, _ in counts],
            "values": [value for _, value in counts],
            "sort": False,
            "textinfo": "label+percent",
        }
    ]
    layout = _layout(hovermode="closest", showlegend=False)
    return Chart(key, title, data, layout, note=note, empty=empty)


def heatmap(
    key: str,
    title: str,
    x: Sequence[str],
    y: Sequence[str],
    z: Sequence[Sequence[float | None]],
    *,
    z_title: str = "",
    note: str = "",
    empty: str = _EMPTY,
) -> Chart:
    """A grid of values (``z[row][column]``), rows ``y`` and columns ``x``."""
    data = [
        {
            "type": "heatmap",
            "x": list(x),
            "y": list(y),
            "z": [list(row) for row in z],
            "colorscale": "Reds",
            "zmin": 0,
            "colorbar": {"title": {"text": z_title}},
            "hoverongaps": False,
        }
    ]
    layout = _layout(
        hovermode="closest",
        height=max(260, 26 * len(y) + 120),
        xaxis={"type": "category", "automargin": True},
        yaxis={"type": "category", "automargin": True, "autorange": "reversed"},
    )
    return Chart(key, title, data, layout, note=note, empty=empty)
