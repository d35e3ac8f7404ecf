"""POST /usage_data and friends on PostgreSQL and SQLite: stored once, flattened, scored."""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient

from tests.collector.conftest import ping
from usage_ping.collector.app import create_app
from usage_ping.collector.settings import ServiceSettings
from usage_ping.collector.storage import metadata

pytestmark = pytest.mark.dialects("postgresql", "sqlite")


METRICS = (
    "SELECT k.path AS key_path, m.value"
    " FROM ping_metrics m JOIN key_paths k ON k.id = m.key_path_id"
)
META_0007 = (
    "SELECT k.path AS key_path, m.duration_ms, m.error"
    " FROM metric_meta m JOIN key_paths k ON k.id = m.key_path_id"
)


def _meta(engine: sa.Engine) -> dict[str, tuple[float | None, str | None]]:
    """Every ping's meta by key path: durations unpacked from ping_meta, errors joined."""
    from usage_ping.collector.durations import unpack

    with engine.connect() as conn:
        names = {r.id: r.path for r in conn.execute(sa.text("SELECT id, path FROM key_paths"))}
        found: dict[str, tuple[float | None, str | None]] = {}
        for row in conn.execute(sa.text("SELECT key_path_ids, durations_ms FROM ping_meta")):
            ids, durations = unpack(bytes(row.key_path_ids), bytes(row.durations_ms))
            for key, ms in zip(ids.tolist(), durations.tolist(), strict=True):
                found[names[key]] = (ms, None)
        for row in conn.execute(sa.text("SELECT key_path_id, error FROM metric_errors")):
            name = names[row.key_path_id]
            found[name] = (found[name][0] if name in found else None, row.error)
    return found


def _count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_a_ping_is_stored_once_and_a_resend_gets_the_same_answer(
    client: TestClient, engine: sa.Engine
) -> None:
    """201 with conv_index; the same (uuid, recorded_at) again: 200, same body, nothing new."""
    first = client.post("/usage_data", json=ping())
    assert first.status_code == 201
    block = first.json()["conv_index"]
    assert block["usage_data_id"] >= 1
    again = client.post("/usage_data", json=ping(counts={"issues": 1}))
    assert again.status_code == 200
    assert again.json() == first.json()
    assert _count(engine, "pings") == 1
    other = client.post("/usage_data", json=ping(days_ago=7))
    assert other.status_code == 201
    assert other.json()["conv_index"]["usage_data_id"] != block["usage_data_id"]
    assert _count(engine, "pings") == 2


def test_the_ping_is_flattened_and_its_meta_kept(client: TestClient, engine: sa.Engine) -> None:
    """Numbers and booleans become rows by key path; strings stay in the raw payload only."""
    client.post("/usage_data", json=ping())
    with engine.connect() as conn:
        rows: dict[str, float] = {r.key_path: r.value for r in conn.execute(sa.text(METRICS))}
        raw = conn.execute(sa.text("SELECT payload, source, version FROM pings")).one()
    assert rows["counts.issues"] == 1200
    assert rows["counts_monthly.deployments"] == -1
    assert rows["settings.ldap_enabled"] == 1
    assert rows["license.trial"] == 0
    assert rows["active_user_count"] == 10
    assert "settings.operating_system" not in rows
    assert not any(k.startswith("meta") for k in rows)
    meta = _meta(engine)
    assert meta["counts_monthly.deployments"] == (60000.0, "MetricTimeoutError: over 60 s")
    assert meta["counts.issues"] == (120.5, None)
    assert json.loads(raw.payload) == ping()
    assert (raw.source, raw.version) == ("http", "16.2.0")


