"""Aggregated metrics: how many values were seen in any (OR) or all (AND) of several events.

Each YAML file holds a list of metrics::

    - name: compliance_features_unique_visits_union
      operator: OR                      # OR: union, AND: intersection
      events: [g_compliance_audit_events, g_compliance_dashboard]
      time_frame: [7d, 28d]             # 7d: the weekly window, 28d: the monthly window
      feature_flag: compliance_union    # optional: the metric is reported only with it on

Files are validated against ``aggregated_metric.schema.json`` (shipped in the package) when
loaded: a bad file fails loudly, naming the file, the metric and the field, and a name declared
twice is refused. Given the known events, loading also checks that every event exists and that
the events of each metric can be counted together (one slot, one category, one aggregation).

``all`` is not a possible time frame: event keys expire after a few weeks, so there is no
all-time count to aggregate. ``AND`` takes at most :data:`MAX_AND_EVENTS` events: it needs
2^n - 1 unions, and its noise has been measured for 2 to 4 events only (see
:func:`inclusion_exclusion` and ``docs/aggregated-metrics.md``).

Evaluation reads the same keys as :meth:`EventCounter.count`: ``OR`` is one ``PFCOUNT`` over every
key of every event, ``AND`` is computed by inclusion-exclusion from ``PFCOUNT`` unions, clamped to
what is possible.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import jsonschema
import yaml

from usage_ping.events.counter import EventCounter, EventError, FeatureFlags
from usage_ping.events.definitions import EventDefinitionError, KnownEvents, definition_files
from usage_ping.events.windows import TimeFrame
from usage_ping.fallback import FAILED, call_safely

__all__ = [
    "MAX_AND_EVENTS",
    "TIME_FRAMES",
    "AggregateTimeFrame",
    "AggregatedMetric",
    "AggregatedMetricError",
    "AggregatedMetrics",
    "Operator",
    "aggregated_value",
    "aggregated_values",
    "inclusion_exclusion",
]

Operator = Literal["OR", "AND"]
AggregateTimeFrame = Literal["7d", "28d"]

TIME_FRAMES: dict[AggregateTimeFrame, TimeFrame] = {"7d": "weekly", "28d": "monthly"}
"""The event-counter window behind each time frame of an aggregated metric."""

MAX_AND_EVENTS = 4
"""Most events an ``AND`` metric may intersect (it needs 2^n - 1 unions; noise measured to 4)."""

_ALL_REFUSED = (
    "'all' is not possible for event counters (their keys expire after a few weeks): "
    "use 7d and/or 28d"
)


class AggregatedMetricError(EventDefinitionError):
    """An aggregated-metrics file or definition is invalid; the message names file and field."""


@dataclass(frozen=True)
class AggregatedMetric:
    """One aggregated metric: the union (``OR``) or intersection (``AND``) of known events.

    Attributes:
        name: the key of its value in the payload.
        operator: ``"OR"`` (values seen in any event) or ``"AND"`` (seen in every event).
        events: the known events, which must share one slot, category and aggregation.
        time_frames: ``"7d"`` (the events' weekly window) and/or ``"28d"`` (monthly window).
        feature_flag: when set, the metric is reported only while this flag is on.
        source: the file that declared it.

    Example:
        >>> metric = AggregatedMetric("search_any", "OR", ("i_search_total", "i_search_advanced"))
        >>> metric.time_frames
        ('7d', '28d')
    """

    name: str
    operator: Operator
    events: tuple[str, ...]
    time_frames: tuple[AggregateTimeFrame, ...] = ("7d", "28d")
    feature_flag: str | None = None
    source: str = "<code>"

    def __post_init__(self) -> None:
        where = f"{self.source}: aggregated metric {self.name!r}"
        if self.operator not in ("OR", "AND"):
            raise AggregatedMetricError(f"{where}: operator {self.operator!r} is not OR or AND")
        if not self.events:
            raise AggregatedMetricError(f"{where}: events: none given")
        if len(set(self.events)) != len(self.events):
            raise AggregatedMetricError(f"{where}: events: an event is listed twice")
        if self.operator == "AND" and len(self.events) > MAX_AND_EVENTS:
            raise AggregatedMetricError(f"{where}: events: {_and_too_long(len(self.events))}")
        if not self.time_frames:
            raise AggregatedMetricError(f"{where}: time_frame: none given")
        for frame in map(str, self.time_frames):
            if frame not in TIME_FRAMES:
                reason = _ALL_REFUSED if frame == "all" else "use 7d and/or 28d"
                raise AggregatedMetricError(f"{where}: time_frame: {frame!r}: {reason}")


def _and_too_long(count: int) -> str:
    return (
        f"AND of {count} events is refused, at most {MAX_AND_EVENTS}: inclusion-exclusion needs "
        f"2^n - 1 = {2**count - 1} unions, and its noise is measured for up to "
        f"{MAX_AND_EVENTS} events (see docs/aggregated-metrics.md)"
    )


def _schema() -> dict[str, Any]:
    text = (
        resources.files("usage_ping.events").joinpath("aggregated_metric.schema.json").read_text()
    )
    schema: dict[str, Any] = json.loads(text)
    return schema


_VALIDATOR = jsonschema.Draft202012Validator(_schema())


def _describe(error: jsonschema.ValidationError) -> str:
    path = list(error.absolute_path)
    where = "/".join(str(p) for p in path) or "(the metric)"
    if path[:1] == ["time_frame"] and error.validator == "enum" and error.instance == "all":
        return f"{where}: {_ALL_REFUSED}"
    if path == ["events"] and error.validator == "maxItems" and isinstance(error.instance, list):
        return f"{where}: {_and_too_long(len(error.instance))}"
    return f"{where}: {error.message}"


class AggregatedMetrics(Mapping[str, AggregatedMetric]):
    """The registry of aggregated metrics, by name.

    Example:
        >>> events = KnownEvents.load("config/known_events")  # doctest: +SKIP
        >>> metrics = AggregatedMetrics.load("config/metrics", events=events)  # doctest: +SKIP
        >>> metrics["search_any"].operator  # doctest: +SKIP
        'OR'
    """

    def __init__(self, metrics: Iterable[AggregatedMetric] = ()) -> None:
        self._metrics: dict[str, AggregatedMetric] = {}
        for metric in metrics:
            self.add(metric)

    def add(self, metric: AggregatedMetric) -> None:
        """Register one metric; a second metric of the same name is refused."""
        if metric.name in self._metrics:
            first = self._metrics[metric.name]
            raise AggregatedMetricError(
                f"{metric.source}: aggregated metric {metric.name!r} is already defined in "
                f"{first.source}"
            )
        self._metrics[metric.name] = metric

    @classmethod
    def load(cls, *paths: Path | str, events: KnownEvents | None = None) -> AggregatedMetrics:
        """Load YAML files, or every ``*.yml``/``*.yaml`` file of directories, in name order.

        Args:
            paths: files or directories.
            events: the known events; when given, every metric is checked against them
                (see :meth:`check`).

        Raises:
            AggregatedMetricError: a file cannot be read, is not valid YAML, breaks the schema,
                declares a name twice, or (with ``events``) names events that do not exist or
                cannot be counted together.
        """
        registry = cls()
        for file in definition_files(paths):
            for metric in _read(file):
                registry.add(metric)
        if events is not None:
            registry.check(events)
        return registry

    def check(self, events: KnownEvents) -> None:
        """Check that every event exists and each metric's events can be counted together.

        Events counted in one ``PFCOUNT`` must share a slot (one Redis Cluster hash slot), a
        category and an aggregation (one window), as :meth:`EventCounter.unique_events` requires.

        Raises:
            AggregatedMetricError: naming the file, the metric and the events at fault.
        """
        for metric in self._metrics.values():
            where = f"{metric.source}: aggregated metric {metric.name!r}: events"
            missing = [name for name in metric.events if name not in events]
            if missing:
                raise AggregatedMetricError(
                    f"{where}: unknown event {', '.join(map(repr, missing))}: "
                    "declare it in known events"
                )
            first, *others = (events[name] for name in metric.events)
            for event in others:
                for what in ("slot", "category", "aggregation"):
                    mine, theirs = getattr(first, what), getattr(event, what)
                    if mine != theirs:
                        raise AggregatedMetricError(
                            f"{where}: {first.name} ({what} {mine}) and {event.name} "
                            f"({what} {theirs}) cannot be counted together: the events of one "
                            f"metric must share a {what}"
                        )

    def __getitem__(self, name: str) -> AggregatedMetric:
        return self._metrics[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._metrics)

    def __len__(self) -> int:
        return len(self._metrics)


def _read(file: Path) -> list[AggregatedMetric]:
    try:
        data = yaml.safe_load(file.read_text())
    except OSError as exc:
        raise AggregatedMetricError(f"{file}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise AggregatedMetricError(f"{file}: not valid YAML: {exc}") from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise AggregatedMetricError(
            f"{file}: expected a list of aggregated metrics, got {type(data).__name__}"
        )
    metrics = []
    for index, item in enumerate(data):
        label = item.get("name", f"#{index + 1}") if isinstance(item, dict) else f"#{index + 1}"
        errors = sorted(_VALIDATOR.iter_errors(item), key=lambda e: list(map(str, e.absolute_path)))
        if errors:
            details = "; ".join(_describe(e) for e in errors)
            raise AggregatedMetricError(f"{file}: aggregated metric {label}: {details}")
        metrics.append(
            AggregatedMetric(
                name=item["name"],
                operator=item["operator"],
                events=tuple(item["events"]),
                time_frames=tuple(item["time_frame"]),
                feature_flag=item.get("feature_flag"),
                source=str(file),
            )
        )
    return metrics


# -- evaluation ------------------------------------------------------------------------------------


def inclusion_exclusion(
    events: Sequence[str],
    union: Callable[[tuple[str, ...]], int],
    *,
    clamp: bool = True,
) -> int:
    """The size of the intersection of ``events``, from the sizes of their unions.

    By inclusion-exclusion, for events A1 ... An::

        size(A1 and ... and An) = sum over the non-empty subsets S of {A1, ..., An}
                                  of (-1) ** (len(S) + 1) * size(union of S)

    e.g. size(A and B) = size(A) + size(B) - size(A or B). ``union`` is asked once per subset
    (2^n - 1 calls, the single events first). With HyperLogLog estimates every union carries
    its own error (~0.81 % of its size on Redis), and the sum adds and subtracts all of them, so
    the absolute error of the result follows the size of the sets, not of the intersection
    (measured: RMS about 1 % of one set, worst about 4 %, for 2 to 4 events; it grows only
    slowly with n because unions share registers and their errors largely cancel). A small
    intersection of large sets is therefore mostly noise, and the raw sum can come out negative
    or larger than the smallest set. With ``clamp`` (the default) the result is kept within
    [0, the smallest single set]; when a single set is empty the answer is 0 and no other union
    is asked for.

    Args:
        events: the events to intersect (at least one).
        union: the (estimated) number of distinct values in the union of some of ``events``.
        clamp: keep the result within what is possible (turn off only to study the noise).

    Example:
        >>> sizes = {frozenset("a"): 10, frozenset("b"): 8, frozenset("ab"): 15}
        >>> inclusion_exclusion(["a", "b"], lambda names: sizes[frozenset(names)])
        3
    """
    if not events:
        raise EventError("no events given")
    singles = [union((name,)) for name in events]
    smallest = min(singles)
    if clamp and smallest <= 0:
        return 0
    total = sum(singles)
    for size in range(2, len(events) + 1):
        sign = 1 if size % 2 else -1
        total += sign * sum(union(subset) for subset in itertools.combinations(events, size))
    return max(0, min(total, smallest)) if clamp else total


class _Unions:
    """``PFCOUNT`` of unions of events over one time frame, each asked of the store once."""

    def __init__(self, counter: EventCounter, today: date) -> None:
        self.counter = counter
        self.today = today
        self._cache: dict[tuple[str, frozenset[str]], int] = {}

    def __call__(self, frame: AggregateTimeFrame, names: tuple[str, ...]) -> int:
        key = (frame, frozenset(names))
        if key not in self._cache:
            self._cache[key] = self.counter.count(list(names), TIME_FRAMES[frame], self.today)
        return self._cache[key]


def _frame(frame: str) -> AggregateTimeFrame:
    if frame == "7d":
        return "7d"
    if frame == "28d":
        return "28d"
    reason = _ALL_REFUSED if frame == "all" else "use 7d or 28d"
    raise EventError(f"time frame {frame!r} of an aggregated metric: {reason}")


def _evaluate(metric: AggregatedMetric, frame: AggregateTimeFrame, unions: _Unions) -> int:
    if metric.operator == "OR":
        return unions(frame, metric.events)
    return inclusion_exclusion(metric.events, functools.partial(unions, frame))


def aggregated_value(
    counter: EventCounter,
    metric: AggregatedMetric,
    frame: AggregateTimeFrame,
    today: date | None = None,
) -> int:
    """The value of ``metric`` over the ``"7d"`` or ``"28d"`` window ending before ``today``.

    ``OR`` is one ``PFCOUNT`` over every key of every event (the union). ``AND`` is the
    intersection by inclusion-exclusion, one ``PFCOUNT`` per non-empty subset of the events,
    clamped to [0, the smallest event's count] (see :func:`inclusion_exclusion`). The windows
    are those of :meth:`EventCounter.count`: ``"7d"`` is the weekly window and ``"28d"`` the
    monthly one of the events' aggregation. The feature flag is not consulted here.

    Args:
        counter: the event counter (its store and known events).
        metric: the metric.
        frame: ``"7d"`` or ``"28d"``.
        today: the day the payload is built (default: today by the counter's clock, UTC).

    Raises:
        EventError: unknown events, events that cannot be counted together, or a time frame
            other than 7d and 28d.
        StoreError: the store failed.

    Example:
        >>> metric = AggregatedMetric("search_both", "AND", ("i_search_total", "i_search_api"))
        >>> aggregated_value(counter, metric, "7d")  # doctest: +SKIP
        412
    """
    day = today or counter.clock().astimezone(UTC).date()
    return _evaluate(metric, _frame(frame), _Unions(counter, day))


def aggregated_values(
    counter: EventCounter,
    metrics: Iterable[AggregatedMetric] | Mapping[str, AggregatedMetric],
    today: date | None = None,
    flags: FeatureFlags | None = None,
) -> dict[str, dict[str, int]]:
    """Every metric over each time frame it declares: ``{"7d": {name: value}, "28d": {...}}``.

    Metrics whose feature flag is off are left out. Both time frames are always present (maybe
    empty). Unions shared between metrics are counted once. Each value is computed behind the
    fail-safe boundary: a metric that cannot be computed (a store error, an unknown event) is
    logged and reported as ``-1`` (:data:`usage_ping.fallback.FAILED`), and the others still are.

    Args:
        counter: the event counter (its store and known events).
        metrics: the metrics (an :class:`AggregatedMetrics` registry or any iterable of them).
        today: the day the payload is built (default: today by the counter's clock, UTC).
        flags: the feature flags (default: the counter's).

    Example:
        >>> metrics = AggregatedMetrics.load("config/aggregated_metrics")  # doctest: +SKIP
        >>> aggregated_values(counter, metrics, date(2026, 11, 23))  # doctest: +SKIP
        {'7d': {'search_any': 1520, 'search_both': 412}, '28d': {'search_any': 4877}}
    """
    day = today or counter.clock().astimezone(UTC).date()
    flags = flags if flags is not None else counter.flags
    items = metrics.values() if isinstance(metrics, Mapping) else metrics
    unions = _Unions(counter, day)
    result: dict[str, dict[str, int]] = {frame: {} for frame in TIME_FRAMES}
    for metric in items:
        if metric.feature_flag and not flags.enabled(metric.feature_flag):
            continue
        for frame in metric.time_frames:
            value = call_safely(
                functools.partial(_evaluate, metric, frame, unions),
                fallback=FAILED,
                description=f"aggregated metric {metric.name} ({frame})",
                context={"metric": metric.name, "time_frame": frame, "source": metric.source},
            )
            result[frame][metric.name] = int(value)
    return result
