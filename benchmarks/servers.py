"""How the benchmarks start the central service: ``usage-ping serve`` or plain uvicorn.

``usage-ping`` (the default) is the production command: each worker on its own ``SO_REUSEPORT``
socket (``usage_ping.collector.workers``). ``uvicorn`` is uvicorn's own ``--workers``, every worker
on one shared socket, kept for comparison: there a burst of keep-alive connections lands on one
worker.
"""

from __future__ import annotations

import sys

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
