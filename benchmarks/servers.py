"""How the benchmarks start the central service (``usage-ping serve`` or plain uvicorn), and the
lean HTTP client their load generators use.

``usage-ping`` (the default) is the production command: each worker on its own ``SO_REUSEPORT``
socket (``usage_ping.collector.workers``). ``uvicorn`` is uvicorn's own ``--workers``, every worker
on one shared socket, kept for comparison: there a burst of keep-alive connections lands on one
worker.
"""

from __future__ import annotations

import asyncio
import re
import sys
from urllib.parse import urlsplit

SERVERS = ("usage-ping", "uvicorn")


def server_command(server: str, port: int, workers: int) -> list[str]:
    """The command serving ``app_from_env`` on 127.0.0.1:``port`` (configured by environment)."""
    if server == "usage-ping":
        return [
            sys.executable, "-m", "usage_ping.cli", "serve", "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(workers), "--no-access-log",
        ]  # fmt: skip
    if server == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn", "usage_ping.collector.app:app_from_env",
            "--factory", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--log-level", "info", "--no-access-log",
        ]  # fmt: skip
    raise ValueError(f"unknown server {server!r}: one of {', '.join(SERVERS)}")


class RawClient:
    """A minimal HTTP/1.1 keep-alive client over asyncio streams: posts a body, reads the answer.

    The load generator shares the machine's 2 cores with the service and the database, so it
    should cost little: httpx.AsyncClient took about 1.6 ms of CPU per request (0.5-0.8 of a
    core at the event benchmark's rates), this a fraction of that. The benchmarks keep a row
    with httpx for comparison.
    """

    def __init__(self, url: str) -> None:
        parsed = urlsplit(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(
        self, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """POST ``body`` (JSON unless ``headers`` say otherwise); the status and the answer."""
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        fields = {"Content-Type": "application/json", **(headers or {})}
        head_lines = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n{head_lines}"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            answer = await reader.readexactly(int(length.group(1)) if length else 0)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.close()
            raise
        if re.search(rb"(?i)\r\nconnection: *close", head):
            self.close()
        return status, answer

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None
