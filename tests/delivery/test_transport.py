"""The transport against a real HTTP server on loopback: retries, backoff, Retry-After, gzip."""

from __future__ import annotations

import gzip
import json
import logging
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.delivery.http_server import (
    CONV_INDEX_SCORES,
    Down,
    Fail,
    Hang,
    Malformed,
    PingServer,
    ServerProcess,
    Step,
    step_from_json,
    step_to_json,
)
from usage_ping import __version__
from usage_ping.delivery.transport import (
    Delivered,
    SendError,
    Transport,
    backoff_ceiling,
    backoff_delay,
)

SECRET = "do-not-log-this-value"


def ping_body(recorded_at: str = "2026-11-23T10:00:00.000Z", padding: int = 0) -> bytes:
    """A small payload as the instance would send it (UTF-8 JSON), with an optional filler."""
    payload = {
        "uuid": "0c1b1b7e-8f35-4a3e-9d0b-6f6b3c2a9e11",
        "recorded_at": recorded_at,
        "hostname": "gitlab.example.com",
        "counts": {"issues": 12, "notes": 40},
        "secret_note": SECRET,
        "filler": "x" * padding,
    }
    return json.dumps(payload).encode()


def constant(value: float) -> Callable[[], float]:
    """A stand-in for random.random that always returns ``value``."""
    return lambda: value


def json_body(document: Any, status: int = 200) -> Malformed:
    """A 2xx answer with this JSON document as its body."""
    return Malformed(json.dumps(document), status=status, content_type="application/json")


@pytest.fixture
def server() -> Iterator[PingServer]:
    """A fake central service on an ephemeral loopback port."""
    with PingServer() as running:
        yield running


@pytest.fixture
def sleeps() -> list[float]:
    """The waits the transport asked for (the injected sleep records instead of sleeping)."""
    return []


@pytest.fixture
def make_transport(server: PingServer, sleeps: list[float]) -> Iterator[Callable[..., Transport]]:
    """Build transports to ``server`` that record their sleeps and use a fixed jitter of 0.5."""
    made: list[Transport] = []

    def make(**options: Any) -> Transport:
        options.setdefault("sleep", sleeps.append)
        options.setdefault("random", constant(0.5))
        transport = Transport(options.pop("base_url", server.url), **options)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.close()


# -- success ----------------------------------------------------------------------------------


def test_send_returns_the_acknowledgement_of_the_service(
    server: PingServer, make_transport: Callable[..., Transport], sleeps: list[float]
) -> None:
    """A 201 with conv_index.usage_data_id gives Delivered with the id, the response and status."""
    delivered = make_transport().send(ping_body())

    assert delivered == Delivered(
        usage_data_id=1,
        response={"conv_index": {"usage_data_id": 1, **CONV_INDEX_SCORES}},
        attempts=1,
        status=201,
    )
    assert sleeps == []
    (request,) = server.requests
    assert request.method == "POST"
    assert request.path == "/usage_data"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == f"usage-ping/{__version__}"
    assert request.json == json.loads(ping_body())


def test_base_url_may_end_with_a_slash(
    server: PingServer, make_transport: Callable[..., Transport]
) -> None:
    """A trailing slash on the base URL does not double the slash of the path."""
    make_transport(base_url=server.url + "/").send(ping_body())
    assert [request.path for request in server.requests] == ["/usage_data"]


def test_body_above_the_threshold_is_sent_gzipped(
    server: PingServer, make_transport: Callable[..., Transport]
) -> None:
    """Past gzip_above bytes the body is gzip-compressed and the service decodes the same JSON."""
    body = ping_body(padding=5000)
    make_transport(gzip_above=1024).send(body)

    (request,) = server.requests
    assert request.headers["content-encoding"] == "gzip"
    assert len(request.raw_body) < len(body)
    assert gzip.decompress(request.raw_body) == body
    assert request.json == json.loads(body)
    assert server.pings == [json.loads(body)]


def test_body_up_to_the_threshold_is_sent_plain(
    server: PingServer, make_transport: Callable[..., Transport]
) -> None:
    """A body of exactly gzip_above bytes (or fewer) goes uncompressed."""
    body = ping_body()
    make_transport(gzip_above=len(body)).send(body)

    (request,) = server.requests
    assert "content-encoding" not in request.headers
    assert request.raw_body == body


