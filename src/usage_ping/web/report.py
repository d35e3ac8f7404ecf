"""The DevOps report as the admin page shows it: the score, a row per feature, and a bar chart.

The central service answers each delivered payload with a ``conv_index`` block, which
:func:`usage_ping.delivery.submit.devops_report` reads from the outbox row. Here it becomes what a
person reads: the score, per feature the instance's value against the leader's (both per active
user over 28 days) and the percentage, and a Plotly figure of instance vs leader per feature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from usage_ping.delivery.submit import DevOpsReport

__all__ = ["FeatureRow", "ReportView", "report_view"]

_INSTANCE_COLOUR = "#1f75cb"
_LEADER_COLOUR = "#a4a3a8"


@dataclass(frozen=True)
class FeatureRow:
    """One score feature."""

    name: str
    label: str
    instance: float | None
    leader: float | None
    percentage: float | None


@dataclass(frozen=True)
class ReportView:
    """The report, ready for the template."""

    recorded_at: datetime
    usage_data_id: int | None
    score: float | None
    rows: list[FeatureRow]
    figure: dict[str, Any]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _label(name: str) -> str:
    text = name.replace("_", " ")
    for short in ("ci", "cd"):
        text = text.replace(f"{short} ", f"{short.upper()} ")
    return text[:1].upper() + text[1:]


def report_view(report: DevOpsReport) -> ReportView:
    """The score, the rows and the figure of one DevOps report."""
    rows = [
        FeatureRow(name, _label(name), _finite(mine), _finite(lead), _finite(pct))
        for name, lead, mine, pct in report.features
    ]
    labels = [r.label for r in rows]
    percentages = ["n/a" if r.percentage is None else f"{r.percentage:.1f} %" for r in rows]
    hover = (
        "%{x}: %{y:.3g} per active user<br>%{customdata} of the leader"
        "<extra>%{fullData.name}</extra>"
    )
    figure = {
        "data": [
            {
                "type": "bar",
                "name": "This instance",
                "x": labels,
                "y": [r.instance for r in rows],
                "customdata": percentages,
                "hovertemplate": hover,
                "marker": {"color": _INSTANCE_COLOUR},
            },
            {
                "type": "bar",
                "name": "Leader",
                "x": labels,
                "y": [r.leader for r in rows],
                "customdata": percentages,
                "hovertemplate": hover,
                "marker": {"color": _LEADER_COLOUR},
            },
        ],
        "layout": {
            "barmode": "group",
            "margin": {"l": 56, "r": 16, "t": 16, "b": 96},
            "font": {
                "family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif",
                "size": 12,
            },
            "paper_bgcolor": "rgba(0,0,0,0)",
            "plot_bgcolor": "rgba(0,0,0,0)",
            "legend": {"orientation": "h", "y": 1.12},
            "xaxis": {"tickangle": -30},
            "yaxis": {
                "title": {"text": "per active user, 28 days"},
                "gridcolor": "#eceef1",
                "rangemode": "tozero",
            },
        },
    }
    score = _finite(report.score)
    return ReportView(report.recorded_at, report.usage_data_id, score, rows, figure)