def test_every_metric_row_is_stored_as_sent(client: TestClient, engine: sa.Engine) -> None:
    """Hundreds of metrics, key paths with tabs, backslashes, quotes and non-ASCII text, and meta
    entries without a duration or with a long error come back from the tables as they were sent
    (PostgreSQL writes them with one COPY, SQLite with one executemany)."""
    odd = {"tab\there": 1, "back\\slash": 2.5, "quote'\"": -3, "ünïcødé ✓": 4, "nul-free": 1e300}
    many = {f"m{i:03d}": i * 1.5 for i in range(600)}
    meta = {"metrics": [
        {"key_path": "counts.m001", "duration_ms": None},
        {"key_path": "counts.tab\there", "error": "E" * 400},
        {"key_path": "counts.ünïcødé ✓", "duration_ms": 0.25, "error": "tab\tand\nnewline"},
    ]}  # fmt: skip
    answer = client.post("/usage_data", json=ping(counts={**odd, **many}, meta=meta))
    assert answer.status_code == 201
    with engine.connect() as conn:
        rows: dict[str, float] = {r.key_path: r.value for r in conn.execute(sa.text(METRICS))}
    for key, value in {**odd, **many}.items():
        assert rows[f"counts.{key}"] == value
    assert len(rows) == len(odd) + len(many) + 8  # and the 8 other numbers of ping()
    # counts.m001's entry, without a duration or an error, has nothing to keep
    assert _meta(engine) == {
        "counts.tab\there": (None, "E" * 300),
        "counts.ünïcødé ✓": (0.25, "tab\tand\nnewline"),
    }


