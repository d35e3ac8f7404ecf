"""The one fail-safe boundary: swallow, log to our own logger, return the fallback."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from usage_ping.fallback import (
    ESTIMATE_FAILED,
    FAILED,
    QUERIES_MODE,
    Fallback,
    call_safely,
    swallow,
)
from usage_ping.testing import Swallowed, capture_swallowed, reraise_swallowed


def _boom() -> int:
    raise RuntimeError("boom")


def test_fallback_codes() -> None:
    """The codes that stand in for failed values."""
    assert (FAILED, ESTIMATE_FAILED, QUERIES_MODE) == (-1, -2, -3)
    assert Fallback(-1) is FAILED


@pytest.mark.swallows
def test_call_safely_returns_the_fallback_and_logs_to_the_library_logger(
    caplog: pytest.LogCaptureFixture, swallowed: list[Swallowed]
) -> None:
    """The error becomes the fallback, logged on `usage_ping` with its context."""
    caplog.set_level(logging.WARNING)
    assert call_safely(_boom, fallback=FAILED, description="count x", context={"table": "x"}) == -1
    [record] = caplog.records
    assert record.name == "usage_ping"
    assert "count x failed: RuntimeError: boom" in record.getMessage()
    assert record.usage_ping == {"what": "count x", "table": "x"}  # type: ignore[attr-defined]
    assert record.exc_info is not None
    assert [type(s.exception) for s in swallowed] == [RuntimeError]


@pytest.mark.swallows
def test_fallback_for_picks_the_code_from_the_exception() -> None:
    """fallback_for chooses per exception."""
    result = call_safely(
        _boom,
        fallback=FAILED,
        description="estimate",
        fallback_for=lambda exc: ESTIMATE_FAILED if isinstance(exc, RuntimeError) else FAILED,
    )
    assert result == ESTIMATE_FAILED


@pytest.mark.swallows
def test_swallow_block_drops_the_error(swallowed: list[Swallowed]) -> None:
    """A block with no value to return just stops at the error."""
    reached = []
    with swallow("track_event"):
        reached.append(1)
        _boom()
        reached.append(2)  # pragma: no cover
    assert reached == [1]
    assert swallowed[0].description == "track_event"


def test_reraise_swallowed_makes_errors_visible() -> None:
    """Inside reraise_swallowed (the default in this test suite) the boundary re-raises."""
    with reraise_swallowed(), pytest.raises(RuntimeError, match="boom"):
        call_safely(_boom, fallback=FAILED, description="x")


@pytest.mark.swallows
def test_capture_swallowed_collects_without_raising() -> None:
    """Inside capture_swallowed the fallback comes back and the error is listed."""
    with capture_swallowed() as seen:
        assert call_safely(_boom, fallback=FAILED, description="x") == -1
    assert [s.description for s in seen] == ["x"]


def test_base_exceptions_are_not_swallowed() -> None:
    """KeyboardInterrupt and SystemExit are the host's, never ours to eat."""

    def interrupt() -> int:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        call_safely(interrupt, fallback=FAILED, description="x")


def test_importing_the_library_configures_no_logging() -> None:
    """The host's logging is untouched: no root handlers, our logger only has a NullHandler."""
    code = (
        "import logging, usage_ping\n"
        "root = logging.getLogger()\n"
        "lib = logging.getLogger('usage_ping')\n"
        "print(len(root.handlers), root.level, [type(h).__name__ for h in lib.handlers],"
        " lib.propagate)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "0 30 ['NullHandler'] True"
