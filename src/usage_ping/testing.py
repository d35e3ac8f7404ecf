"""Helpers for testing code that uses usage-ping, including the host application's own tests.

The fail-safe boundary swallows errors so that they never reach the host. In tests that hides
real bugs, so :func:`reraise_swallowed` and :func:`capture_swallowed` make them visible again.

:func:`build_payload` builds a payload against the host's test database and fails loudly when a
metric fails; :func:`metric_value` and :func:`assert_metric` read it by key path; and
:func:`assert_no_drift` checks that the payload and the metric dictionary agree (every active
metric present, nothing present that the dictionary lacks).

Example (a pytest ``conftest.py`` and test of a host application)::

    import pytest
    from usage_ping.testing import assert_metric, assert_no_drift, build_payload, reraise_swallowed

    @pytest.fixture(autouse=True)
    def _telemetry_errors_are_test_errors():
        with reraise_swallowed():
            yield

    def test_issue_metrics(db_engine, make_issue):
        make_issue(state="opened")
        payload = build_payload("config/metrics", engine=db_engine)
        assert_metric(payload, "counts.issues", 1)
        assert_no_drift(payload, "config/metrics")
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from usage_ping import fallback
from usage_ping.metrics import MetricDictionary
from usage_ping.payload import FACT_KEYS, PayloadBuilder
from usage_ping.payload.builder import TOPOLOGY_KEY
from usage_ping.state import CATEGORIES

__all__ = [
    "Drift",
    "Swallowed",
    "assert_metric",
    "assert_no_drift",
    "build_payload",
    "capture_swallowed",
    "drift",
    "metric_value",
    "reraise_swallowed",
]


@dataclass(frozen=True)
class Swallowed:
    """One exception that the fail-safe boundary swallowed."""

    exception: BaseException
    description: str


@contextmanager
def reraise_swallowed() -> Iterator[None]:
    """Inside this block the fail-safe boundary re-raises instead of returning a fallback."""

    def observer(exc: BaseException, description: str) -> bool:
        return True

    fallback._add_observer(observer)
    try:
        yield
    finally:
        fallback._remove_observer(observer)


@contextmanager
def capture_swallowed() -> Iterator[list[Swallowed]]:
    """Collect what the boundary swallows (it still returns the fallback) into the yielded list."""
    seen: list[Swallowed] = []

    def observer(exc: BaseException, description: str) -> bool:
        seen.append(Swallowed(exc, description))
        return False

    fallback._add_observer(observer)
    try:
        yield seen
    finally:
        fallback._remove_observer(observer)


def _dictionary(metrics: MetricDictionary | Path | str) -> MetricDictionary:
    return metrics if isinstance(metrics, MetricDictionary) else MetricDictionary.load(metrics)


def build_payload(
    metrics: MetricDictionary | Path | str, *, allow_failures: bool = False, **options: Any
) -> dict[str, Any]:
    """Build a payload (for a host application's tests); fail if any metric failed.

    Args:
        metrics: the metric dictionary, or the files and directories it is loaded from.
        allow_failures: return the payload even when metrics fell back to -1.
        **options: for :class:`~usage_ping.payload.PayloadBuilder` (``engine``, ``events``,
            ``counters``, ``facts``, ``categories``, ``clock``...).

    Raises:
        AssertionError: listing each failed metric's key path and error.
    """
    payload = PayloadBuilder(_dictionary(metrics), **options).build()
    failures = [m for m in payload["meta"]["metrics"] if "error" in m]
    if failures and not allow_failures:
        lines = "\n".join(f"  {m['key_path']}: {m['error']}" for m in failures)
        raise AssertionError(f"{len(failures)} metric(s) failed:\n{lines}")
    return payload


_MISSING = object()


def metric_value(payload: dict[str, Any], key_path: str) -> Any:
    """The value at a dotted key path; KeyError names the deepest group that exists."""
    node: Any = payload
    walked: list[str] = []
    for part in key_path.split("."):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(walked) or "the payload"
            keys = sorted(node) if isinstance(node, dict) else []
            raise KeyError(f"{key_path}: no {part!r} in {where} (it has: {', '.join(keys)})")
        node = node[part]
        walked.append(part)
    return node


def assert_metric(payload: dict[str, Any], key_path: str, expected: Any) -> None:
    """Assert the value at ``key_path``; the message shows the value and meta's error if any."""
    value = metric_value(payload, key_path)
    if value != expected:
        errors = [m.get("error") for m in payload.get("meta", {}).get("metrics", [])
                  if m["key_path"] == key_path and "error" in m]  # fmt: skip
        why = f" ({errors[0]})" if errors else ""
        raise AssertionError(f"{key_path}: expected {expected!r}, got {value!r}{why}")


@dataclass(frozen=True)
class Drift:
    """Where a payload and its metric dictionary disagree."""

    missing: tuple[str, ...]
    """Active metrics of the dictionary (in the given categories) absent from the payload."""
    unexpected: tuple[str, ...]
    """Values in the payload that no active metric (nor a fact) accounts for."""

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected)


def drift(
    payload: dict[str, Any],
    metrics: MetricDictionary | Path | str,
    categories: Collection[str] = CATEGORIES,
) -> Drift:
    """Compare a payload with the dictionary (see :func:`assert_no_drift`)."""
    dictionary = _dictionary(metrics)
    wanted = {m.key_path for m in dictionary.active() if m.data_category in categories}
    known = {m.key_path for m in dictionary.active()}
    found: set[str] = set()
    unexpected: list[str] = []

    # A fact's key (``license``) is a group of metrics when the dictionary puts metrics under it.
    groups = {k.split(".", 1)[0] for k in known if "." in k}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}{key}"
            if path in known:
                found.add(path)
            elif not prefix and key in (*FACT_KEYS, "meta", TOPOLOGY_KEY) and key not in groups:
                continue
            elif isinstance(value, dict) and value:
                walk(value, path + ".")
            else:
                unexpected.append(path)

    walk(payload, "")
    missing = sorted(wanted - found)
    return Drift(tuple(missing), tuple(sorted(unexpected + sorted(found - wanted))))


def assert_no_drift(
    payload: dict[str, Any],
    metrics: MetricDictionary | Path | str,
    categories: Collection[str] = CATEGORIES,
) -> None:
    """Assert that every active metric is in the payload and that nothing else is.

    Facts (``uuid``, ``recorded_at``...) and ``meta`` are not metrics and are ignored. Metrics
    of categories left out of ``categories`` must be absent.
    """
    found = drift(payload, metrics, categories)
    if found:
        parts = []
        if found.missing:
            parts.append("missing from the payload: " + ", ".join(found.missing))
        if found.unexpected:
            parts.append("not in the metric dictionary: " + ", ".join(found.unexpected))
        raise AssertionError("payload and metric dictionary drift apart; " + "; ".join(parts))