def test_gzip_bodies_are_accepted(client: TestClient) -> None:
    """Content-Encoding: gzip is decoded."""
    body = gzip.compress(json.dumps(ping()).encode())
    response = client.post(
        "/usage_data",
        content=body,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        (b"{not json", {}, 400, "not JSON"),
        (b"[1, 2]", {}, 422, "a ping is a JSON object"),
        (json.dumps({"uuid": "u", "version": "1"}).encode(), {}, 422, "recorded_at: required"),
        (json.dumps({"recorded_at": "2026-11-21T00:00:00Z", "version": "1"}).encode(), {}, 422,
         "uuid: required"),
        (json.dumps({"uuid": "u", "recorded_at": "2026-11-21T00:00:00Z"}).encode(), {}, 422,
         "version: required"),
        (json.dumps({"uuid": "u", "version": "1", "recorded_at": "yesterday"}).encode(), {}, 422,
         "recorded_at: Invalid isoformat"),
        (json.dumps({"uuid": "u", "version": "1", "recorded_at": "2026-11-21T00:00:00"}).encode(),
         {}, 422, "has no time zone"),
        (b"{}", {"Content-Encoding": "br"}, 415, "unsupported Content-Encoding br"),
        (b"not gzip at all", {"Content-Encoding": "gzip"}, 400, "not valid gzip"),
    ],
)  # fmt: skip
def test_bad_pings_are_refused_with_the_reason(
    client: TestClient, body: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    """Each kind of bad input gets its status and a message naming the problem."""
    response = client.post(
        "/usage_data", content=body, headers={"Content-Type": "application/json", **headers}
    )
    assert response.status_code == status
    assert message in response.json()["error"]


def test_bodies_over_the_limit_get_413(engine: sa.Engine) -> None:
    """Too large as sent, or too large once decompressed (a gzip bomb): 413."""
    settings = ServiceSettings(max_body_bytes=50_000)
    with TestClient(create_app(settings, engine=engine)) as client:
        big = ping(counts={f"m{i}": i for i in range(5000)})
        assert client.post("/usage_data", json=big).status_code == 413
        bomb = gzip.compress(b'{"uuid": "' + b" " * 10_000_000 + b'"}')
        assert len(bomb) < 50_000
        response = client.post(
            "/usage_data",
            content=bomb,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        assert response.status_code == 413


def test_ingest_is_rate_limited_per_address(engine: sa.Engine) -> None:
    """Past the per-minute budget: 429 with Retry-After."""
    with TestClient(create_app(ServiceSettings(ingest_per_minute=3), engine=engine)) as client:
        codes = [client.post("/usage_data", json=ping(days_ago=i)).status_code for i in range(4)]
        assert codes == [201, 201, 201, 429]
        refused = client.post("/usage_data", json=ping(days_ago=9))
        assert int(refused.headers["Retry-After"]) >= 1


def test_errors_and_metadata_are_stored(client: TestClient, engine: sa.Engine) -> None:
    """The side endpoints store what they get, with the instance's uuid."""
    error = {"error": {"uuid": "instance-1", "message": "HTTP 503", "attempts": 5}}
    assert client.post("/usage_ping_errors", json=error).status_code == 201
    meta = {"metadata": {"uuid": "instance-1", "metrics": [{"key_path": "a", "duration_ms": 1}]}}
    assert client.post("/usage_ping_metadata", json=meta).status_code == 201
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT uuid, body FROM ping_errors")).one()
        assert stored.uuid == "instance-1"
        assert json.loads(stored.body) == error
        assert conn.execute(sa.text("SELECT uuid FROM ping_metadata")).scalar_one() == "instance-1"


def test_the_upload_page_and_endpoint(client: TestClient, engine: sa.Engine) -> None:
    """An exported file uploaded by hand is stored like a sent ping (source upload)."""
    page = client.get("/upload")
    assert page.status_code == 200
    assert 'type="file"' in page.text
    exported = json.dumps(ping(), separators=(",", ":")).encode()
    response = client.post(
        "/upload", files={"file": ("payload.json", exported, "application/json")}
    )
    assert response.status_code == 201
    assert response.json()["conv_index"]["usage_data_id"] >= 1
    again = client.post("/upload", files={"file": ("payload.json", exported, "application/json")})
    assert again.status_code == 200
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT source FROM pings")).scalar_one() == "upload"
    bad = client.post("/upload", files={"file": ("x.json", b"<html>", "text/html")})
    assert bad.status_code == 400


def test_health_and_openapi(client: TestClient) -> None:
    """/health checks the database; the OpenAPI document lists the endpoints."""
    assert client.get("/health").json() == {"status": "ok"}
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/usage_data", "/usage_ping_errors", "/usage_ping_metadata", "/upload"} <= set(paths)


def test_migrations_match_the_tables(engine: sa.Engine, client: TestClient) -> None:
    """Alembic's schema (created by create_app) is exactly the one the code declares."""
    with engine.connect() as conn:
        diff: list[Any] = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    create_app(ServiceSettings(), engine=engine)  # migrating again is a no-op


def test_the_instance_keeps_the_facts_of_its_latest_recorded_ping(
    client: TestClient, engine: sa.Engine
) -> None:
    """A newer ping replaces the facts; an older one sent late only moves last_seen on."""

    def instance() -> Any:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT * FROM instances")).one()

    first = client.post("/usage_data", json=ping(days_ago=7, version="16.1.0")).json()
    created = instance()
    assert created.version == "16.1.0"
    assert created.last_ping_id == first["conv_index"]["usage_data_id"]
    newer = client.post("/usage_data", json=ping(days_ago=0, version="16.2.0")).json()
    late = client.post("/usage_data", json=ping(days_ago=14, version="15.0.0")).json()
    assert late["conv_index"]["usage_data_id"] > newer["conv_index"]["usage_data_id"]
    final = instance()
    assert final.version == "16.2.0"
    assert final.last_ping_id == newer["conv_index"]["usage_data_id"]
    assert final.first_seen == created.first_seen
    assert final.last_seen > created.last_seen
    assert _count(engine, "instances") == 1


def test_another_instances_later_ping_does_not_hold_back_this_ones_facts(
    client: TestClient, engine: sa.Engine
) -> None:
    """Only the instance's own latest ping decides whether a ping's facts replace the stored ones:
    a later ping of another instance must not keep an instance on its old version."""
    client.post("/usage_data", json=ping("instance-b", days_ago=14, version="15.0.0"))
    client.post("/usage_data", json=ping("instance-c", days_ago=0, version="16.3.0"))
    newer = client.post("/usage_data", json=ping("instance-b", days_ago=7, version="16.1.0"))
    with engine.connect() as conn:
        b = conn.execute(sa.text("SELECT * FROM instances WHERE uuid = 'instance-b'")).one()
    assert b.version == "16.1.0"
    assert b.last_ping_id == newer.json()["conv_index"]["usage_data_id"]


def test_migration_0006_drops_the_row_keys_keeps_the_rows_and_compresses_with_lz4(
    engine: sa.Engine,
) -> None:
    """Down to 0005 (the keys exist), rows written, up again: the same rows, no foreign or primary
    key, an index on ping_id (BRIN on PostgreSQL), the partial indexes still partial (SQLite
    copies each table to drop its keys), and on PostgreSQL the payload compressed with lz4."""
    from alembic import command

    from usage_ping.collector.storage import alembic_config, migrate

    migrate(engine)
    command.downgrade(alembic_config(engine), "0005")
    tables = ("ping_metrics", "metric_meta")
    assert [len(sa.inspect(engine).get_foreign_keys(t)) for t in tables] == [1, 1]
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO pings (id, uuid, recorded_at, received_at, source, payload)"
                " VALUES (7, 'u', '2026-11-01 00:00:00', '2026-11-01 00:00:00', 'http', '{}')"
            )
        )
        conn.execute(sa.text("INSERT INTO ping_metrics VALUES (7, 'a', -1), (7, 'b', 2)"))
        conn.execute(
            sa.text("INSERT INTO metric_meta VALUES (7, 'a', 3, 'boom'), (7, 'b', 1, NULL)")
        )
    migrate(engine, "0006")
    inspector = sa.inspect(engine)
    assert [inspector.get_foreign_keys(t) for t in tables] == [[], []]
    assert [inspector.get_pk_constraint(t)["constrained_columns"] for t in tables] == [[], []]
    by_ping = {
        index["name"]: index["column_names"]
        for table in tables
        for index in inspector.get_indexes(table)
        if (index["name"] or "").endswith("_ping_id")
    }
    assert by_ping == {
        "ix_ping_metrics_ping_id": ["ping_id"],
        "ix_metric_meta_ping_id": ["ping_id"],
    }
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            access = conn.exec_driver_sql(
                "SELECT DISTINCT am.amname FROM pg_class c JOIN pg_am am ON am.oid = c.relam"
                " WHERE c.relname IN ('ix_ping_metrics_ping_id', 'ix_metric_meta_ping_id')"
            ).scalars()
            assert list(access) == ["brin"]
    where = f"{engine.dialect.name}_where"
    partial = {
        index["name"]
        for table in tables
        for index in inspector.get_indexes(table)
        if index.get("dialect_options", {}).get(where) is not None
    }
    assert partial == {"ix_ping_metrics_failed", "ix_metric_meta_errors"}
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT key_path, value FROM ping_metrics ORDER BY 1")).all()
        meta = conn.execute(sa.text("SELECT key_path, error FROM metric_meta ORDER BY 1")).all()
    assert [tuple(r) for r in rows] == [("a", -1.0), ("b", 2.0)]
    assert [tuple(r) for r in meta] == [("a", "boom"), ("b", None)]
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            methods = conn.exec_driver_sql(
                "SELECT attname, attcompression FROM pg_attribute"
                " WHERE attrelid = 'pings'::regclass AND attname IN ('payload', 'response')"
            ).all()
        assert {row.attname: row.attcompression for row in methods} == {
            "payload": "l",
            "response": "l",
        }


