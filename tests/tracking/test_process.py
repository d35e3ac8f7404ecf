"""The tracker in a process of its own: flushed at exit, quiet, fork-aware, inert when off."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.tracking.collector import CapturingCollector, refusing_port, silent_port
from usage_ping.tracking import STANDARD_CONTEXT_SCHEMA

REPO_ROOT = Path(__file__).resolve().parents[2]


def run(
    script: str, *args: str, timeout: float = 30.0
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``script`` in a fresh interpreter (the host, with no logging configured)."""
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        check=False,
    )
    return done, time.monotonic() - start


TRACK_AND_EXIT = """
    import sys
    from usage_ping import tracking

    tracking.configure(
        endpoint=sys.argv[1], app_id="exit-test", flush_interval=None, shutdown_timeout=1.0
    )
    tracking.event("exit", "tracked", user=1, via="script")
    # No flush: the batch (10 events) is not full; only the exit hook can send it.
"""


def test_events_buffered_at_exit_are_sent(collector: CapturingCollector) -> None:
    """A script that tracks an event and exits has it delivered by the exit hook."""
    done, _ = run(TRACK_AND_EXIT, collector.url)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    [event] = collector.wait_for_events(1, timeout=2.0)
    assert (event["se_ca"], event["se_ac"], event["aid"]) == ("exit", "tracked", "exit-test")
    assert event.context(STANDARD_CONTEXT_SCHEMA)["extra"] == {"via": "script"}


def test_exit_with_the_collector_refusing_is_quick_and_silent() -> None:
    """A collector that is down neither delays the exit much nor prints anything."""
    with refusing_port() as port:
        done, took = run(TRACK_AND_EXIT, f"http://127.0.0.1:{port}")
    assert done.returncode == 0
    assert done.stderr == ""
    assert took < 10.0


def test_exit_with_a_hanging_collector_waits_at_most_the_shutdown_timeout() -> None:
    """A collector that never answers holds the exit for shutdown_timeout, not longer."""
    script = TRACK_AND_EXIT.replace("shutdown_timeout=1.0", "shutdown_timeout=0.5")
    with silent_port() as port:
        done, took = run(script, f"http://127.0.0.1:{port}")
        _, baseline = run("import usage_ping.tracking._snowplow")
    assert done.returncode == 0
    assert done.stderr == ""
    assert took - baseline < 0.5 + 1.5, f"exit took {took:.2f} s (bare start {baseline:.2f} s)"


def test_tracking_leaves_the_hosts_logging_alone(collector: CapturingCollector) -> None:
    """The package's import-time logging.basicConfig() does not reach the host's root logger."""
    script = """
        import logging, sys
        from usage_ping import tracking

        tracking.configure(endpoint=sys.argv[1], flush_interval=None)
        tracking.event("c", "a")
        tracking.flush()
        print(len(logging.getLogger().handlers), logging.getLogger().level)
    """
    done, _ = run(script, collector.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", str(30)]  # no handler added; root still at WARNING


def test_disabled_tracking_imports_nothing_and_starts_no_thread(
    collector: CapturingCollector,
) -> None:
    """Off (never configured, or configured off), tracking neither imports the package nor
    starts a thread, and sends nothing."""
    script = """
        import json, sys, threading
        from usage_ping import tracking

        before = tracking.event("c", "unconfigured")
        tracking.configure(endpoint=sys.argv[1], enabled=False)
        after = tracking.event("c", "disabled", user=1)
        print(json.dumps([before, after, "snowplow_tracker" in sys.modules,
                          threading.active_count(), tracking.flush()]))
    """
    done, _ = run(script, collector.url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [None, None, False, 1, True]
    time.sleep(0.2)
    assert collector.requests == []


def test_a_forked_child_sends_its_own_events_once(collector: CapturingCollector) -> None:
    """After fork the child starts its own worker; the parent's buffered event is sent once."""
    script = """
        import os, sys
        from usage_ping import tracking

        tracking.configure(endpoint=sys.argv[1], flush_interval=None)
        tracking.event("fork", "parent")
        pid = os.fork()
        if pid == 0:
            tracking.event("fork", "child")
            sys.exit(0)  # a normal exit: the child's exit hook flushes the child's buffer
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
    """
    done, _ = run(script, collector.url)
    assert done.returncode == 0, done.stderr
    events = collector.wait_for_events(2, timeout=3.0)
    time.sleep(0.2)
    assert sorted(e["se_ac"] for e in collector.events) == ["child", "parent"]
    assert len(events) == 2