def test_dev_ops_score_block_is_accepted_like_gitlab(
    server: PingServer, make_transport: Callable[..., Transport]
) -> None:
    """GitLab also reads the id from dev_ops_score.usage_data_id; so does the transport."""
    server.play(json_body({"dev_ops_score": {"usage_data_id": 42}}))
    assert make_transport().send(ping_body()).usage_data_id == 42


# -- retried failures -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429])
def test_retryable_status_is_retried_then_succeeds(
    status: int,
    server: PingServer,
    make_transport: Callable[..., Transport],
    sleeps: list[float],
) -> None:
    """5xx, 408 and 429 are retried after the computed backoff; the second attempt succeeds."""
    server.play(Fail(status))
    delivered = make_transport().send(ping_body())

    assert delivered.attempts == 2
    assert delivered.usage_data_id == 1
    assert sleeps == [0.5]  # random() 0.5 x min(cap, base 1.0 * 2**0)
    assert len(server.requests) == 2


def test_retry_after_in_seconds_replaces_the_backoff(
    server: PingServer, make_transport: Callable[..., Transport], sleeps: list[float]
) -> None:
    """429 with Retry-After: 7 makes the transport wait exactly 7 seconds."""
    server.play(Fail(429, headers={"Retry-After": "7"}))
    assert make_transport().send(ping_body()).attempts == 2
    assert sleeps == [7.0]


def test_retry_after_as_an_http_date(
    server: PingServer, make_transport: Callable[..., Transport], sleeps: list[float]
) -> None:
    """503 with Retry-After as an HTTP date waits until that date (one-second resolution)."""
    server.play(Fail(503, headers={"Retry-After": formatdate(time.time() + 30, usegmt=True)}))
    make_transport().send(ping_body())

    (delay,) = sleeps
    assert 28.0 < delay <= 30.0


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        ("99999", 120.0),  # capped at retry_after_cap
        ("0", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: go now
        ("soon", 0.5),  # unreadable: the computed backoff
        ("-5", 0.5),
    ],
)
def test_retry_after_is_capped_and_unreadable_values_are_ignored(
    retry_after: str,
    expected: float,
    server: PingServer,
    make_transport: Callable[..., Transport],
    sleeps: list[float],
) -> None:
    """Retry-After never makes the transport wait past retry_after_cap; garbage is ignored."""
    server.play(Fail(429, headers={"Retry-After": retry_after}))
    make_transport(retry_after_cap=120.0).send(ping_body())
    assert sleeps == [expected]


def test_retry_after_on_the_last_attempt_causes_no_sleep(
    server: PingServer, make_transport: Callable[..., Transport], sleeps: list[float]
) -> None:
    """Even when the service asks to wait, nothing waits after the last attempt."""
    server.play(*[Fail(429, headers={"Retry-After": "30"})] * 2)
    with pytest.raises(SendError) as caught:
        make_transport(max_attempts=2).send(ping_body())
    assert caught.value.retryable
    assert caught.value.status == 429
    assert sleeps == [30.0]


def test_read_timeout_is_retried(
    server: PingServer, make_transport: Callable[..., Transport], sleeps: list[float]
) -> None:
    """A service that hangs past read_timeout costs one attempt; the retry gets through."""
    server.play(Hang(5.0))
    started = time.monotonic()
    delivered = make_transport(read_timeout=0.4).send(ping_body())

    assert time.monotonic() - started < 3.0
    assert delivered.attempts == 2
    assert len(sleeps) == 1


def test_timeouts_give_up_with_the_exception_name(
    server: PingServer, make_transport: Callable[..., Transport]
) -> None:
    """When every attempt times out, the reason is the httpx exception's name."""
    server.play(Hang(5.0), Hang(5.0))
    with pytest.raises(SendError) as caught:
        make_transport(read_timeout=0.1, max_attempts=2).send(ping_body())
    assert caught.value.last_error == "ReadTimeout"
    assert caught.value.status is None
    assert caught.value.retryable


def test_refused_connections_are_retried_until_the_service_is_up(
    server: PingServer, make_transport: Callable[..., Transport]
) -> None:
    """The port refuses connections for two attempts, then the service comes back."""
    waits: list[float] = []

    def sleep(delay: float) -> None:
        waits.append(delay)
        if len(waits) == 2:
            server.up()

    server.down()
    delivered = make_transport(sleep=sleep).send(ping_body())

    assert delivered.attempts == 3
    assert len(server.requests) == 1
    assert len(server.pings) == 1


