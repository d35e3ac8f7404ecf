"""The collector with its Micro API on, in-process (TestClient) and served by uvicorn."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.serving import serve
from usage_ping.collector.app import create_app
from usage_ping.collector.settings import ServiceSettings, SnowplowSettings

TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
EVENT_ID = "6c3f4a1e-2b5d-4e8f-9a0b-1c2d3e4f5a6b"


def event(**fields: str) -> dict[str, str]:
    """A struct event's fields as a tracker sends them (strings), with ``fields`` on top."""
    base = {
        "e": "se",
        "p": "srv",
        "tv": "py-1.1.0",
        "tna": "test",
        "aid": "app",
        "eid": EVENT_ID,
        "dtm": "1700000000000",
        "stm": "1700000001000",
        "se_ca": "issues",
        "se_ac": "create",
    }
    base.update(fields)
    return base


def batch(*events: dict[str, Any]) -> dict[str, Any]:
    """A tp2 POST body."""
    return {"schema": PAYLOAD_DATA, "data": list(events)}


@pytest.fixture
def snowplow_settings() -> SnowplowSettings:
    return SnowplowSettings(micro=True)


@pytest.fixture
def client(engine: sa.Engine, snowplow_settings: SnowplowSettings) -> Iterator[TestClient]:
    app = create_app(ServiceSettings(snowplow=snowplow_settings), engine=engine)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def served(engine: sa.Engine, snowplow_settings: SnowplowSettings) -> Iterator[str]:
    """The service served by uvicorn on a loopback port; yields its URL."""
    app = create_app(ServiceSettings(snowplow=snowplow_settings), engine=engine)
    with serve(app) as url:
        yield url
