"""Building the payload: every active metric of the dictionary, each in isolation.

Each metric runs inside the fail-safe boundary on a bounded pool of worker threads (database
connections are a shared resource: ``concurrency`` bounds them) with its own time limit. A metric
that raises, hangs past its limit, returns the wrong type or whose SQL fails gets its fallback
value (-1), and ``meta`` says why: the error's class and a short message, never data from the
host's tables (SQL and parameters are cut from database errors). The payload always completes.

The workers are daemon threads of the builder's own: a metric that hangs for good is given up
after its limit, a fresh worker takes its place, and the hung thread can never hold up the host's
shutdown.

Metrics of data categories the admin switched off are never computed. The min/max ids of a
relation are queried once per build and reused by every metric over it.

Modes:

- ``values`` (the default): compute every metric;
- ``queries``: run nothing; each database metric's value is the SQL it counts (rendered for the
  database's dialect), other metrics are described (their events, counter or callable);
- ``non_sql``: compute everything except SQL; database metrics, and SQL counters called by
  callables, give -3 (:data:`~usage_ping.fallback.QUERIES_MODE`).

With a :class:`~usage_ping.topology.Topology`, the payload also has the built-in ``topology`` block
(an ``operational`` fact, so it follows that data category): built from Prometheus in a thread of
its own while the metrics run, within its own deadline, in the values and non-SQL modes; in queries
mode its value is the PromQL of each query by name. ``meta`` has an entry for it whose ``error``
sums up the block's ``failures``.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import queue
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import registry
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import ColumnElement

from usage_ping import sql
from usage_ping.events.counter import EventCounter
from usage_ping.events.plain import HasTotals
from usage_ping.events.windows import TimeFrame
from usage_ping.fallback import FAILED, QUERIES_MODE, Fallback, collecting, logger, report
from usage_ping.metrics import (
    CallableInstrumentation,
    DatabaseInstrumentation,
    MetricDefinition,
    MetricDictionary,
    RedisHLLInstrumentation,
    RedisInstrumentation,
    database_window,
)
from usage_ping.payload.facts import InstanceFacts

if TYPE_CHECKING:
    from usage_ping.topology.block import Topology

__all__ = [
    "TOPOLOGY_KEY",
    "BuildContext",
    "MetricOutcome",
    "Mode",
    "PayloadBuilder",
    "current_build",
    "set_path",
]

DEFAULT_METRIC_TIMEOUT = 60.0
"""Seconds one metric may take before it is given up (its value becomes -1)."""

Mode = Literal["values", "queries", "non_sql"]

TOPOLOGY_KEY = "topology"
"""The top-level key of the built-in topology block."""
TOPOLOGY_CATEGORY = "operational"
"""The data category of the topology block: it is built only while the admin allows it."""

_FRAME_OF: dict[str, TimeFrame] = {"7d": "weekly", "28d": "monthly"}

_TYPES: dict[str, tuple[type, ...]] = {
    "number": (int, float),
    "string": (str,),
    "boolean": (bool,),
    "object": (Mapping,),
}


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

    @property
    def failed(self) -> bool:
        """Whether the metric gave a fallback code because something went wrong."""
        return self.error is not None


@dataclass
class _Run:
    today: date
    tables: dict[str, sa.Table] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class BuildContext:
    """What the build in progress offers callable metrics (see :func:`current_build`)."""

    engine: sa.Engine | None
    """The host's database (None when the builder has none)."""
    events: EventCounter | None
    """The event counter (None when the builder has none)."""
    counters: Mapping[str, HasTotals]
    """The plain counters, by prefix."""
    today: date
    """The payload's day (UTC): windows end where it begins."""
    mode: Mode


_CURRENT_BUILD: contextvars.ContextVar[BuildContext | None] = contextvars.ContextVar(
    "usage_ping_current_build", default=None
)


