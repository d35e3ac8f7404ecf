"""How the benchmarks run the central service (``usage-ping serve`` or plain uvicorn, as a
subprocess on a loopback port), and the lean HTTP client their load generators use.

``usage-ping`` (the default) is the production command: each worker on its own ``SO_REUSEPORT``
socket (``usage_ping.collector.workers``). ``uvicorn`` is uvicorn's own ``--workers``, every worker
on one shared socket, kept for comparison: there a burst of keep-alive connections lands on one
worker.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

from usage_ping.collector.app import SERVICE_CONFIG_ENV

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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _cpu_seconds(pid: str) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Service:
    """The service serving ``app_from_env`` on a loopback port, as a subprocess, configured by
    ``config`` (written to ``<workdir>/<name>.yml``); its log in ``<workdir>/<name>.log``."""

    def __init__(
        self,
        config: dict[str, Any],
        workers: int,
        workdir: Path,
        name: str,
        server: str = "usage-ping",
    ) -> None:
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        path = workdir / f"{name}.yml"
        path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            server_command(server, self.port, workers),
            env={**os.environ, SERVICE_CONFIG_ENV: str(path)},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until every worker has started (their startup lines) and /health answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited: {self.log_path.read_text()[-2000:]}")
            started = self.log_path.read_text().count("Application startup complete")
            if started >= self.workers:
                try:
                    if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"the service did not start in {timeout:.0f} s: see {self.log_path}")

    def workers_cpu(self) -> list[float]:
        """CPU seconds of each worker (the main process's children, or the main process when it
        serves alone) so far."""
        found = []
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                text = status.read_text()
            except OSError:
                continue
            if f"\nPPid:\t{self.process.pid}\n" not in text:
                continue
            command = (status.parent / "cmdline").read_bytes()
            if b"resource_tracker" not in command:  # multiprocessing's helper, not a worker
                found.append(_cpu_seconds(status.parent.name))
        # One worker: the main process serves (it has no worker processes).
        return sorted(found) if found else [_cpu_seconds(str(self.process.pid))]

    def errors(self) -> list[str]:
        """Tracebacks' last lines in the server log."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [line for line in lines if re.match(r"^[\w.]+(Error|Exception)\b", line)]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()

    def __enter__(self) -> Service:
        self.wait_ready()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


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
