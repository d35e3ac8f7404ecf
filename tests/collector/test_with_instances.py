"""Instances sending to the real central service, served by uvicorn on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.instance_files import make_instance
from tests.serving import serve
from usage_ping.cli import main
from usage_ping.collector.app import create_app
from usage_ping.collector.settings import ServiceSettings
from usage_ping.delivery.transport import Transport
from usage_ping.instance import UsagePing
from usage_ping.state import outbox_table


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[str, sa.Engine]]:
    """The service on SQLite, served by uvicorn in a thread; yields its URL and database."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'service.db'}")
    app = create_app(ServiceSettings(), engine=engine)
    with serve(app) as url:
        yield url, engine
    engine.dispose()


@pytest.mark.swallows
def test_submit_to_the_real_service_and_report_the_score(
    service: tuple[str, sa.Engine], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ping sent by usage-ping submit is stored, scored, and the report shows the score."""
    url, engine = service
    (tmp_path / "instance").mkdir()
    config = make_instance(tmp_path / "instance", extra_config=f"collector_url: {url}\n")
    assert main(["--config", str(config), "submit"]) == 0
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT uuid, version, score FROM pings")).one()
    ping = UsagePing.from_config(config)
    assert stored.uuid == ping.state.uuid
    assert stored.version == "3.2.1"
    assert main(["--config", str(config), "report"]) == 0
    report = capsys.readouterr().out
    assert "DevOps score" in report
    assert "merge_requests" in report  # the default score card's features


@pytest.mark.swallows
def test_a_resend_after_a_lost_answer_is_stored_once(
    service: tuple[str, sa.Engine], tmp_path: Path
) -> None:
    """sent_at lost (as after a crash): the next run resends, the service answers the same id."""
    url, engine = service
    (tmp_path / "instance").mkdir()
    config = make_instance(tmp_path / "instance", extra_config=f"collector_url: {url}\n")
    ping = UsagePing.from_config(config)
    with Transport(url) as transport:
        first = ping.submit(transport)
    assert first.status == "sent"
    with ping.engine.begin() as conn:  # forget the delivery
        conn.execute(outbox_table.update().values(sent_at=None, usage_data_id=None))
    with Transport(url) as transport:
        again = ping.submit(transport)
    assert again.status == "sent"
    assert again.sent[0].usage_data_id == first.sent[0].usage_data_id
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM pings")).scalar_one() == 1
        assert conn.execute(sa.text("SELECT count(*) FROM ping_metadata")).scalar_one() == 2


@pytest.mark.swallows
def test_an_exported_file_uploaded_by_hand(service: tuple[str, sa.Engine], tmp_path: Path) -> None:
    """usage-ping export, then the upload endpoint: stored with source upload."""
    import httpx

    url, engine = service
    (tmp_path / "instance").mkdir()
    config = make_instance(tmp_path / "instance")
    out = tmp_path / "payload.json"
    assert main(["--config", str(config), "export", "--out", str(out)]) == 0
    response = httpx.post(
        f"{url}/upload", files={"file": ("payload.json", out.read_bytes(), "application/json")}
    )
    assert response.status_code == 201
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT source FROM pings")).scalar_one() == "upload"
