"""The instance lock: one holder at a time, released at block exit and when its holder dies."""

from __future__ import annotations

import select
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import make_engine
from usage_ping.delivery.lock import (
    DEFAULT_LOCK_NAME,
    LockError,
    advisory_key,
    instance_lock,
    lock_file_path,
)
from usage_ping.errors import UsagePingError

LABELS = {"postgresql": "PostgreSQL", "mariadb": "MariaDB/MySQL", "sqlite": "SQLite"}

# Takes the lock named argv[2] on the database argv[1], says so, and sleeps until killed.
HOLDER = """
import sys, time
import sqlalchemy as sa
from usage_ping.delivery.lock import instance_lock
engine = sa.create_engine(sys.argv[1])
with instance_lock(engine, sys.argv[2]) as held:
    print("held" if held else "busy", flush=True)
    time.sleep(120)
"""


def _name() -> str:
    """A lock name of this test's own (test sessions may share a database server)."""
    return f"test_{uuid.uuid4().hex[:12]}"


def _is_free(engine: sa.Engine, name: str) -> bool:
    with instance_lock(engine, name) as held:
        return held


@pytest.fixture
def other(engine: sa.Engine) -> Iterator[sa.Engine]:
    """A second engine on the same database: another process's pool, as far as locks go."""
    second = make_engine(engine.url)
    yield second
    second.dispose()


def test_a_free_lock_is_taken(engine: sa.Engine) -> None:
    """Nobody holds it: the block runs with True."""
    with instance_lock(engine) as held:
        assert held is True


def test_two_concurrent_holders_exactly_one_wins(engine: sa.Engine, other: sa.Engine) -> None:
    """Two threads with their own engines try at once, each holding on until both have tried."""
    name = _name()
    for _ in range(3):
        barrier = threading.Barrier(2, timeout=10)

        def hold(own: sa.Engine, barrier: threading.Barrier = barrier) -> bool:
            with instance_lock(own, name) as held:
                barrier.wait()
                return held

        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(hold, [engine, other]))
        assert sorted(results) == [False, True]


def test_a_second_call_in_the_same_process_is_refused(engine: sa.Engine) -> None:
    """Each call takes its own session or file, so even a nested call on one engine gets False."""
    name = _name()
    with instance_lock(engine, name) as outer:
        with instance_lock(engine, name) as inner:
            assert (outer, inner) == (True, False)
        assert not _is_free(engine, name)  # the refused call did not release the holder's lock


def test_the_lock_is_released_at_block_exit(engine: sa.Engine, other: sa.Engine) -> None:
    """After the block another engine gets it (nothing lingers on the pooled connection)."""
    name = _name()
    with instance_lock(engine, name) as held:
        assert held
        assert not _is_free(other, name)
    assert _is_free(other, name)
    assert _is_free(engine, name)


def test_the_lock_is_released_when_the_block_raises(engine: sa.Engine, other: sa.Engine) -> None:
    """An exception in the block propagates, and the lock is free afterwards."""
    name = _name()

    def fail_while_holding() -> None:
        with instance_lock(engine, name) as held:
            assert held
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_while_holding()
    assert _is_free(other, name)


def test_different_names_do_not_block_each_other(engine: sa.Engine, other: sa.Engine) -> None:
    """Two names, two locks: both held at once."""
    first, second = _name(), _name()
    with instance_lock(engine, first) as a, instance_lock(other, second) as b:
        assert (a, b) == (True, True)


def test_a_killed_holder_releases_the_lock(engine: sa.Engine) -> None:
    """kill -9 of a process holding the lock frees it within seconds (connection or fd closes)."""
    name = _name()
    url = engine.url.render_as_string(hide_password=False)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stderr is not None
    try:
        ready, _, _ = select.select([holder.stdout], [], [], 30)
        said = holder.stdout.readline().strip() if ready else "(nothing within 30 s)"
        assert said == "held", holder.stderr.read() if holder.poll() is not None else said
        assert not _is_free(engine, name)
        holder.kill()
        holder.wait(timeout=10)
        deadline = time.monotonic() + 5
        while not _is_free(engine, name):
            assert time.monotonic() < deadline, "the lock was still held 5 s after kill -9"
            time.sleep(0.05)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)
        holder.stdout.close()
        holder.stderr.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_database_that_is_down_raises_lock_error(
    dialect: str, engine: sa.Engine, tmp_path: Path
) -> None:
    """Unreachable: LockError naming the dialect, and the block never runs (never a False True)."""
    if dialect == "sqlite":
        url = sa.make_url(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'db.sqlite3'}")
    else:
        url = engine.url.set(host="127.0.0.1", port=_free_port())
    down = make_engine(url)
    try:
        with pytest.raises(LockError, match=LABELS[dialect]) as info, instance_lock(down):
            pytest.fail("the block ran although the database is down")
    finally:
        down.dispose()
    assert info.value.dialect == down.dialect.name
    assert isinstance(info.value, UsagePingError)


