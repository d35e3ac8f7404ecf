"""Submitting end to end against real HTTP on loopback: exactly once, whatever goes wrong.

The fake versions app (``tests.delivery.http_server``) deduplicates on uuid + recorded_at, as the
central service does; "arrives exactly once" means it stored one ping.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.delivery.http_server import Down, Fail, Hang, Malformed, PingServer, ServerProcess
from tests.instance_files import make_instance
from usage_ping.cli import main
from usage_ping.delivery.schedule import next_run
from usage_ping.delivery.transport import Transport
from usage_ping.instance import UsagePing

REPO = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def server() -> Iterator[PingServer]:
    with PingServer() as running:
        yield running


def _instance(root: Path, url: str, clock: Clock | None = None, extra: str = "") -> UsagePing:
    config = make_instance(root, extra_config=f"collector_url: {url}\n{extra}")
    return UsagePing.from_config(config, **({"clock": clock} if clock else {}))


def _fast(url: str, **options: Any) -> Transport:
    return Transport(url, sleep=lambda _: None, read_timeout=options.pop("read_timeout", 2.0),
                     **options)  # fmt: skip


@pytest.mark.swallows
def test_a_run_builds_stores_and_sends_once_a_day(server: PingServer, tmp_path: Path) -> None:
    """Built into the outbox, sent, acknowledged; a second run the same day does nothing."""
    clock = Clock(datetime.now(UTC))
    ping = _instance(tmp_path, server.url, clock)
    result = ping.submit(_fast(server.url))
    assert result.status == "sent"
    assert result.built is not None
    [ping_stored] = server.pings
    assert ping_stored["uuid"] == ping.state.uuid
    [row] = ping.outbox.rows()
    assert row.sent_at is not None
    assert row.usage_data_id == 1
    assert row.response is not None
    assert row.response["conv_index"]["usage_data_id"] == 1
    # Exactly the stored bytes went over the wire (gzip decoded by the server).
    assert server.requests_to("/usage_data")[0].body == row.body
    # The per-metric meta went to /usage_ping_metadata too.
    assert server.metadata[0]["metadata"]["uuid"] == ping.state.uuid
    again = ping.submit(_fast(server.url))
    assert again.status == "nothing to send"
    assert len(server.requests_to("/usage_data")) == 1
    clock.now += timedelta(days=1)
    assert ping.submit(_fast(server.url)).status == "sent"
    assert len(server.pings) == 2


@pytest.mark.swallows
def test_down_for_n_attempts_then_up_arrives_once(server: PingServer, tmp_path: Path) -> None:
    """Resets, a 503 and a refused port, then the service answers: one ping, 5 attempts."""
    ping = _instance(tmp_path, server.url)
    server.play(Down(), Fail(503), Down())
    waits: list[float] = []

    def sleep(delay: float) -> None:
        waits.append(delay)
        if len(waits) == 3:
            server.down()
        if len(waits) == 4:
            server.up()

    result = ping.submit(Transport(server.url, sleep=sleep, max_attempts=6))
    assert result.status == "sent"
    assert len(server.pings) == 1
    assert ping.outbox.rows()[0].attempts == 5


@pytest.mark.swallows
def test_an_unreachable_service_keeps_the_payload_for_the_next_run(
    server: PingServer, tmp_path: Path
) -> None:
    """All attempts fail: the row stays pending with its error; next week both are sent."""
    clock = Clock(datetime.now(UTC))
    ping = _instance(tmp_path, server.url, clock)
    server.down()
    result = ping.submit(_fast(server.url, max_attempts=3))
    assert result.status == "failed"
    [row] = ping.outbox.pending()
    assert row.attempts == 3
    assert row.last_error == "ConnectError"
    server.up()
    clock.now += timedelta(days=7)  # a missed week is sent, not skipped
    result = ping.submit(_fast(server.url))
    assert result.status == "sent"
    assert len(result.sent) == 2
    stored = [p["recorded_at"] for p in server.pings]
    assert stored == sorted(stored)  # oldest first
    assert ping.outbox.pending() == []


@pytest.mark.swallows
@pytest.mark.parametrize(
    ("step", "expected_attempts"),
    [
        (Fail(500), 2),
        (Fail(429, headers={"Retry-After": "3"}), 2),
        (Malformed(), 2),
        (Malformed('{"conv_index": {}}', content_type="application/json"), 2),
        (Hang(1.5), 2),  # past the read timeout: retried; the late first copy is deduplicated
    ],
)
def test_transient_failures_are_retried_and_stored_once(
    server: PingServer, tmp_path: Path, step: Any, expected_attempts: int
) -> None:
    """A 500, a 429 with Retry-After, malformed answers and a timeout: one stored ping."""
    ping = _instance(tmp_path, server.url)
    server.play(step)
    waits: list[float] = []
    transport = Transport(server.url, sleep=waits.append, read_timeout=0.5)
    result = ping.submit(transport)
    assert result.status == "sent"
    assert ping.outbox.rows()[0].attempts == expected_attempts
    if isinstance(step, Fail) and step.status == 429:
        assert waits == [3.0]
    if isinstance(step, Hang):
        server.wait_until(lambda s: len(s.requests_to("/usage_data")) == 2)
        time.sleep(1.2)  # the hung copy is stored after its wait: still one ping
    assert len(server.pings) == 1


@pytest.mark.swallows
def test_a_refused_payload_is_given_up_and_reported(server: PingServer, tmp_path: Path) -> None:
    """400: no retry, the row is given up (not resent next run) and the error is reported."""
    clock = Clock(datetime.now(UTC))
    ping = _instance(tmp_path, server.url, clock)
    server.play(Fail(400))
    result = ping.submit(_fast(server.url))
    assert result.status == "failed"
    [row] = ping.outbox.rows()
    assert (row.given_up, row.attempts, row.last_error) == (True, 1, "HTTP 400")
    [reported] = server.errors
    assert reported["error"]["message"] == "HTTP 400"
    assert reported["error"]["uuid"] == ping.state.uuid
    clock.now += timedelta(days=7)
    result = ping.submit(_fast(server.url))
    assert len(result.sent) == 1  # only the new week's payload
    assert len(server.pings) == 1


def test_disabled_builds_and_sends_nothing(server: PingServer, tmp_path: Path) -> None:
    """Switched off: no outbox row, no request."""
    ping = _instance(tmp_path, server.url)
    ping.disable()
    assert ping.submit(_fast(server.url)).status == "disabled"
    assert ping.outbox.rows() == []
    assert server.requests == []


# -- crashes and concurrent processes ----------------------------------------------------------

_CRASH = textwrap.dedent(
    """
    import os, signal, sys
    from usage_ping.delivery.outbox import Outbox
    from usage_ping.delivery.transport import Transport
    from usage_ping.cli import main

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    target = {"send": Transport, "mark_sent": Outbox}[sys.argv[2]]
    setattr(target, sys.argv[2], die)
    main(["--config", sys.argv[1], "submit"])
    """
)


def _submit_process(config: Path, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", _CRASH, str(config), crash_at] if crash_at else [
        sys.executable, "-m", "usage_ping.cli", "--config", str(config), "submit",
    ]  # fmt: skip
    return subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("crash_at", ["send", "mark_sent"])
def test_a_process_killed_mid_submit_delivers_exactly_once_after_restart(
    tmp_path: Path, crash_at: str
) -> None:
    """Killed between build and send, or between send and sent_at: one ping after a restart.

    The service runs in its own process, as it would in production.
    """
    service = ServerProcess()
    try:
        config = make_instance(tmp_path, extra_config=f"collector_url: {service.url}\n")
        crashed = _submit_process(config, crash_at)
        assert crashed.returncode == -signal.SIGKILL
        ping = UsagePing.from_config(config)
        [row] = ping.outbox.pending()  # built and committed before the crash
        expected_before = 0 if crash_at == "send" else 1
        assert len(service.pings) == expected_before
        restarted = _submit_process(config)
        assert restarted.returncode == 0, restarted.stderr
        assert len(service.pings) == 1
        assert service.pings[0]["recorded_at"] == row.payload()["recorded_at"]
        assert len([r for r in service.requests if r.path == "/usage_data"]) == 1 + expected_before
        [sent] = ping.outbox.rows()
        assert sent.sent_at is not None
    finally:
        service.stop()


def test_two_processes_at_the_same_moment_make_one_payload(tmp_path: Path) -> None:
    """Two submits started together (a slow metric keeps the first busy): one payload."""
    service = ServerProcess()
    try:
        config = make_instance(tmp_path, extra_config=f"collector_url: {service.url}\n")
        slow = tmp_path / "metrics" / "slow.yml"
        slow.write_text(
            (tmp_path / "metrics" / "version.yml").read_text()
            .replace("settings.answer", "settings.slow")
            .replace("targets:constant", "targets:hang")
            .replace("value: 42", "seconds: 1.5")
        )  # fmt: skip
        command = [sys.executable, "-m", "usage_ping.cli", "--config", str(config), "submit"]
        processes = [
            subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True) for _ in range(2)
        ]
        codes = sorted(p.wait(timeout=120) for p in processes)
        for p in processes:
            assert p.stderr is not None
            p.stderr.close()
        assert codes in ([0, 0], [0, 4])  # the second is busy, or finds today's payload sent
        assert len(service.pings) == 1
        assert len(UsagePing.from_config(config).outbox.rows()) == 1
    finally:
        service.stop()


# -- export, report, schedule -------------------------------------------------------------------


def test_export_writes_exactly_what_would_be_sent(server: PingServer, tmp_path: Path) -> None:
    """The exported file is the outbox body; the row is not sent too; uploading it works."""
    ping = _instance(tmp_path, server.url)
    out = tmp_path / "payload.json"
    row = ping.export(out)
    assert row is not None
    assert out.read_bytes() == row.body
    assert row.exported_at is not None
    assert ping.submit(_fast(server.url)).status == "nothing to send"
    assert server.requests == []
    delivered = _fast(server.url).send(out.read_bytes())  # the admin's upload, by hand
    assert delivered.usage_data_id == 1
    assert json.loads(out.read_bytes())["uuid"] == ping.state.uuid


@pytest.mark.swallows
def test_cli_submit_report_and_schedule(
    server: PingServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """submit exits 0 and says what it did; report shows the score table; schedule the slot."""
    config = make_instance(tmp_path, extra_config=f"collector_url: {server.url}\n")
    assert main(["--config", str(config), "report"]) == 0
    assert "no DevOps score yet" in capsys.readouterr().out
    assert main(["--config", str(config), "submit"]) == 0
    assert "sent 1 (usage_data_id 1)" in capsys.readouterr().err
    assert main(["--config", str(config), "report"]) == 0
    report = capsys.readouterr().out
    assert report.startswith("DevOps score ")
    assert "usage_data_id 1" in report
    lines = report.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("feature"))
    assert lines[header].split() == ["feature", "leader", "instance", "percentage"]
    assert any(line.split()[:3] == ["issues", "9.1", "4.5"] for line in lines)
    assert main(["--config", str(config), "schedule"]) == 0
    schedule = capsys.readouterr().out
    ping = UsagePing.from_config(config)
    slot = ping.slot()
    assert f"slot        {slot.describe()}" in schedule
    assert f"crontab     {slot.cron()} usage-ping submit" in schedule


def test_cli_submit_exit_codes(server: PingServer, tmp_path: Path) -> None:
    """2 when sending failed (kept for the next run), 3 when disabled."""
    config = make_instance(
        tmp_path, extra_config=f"collector_url: {server.url}\nsend_attempts: 1\n"
    )
    server.play(Fail(503))
    assert main(["--config", str(config), "submit"]) == 2
    assert main(["--config", str(config), "disable"]) == 0
    assert main(["--config", str(config), "submit"]) == 3


def test_no_collector_url_says_how_to_fix_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a central service URL, submit fails with a clear message; the payload is kept."""
    config = make_instance(tmp_path)
    assert main(["--config", str(config), "submit"]) == 1
    assert "no collector_url" in capsys.readouterr().err
    assert len(UsagePing.from_config(config).outbox.pending()) == 1


@pytest.mark.swallows
def test_the_in_process_scheduler_runs_submit(server: PingServer, tmp_path: Path) -> None:
    """start_scheduler: the job is due at the instance's slot; run now, the ping arrives."""
    ping = _instance(tmp_path, server.url)
    scheduler = ping.start_scheduler(splay_seconds=60)
    try:
        [job] = scheduler.get_jobs()
        due = next_run(ping.slot(), datetime.now(UTC))
        assert due <= job.next_run_time <= due + timedelta(seconds=60)
        assert not server.pings
        job.modify(next_run_time=datetime.now(UTC))
        assert server.wait_until(lambda s: len(s.pings) == 1, timeout=30)
    finally:
        scheduler.shutdown()