def current_build() -> BuildContext:
    """The build that is running the calling metric: its engine, event counter, counters and day.

    For callable metrics that count in the host's database or read events, such as a grouped
    count or an aggregated metric, so that they use what the builder was given.

    Raises:
        LookupError: called outside a payload build.

    Example:
        >>> def issues_by_state():  # a callable metric  # doctest: +SKIP
        ...     build = current_build()
        ...     return usage_ping.count(build.engine, select(issues).group_by(issues.c.state))
    """
    found = _CURRENT_BUILD.get()
    if found is None:
        raise LookupError("no payload is being built: current_build() is for callable metrics")
    return found


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


def _call(target: Any, options: Mapping[str, Any]) -> Any:
    """A function's result, or the ``value()`` of a class made with the options."""
    if isinstance(target, type):
        return target(**options).value()
    return target(**options)


def _plain(value: Any) -> Any:
    """Fallback codes as plain ints (they are IntEnums), also inside grouped results."""
    if isinstance(value, Fallback):
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _check_type(metric: MetricDefinition, value: Any) -> None:
    if isinstance(value, int) and value in (FAILED, QUERIES_MODE, -2):
        return  # a fallback code stands in for any type
    expected = _TYPES[metric.value_type]
    if not isinstance(value, expected) or (
        metric.value_type == "number" and isinstance(value, bool)
    ):
        raise MetricTypeError(f"expected a {metric.value_type}, got {type(value).__name__}")


