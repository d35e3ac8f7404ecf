"""Mounting the routers in an ASGI app that is not FastAPI (Starlette, Litestar, Django...).

FastAPI's routes need FastAPI's own request handling around them, so a router cannot be mounted
bare; :func:`mountable` wraps one in a minimal FastAPI app (no OpenAPI document, no docs pages)
that any ASGI framework can mount. The host's middleware still runs first, so the session it
puts in the request's scope is there for the checks.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

__all__ = ["mountable"]


def mountable(router: APIRouter) -> FastAPI:
    """An ASGI app serving ``router``, to mount where its prefix would have been.

    Make the router with ``prefix=""``: the mount point takes its place.

    Example:
        >>> Mount(  # doctest: +SKIP
        ...     "/usage_data",
        ...     app=mountable(usage_data_router(ping, ..., prefix="")),
        ... )
    """
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.include_router(router)
    return app