def test_migration_0007_names_key_paths_by_id_and_back(engine: sa.Engine) -> None:
    """Rows written at 0006 with text key paths come out of 0007 with ids numbered in key_paths
    (each path once, shared by both tables), in ping order, with the indexes on the ids; the
    downgrade gives the text back and drops key_paths."""
    from alembic import command

    from usage_ping.collector.storage import alembic_config, migrate

    migrate(engine, "0006")
    metrics = [(8, "b", 2.0), (7, "a", -1.0), (7, "b", 3.0), (9, "c.é", 4.0)]
    meta = [(7, "a", 3.0, "boom"), (8, "b", None, None), (9, "only.meta", 1.0, None)]
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO ping_metrics VALUES (:p, :k, :v)"),
            [{"p": p, "k": k, "v": v} for p, k, v in metrics],
        )
        conn.execute(
            sa.text("INSERT INTO metric_meta VALUES (:p, :k, :d, :e)"),
            [{"p": p, "k": k, "d": d, "e": e} for p, k, d, e in meta],
        )
    migrate(engine, "0007")
    with engine.connect() as conn:
        paths = {r.path: r.id for r in conn.execute(sa.text("SELECT path, id FROM key_paths"))}
        assert sorted(paths) == ["a", "b", "c.é", "only.meta"]
        ids = [
            tuple(r)
            for r in conn.execute(sa.text("SELECT ping_id, key_path_id, value FROM ping_metrics"))
        ]
        by_path = conn.execute(sa.text(f"{METRICS} ORDER BY m.ping_id, k.path")).all()
        meta_rows = conn.execute(sa.text(f"{META_0007} ORDER BY k.path")).all()
    assert [row[0] for row in ids] == [7, 7, 8, 9]  # copied in ping order (BRIN stays tight)
    assert {(p, paths[k], v) for p, k, v in metrics} == set(ids)
    assert [tuple(r) for r in by_path] == [("a", -1.0), ("b", 3.0), ("b", 2.0), ("c.é", 4.0)]
    assert [tuple(r) for r in meta_rows] == [
        ("a", 3.0, "boom"),
        ("b", None, None),
        ("only.meta", 1.0, None),
    ]
    indexes = {
        index["name"]: index["column_names"]
        for table in ("ping_metrics", "metric_meta")
        for index in sa.inspect(engine).get_indexes(table)
    }
    assert indexes == {
        "ix_ping_metrics_ping_id": ["ping_id"],
        "ix_ping_metrics_key_path": ["key_path_id", "ping_id", "value"],
        "ix_ping_metrics_failed": ["ping_id", "key_path_id"],
        "ix_metric_meta_ping_id": ["ping_id"],
        "ix_metric_meta_errors": ["key_path_id", "ping_id"],
    }
    command.downgrade(alembic_config(engine), "0006")
    assert "key_paths" not in sa.inspect(engine).get_table_names()
    with engine.connect() as conn:
        back = conn.execute(sa.text("SELECT * FROM ping_metrics ORDER BY 1, 2")).all()
        back_meta = conn.execute(sa.text("SELECT * FROM metric_meta ORDER BY 1, 2")).all()
    assert [tuple(r) for r in back] == sorted(metrics)
    assert [tuple(r) for r in back_meta] == sorted(meta, key=lambda r: (r[0], r[1]))


