"""Building the payload: every active metric of the dictionary, each in isolation.

Each metric runs inside the fail-safe boundary on a bounded pool of worker threads (database
connections are a shared resource: ``concurrency`` bounds them) with its own time limit. A metric
that raises, hangs past its limit, returns the wrong type or whose SQL fails gets its fallback
value (-1), and ``meta`` says why: the error's class and a short message, never data from the
host's tables (SQL and parameters are cut from database errors). The payload always completes.

Metrics of data categories the admin switched off are never computed. The min/max ids of a
relation are queried once per build and reused by every metric over it.
"""

from __future__ import annotations

import contextvars
import importlib
import threading
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from usage_ping import sql
from usage_ping.events.counter import EventCounter
from usage_ping.events.plain import HasTotals
from usage_ping.events.windows import TimeFrame
from usage_ping.fallback import FAILED, collecting
from usage_ping.metrics import (
    CallableInstrumentation,
    DatabaseInstrumentation,
    MetricDefinition,
    MetricDictionary,
    RedisHLLInstrumentation,
    RedisInstrumentation,
    database_window,
)

__all__ = ["MetricOutcome", "PayloadBuilder", "set_path"]

DEFAULT_METRIC_TIMEOUT = 60.0
"""Seconds one metric may take before it is given up (its value becomes -1)."""

_FRAME_OF: dict[str, TimeFrame] = {"7d": "weekly", "28d": "monthly"}


class MetricTimeoutError(Exception):
    """The metric did not finish within its time limit."""


class MetricTypeError(Exception):
    """The metric's value does not have the type its definition declares."""


@dataclass
class MetricOutcome:
    """What happened to one metric: its value, how long it took, and why it failed if it did."""

    key_path: str
    value: Any
    duration: float
    error: str | None = None


@dataclass
class _Run:
    today: date
    outcomes: dict[str, MetricOutcome] = field(default_factory=dict)
    tables: dict[str, sa.Table] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def set_path(tree: dict[str, Any], key_path: str, value: Any) -> None:
    """Put ``value`` at the dotted ``key_path`` of ``tree``, creating groups on the way."""
    *groups, last = key_path.split(".")
    node = tree
    for group in groups:
        node = node.setdefault(group, {})
    node[last] = value


def _short(exc: BaseException) -> str:
    """Class and first line of the message, without SQL or parameters (they may hold data)."""
    message = str(exc).split("\n", 1)[0]
    for marker in ("[SQL:", "[parameters:", "; sql:"):
        message = message.split(marker, 1)[0]
    return f"{type(exc).__name__}: {message.strip()[:200]}"


def _resolve(path: str) -> Any:
    module, _, attribute = path.partition(":")
    target: Any = importlib.import_module(module)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


