"""``usage-ping serve --workers N``: each worker on its own SO_REUSEPORT socket, supervised."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import yaml

from tests.serving import free_port
from usage_ping.collector.app import SERVICE_CONFIG_ENV
from usage_ping.collector.storage import migrate

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "SO_REUSEPORT") or not Path("/proc/net/tcp").exists(),
    reason="SO_REUSEPORT and /proc are Linux facts",
)


def _workers(parent: int) -> list[int]:
    """The supervisor's worker processes (multiprocessing's resource tracker left out)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
            command = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if f"\nPPid:\t{parent}\n" in text and b"resource_tracker" not in command:
            found.append(int(status.parent.name))
    return sorted(found)


ESTABLISHED, LISTEN = "01", "0A"
"""States of a socket in /proc/net/tcp."""


def _sockets(pid: int, port: int, state: str = ESTABLISHED) -> int:
    """How many TCP sockets on local ``port`` in ``state`` the process ``pid`` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and fields[3] == state and fields[9] in inodes:
            count += 1
    return count


def _wait(predicate: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    database = f"sqlite:///{tmp_path / 'service.sqlite3'}"
    migrate(sa.create_engine(database))  # once, not by both workers at the same time
    config = tmp_path / "service.yml"
    config.write_text(yaml.safe_dump({"database_url": database}))
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "usage_ping.cli", "serve", "--port", str(port), "--workers", "2"],
        env={**os.environ, SERVICE_CONFIG_ENV: str(config)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def ready() -> bool:
        # Each worker listens once its app has started: until then the kernel hands every
        # connection to the workers already listening.
        workers = _workers(process.pid)
        if len(workers) < 2 or not all(_sockets(pid, port, LISTEN) for pid in workers):
            return False
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait(ready)
        yield process, port
    finally:
        if process.poll() is None:
            process.terminate()  # the supervisor stops its workers
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_keep_alive_connections_are_spread_over_the_workers(
    service: tuple[subprocess.Popen[bytes], int],
) -> None:
    """16 connections opened at once: both workers hold some (uvicorn's shared socket let one
    worker accept a whole burst), and each answers on its connection."""
    process, port = service
    clients = [httpx.Client(base_url=f"http://127.0.0.1:{port}") for _ in range(16)]
    try:
        for client in clients:
            assert client.get("/health").status_code == 200
        held = [_sockets(pid, port) for pid in _workers(process.pid)]
        assert sum(held) == 16
        assert all(count > 0 for count in held), held
    finally:
        for client in clients:
            client.close()


def test_a_dead_worker_is_replaced_and_sigterm_stops_them_all(
    service: tuple[subprocess.Popen[bytes], int],
) -> None:
    process, port = service
    first, second = _workers(process.pid)
    os.kill(first, signal.SIGKILL)
    _wait(
        lambda: (
            len(_workers(process.pid)) == 2
            and first not in _workers(process.pid)
            and all(_sockets(pid, port, LISTEN) for pid in _workers(process.pid))
        )
    )
    assert second in _workers(process.pid)
    _wait(lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200)
    workers = _workers(process.pid)
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(
            f"/proc/{pid}/status"
        ).read_text(errors="replace")


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "usage_ping.cli",
                "serve",
                "--port",
                str(port),
                "--workers",
                "2",
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, SERVICE_CONFIG_ENV: ""},
        )
    finally:
        taken.close()
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_workers_end_when_the_supervisor_is_killed(
    service: tuple[subprocess.Popen[bytes], int],
) -> None:
    """SIGKILL leaves the supervisor no chance to stop its workers: they see it gone and stop
    themselves, freeing the port."""
    process, port = service
    workers = _workers(process.pid)
    process.kill()
    process.wait()
    _wait(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), timeout=30)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))