def test_migration_0008_packs_durations_in_a_row_per_ping_and_back(engine: sa.Engine) -> None:
    """metric_meta rows at 0007 become a ping_meta row per ping (durations as float32, in key
    path id order, out-of-range ones clipped) and metric_errors rows; entries with neither a
    duration nor an error go; the downgrade unpacks them back and merges the errors."""
    from alembic import command

    from usage_ping.collector.durations import unpack
    from usage_ping.collector.storage import alembic_config, migrate

    migrate(engine, "0007")
    meta = [
        (7, 2, 3.0, "boom"),
        (7, 1, 0.1, None),
        (7, 3, None, None),
        (8, 2, 1.5, None),
        (9, 3, None, "only an error"),
        (9, 1, 1e-50, None),
        (9, 2, 1e39, None),
    ]
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO key_paths (id, path) VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        )
        conn.execute(
            sa.text("INSERT INTO metric_meta VALUES (:p, :k, :d, :e)"),
            [{"p": p, "k": k, "d": d, "e": e} for p, k, d, e in meta],
        )
    migrate(engine)
    assert "metric_meta" not in sa.inspect(engine).get_table_names()
    with engine.connect() as conn:
        packed = {
            row.ping_id: unpack(bytes(row.key_path_ids), bytes(row.durations_ms))
            for row in conn.execute(sa.text("SELECT * FROM ping_meta"))
        }
        errors = conn.execute(sa.text("SELECT * FROM metric_errors ORDER BY ping_id")).all()
    assert {p: (ids.tolist(), ms.tolist()) for p, (ids, ms) in packed.items()} == {
        7: ([1, 2], [pytest.approx(0.1), 3.0]),
        8: ([2], [1.5]),
        9: ([1, 2], [0.0, pytest.approx(3.4e38, rel=1e-6)]),
    }
    assert [tuple(r) for r in errors] == [(7, 2, "boom"), (9, 3, "only an error")]
    assert [i["column_names"] for i in sa.inspect(engine).get_indexes("metric_errors")] == [
        ["key_path_id", "ping_id"]
    ]
    command.downgrade(alembic_config(engine), "0007")
    with engine.connect() as conn:
        back = conn.execute(sa.text("SELECT * FROM metric_meta ORDER BY 1, 2")).all()
    assert [tuple(r) for r in back] == [
        (7, 1, pytest.approx(0.1), None),
        (7, 2, 3.0, "boom"),
        (8, 2, 1.5, None),
        (9, 1, 0.0, None),
        (9, 2, pytest.approx(3.4e38, rel=1e-6), None),
        (9, 3, None, "only an error"),
    ]
    migrate(engine)
    assert _meta(engine)["c"] == (None, "only an error")


