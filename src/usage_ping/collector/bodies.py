"""Reading a request's body under a size limit (pings and Snowplow event batches alike)."""

from __future__ import annotations

from fastapi import Request

__all__ = ["BodyTooLargeError", "read_body"]


class BodyTooLargeError(Exception):
    """The request body is over the limit (as sent, or once decompressed)."""


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or :class:`BodyTooLargeError` past ``limit`` bytes (refused on the declared
    Content-Length before reading, else as soon as the bytes read pass it)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError
        chunks.append(chunk)
    return b"".join(chunks)
