"""Parquet export on PostgreSQL and SQLite: the rows of the database, in batches, by HTTP too."""

from __future__ import annotations

import io
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.collector.conftest import ping
from tests.collector.test_api import TOKEN, token_app
from usage_ping.collector.export import (
    METRICS_SCHEMA,
    PARQUET_MEDIA_TYPE,
    PINGS_SCHEMA,
    export_parquet,
    write_metrics,
)
from usage_ping.collector.flatten import flatten
from usage_ping.collector.storage import key_paths, ping_metrics, pings

pytestmark = pytest.mark.dialects("postgresql", "sqlite")


def _send(client: TestClient, *documents: dict[str, Any]) -> None:
    for document in documents:
        assert client.post("/usage_data", json=document).status_code == 201


def _small(uuid: str, recorded_at: str, **metrics: float) -> dict[str, Any]:
    """A ping whose only numbers are ``metrics`` (so its metric rows are known)."""
    return {"uuid": uuid, "recorded_at": recorded_at, "version": "16.5.0", "counts": metrics}


def _database_metrics(engine: sa.Engine) -> list[tuple[Any, ...]]:
    query = (
        sa.select(
            ping_metrics.c.ping_id,
            pings.c.uuid,
            pings.c.recorded_at,
            pings.c.version,
            pings.c.edition,
            pings.c.installation_type,
            key_paths.c.path,
            ping_metrics.c.value,
        )
        .join(pings, pings.c.id == ping_metrics.c.ping_id)
        .join(key_paths, key_paths.c.id == ping_metrics.c.key_path_id)
        .order_by(ping_metrics.c.ping_id, key_paths.c.path)
    )
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query)]


def _rows(table: Any) -> list[tuple[Any, ...]]:
    columns = table.to_pydict()
    return list(zip(*columns.values(), strict=True))


@pytest.fixture
def client(engine: sa.Engine) -> TestClient:
    """The service (accepting TOKEN on its API), as a client with no token."""
    return TestClient(token_app(engine, TOKEN))


def test_the_export_holds_every_metric_row_and_ping(
    client: TestClient, engine: sa.Engine, tmp_path: Path
) -> None:
    """Read back with pyarrow: the same rows as ping_metrics joined to pings; one row per ping."""
    _send(client, *(ping(uuid=f"i{n}", days_ago=7 * n) for n in range(3)))
    metrics_path, pings_path = export_parquet(engine, tmp_path / "out")
    assert (metrics_path.name, pings_path.name) == ("metrics.parquet", "pings.parquet")
    metrics = pq.read_table(metrics_path)
    assert metrics.schema == METRICS_SCHEMA
    assert _rows(metrics) == _database_metrics(engine)
    assert metrics.num_rows == 3 * len(flatten(ping()))
    assert pq.ParquetFile(metrics_path).metadata.row_group(0).column(0).compression == "ZSTD"

    exported = pq.read_table(pings_path)
    assert exported.schema == PINGS_SCHEMA
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(pings.c.id, pings.c.uuid, pings.c.recorded_at, pings.c.score).order_by(
                pings.c.id
            )
        ).all()
    assert _rows(exported.select(["ping_id", "uuid", "recorded_at", "score"])) == [
        tuple(r) for r in stored
    ]
    assert exported.column("active_user_count").to_pylist() == [10, 10, 10]
    assert set(exported.column("source").to_pylist()) == {"http"}
    assert exported.column("recorded_at").type.tz == "UTC"


def test_rows_are_written_in_batches(client: TestClient, engine: sa.Engine, tmp_path: Path) -> None:
    """10 rows with batch_rows=3: row groups of 3, 3, 3 and 1, nothing lost at the boundaries."""
    _send(
        client,
        _small("a", "2026-11-02T00:00:00Z", m1=1, m2=2, m3=3, m4=4, m5=5),
        _small("b", "2026-11-03T00:00:00Z", m1=6, m2=7, m3=8, m4=9, m5=10),
    )
    metrics_path, pings_path = export_parquet(engine, tmp_path, batch_rows=3)
    file = pq.ParquetFile(metrics_path)
    sizes = [file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)]
    assert sizes == [3, 3, 3, 1]
    values = pq.read_table(metrics_path).column("value").to_pylist()
    assert values == [float(v) for v in range(1, 11)]
    assert pq.read_table(pings_path).num_rows == 2
    assert pq.ParquetFile(pings_path).num_row_groups == 1
    with pytest.raises(ValueError, match="batch_rows must be at least 1"):
        export_parquet(engine, tmp_path, batch_rows=0)


def test_the_export_is_cut_by_recorded_at(
    client: TestClient, engine: sa.Engine, tmp_path: Path
) -> None:
    """since included, until excluded; no ping in range gives files with no rows."""
    _send(
        client,
        _small("a", "2026-11-02T00:00:00Z", m=1),
        _small("a", "2026-11-09T00:00:00Z", m=2),
        _small("a", "2026-11-16T00:00:00Z", m=3),
    )
    week = export_parquet(
        engine,
        tmp_path / "w46",
        since=datetime(2026, 11, 9, tzinfo=UTC),
        until=datetime(2026, 11, 16, tzinfo=UTC),
    )
    assert pq.read_table(week[0]).column("value").to_pylist() == [2.0]
    assert pq.read_table(week[1]).column("recorded_at").to_pylist() == [
        datetime(2026, 11, 9, tzinfo=UTC)
    ]
    empty = export_parquet(engine, tmp_path / "none", since=datetime(2030, 1, 1, tzinfo=UTC))
    assert [pq.read_table(p).num_rows for p in empty] == [0, 0]
    assert pq.read_table(empty[0]).schema == METRICS_SCHEMA
    written = write_metrics(engine, tmp_path / "all.parquet")
    assert (written.rows, written.bytes) == (3, written.path.stat().st_size)


def test_the_export_endpoint_streams_the_file_and_cleans_up(
    client: TestClient, engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET /api/v1/export/metrics.parquet: the file, its row count; the temp file is gone."""
    _send(client, ping(uuid="a"), ping(uuid="b", days_ago=30))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    url = "/api/v1/export/metrics.parquet"
    assert client.get(url).status_code == 401
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = client.get(url, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == PARQUET_MEDIA_TYPE
    assert 'filename="metrics.parquet"' in response.headers["content-disposition"]
    table = pq.read_table(io.BytesIO(response.content))
    assert _rows(table) == _database_metrics(engine)
    assert int(response.headers["X-Export-Rows"]) == table.num_rows == 2 * len(flatten(ping()))
    assert list(tmp_path.iterdir()) == []
    recent = client.get(url, params={"since": "2026-11-01T00:00:00Z"}, headers=headers)
    assert set(pq.read_table(io.BytesIO(recent.content)).column("uuid").to_pylist()) == {"a"}
    refused = client.get(
        url, params={"since": "2026-11-02", "until": "2026-11-01"}, headers=headers
    )
    assert refused.status_code == 422
    assert "is after until" in refused.json()["error"]