def test_key_paths_are_numbered_once_and_shared_by_pings(
    client: TestClient, engine: sa.Engine
) -> None:
    """A second ping reuses the first one's ids and numbers only its new paths; a path named
    only in meta is numbered too; the flat rows read back by name."""
    client.post("/usage_data", json=ping(days_ago=7))
    before = _count(engine, "key_paths")
    meta = {"metrics": [{"key_path": "counts.only_in_meta", "duration_ms": 2.0}]}
    client.post("/usage_data", json=ping(counts={"brand_new": 5}, meta=meta))
    with engine.connect() as conn:
        paths = list(conn.execute(sa.text("SELECT path FROM key_paths")).scalars())
        rows = conn.execute(sa.text(f"{METRICS} WHERE k.path = 'counts.brand_new'")).all()
    assert len(paths) == len(set(paths)) == before + 2
    assert {"counts.brand_new", "counts.only_in_meta"} <= set(paths)
    assert [tuple(r) for r in rows] == [("counts.brand_new", 5.0)]


def test_key_path_ids_survive_a_cleared_cache_and_a_rival_process(engine: sa.Engine) -> None:
    """Two numberers (two workers) with overlapping paths, one with a cache smaller than its
    paths: every path gets one id, the same for both, whichever numbered it first."""
    from usage_ping.collector.key_paths import KeyPathIds, key_path_id
    from usage_ping.collector.storage import migrate

    migrate(engine)
    small, other = KeyPathIds(engine, limit=3), KeyPathIds(engine)
    first = small.ids(["a", "b"])
    second = other.ids(["b", "c"], ["c", "d", "e"])
    kept = dict(first)
    third = small.ids(["c", "d", "e"])  # more than the cache holds: a new one, numbered again
    again = small.ids(["a", "b"])
    assert first["b"] == second["b"]
    assert dict(first) == kept  # a replaced cache is left as it was for its readers
    assert {k: third[k] for k in "cde"} == {k: second[k] for k in "cde"}
    assert {k: again[k] for k in "ab"} == kept
    assert _count(engine, "key_paths") == 5
    with engine.connect() as conn:
        assert key_path_id(conn, "d") == second["d"]
        assert key_path_id(conn, "unknown") is None