@pytest.mark.dialects("postgresql", "mariadb")
def test_a_pooled_connection_the_server_closed_is_replaced(
    dialect: str, engine: sa.Engine, other: sa.Engine
) -> None:
    """The server ended the session of an idle pooled connection: the lock takes a new one."""
    with engine.connect() as conn:
        if dialect == "postgresql":
            session = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
            end = "SELECT pg_terminate_backend(:session)"
        else:
            session = conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar()
            end = "KILL :session"
    with other.connect() as admin:
        admin.execute(sa.text(end), {"session": session})
        admin.commit()
    time.sleep(0.1)
    with instance_lock(engine) as held:
        assert held


@pytest.mark.dialects("postgresql")
def test_postgresql_holds_one_advisory_lock_on_a_stable_key(
    engine: sa.Engine, other: sa.Engine
) -> None:
    """The key is a signed 64-bit hash of the name; pg_locks shows the lock only while held."""
    assert advisory_key(DEFAULT_LOCK_NAME) == advisory_key("usage_ping_submit")
    assert advisory_key("usage_ping_submit") == -8203022223085854573
    assert -(2**63) <= advisory_key(_name()) < 2**63
    locks = sa.text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    name = _name()
    with instance_lock(engine, name) as held:
        assert held
        with other.connect() as conn:
            assert conn.execute(locks).scalar() == 1
    with other.connect() as conn:
        assert conn.execute(locks).scalar() == 0


@pytest.mark.dialects("mariadb")
def test_mariadb_lock_names_are_qualified_by_the_database(
    engine: sa.Engine, other: sa.Engine
) -> None:
    """GET_LOCK is server-wide: the lock is '<database>.<name>', so other databases are apart."""
    name = _name()
    used = sa.text("SELECT IS_USED_LOCK(:qualified)")
    qualified = f"{engine.url.database}.{name}"
    with instance_lock(engine, name) as held:
        assert held
        with other.connect() as conn:
            assert conn.execute(used, {"qualified": qualified}).scalar() is not None
            assert conn.execute(used, {"qualified": name}).scalar() is None
    with other.connect() as conn:
        assert conn.execute(used, {"qualified": qualified}).scalar() is None


@pytest.mark.dialects("sqlite")
def test_sqlite_locks_a_file_next_to_the_database(engine: sa.Engine) -> None:
    """<db file>.usage_ping-<name>.lock, left in place after release."""
    name = _name()
    expected = Path(str(engine.url.database) + f".usage_ping-{name}.lock")
    assert lock_file_path(engine, name) == expected
    with instance_lock(engine, name) as held:
        assert held
        assert expected.exists()
    assert expected.exists()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_sqlite_in_memory_locks_a_file_in_lock_dir(url: str, tmp_path: Path) -> None:
    """An in-memory database has no file: the lock file goes to lock_dir."""
    memory = make_engine(sa.make_url(url))
    try:
        with instance_lock(memory, "usage_ping_submit", lock_dir=tmp_path) as held:
            assert held
            assert (tmp_path / "usage_ping-usage_ping_submit.lock").exists()
            with instance_lock(memory, "usage_ping_submit", lock_dir=tmp_path) as again:
                assert again is False
    finally:
        memory.dispose()


@pytest.mark.parametrize("name", ["", "a/b", "x" * 65, "naïve", "with space"])
def test_a_bad_lock_name_is_refused(name: str, tmp_path: Path) -> None:
    """Names end up in file names and MySQL lock names: letters, digits, _ . - only, 1-64."""
    memory = make_engine(sa.make_url("sqlite://"))
    try:
        with (
            pytest.raises(ValueError, match="lock name"),
            instance_lock(memory, name, lock_dir=tmp_path),
        ):
            pytest.fail("the block ran with a bad name")
    finally:
        memory.dispose()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:////srv/app/db.sqlite3", "/srv/app/db.sqlite3.usage_ping-submit.lock"),
        (
            "sqlite:///file:/srv/app/db.sqlite3?uri=true",
            "/srv/app/db.sqlite3.usage_ping-submit.lock",
        ),
        ("sqlite:///file:shared?mode=memory&uri=true", "{lock_dir}/usage_ping-submit.lock"),
        ("sqlite://", "{lock_dir}/usage_ping-submit.lock"),
    ],
)
def test_sqlite_lock_file_paths(url: str, expected: str, tmp_path: Path) -> None:
    """Plain paths and file: URIs lock next to the file; in-memory databases in lock_dir."""
    memory = make_engine(sa.make_url(url), poolclass=sa.NullPool)  # never connected
    try:
        found = lock_file_path(memory, "submit", tmp_path)
    finally:
        memory.dispose()
    assert found == Path(expected.format(lock_dir=tmp_path))