class PayloadBuilder:
    """Computes the metrics of a dictionary into a nested payload with a ``meta`` block.

    Args:
        dictionary: the metric definitions.
        engine: the host's database, for ``database`` metrics.
        events: the event counter, for ``redis_hll`` metrics.
        counters: plain counters by prefix, for ``redis`` metrics.
        categories: the data categories to compute (the admin's choice); others are skipped.
        concurrency: metrics computed at once (each may hold database connections).
        metric_timeout: seconds each metric may take.
        clock: the current time (UTC), replaceable in tests.

    Example:
        >>> builder = PayloadBuilder(MetricDictionary.load("config/metrics"), engine=engine)
        >>> payload = builder.build()  # doctest: +SKIP
        >>> payload["counts"]["issues"], payload["meta"]["metrics"][0]["duration_ms"]
    """

    def __init__(
        self,
        dictionary: MetricDictionary,
        *,
        engine: sa.Engine | None = None,
        events: EventCounter | None = None,
        counters: Mapping[str, HasTotals] | None = None,
        categories: Collection[str] = ("standard", "subscription", "operational", "optional"),
        concurrency: int = 2,
        metric_timeout: float = DEFAULT_METRIC_TIMEOUT,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.dictionary = dictionary
        self.engine = engine
        self.events = events
        self.counters = dict(counters or {})
        self.categories = frozenset(categories)
        self.concurrency = concurrency
        self.metric_timeout = metric_timeout
        self.clock = clock

    # -- one metric -------------------------------------------------------------------------------

    def _value(self, metric: MetricDefinition, run: _Run) -> Any:
        inst = metric.instrumentation
        if isinstance(inst, CallableInstrumentation):
            target = _resolve(inst.callable)
            if isinstance(target, type):
                return target(**inst.options).value()
            return target(**inst.options)
        if isinstance(inst, DatabaseInstrumentation):
            return self._database(metric, inst, run)
        if isinstance(inst, RedisHLLInstrumentation):
            if self.events is None:
                raise LookupError("no event counter was given for redis_hll metrics")
            return self.events.count(list(inst.events), _FRAME_OF[metric.time_frame], run.today)
        if isinstance(inst, RedisInstrumentation):
            counter = self.counters.get(inst.counter)
            if counter is None:
                raise LookupError(f"no plain counter with prefix {inst.counter!r} was given")
            return counter.totals()[f"{inst.counter}_{inst.event}"]
        raise TypeError(f"unknown instrumentation {type(inst).__name__}")

    def _table(self, name: str, run: _Run) -> sa.Table:
        assert self.engine is not None
        with run.lock:
            if name not in run.tables:
                schema, _, table = name.rpartition(".")
                run.tables[name] = sa.Table(
                    table, sa.MetaData(), autoload_with=self.engine, schema=schema or None
                )
            return run.tables[name]

    def _database(self, metric: MetricDefinition, inst: DatabaseInstrumentation, run: _Run) -> Any:
        if self.engine is None:
            raise LookupError("no database engine was given for database metrics")
        if inst.model is not None:
            model = _resolve(inst.model)
            table = sa.inspect(model).local_table
            relation = sa.select(model)
        else:
            assert inst.table is not None
            table = self._table(inst.table, run)
            relation = sa.select(table)
        for name, value in inst.filters.items():
            relation = relation.where(table.c[name] == value)
        window = database_window(metric.time_frame, run.today)
        if window is not None and inst.time_column is not None:
            stamp = table.c[inst.time_column]
            relation = relation.where(stamp >= window[0], stamp < window[1])
        counter = {
            "count": sql.count,
            "distinct_count": sql.distinct_count,
            "sum": sql.sum,
            "estimate_distinct_count": sql.estimate_distinct_count,
        }[inst.operation]
        counted = table.c[inst.column] if inst.column is not None else None
        return counter(self.engine, relation, counted)

    def _run_one(self, metric: MetricDefinition, run: _Run) -> MetricOutcome:
        started = time.perf_counter()
        error: str | None
        with collecting() as swallowed:
            try:
                value = self._value(metric, run)
                if metric.value_type == "number" and (
                    isinstance(value, bool) or not isinstance(value, int | float)
                ):
                    raise MetricTypeError(f"expected a number, got {type(value).__name__}")
                error = _short(swallowed[0]) if swallowed else None
            except Exception as exc:
                value, error = FAILED, _short(exc)
        return MetricOutcome(metric.key_path, value, time.perf_counter() - started, error)

    # -- the whole payload -------------------------------------------------------------------------

    def outcomes(self) -> list[MetricOutcome]:
        """Compute every active metric of the enabled categories; one outcome per metric."""
        metrics = [m for m in self.dictionary.active() if m.data_category in self.categories]
        run = _Run(today=self.clock().astimezone(UTC).date())
        results: dict[str, MetricOutcome] = {}
        with sql.memoized_bounds():
            pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="usage_ping-metric")
            started: dict[str, float] = {}
            futures: dict[Future[MetricOutcome], MetricDefinition] = {}
            for metric in metrics:
                # Each task runs in a copy of this context: they share the bounds cache.
                ctx = contextvars.copy_context()

                def task(
                    m: MetricDefinition = metric, c: contextvars.Context = ctx
                ) -> MetricOutcome:
                    started[m.key_path] = time.perf_counter()
                    return c.run(self._run_one, m, run)

                futures[pool.submit(task)] = metric
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.05)
                for future in done:
                    outcome = future.result()
                    results[outcome.key_path] = outcome
                now = time.perf_counter()
                for future in list(pending):
                    key = futures[future].key_path
                    began = started.get(key)
                    if began is not None and now - began > self.metric_timeout:
                        pending.discard(future)
                        results[key] = MetricOutcome(
                            key,
                            FAILED,
                            now - began,
                            _short(MetricTimeoutError(f"over {self.metric_timeout:g} s")),
                        )
            pool.shutdown(wait=False, cancel_futures=True)
        return [results[m.key_path] for m in metrics]

    def build(self) -> dict[str, Any]:
        """The nested payload of every computed metric, plus ``meta`` (durations and failures)."""
        payload: dict[str, Any] = {}
        meta: list[dict[str, Any]] = []
        for outcome in self.outcomes():
            set_path(payload, outcome.key_path, outcome.value)
            entry: dict[str, Any] = {
                "key_path": outcome.key_path,
                "duration_ms": round(outcome.duration * 1000, 1),
            }
            if outcome.error is not None:
                entry["error"] = outcome.error
            meta.append(entry)
        payload["meta"] = {"metrics": meta}
        return payload
