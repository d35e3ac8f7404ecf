"""Shared fixtures: throwaway databases on the real servers, and the fail-safe boundary made loud.

Every test that takes ``engine`` runs on PostgreSQL, MariaDB and SQLite. Each test session creates
its own database on each server (dropped at the end) and an SQLite file; tables are dropped after
each test. A server that cannot be reached skips its tests, except under ``CI=true``, where the
run fails instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from usage_ping.testing import Swallowed, capture_swallowed, reraise_swallowed

pytest_plugins = ["tests.store_fixtures", "tests.browser"]

DIALECTS = ("postgresql", "mariadb", "sqlite")
SERVER_URLS = {
    "postgresql": os.environ.get(
        "USAGE_PING_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get("USAGE_PING_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306"),
}
IN_CI = os.environ.get("CI") == "true"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``dialects(...)`` are collected only for those dialects."""
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("dialects")
        callspec = getattr(item, "callspec", None)
        param = callspec.params.get("dialect") if callspec is not None else None
        if marker is not None and param is not None and param not in marker.args:
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


# -- the fail-safe boundary -------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _boundary(request: pytest.FixtureRequest) -> Iterator[list[Swallowed]]:
    """Errors the boundary swallows are re-raised, unless the test is marked ``swallows``."""
    if request.node.get_closest_marker("swallows"):
        with capture_swallowed() as seen:
            yield seen
    else:
        with reraise_swallowed():
            yield []


@pytest.fixture
def swallowed(_boundary: list[Swallowed]) -> list[Swallowed]:
    """What the boundary swallowed during a test marked ``swallows``."""
    return _boundary


# -- databases --------------------------------------------------------------------------------


def _unavailable(dialect: str, exc: BaseException) -> None:
    message = f"{dialect} is not reachable ({type(exc).__name__}: {exc})"
    if IN_CI:
        pytest.fail(f"CI=true and {message}: run scripts/ensure-services.sh", pytrace=False)
    pytest.skip(message)


class _Servers:
    """Creates one throwaway database per server per session, lazily, and drops them at the end."""

    def __init__(self, tmp_dir: Path) -> None:
        self.tmp_dir = tmp_dir
        self.name = f"usage_ping_test_{uuid.uuid4().hex[:10]}"
        self.urls: dict[str, sa.URL] = {}
        self.errors: dict[str, BaseException] = {}

    def url(self, dialect: str) -> sa.URL:
        if dialect in self.errors:
            _unavailable(dialect, self.errors[dialect])
        if dialect not in self.urls:
            try:
                self.urls[dialect] = self._create(dialect)
            except sa.exc.OperationalError as exc:
                self.errors[dialect] = exc
                _unavailable(dialect, exc)
        return self.urls[dialect]

    def _create(self, dialect: str) -> sa.URL:
        if dialect == "sqlite":
            return sa.make_url(f"sqlite:///{self.tmp_dir / 'test.sqlite3'}")
        admin_url = sa.make_url(SERVER_URLS[dialect])
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE {self.name}")
        finally:
            admin.dispose()
        return admin_url.set(database=self.name)

    def drop_all(self) -> None:
        for dialect in self.urls:
            if dialect == "sqlite":
                continue
            admin = sa.create_engine(SERVER_URLS[dialect], isolation_level="AUTOCOMMIT")
            try:
                with admin.connect() as conn:
                    if dialect == "postgresql":
                        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
                    else:
                        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {self.name}")
            finally:
                admin.dispose()


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Servers]:
    found = _Servers(tmp_path_factory.mktemp("sqlite"))
    yield found
    found.drop_all()


def make_engine(url: sa.URL, **kwargs: object) -> sa.Engine:
    return sa.create_engine(url, **kwargs)


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def engine(dialect: str, servers: _Servers) -> Iterator[sa.Engine]:
    """An engine on this session's throwaway database; the test's tables are dropped after it."""
    eng = make_engine(servers.url(dialect))
    yield eng
    metadata = sa.MetaData()
    metadata.reflect(eng)
    metadata.drop_all(eng)
    eng.dispose()


@pytest.fixture
def metadata() -> sa.MetaData:
    return sa.MetaData()
