"""Fail with a clear message when the packages the web parts need are not installed."""

from __future__ import annotations

import importlib.util

for _module, _package in (
    ("fastapi", "fastapi"),
    ("jinja2", "jinja2"),
    ("python_multipart", "python-multipart"),
):
    if importlib.util.find_spec(_module) is None:  # pragma: no cover - depends on the extras
        raise ImportError(
            f"usage_ping.web needs {_package}, which is not installed: install usage-ping[service]"
        )