def test_reset_connections_are_retried(
    server: PingServer, make_transport: Callable[..., Transport]
) -> None:
    """Connections dropped without a response (the Down step) count as failed attempts."""
    server.play(Down(), Down())
    delivered = make_transport().send(ping_body())

    assert delivered.attempts == 3
    assert len(server.pings) == 1


def test_unreachable_service_gives_up_after_max_attempts(
    server: PingServer, make_transport: Callable[..., Transport], sleeps: list[float]
) -> None:
    """Connection refused on every attempt: SendError(retryable=True), no sleep after the last."""
    server.down()
    with pytest.raises(SendError) as caught:
        make_transport(max_attempts=3).send(ping_body())

    error = caught.value
    assert (error.attempts, error.last_error, error.retryable, error.status) == (
        3,
        "ConnectError",
        True,
        None,
    )
    assert len(sleeps) == 2


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (Malformed(), "malformed response: not JSON"),
        (Malformed("", status=204), "malformed response: not JSON"),
        (json_body([1, 2]), "malformed response: not a JSON object"),
        (json_body({"ok": True}), "malformed response: no conv_index.usage_data_id"),
        (json_body({"conv_index": {}}, 201), "malformed response: no conv_index.usage_data_id"),
        (json_body({"conv_index": 7}), "malformed response: no conv_index.usage_data_id"),
        *[
            (
                json_body({"conv_index": {"usage_data_id": bad}}),
                "malformed response: conv_index.usage_data_id is not a positive integer",
            )
            for bad in (0, -3, "abc", "42", 1.5, True, None)
        ],
    ],
)
def test_malformed_acknowledgement_is_retried_and_finally_fails(
    answer: Malformed,
    reason: str,
    server: PingServer,
    make_transport: Callable[..., Transport],
    sleeps: list[float],
) -> None:
    """A 2xx without a positive integer conv_index.usage_data_id is a failed attempt."""
    server.play(*[answer] * 3)
    with pytest.raises(SendError) as caught:
        make_transport(max_attempts=3).send(ping_body())

    error = caught.value
    assert (error.attempts, error.last_error, error.retryable) == (3, reason, True)
    assert error.status == answer.status
    assert reason in str(error)
    assert len(sleeps) == 2


def test_malformed_acknowledgement_then_a_good_one(
    server: PingServer, make_transport: Callable[..., Transport]
) -> None:
    """After a malformed 2xx the resend is acknowledged with the service's (deduplicated) id."""
    server.play(json_body({"conv_index": {"usage_data_id": "abc"}}))
    delivered = make_transport().send(ping_body())
    assert (delivered.attempts, delivered.usage_data_id) == (2, 1)


# -- refused for good -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413, 422])
def test_client_error_is_not_retried(
    status: int,
    server: PingServer,
    make_transport: Callable[..., Transport],
    sleeps: list[float],
) -> None:
    """A 4xx other than 408 and 429 raises at once with retryable=False."""
    server.play(Fail(status))
    with pytest.raises(SendError) as caught:
        make_transport().send(ping_body())

    error = caught.value
    assert (error.attempts, error.last_error, error.retryable, error.status) == (
        1,
        f"HTTP {status}",
        False,
        status,
    )
    assert sleeps == []
    assert len(server.requests) == 1


def test_redirect_is_not_followed_nor_retried(
    server: PingServer, make_transport: Callable[..., Transport]
) -> None:
    """A 3xx (a misconfigured base URL) is refused at once and names where it points."""
    server.play(Fail(308, headers={"Location": "https://elsewhere.example/usage_data"}))
    with pytest.raises(SendError) as caught:
        make_transport().send(ping_body())
    assert not caught.value.retryable
    assert "https://elsewhere.example/usage_data" in str(caught.value)


def test_payload_without_uuid_is_refused_by_the_service(
    server: PingServer, make_transport: Callable[..., Transport]
) -> None:
    """The fake versions app answers 422 to a payload without uuid; that is final."""
    with pytest.raises(SendError) as caught:
        make_transport().send(b'{"recorded_at": "2026-11-23T10:00:00.000Z"}')
    assert (caught.value.status, caught.value.retryable) == (422, False)
    assert server.pings == []


# -- backoff ----------------------------------------------------------------------------------


