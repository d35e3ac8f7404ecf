"""The dashboards' static files: Plotly's JavaScript from the installed ``plotly`` package (no
CDN) and the dashboards' stylesheet, served from memory with an ETag, gzip when the browser
accepts it, and a long cache lifetime (their URLs carry a hash of the content).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from usage_ping.web.assets import plotly_js_path  # the one place that finds plotly.min.js

__all__ = ["NAMES", "STATIC_PREFIX", "Assets", "plotly_js_path"]

STATIC_PREFIX = "/dashboard/static"

NAMES = frozenset({"plotly.min.js", "dashboards.css"})
"""The files served under ``STATIC_PREFIX``."""

_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@dataclass(frozen=True)
class _Asset:
    body: bytes
    etag: str
    media_type: str


def _read(name: str) -> bytes:
    if name == "plotly.min.js":
        return plotly_js_path().read_bytes()
    return resources.files("usage_ping.collector.dashboards").joinpath("static", name).read_bytes()


@functools.cache
def _load(name: str) -> _Asset | None:
    if name not in NAMES:  # the cache only ever holds these
        return None
    body = _read(name)
    digest = hashlib.sha256(body).hexdigest()[:16]
    return _Asset(body, digest, _TYPES[Path(name).suffix])


@functools.cache
def _gzipped(name: str) -> bytes:
    asset = _load(name)
    return gzip.compress(asset.body if asset else b"", 6, mtime=0)


class Assets:
    """The static files, read (and compressed) once per process on first use."""

    @staticmethod
    def get(name: str) -> _Asset | None:
        """The file ``name`` (None if there is no such file)."""
        return _load(name)

    def url(self, name: str) -> str:
        """The file's URL, versioned by its content."""
        asset = self.get(name)
        version = f"?v={asset.etag}" if asset is not None else ""
        return f"{STATIC_PREFIX}/{name}{version}"

    def response(self, name: str, request: Request) -> Response:
        """The file, 304 when the browser has it, 404 when there is no such file."""
        asset = self.get(name)
        if asset is None:
            return Response("not found", status_code=404, media_type="text/plain")
        etag = f'"{asset.etag}"'
        headers = {
            "ETag": etag,
            "Cache-Control": "public, max-age=604800",
            "Vary": "Accept-Encoding",
            "X-Content-Type-Options": "nosniff",
        }
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        accepted = request.headers.get("accept-encoding", "")
        if "gzip" in accepted:
            headers["Content-Encoding"] = "gzip"
            return Response(_gzipped(name), media_type=asset.media_type, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)
