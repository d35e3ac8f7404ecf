"""schemathesis against the service's own OpenAPI, on SQLite: no 5xx for any generated input.

Every operation of ``create_app`` (ingest, upload, health, the BI API with a valid token) gets the
examples, coverage and fuzzing phases: 50 generated requests each plus the boundary cases,
derandomized so that a run is repeatable. The BI API is also checked against its own response
models. Below, inputs that made the service answer 500 before (found by probing around what the
fuzzer generates), kept as regression tests.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import settings

from tests.collector.conftest import ping
from tests.collector.test_api import TOKEN, token_app
from usage_ping.collector.app import create_app
from usage_ping.collector.settings import ServiceSettings

AUTH = {"Authorization": f"Bearer {TOKEN}"}

# The ingest endpoints read their body themselves, so their OpenAPI operations declare none;
# these describe what they accept, so that schemathesis generates bodies for them.
_PING = {
    "type": "object",
    "required": ["uuid", "recorded_at", "version"],
    "properties": {
        "uuid": {"type": "string", "minLength": 1, "maxLength": 64},
        "recorded_at": {"type": "string", "format": "date-time"},
        "version": {"type": "string", "minLength": 1},
        "active_user_count": {"type": "integer"},
        "counts_monthly": {"type": "object", "additionalProperties": {"type": "number"}},
        "meta": {
            "type": "object",
            "properties": {
                "metrics": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "key_path": {"type": "string"},
                            "duration_ms": {"type": "number"},
                            "error": {"type": "string"},
                        },
                    },
                }
            },
        },
    },
}
_REPORT = {
    "type": "object",
    "properties": {"uuid": {"type": "string"}, "message": {"type": "string"}},
}
BODIES = {
    "/usage_data": _PING,
    "/usage_ping_errors": {"type": "object", "properties": {"error": _REPORT}},
    "/usage_ping_metadata": {"type": "object", "properties": {"metadata": _REPORT}},
}
EXAMPLES = {"uuid": "fuzz-1", "id": 1, "key_path": "counts_monthly.issues"}
"""Path parameters that exist in the seeded database, for the examples phase."""


def with_bodies(document: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with the ingest bodies and path examples added."""
    document = copy.deepcopy(document)
    for path, schema in BODIES.items():
        document["paths"][path]["post"]["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    for operations in document["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] in EXAMPLES:
                    parameter["example"] = EXAMPLES[parameter["name"]]
    return document


CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {"enabled": False, "not_a_server_error": {"enabled": True}},
    }
)


def _openapi() -> dict[str, Any]:
    engine = sa.create_engine("sqlite://")  # the document does not depend on the data
    try:
        return create_app(ServiceSettings(), engine=engine).openapi()
    finally:
        engine.dispose()


API_CHECKS = [
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]
"""The BI API also answers exactly as its OpenAPI says (the ingest endpoints document less)."""

schema = schemathesis.openapi.from_dict(with_bodies(_openapi()), config=CONFIG)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """The whole service on a fresh SQLite file with a few pings (shared by all operations)."""
    path: Path = tmp_path_factory.mktemp("fuzz") / "service.sqlite3"
    engine = sa.create_engine(f"sqlite:///{path}")
    app = token_app(engine, TOKEN)
    with TestClient(app) as client:
        for n in range(3):
            assert client.post(
                "/usage_data", json=ping(uuid=f"fuzz-{n}", days_ago=7 * n)
            ).is_success
    yield app
    engine.dispose()


@schema.parametrize()
@settings(max_examples=50, deadline=None, derandomize=True, database=None)
def test_no_input_makes_the_service_fail(case: schemathesis.Case[Any], service: FastAPI) -> None:
    """Any request the OpenAPI allows, or nearly allows, gets an answer below 500."""
    extra = API_CHECKS if case.operation.path.startswith("/api/") else []
    case.call_and_validate(app=service, headers=AUTH, additional_checks=extra)


# -- 500s found, reported, kept until fixed ----------------------------------------------------


def _post(app: FastAPI, path: str, body: str | bytes) -> int:
    with TestClient(app) as client:
        response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    return response.status_code


@pytest.mark.parametrize("recorded_at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_recorded_at_outside_the_utc_calendar_is_422(service: FastAPI, recorded_at: str) -> None:
    """A ping whose recorded_at cannot be expressed in UTC is refused, naming the field."""
    document = {"uuid": "edge", "version": "1", "recorded_at": recorded_at}
    assert _post(service, "/usage_data", json.dumps(document)) == 422


@pytest.mark.parametrize("path", ["/usage_data", "/usage_ping_errors", "/usage_ping_metadata"])
def test_json_nested_past_the_recursion_limit_is_400(service: FastAPI, path: str) -> None:
    """A body of 100,000 nested arrays (600 KB, under the size limit) is not a server error."""
    assert _post(service, path, "[" * 100_000 + "]" * 100_000) == 400


def test_an_integer_too_long_to_parse_is_400(service: FastAPI) -> None:
    """A number Python refuses to parse makes the body not JSON for the service."""
    body = '{"uuid": "u", "version": "1", "recorded_at": "2026-11-21T00:00:00Z", "n": '
    assert _post(service, "/usage_data", body + "9" * 5000 + "}") == 400


@pytest.mark.dialects("postgresql")
@pytest.mark.parametrize(
    ("path", "document", "expected"),
    [
        ("/usage_data", {"uuid": "a\x00b"}, 422),  # identity fields are refused
        ("/usage_data", {"version": "16\x00"}, 422),
        ("/usage_data", {"hostname": "git\x00lab"}, 201),  # stored without the NUL
        ("/usage_data", {"counts": {"a\x00b": 1}}, 201),  # raw payload only, no flat row
        ("/usage_ping_errors", {"error": {"uuid": "a\x00b"}}, 201),
    ],
)
def test_nul_characters_never_reach_postgresql_text(
    engine: sa.Engine, path: str, document: dict[str, Any], expected: int
) -> None:
    """PostgreSQL text cannot hold NUL: refused in the identity, dropped elsewhere; never a 500."""
    body = {"uuid": "nul", "version": "1", "recorded_at": "2026-11-21T00:00:00Z", **document}
    status = _post(token_app(engine), path, json.dumps(body))
    assert status == expected
