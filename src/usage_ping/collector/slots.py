"""A bound on the ingest work each worker process does at once (pings and event batches).

Storing a ping or a batch of events is CPU work in Python and in the database. Each request runs
in a thread; dozens of threads at once only add contention: for the GIL (a thread back from the
database waits for another's switch interval) and for the database's locks. Requests over the
bound wait for a slot in the event loop, which costs nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar, TypeVarTuple

import anyio
import anyio.to_thread

__all__ = ["IngestSlots"]

T = TypeVar("T")
Args = TypeVarTuple("Args")


class IngestSlots:
    """Runs ingest work in threads, at most ``slots`` at once in this process."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"ingest slots must be at least 1, not {slots}")
        self.slots = slots
        self._limiters: dict[int, anyio.CapacityLimiter] = {}

    def limiter(self) -> anyio.CapacityLimiter:
        """The running event loop's limiter (a limiter belongs to one loop; tests start several)."""
        loop = id(asyncio.get_running_loop())
        limiter = self._limiters.get(loop)
        if limiter is None:
            self._limiters.clear()  # a new loop: the previous one has ended
            limiter = self._limiters[loop] = anyio.CapacityLimiter(self.slots)
        return limiter

    async def run(self, func: Callable[[*Args], T], *args: *Args) -> T:
        """``func(*args)`` in a worker thread once a slot is free."""
        return await anyio.to_thread.run_sync(func, *args, limiter=self.limiter())
