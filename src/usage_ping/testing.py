"""Helpers for testing code that uses usage-ping, including the host application's own tests.

The fail-safe boundary swallows errors so that they never reach the host. In tests that hides
real bugs, so these helpers make them visible again.

Example (a pytest ``conftest.py`` of a host application)::

    import pytest
    from usage_ping.testing import reraise_swallowed

    @pytest.fixture(autouse=True)
    def _telemetry_errors_are_test_errors():
        with reraise_swallowed():
            yield
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from usage_ping import fallback

__all__ = ["Swallowed", "capture_swallowed", "reraise_swallowed"]


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