def test_backoff_delays_follow_the_capped_exponential_with_jitter(
    server: PingServer, make_transport: Callable[..., Transport], sleeps: list[float]
) -> None:
    """Delay n is random() x min(cap, base x 2**(n-1)), with the injected random values."""
    jitter = iter([0.5, 0.25, 0.75, 1.0, 0.5])
    server.play(*[Fail(500)] * 5)
    delivered = make_transport(
        max_attempts=6, backoff_base=1.0, backoff_cap=5.0, random=lambda: next(jitter)
    ).send(ping_body())

    assert delivered.attempts == 6
    # ceilings 1, 2, 4, 5 (capped), 5
    assert sleeps == [0.5, 0.5, 3.0, 5.0, 2.5]


def test_max_attempts_is_respected_without_sleeping_after_the_last(
    server: PingServer, make_transport: Callable[..., Transport], sleeps: list[float]
) -> None:
    """With max_attempts=4 the service sees four requests, and the transport sleeps three times."""
    server.play(*[Fail(500)] * 10)
    with pytest.raises(SendError) as caught:
        make_transport(max_attempts=4, backoff_base=2.0).send(ping_body())

    assert (caught.value.attempts, caught.value.last_error) == (4, "HTTP 500")
    assert len(server.requests) == 4
    assert sleeps == [1.0, 2.0, 4.0]


def test_a_single_attempt_never_sleeps(
    server: PingServer, make_transport: Callable[..., Transport], sleeps: list[float]
) -> None:
    """max_attempts=1 sends once and gives up at once."""
    server.play(Fail(503, headers={"Retry-After": "5"}))
    with pytest.raises(SendError):
        make_transport(max_attempts=1).send(ping_body())
    assert sleeps == []


@given(
    base=st.floats(min_value=0, max_value=1e6),
    cap=st.floats(min_value=0, max_value=1e6),
    jitter=st.lists(st.floats(min_value=0, max_value=1, exclude_max=True), min_size=1),
)
def test_backoff_stays_within_the_cap_and_its_ceiling_never_shrinks(
    base: float, cap: float, jitter: list[float]
) -> None:
    """For any base, cap and jitter, each delay is in [0, cap] and the ceilings never decrease."""
    attempts = [*range(1, 70), 1023, 1024, 1025, 10_000]  # 2.0**1024 overflows a float
    ceilings = [backoff_ceiling(n, base=base, cap=cap) for n in attempts]
    assert ceilings == sorted(ceilings)
    for n, ceiling, r in zip(attempts, ceilings, jitter * len(ceilings), strict=False):
        delay = backoff_delay(n, base=base, cap=cap, random=constant(r))
        assert 0.0 <= delay <= ceiling <= cap


# -- best-effort side posts -------------------------------------------------------------------


def test_report_error_and_metadata_are_posted_once(
    server: PingServer, make_transport: Callable[..., Transport]
) -> None:
    """Both go to their endpoints wrapped as GitLab does, and return True on 2xx."""
    transport = make_transport()
    assert transport.report_error({"uuid": "u", "message": "HTTP 500"}) is True
    assert transport.post_metadata({"uuid": "u", "metrics": [{"name": "counts.issues"}]}) is True

    assert server.errors == [{"error": {"uuid": "u", "message": "HTTP 500"}}]
    assert server.metadata == [{"metadata": {"uuid": "u", "metrics": [{"name": "counts.issues"}]}}]
    assert [request.path for request in server.requests] == [
        "/usage_ping_errors",
        "/usage_ping_metadata",
    ]


def test_report_error_and_metadata_return_false_when_the_service_is_down(
    server: PingServer, make_transport: Callable[..., Transport], sleeps: list[float]
) -> None:
    """Refused connections make them return False, once each, without raising or retrying."""
    server.down()
    transport = make_transport()
    assert transport.report_error({"message": "HTTP 500"}) is False
    assert transport.post_metadata({"uuid": "u"}) is False
    assert sleeps == []


def test_report_error_returns_false_on_an_error_status_or_a_hang(
    server: PingServer, make_transport: Callable[..., Transport]
) -> None:
    """A 500 or a service slower than the (short) timeout gives False, not an exception."""
    server.play(Fail(500), Hang(5.0), path="/usage_ping_errors")
    transport = make_transport(read_timeout=0.4)
    assert transport.report_error({"message": "x"}) is False
    assert transport.report_error({"message": "x"}) is False
    assert transport.report_error({"message": "x"}) is True


