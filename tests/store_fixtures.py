"""Counter-store fixtures (a pytest plugin): the local Redis, a 3-node Redis Cluster, SQLite."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from usage_ping.store import CounterStore, SQLiteStore
from usage_ping.store.redis import RedisStore

REDIS_URL = os.environ.get("USAGE_PING_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
IN_CI = os.environ.get("CI") == "true"


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


def _port_pair_free(port: int) -> bool:
    """Whether ``port`` and its cluster bus port (port + 10000) are both free on loopback."""
    for p in (port, port + 10_000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


def _free_ports(count: int) -> list[int]:
    found: list[int] = []
    port = 21_000 + os.getpid() % 5_000
    while len(found) < count:
        if _port_pair_free(port):
            found.append(port)
        port += 1
    return found


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A 3-master Redis Cluster on loopback ports, for this session; yields a node's URL."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        _unavailable("redis-server/redis-cli are not installed")
    workdir: Path = tmp_path_factory.mktemp("redis-cluster")
    ports = _free_ports(3)
    for port in ports:
        subprocess.run(
            [
                "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                "--dir", str(workdir), "--save", "", "--appendonly", "no",
                "--daemonize", "yes", "--logfile", str(workdir / f"{port}.log"),
            ],
            check=True,
        )  # fmt: skip
    try:
        for port in ports:
            _wait(lambda p=port: redis.Redis(port=p).ping())
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True,
        )  # fmt: skip
        _wait(lambda: _cluster_state(ports[0]) == "ok")
        yield f"redis://127.0.0.1:{ports[0]}"
    finally:
        for port in ports:
            subprocess.run(
                ["redis-cli", "-p", str(port), "shutdown", "nosave"],
                capture_output=True,
                check=False,  # a node that is already gone is fine
            )


def _cluster_state(port: int) -> str:
    info: object = redis.Redis(port=port).cluster("info")  # parsed into a dict
    return str(info.get("cluster_state", "")) if isinstance(info, dict) else ""


def _wait(ready: object, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if ready():  # type: ignore[operator]
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("redis did not become ready")
        time.sleep(0.1)


@pytest.fixture(params=["redis", "cluster", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CounterStore]:
    """Each store kind, empty at the start of the test."""
    kind: str = request.param
    made: CounterStore
    if kind == "sqlite":
        made = SQLiteStore(tmp_path / "counters.sqlite3")
    elif kind == "redis":
        redis_store = RedisStore.from_url(REDIS_URL)
        try:
            redis_store.client.flushdb()
        except redis.RedisError as exc:
            _unavailable(f"Redis at {REDIS_URL} is not reachable ({exc})")
        made = redis_store
    else:
        cluster_store = RedisStore.from_url(request.getfixturevalue("redis_cluster"), cluster=True)
        cluster_store.client.flushall()
        made = cluster_store
    yield made
    made.close()
