"""Real servers for the topology tests: Prometheus, node_exporter, an instrumented app, bad peers.

Prometheus and node_exporter are Debian's packages (``/usr/bin/prometheus``,
``/usr/bin/prometheus-node-exporter``), started on free loopback ports with their storage in a
temporary directory and a generated configuration that scrapes every second. A binary that is not
installed skips the tests that need it, except under ``CI=true``, where they fail
(``scripts/ensure-services.sh`` installs both).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from tests.serving import free_port
from usage_ping.topology import TopologySettings
from usage_ping.topology.exporter import RequestMetrics, instrument

PROMETHEUS = Path(os.environ.get("USAGE_PING_TEST_PROMETHEUS", "/usr/bin/prometheus"))
NODE_EXPORTER = Path(
    os.environ.get("USAGE_PING_TEST_NODE_EXPORTER", "/usr/bin/prometheus-node-exporter")
)
IN_CI = os.environ.get("CI") == "true"

SLOW_SECONDS = 0.6
"""How long ``/slow`` takes: over the apdex threshold (0.5 s), within four times it (tolerated)."""
FAST_REQUESTS = 40
"""Requests of the load that answer at once (satisfied)."""
SLOW_REQUESTS = 4
"""Requests of the load to /slow (tolerated)."""
TEST_WINDOW = "1h"
"""The window of the tests' queries: it covers the whole session, so rates are of the load."""
SERVICES = {"node": "node-exporter", "prometheus": "prometheus", "web": "web"}


@dataclass(frozen=True)
class Stack:
    prometheus: str
    node_exporter: str
    app: str

    def settings(self, **changes: Any) -> TopologySettings:
        """Settings for this Prometheus, with the tests' window and the web job mapped."""
        options: dict[str, Any] = {"window": TEST_WINDOW, "services": SERVICES, **changes}
        return TopologySettings(self.prometheus, **options)


def unavailable(message: str) -> None:
    """Skip, or fail under CI=true, like the database fixtures."""
    if IN_CI:
        pytest.fail(f"CI=true and {message}: run scripts/ensure-services.sh", pytrace=False)
    pytest.skip(message)


def wait_for(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {seconds:g} s")
        time.sleep(0.1)


# -- the instrumented application -------------------------------------------------------------


@dataclass
class App:
    url: str
    metrics: RequestMetrics


def make_app(metrics: RequestMetrics) -> FastAPI:
    """A tiny host application, instrumented with the exporter."""
    app = FastAPI()

    @app.get("/")
    def home() -> dict[str, str]:
        return {"hello": "world"}

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/slow")
    async def slow() -> dict[str, bool]:
        await asyncio.sleep(SLOW_SECONDS)
        return {"slow": True}

    instrument(app, metrics)
    return app


# -- Debian's binaries ------------------------------------------------------------------------


@contextmanager
def run(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def node_exporter(directory: Path) -> Iterator[str]:
    """node_exporter with the collectors the topology reads; yields its URL."""
    if not NODE_EXPORTER.exists():
        unavailable(f"{NODE_EXPORTER} is not installed (Debian: prometheus-node-exporter)")
    port = free_port()
    argv = [str(NODE_EXPORTER), f"--web.listen-address=127.0.0.1:{port}",
            "--collector.disable-defaults", "--collector.cpu", "--collector.meminfo",
            "--collector.uname", "--collector.loadavg"]  # fmt: skip
    with run(argv, directory / "node_exporter.log") as process:
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: httpx.get(f"{url}/metrics").is_success, 20, "node_exporter answers")
        except TimeoutError:
            log = (directory / "node_exporter.log").read_text()[-2000:]
            raise AssertionError(f"node_exporter exited {process.poll()}:\n{log}") from None
        yield url


@contextmanager
def prometheus(directory: Path, jobs: dict[str, str]) -> Iterator[str]:
    """Prometheus scraping ``jobs`` (name -> target URL) every second; yields its URL."""
    if not PROMETHEUS.exists():
        unavailable(f"{PROMETHEUS} is not installed (Debian: prometheus)")
    port = free_port()
    jobs = {**jobs, "prometheus": f"http://127.0.0.1:{port}"}
    lines = ["global:", "  scrape_interval: 1s", "  scrape_timeout: 900ms", "scrape_configs:"]
    for job, url in jobs.items():
        target = url.removeprefix("http://")
        lines += [f"  - job_name: {job}", f"    static_configs: [{{targets: ['{target}']}}]"]
    config = directory / "prometheus.yml"
    config.write_text("\n".join(lines) + "\n")
    argv = [str(PROMETHEUS), f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1d"]  # fmt: skip
    with run(argv, directory / "prometheus.log") as process:
        url = f"http://127.0.0.1:{port}"

        def all_up() -> bool:
            response = httpx.get(f"{url}/api/v1/query", params={"query": "up == 1"})
            if response.status_code != 200:  # 503 "Service Unavailable" while it starts
                return False
            return len(response.json()["data"]["result"]) == len(jobs)

        try:
            wait_for(all_up, 60, "Prometheus scrapes every target")
        except TimeoutError:
            log = (directory / "prometheus.log").read_text()[-3000:]
            raise AssertionError(f"Prometheus ({process.poll()}):\n{log}") from None
        yield url


def query_value(prometheus_url: str, promql: str) -> float | None:
    answer = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": promql}).json()
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if result else None


# -- peers that are not a good Prometheus -----------------------------------------------------


@contextmanager
def silent_server() -> Iterator[str]:
    """A loopback socket that accepts connections (the kernel does) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextmanager
def trickling_server(byte_every: float = 0.2) -> Iterator[str]:
    """An HTTP server that answers at once, then sends its body one byte at a time, for ever.

    Each read finishes well within any per-read timeout: only a deadline on the whole call ends
    the wait.
    """
    loop = asyncio.new_event_loop()
    started = threading.Event()
    port = free_port()
    handlers: set[asyncio.Task[None]] = set()

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n"
            )
            while True:
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(byte_every)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await trickle(reader, writer)
        finally:
            handlers.discard(task)

    async def main() -> None:
        stop = asyncio.Event()
        stops.append(stop)
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        started.set()
        await stop.wait()
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()

    stops: list[asyncio.Event] = []
    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(stops[0].set)
        thread.join(timeout=10)
        loop.close()


@contextmanager
def refused() -> Iterator[str]:
    """A loopback port where nothing listens: connections are refused at once."""
    yield f"http://127.0.0.1:{free_port()}"


def fresh_metrics() -> RequestMetrics:
    return RequestMetrics(CollectorRegistry(), server="uvicorn")
