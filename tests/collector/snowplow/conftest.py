"""The collector with its Micro API on, in-process (TestClient) and served by uvicorn."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
import uvicorn
from fastapi.testclient import TestClient

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(engine: sa.Engine, snowplow_settings: SnowplowSettings) -> Iterator[str]:
    """The service served by uvicorn on a loopback port; yields its URL."""
    app = create_app(ServiceSettings(snowplow=snowplow_settings), engine=engine)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
