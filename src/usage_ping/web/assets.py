"""The admin page's static files, served by its own router: no CDN, nothing for the host to copy.

``plotly.min.js`` comes from the installed ``plotly`` package (found without importing it);
``admin.js`` (draws the charts from JSON in the page, so the page needs no inline script) and
``admin.css`` are package data of :mod:`usage_ping.web`. Each is read and gzipped once per process,
served with an ETag (304 when the browser has it) and cached for a week: its URL carries a hash
of its content, so a new version is a new URL.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["NAMES", "Asset", "asset", "asset_response", "plotly_js_path"]

NAMES = frozenset({"plotly.min.js", "admin.js", "admin.css"})
"""The files served under ``<prefix>/static/``."""

_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def plotly_js_path() -> Path:
    """``plotly.min.js`` of the installed plotly package."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("plotly is not installed: install usage-ping[service]")
    return Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"


@dataclass(frozen=True)
class Asset:
    """One static file, in memory."""

    body: bytes
    gzipped: bytes
    etag: str
    media_type: str


@functools.cache
def asset(name: str) -> Asset | None:
    """The file ``name`` (None if it is not one of :data:`NAMES`)."""
    if name not in NAMES:  # the cache only ever holds these
        return None
    if name == "plotly.min.js":
        body = plotly_js_path().read_bytes()
    else:
        body = resources.files("usage_ping.web").joinpath("static", name).read_bytes()
    return Asset(
        body=body,
        gzipped=gzip.compress(body, 6, mtime=0),
        etag=hashlib.sha256(body).hexdigest()[:16],
        media_type=_TYPES[Path(name).suffix],
    )


def asset_response(name: str, request: Request) -> Response:
    """The file; 304 when the browser has this version; 404 when there is no such file."""
    found = asset(name)
    if found is None:
        return Response("not found", status_code=404, media_type="text/plain")
    etag = f'"{found.etag}"'
    headers = {
        "ETag": etag,
        "Cache-Control": "public, max-age=604800",
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
    }
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(found.gzipped, media_type=found.media_type, headers=headers)
    return Response(found.body, media_type=found.media_type, headers=headers)