def _recorded_at(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class PayloadBuilder:
    """Computes the metrics of a dictionary into a nested payload with a ``meta`` block.

    Args:
        dictionary: the metric definitions.
        engine: the host's database, for ``database`` metrics.
        events: the event counter, for ``redis_hll`` metrics.
        counters: plain counters by prefix, for ``redis`` metrics.
        facts: the instance's facts for the top of the payload (none: metrics only).
        categories: the data categories to compute (the admin's choice); others are skipped.
        concurrency: metrics computed at once (each may hold database connections).
        metric_timeout: seconds each metric may take.
        mode: ``values``, ``queries`` or ``non_sql`` (see the module's documentation).
        dialect: the SQL dialect to render queries for when there is no ``engine``
            (``postgresql``, ``mysql``, ``sqlite``).
        on_outcome: called (in the building thread) with each metric's outcome as it finishes,
            e.g. to advance a progress bar.
        clock: the current time (UTC), replaceable in tests.
        topology: the Prometheus topology block's builder (none: no ``topology`` block).

    Raises:
        ValueError: for a ``concurrency`` below 1, a metric whose key path is one of the facts
            (or ``topology`` when there is a topology block), or two plain counters that report
            the same total name.

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
        facts: InstanceFacts | None = None,
        categories: Collection[str] = ("standard", "subscription", "operational", "optional"),
        concurrency: int = 2,
        metric_timeout: float = DEFAULT_METRIC_TIMEOUT,
        mode: Mode = "values",
        dialect: str | None = None,
        on_outcome: Callable[[MetricOutcome], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        topology: Topology | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if mode not in ("values", "queries", "non_sql"):
            raise ValueError(f"mode must be values, queries or non_sql, got {mode!r}")
        self.dictionary = dictionary
        self.engine = engine
        self.events = events
        self.counters = dict(counters or {})
        self.facts = facts
        self.categories = frozenset(categories)
        self.concurrency = concurrency
        self.metric_timeout = metric_timeout
        self.mode = mode
        self.dialect_name = dialect
        self.on_outcome = on_outcome
        self.clock = clock
        self.topology = topology
        owner: dict[str, str] = {}
        for prefix, counter in self.counters.items():
            for name in counter.metric_names():
                if name in owner:
                    raise ValueError(
                        f"plain counters {owner[name]!r} and {prefix!r} both report {name!r}: "
                        "rename an event or a prefix so that each total has one owner"
                    )
                owner[name] = prefix
        taken = {"meta", "recorded_at", *facts.provided()} if facts else {"meta"}
        if topology is not None:
            taken.add(TOPOLOGY_KEY)
        for metric in dictionary.values():
            top = metric.key_path.split(".", 1)[0]
            if top in taken:
                raise ValueError(
                    f"{metric.source}: key_path {metric.key_path!r} clashes with the instance "
                    f"fact {top!r} at the top of the payload"
                )

    def metrics(self) -> list[MetricDefinition]:
        """The metrics a build computes: active ones of the enabled data categories."""
        return [m for m in self.dictionary.active() if m.data_category in self.categories]

    # -- one metric -------------------------------------------------------------------------------

    def _value(self, metric: MetricDefinition, run: _Run) -> Any:
        inst = metric.instrumentation
        if self.mode == "queries":
            return self._describe(metric, run)
        if isinstance(inst, CallableInstrumentation):
            target = _resolve(inst.callable)
            with sql.non_sql_mode() if self.mode == "non_sql" else contextlib.nullcontext():
                return _call(target, inst.options)
        if isinstance(inst, DatabaseInstrumentation):
            if self.mode == "non_sql":
                return QUERIES_MODE
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

    def _describe(self, metric: MetricDefinition, run: _Run) -> Any:
        """Queries mode: the SQL of a database metric, a descriptor for any other."""
        inst = metric.instrumentation
        if isinstance(inst, DatabaseInstrumentation):
            table = self._light_table(inst)
            statement = self._statement(metric, inst, table, run)
            compiled = statement.compile(
                dialect=self._dialect(), compile_kwargs={"literal_binds": True}
            )
            return " ".join(str(compiled).split())
        if isinstance(inst, RedisHLLInstrumentation):
            return {"redis_hll_events": list(inst.events), "time_frame": metric.time_frame}
        if isinstance(inst, RedisInstrumentation):
            return {"redis_counter": f"{inst.counter}_{inst.event}"}
        return {"callable": inst.callable, "options": dict(inst.options)}

    def _dialect(self) -> Dialect:
        if self.engine is not None:
            return self.engine.dialect
        dialect: Dialect = registry.load(self.dialect_name or "postgresql")()
        return dialect

    @staticmethod
    def _light_table(inst: DatabaseInstrumentation) -> sa.TableClause:
        """The table with the columns the metric names, without asking the database."""
        if inst.model is not None:
            local: sa.TableClause = sa.inspect(_resolve(inst.model)).local_table
            return local
        assert inst.table is not None
        schema, _, name = inst.table.rpartition(".")
        names = [inst.column, inst.time_column, *inst.filters]
        columns = [
            sa.column(c, sa.DateTime(timezone=True) if c == inst.time_column else None)
            for c in dict.fromkeys(n for n in names if n is not None)
        ]
        return sa.table(name, *columns, schema=schema or None)

    def _table(self, name: str, run: _Run) -> sa.Table:
        assert self.engine is not None
        with run.lock:
            if name not in run.tables:
                schema, _, table = name.rpartition(".")
                run.tables[name] = sa.Table(
                    table, sa.MetaData(), autoload_with=self.engine, schema=schema or None
                )
            return run.tables[name]

    @staticmethod
    def _conditions(
        metric: MetricDefinition, inst: DatabaseInstrumentation, table: sa.TableClause, today: date
    ) -> list[ColumnElement[bool]]:
        conditions = [table.c[name] == value for name, value in inst.filters.items()]
        window = database_window(metric.time_frame, today)
        if window is not None and inst.time_column is not None:
            stamp = table.c[inst.time_column]
            conditions += [stamp >= window[0], stamp < window[1]]
        return conditions

    def _statement(
        self,
        metric: MetricDefinition,
        inst: DatabaseInstrumentation,
        table: sa.TableClause,
        run: _Run,
    ) -> sa.Select[Any]:
        """One statement that computes what the batched counter computes."""
        column = table.c[inst.column] if inst.column is not None else None
        aggregate: ColumnElement[Any]
        if inst.operation == "count":
            aggregate = sa.func.count() if column is None else sa.func.count(column)
        elif inst.operation == "sum":
            aggregate = sa.func.sum(column)
        else:  # distinct_count, and the exact count that estimate_distinct_count estimates
            aggregate = sa.func.count(sa.distinct(column if column is not None else sa.text("*")))
        return (
            sa.select(aggregate)
            .select_from(table)
            .where(*self._conditions(metric, inst, table, run.today))
        )

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
        relation = relation.where(*self._conditions(metric, inst, table, run.today))
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
                if self.mode != "queries":
                    _check_type(metric, value)
                error = _short(swallowed[0]) if swallowed else None
            except Exception as exc:
                value, error = FAILED, _short(exc)
        duration = time.perf_counter() - started
        return MetricOutcome(metric.key_path, _plain(value), duration, error)

    # -- the whole payload -------------------------------------------------------------------------

    def outcomes(self) -> list[MetricOutcome]:
        """Compute every active metric of the enabled categories; one outcome per metric."""
        return self._outcomes(self.metrics(), _Run(today=self.clock().astimezone(UTC).date()))

    def _outcomes(self, metrics: list[MetricDefinition], run: _Run) -> list[MetricOutcome]:
        context = BuildContext(self.engine, self.events, self.counters, run.today, self.mode)
        token = _CURRENT_BUILD.set(context)
        try:
            return self._outcomes_in_context(metrics, run)
        finally:
            _CURRENT_BUILD.reset(token)

    def _outcomes_in_context(
        self, metrics: list[MetricDefinition], run: _Run
    ) -> list[MetricOutcome]:
        with sql.memoized_bounds():
            # Each metric runs in its own copy of this context: they share the bounds cache
            # and the current build.
            tasks: queue.SimpleQueue[tuple[MetricDefinition, contextvars.Context]] = (
                queue.SimpleQueue()
            )
            for metric in metrics:
                tasks.put((metric, contextvars.copy_context()))
            finished: queue.SimpleQueue[MetricOutcome] = queue.SimpleQueue()
            running: dict[str, float] = {}  # key path -> start, of metrics on a worker now
            abandoned: set[str] = set()

            def work() -> None:
                while True:
                    try:
                        metric, ctx = tasks.get_nowait()
                    except queue.Empty:
                        return
                    running[metric.key_path] = time.perf_counter()
                    outcome = ctx.run(self._run_one, metric, run)
                    if metric.key_path in abandoned:
                        return  # a fresh worker took this one's place
                    finished.put(outcome)

            def start_worker() -> None:
                threading.Thread(target=work, name="usage_ping-metric", daemon=True).start()

            for _ in range(min(self.concurrency, len(metrics))):
                start_worker()
            results: dict[str, MetricOutcome] = {}
            while len(results) < len(metrics):
                try:
                    outcome = finished.get(timeout=0.05)
                except queue.Empty:
                    pass
                else:
                    running.pop(outcome.key_path, None)
                    if outcome.key_path not in results:  # else given up just before it finished
                        self._record(results, outcome)
                now = time.perf_counter()
                for key, began in list(running.items()):
                    if now - began > self.metric_timeout and key not in results:
                        abandoned.add(key)
                        running.pop(key, None)
                        error = _short(MetricTimeoutError(f"over {self.metric_timeout:g} s"))
                        self._record(results, MetricOutcome(key, int(FAILED), now - began, error))
                        start_worker()
        return [results[m.key_path] for m in metrics]

    def _record(self, results: dict[str, MetricOutcome], outcome: MetricOutcome) -> None:
        results[outcome.key_path] = outcome
        if self.on_outcome is not None:
            try:
                self.on_outcome(outcome)
            except Exception as exc:  # a broken progress display must not stop the build
                logger.warning("on_outcome callback failed: %s", _short(exc))

    def _facts(self, recorded_at: datetime, meta: list[dict[str, Any]]) -> dict[str, Any]:
        facts = self.facts
        if facts is None:
            return {}
        top: dict[str, Any] = {
            "uuid": facts.uuid,
            "hostname": facts.hostname,
            "version": facts.version,
            "installation_type": facts.installation_type,
            "edition": facts.edition,
            "recorded_at": _recorded_at(recorded_at),
        }
        for key in ("active_user_count", "license"):
            source = getattr(facts, key)
            if source is None:
                continue
            if not callable(source):
                top[key] = source if key != "license" else dict(source)
                continue
            started = time.perf_counter()
            entry: dict[str, Any] = {"key_path": key}
            if self.mode == "queries":
                top[key] = {"callable": getattr(source, "__qualname__", repr(source))}
            else:
                try:
                    top[key] = source()
                except Exception as exc:
                    top[key] = int(FAILED)
                    entry["error"] = _short(exc)
            entry["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
            meta.append(entry)
        return top

    def _start_topology(self) -> Callable[[], tuple[Any, dict[str, Any]]] | None:
        """Start the topology block; returns what waits for it (its value and its meta entry)."""
        source = self.topology
        if source is None or TOPOLOGY_CATEGORY not in self.categories:
            return None
        if self.mode == "queries":
            described = source.describe()
            return lambda: (described, {"key_path": TOPOLOGY_KEY, "duration_ms": 0.0})
        started = time.perf_counter()
        box: list[Any] = []
        done = threading.Event()

        def work() -> None:
            try:
                box.append(source.collect())
            except Exception as exc:  # collect() raises only to show a bug in tests
                box.append(exc)
            finally:
                done.set()

        threading.Thread(target=work, name="usage_ping-topology-block", daemon=True).start()

        def wait() -> tuple[Any, dict[str, Any]]:
            # collect() keeps its own deadline; this only guards against a bug in it.
            done.wait(source.settings.total_timeout_s + 5.0)
            duration = time.perf_counter() - started
            block = box[0] if box else None
            if isinstance(block, Exception):
                report(block, "topology block")
                block = source.unavailable(type(block).__name__, duration)
            elif block is None:
                block = source.unavailable("total_timeout", duration)
            entry: dict[str, Any] = {
                "key_path": TOPOLOGY_KEY,
                "duration_ms": round(duration * 1000, 1),
            }
            failures: dict[str, str] = block["failures"]
            if failures:
                listed = ", ".join(f"{name}: {why}" for name, why in failures.items())
                entry["error"] = (
                    f"{len(failures)} of {len(source.queries)} Prometheus queries failed: {listed}"
                )[:300]
            return block, entry

        return wait

    def build(self) -> dict[str, Any]:
        """The payload: the instance's facts, every computed metric, and ``meta``.

        ``meta`` holds the mode, when the build started and how long it took, and per metric its
        ``key_path``, ``duration_ms`` and, when it failed, ``error``.
        """
        began = self.clock()
        started = time.perf_counter()
        meta: list[dict[str, Any]] = []
        payload = self._facts(began, meta)
        topology = self._start_topology()
        run = _Run(today=began.astimezone(UTC).date())
        for outcome in self._outcomes(self.metrics(), run):
            set_path(payload, outcome.key_path, outcome.value)
            entry: dict[str, Any] = {
                "key_path": outcome.key_path,
                "duration_ms": round(outcome.duration * 1000, 1),
            }
            if outcome.error is not None:
                entry["error"] = outcome.error
            meta.append(entry)
        if topology is not None:
            payload[TOPOLOGY_KEY], entry = topology()
            meta.append(entry)
        payload["meta"] = {
            "mode": self.mode,
            "started_at": _recorded_at(began),
            "duration_s": round(time.perf_counter() - started, 3),
            "metrics": meta,
        }
        return payload