def test_two_workers_numbering_the_same_new_paths_at_once_agree(engine: sa.Engine) -> None:
    """Threads with their own numberers name the same 600 new paths (in different orders) at
    once: no deadlock, no error, one id per path."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    from usage_ping.collector.key_paths import KeyPathIds
    from usage_ping.collector.storage import migrate

    migrate(engine)
    paths = [f"counts.p{i:03d}" for i in range(600)]

    def number(seed: int) -> dict[str, int]:
        shuffled = random.Random(seed).sample(paths, len(paths))
        return dict(KeyPathIds(engine).ids(shuffled))

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(number, range(4)))
    assert all(result == results[0] for result in results)
    assert len(set(results[0].values())) == 600
    assert _count(engine, "key_paths") == 600


def test_the_raw_payload_is_the_text_as_sent(client: TestClient, engine: sa.Engine) -> None:
    """The body's own JSON text is kept (indentation, key order, escapes), gzip or not; a body
    that is not UTF-8 is stored as the document serialized again."""
    text = json.dumps(ping(), indent=2) + "\n"
    assert client.post("/usage_data", content=text.encode()).status_code == 201
    squeezed = gzip.compress(json.dumps(ping(days_ago=7), indent=1).encode())
    sent = client.post("/usage_data", content=squeezed, headers={"Content-Encoding": "gzip"})
    assert sent.status_code == 201
    wide = json.dumps(ping(days_ago=14)).encode("utf-16")
    assert client.post("/usage_data", content=wide).status_code == 201
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT payload FROM pings ORDER BY recorded_at")).scalars()
        oldest, middle, newest = list(stored)
    assert newest == text
    assert middle == json.dumps(ping(days_ago=7), indent=1)
    assert json.loads(oldest) == ping(days_ago=14)


@pytest.mark.parametrize("slots", [1, 3])
def test_each_worker_stores_at_most_ingest_concurrency_pings_at_once(
    engine: sa.Engine, service_settings: ServiceSettings, slots: int
) -> None:
    """Six pings sent at once: never more than ``ingest_concurrency`` are being stored, the others
    wait their turn, and every one is answered 201."""
    import threading
    import time
    from dataclasses import replace

    import httpx

    from tests.serving import serve

    app = create_app(replace(service_settings, ingest_concurrency=slots), engine=engine)
    ingestor = app.state.ingestor
    store = ingestor.ingest
    lock = threading.Lock()
    active = [0]
    most = [0]

    def counted(*args: Any, **kwargs: Any) -> Any:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        try:
            time.sleep(0.15)
            return store(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    ingestor.ingest = counted
    statuses: list[int] = []
    with serve(app) as url:

        def send(days: int) -> None:
            answer = httpx.post(f"{url}/usage_data", json=ping(days_ago=days * 7), timeout=30)
            statuses.append(answer.status_code)

        threads = [threading.Thread(target=send, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert statuses == [201] * 6
    assert most[0] == slots


def test_the_service_engine_checks_a_connection_only_after_it_sat_idle(engine: sa.Engine) -> None:
    """A connection back from work a moment ago is used as it is; one that sat unused for the
    idle time is checked first (one SELECT 1) at checkout."""
    from usage_ping.collector.storage import service_engine

    service = service_engine(engine.url, ping_after_idle=0.3)
    pings: list[Any] = []
    checked = service.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        return checked(dbapi_connection)

    service.dialect.do_ping = counted  # type: ignore[method-assign]
    try:
        for _ in range(3):  # a new connection, then twice straight back from work
            with service.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        assert pings == []
        time.sleep(0.4)
        with service.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        assert len(pings) == 1
    finally:
        service.dispose()


@pytest.mark.dialects("postgresql")
def test_a_connection_that_died_while_idle_is_replaced_at_checkout(engine: sa.Engine) -> None:
    """The database ended an idle pooled connection (as a restart does): the next checkout finds
    out and hands over a new one; the caller sees nothing."""
    from usage_ping.collector.storage import service_engine

    service = service_engine(engine.url, ping_after_idle=0.0)
    try:
        with service.connect() as conn:
            first = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        with engine.connect() as admin:
            admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        time.sleep(0.1)
        with service.connect() as conn:
            second = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        assert second != first
    finally:
        service.dispose()


@pytest.mark.dialects("postgresql")
def test_a_ping_whose_connection_died_in_use_is_stored_on_a_new_one(
    engine: sa.Engine, service_settings: ServiceSettings
) -> None:
    """A connection ended between two pings and not checked (back from work too recently) fails
    the second ping's first statement: the ingest stores it on a new connection, once."""
    from usage_ping.collector.storage import service_engine

    service = service_engine(engine.url, ping_after_idle=3600)
    try:
        with TestClient(create_app(service_settings, engine=service)) as client:
            assert client.post("/usage_data", json=ping(days_ago=7)).status_code == 201
            with engine.connect() as admin:
                admin.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
            time.sleep(0.1)
            answer = client.post("/usage_data", json=ping())
            assert answer.status_code == 201
        assert _count(engine, "pings") == 2
    finally:
        service.dispose()