# -- privacy ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [Fail(400, body=f'{{"error": "bad {SECRET}"}}'), Fail(500), Malformed(), Down(), Hang(5.0)],
)
def test_errors_and_logs_never_contain_the_payload(
    answer: Fail | Malformed | Down | Hang,
    server: PingServer,
    make_transport: Callable[..., Transport],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Neither SendError nor any log line quotes the body (or a service echoing it)."""
    server.play(*[answer] * 2)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SendError) as caught:
        make_transport(max_attempts=2, read_timeout=0.1).send(ping_body())

    assert SECRET not in str(caught.value)
    assert SECRET not in caught.value.last_error
    assert caplog.records
    assert SECRET not in caplog.text
    assert all(SECRET not in str(record.args) for record in caplog.records)


def test_attempts_are_logged_to_the_usage_ping_logger(
    server: PingServer, make_transport: Callable[..., Transport], caplog: pytest.LogCaptureFixture
) -> None:
    """A failed attempt is a WARNING and the delivery an INFO record of the usage_ping logger."""
    server.play(Fail(503))
    caplog.set_level(logging.INFO, logger="usage_ping")
    make_transport().send(ping_body())

    ours = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "usage_ping"]
    assert [level for level, _ in ours] == ["WARNING", "INFO"]
    assert "attempt 1 of 5" in ours[0][1]
    assert "HTTP 503" in ours[0][1]
    assert "usage_data_id 1" in ours[1][1]


# -- construction and lifetime ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "options"),
    [
        ("ftp://example.com", {}),
        ("example.com", {}),
        ("http://example.com", {"max_attempts": 0}),
        ("http://example.com", {"read_timeout": -1.0}),
        ("http://example.com", {"backoff_cap": float("nan")}),
    ],
)
def test_bad_configuration_fails_at_construction(base_url: str, options: dict[str, Any]) -> None:
    """A transport that could never send is refused when it is made, with ValueError."""
    with pytest.raises(ValueError, match="must be"):
        Transport(base_url, **options)


def test_a_client_passed_in_is_used_and_left_open(server: PingServer) -> None:
    """The caller's httpx.Client carries the requests and is not closed by close()."""
    with httpx.Client(headers={"X-Host-App": "demo"}) as client:
        with Transport(server.url, client=client, sleep=lambda _: None) as transport:
            transport.send(ping_body())
        assert not client.is_closed
    assert server.requests[0].headers["x-host-app"] == "demo"


def test_resend_of_the_same_ping_gets_the_same_id(
    server: PingServer, make_transport: Callable[..., Transport]
) -> None:
    """The fake service deduplicates on (uuid, recorded_at): a resend is harmless."""
    transport = make_transport()
    first = transport.send(ping_body())
    again = transport.send(ping_body(padding=10))  # same uuid and recorded_at
    other = transport.send(ping_body(recorded_at="2026-11-30T10:00:00.000Z"))

    assert again.usage_data_id == first.usage_data_id == 1
    assert again.response == first.response
    assert other.usage_data_id == 2
    assert len(server.pings) == 2


# -- the server helper itself -----------------------------------------------------------------


def test_steps_round_trip_through_json() -> None:
    """Scripts cross process boundaries as JSON without losing anything."""
    steps: list[Step] = [
        Fail(429, headers={"Retry-After": "2"}),
        Hang(0.5, then=Fail(500)),
        Malformed(),
        Down(),
    ]
    assert [step_from_json(step_to_json(step)) for step in steps] == steps


def test_server_in_its_own_process(sleeps: list[float]) -> None:
    """``python -m tests.delivery.http_server`` plays scripts, goes down and up, reports state."""
    with ServerProcess(script=[Fail(500)]) as process:
        with Transport(process.url, sleep=sleeps.append, random=lambda: 0.5) as transport:
            assert transport.send(ping_body()).attempts == 2
            process.down()
            assert transport.report_error({"message": "x"}) is False
            process.up()
            process.play(Fail(503, headers={"Retry-After": "3"}))
            assert transport.send(ping_body()).usage_data_id == 1  # deduplicated
            assert transport.post_metadata({"uuid": "u"}) is True

        assert sleeps == [0.5, 3.0]
        assert len(process.pings) == 1
        assert [r.path for r in process.requests] == ["/usage_data"] * 4 + ["/usage_ping_metadata"]
        assert process.metadata == [{"metadata": {"uuid": "u"}}]
