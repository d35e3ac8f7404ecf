"""The central service's operator dashboards: overview, instances, metric QA, metric explorer.

Server-rendered pages (Jinja2) behind the operator login (:mod:`usage_ping.collector.auth`), with
Plotly charts whose JavaScript comes from the installed ``plotly`` package. ``create_app`` adds
them with :func:`mount_dashboards`.
"""

from usage_ping.collector.dashboards.pages import Dashboards, mount_dashboards

__all__ = ["Dashboards", "mount_dashboards"]
