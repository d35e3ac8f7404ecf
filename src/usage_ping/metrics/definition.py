"""The metric dictionary: one YAML file per metric, the single source of truth of the payload.

A definition says where a value goes (``key_path``), what it means, who owns it, how often it is
counted (``time_frame``), where it comes from (``data_source``), how sensitive it is
(``data_category``) and how to compute it (``instrumentation``)::

    key_path: counts_monthly.issues
    description: Issues created in the last 28 complete days
    product_group: project_management
    value_type: number
    status: active
    time_frame: 28d
    data_source: database
    data_category: optional
    tier: [free, premium, ultimate]
    instrumentation:
      table: issues
      operation: count
      time_column: created_at

Instrumentations are declarative (``database``: table or model, operation, column, equality
filters, time column; ``redis_hll``: known events; ``redis``: a plain counter's prefix and event)
or a ``callable`` (``module:attribute`` of a function or class, with ``options``) for anything else.

Loading is loud: each file is checked against ``metric_definition.schema.json`` (shipped in the
package) and then for what a schema cannot say (a database metric over 7d needs a time column,
``redis_hll`` metrics need a 7d or 28d window, a key path cannot be both a value and a group);
errors name the file and the field. A key path defined twice is refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import jsonschema
import yaml

from usage_ping.errors import UsagePingError
from usage_ping.events.definitions import definition_files

__all__ = [
    "CallableInstrumentation",
    "DatabaseInstrumentation",
    "Instrumentation",
    "MetricDefinition",
    "MetricDefinitionError",
    "MetricDictionary",
    "RedisHLLInstrumentation",
    "RedisInstrumentation",
]

TimeFrame = Literal["7d", "28d", "all", "none"]
DataSource = Literal["database", "redis", "redis_hll", "prometheus", "system"]
DataCategory = Literal["standard", "subscription", "operational", "optional"]
Operation = Literal["count", "distinct_count", "sum", "estimate_distinct_count"]


class MetricDefinitionError(UsagePingError, ValueError):
    """A metric definition file is invalid; the message names the file and the field."""


@dataclass(frozen=True)
class DatabaseInstrumentation:
    """Count rows of a table (or ORM model, ``module:Class``) with one of the SQL counters."""

    operation: Operation
    table: str | None = None
    model: str | None = None
    column: str | None = None
    filters: Mapping[str, Any] = field(default_factory=dict)
    time_column: str | None = None


@dataclass(frozen=True)
class RedisHLLInstrumentation:
    """Distinct values tracked for any of ``events`` over the metric's window."""

    events: tuple[str, ...]


@dataclass(frozen=True)
class RedisInstrumentation:
    """A plain counter's total: prefix ``counter``, event ``event``."""

    counter: str
    event: str


@dataclass(frozen=True)
class CallableInstrumentation:
    """``module:attribute`` of a function or class that computes the value, with ``options``."""

    callable: str
    options: Mapping[str, Any] = field(default_factory=dict)


Instrumentation = (
    DatabaseInstrumentation
    | RedisHLLInstrumentation
    | RedisInstrumentation
    | CallableInstrumentation
)


@dataclass(frozen=True)
class MetricDefinition:
    """One metric of the dictionary."""

    key_path: str
    description: str
    value_type: str
    status: str
    time_frame: TimeFrame
    data_source: DataSource
    data_category: DataCategory
    product_group: str
    tier: tuple[str, ...]
    instrumentation: Instrumentation
    product_section: str | None = None
    product_stage: str | None = None
    milestone: str | None = None
    source: str = "<code>"

    @property
    def active(self) -> bool:
        """Whether the metric belongs in the payload (status ``active``)."""
        return self.status == "active"


def _schema() -> dict[str, Any]:
    text = (
        resources.files("usage_ping.metrics").joinpath("metric_definition.schema.json").read_text()
    )
    schema: dict[str, Any] = json.loads(text)
    return schema


_VALIDATOR = jsonschema.Draft202012Validator(_schema())


def _schema_errors(data: Any) -> list[str]:
    found = []
    for error in sorted(_VALIDATOR.iter_errors(data), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path) or "(the file)"
        if error.validator == "oneOf" and list(error.absolute_path) == ["instrumentation"]:
            found.append(
                f"{where}: must be one of: a database spec (table or model, operation, ...), "
                "redis_hll (events), redis (counter, event) or a callable (callable, options)"
            )
        else:
            found.append(f"{where}: {error.message}")
    return found


def _instrumentation(spec: Mapping[str, Any]) -> Instrumentation:
    if "callable" in spec:
        return CallableInstrumentation(spec["callable"], dict(spec.get("options", {})))
    if "events" in spec:
        return RedisHLLInstrumentation(tuple(spec["events"]))
    if "counter" in spec:
        return RedisInstrumentation(spec["counter"], spec["event"])
    return DatabaseInstrumentation(
        operation=spec["operation"],
        table=spec.get("table"),
        model=spec.get("model"),
        column=spec.get("column"),
        filters=dict(spec.get("filters", {})),
        time_column=spec.get("time_column"),
    )


_DECLARATIVE_SOURCE = {
    DatabaseInstrumentation: "database",
    RedisHLLInstrumentation: "redis_hll",
    RedisInstrumentation: "redis",
}


def _rule_errors(metric: MetricDefinition) -> list[str]:
    """What the schema cannot check: rules across fields."""
    errors = []
    inst = metric.instrumentation
    expected = _DECLARATIVE_SOURCE.get(type(inst))
    if expected is not None and metric.data_source != expected:
        errors.append(
            f"instrumentation: a {expected} spec needs data_source {expected}, "
            f"not {metric.data_source} (use a callable for other sources)"
        )
    if expected is not None and metric.value_type != "number":
        errors.append(f"value_type: a {expected} metric is a number, not {metric.value_type}")
    if isinstance(inst, DatabaseInstrumentation):
        windowed = metric.time_frame in ("7d", "28d")
        if windowed and inst.time_column is None:
            errors.append(
                f"instrumentation/time_column: a {metric.time_frame} database metric needs the "
                "column that dates each row"
            )
        if not windowed and inst.time_column is not None:
            errors.append(
                f"instrumentation/time_column: only 7d and 28d metrics use a time column, "
                f"this one is {metric.time_frame}"
            )
        if inst.operation in ("distinct_count", "sum") and inst.column is None:
            errors.append(f"instrumentation/column: {inst.operation} needs a column")
    if isinstance(inst, RedisHLLInstrumentation) and metric.time_frame not in ("7d", "28d"):
        errors.append(
            f"time_frame: redis_hll metrics count a 7d or 28d window, not {metric.time_frame}"
        )
    return errors


def read_definition(file: Path) -> MetricDefinition:
    """Load and check one metric file; raises MetricDefinitionError naming file and field."""
    try:
        data = yaml.safe_load(file.read_text())
    except OSError as exc:
        raise MetricDefinitionError(f"{file}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise MetricDefinitionError(f"{file}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise MetricDefinitionError(
            f"{file}: expected one metric (a mapping), got {type(data).__name__}"
        )
    errors = _schema_errors(data)
    if errors:
        raise MetricDefinitionError(f"{file}: " + "; ".join(errors))
    metric = MetricDefinition(
        key_path=data["key_path"],
        description=data["description"],
        value_type=data["value_type"],
        status=data["status"],
        time_frame=data["time_frame"],
        data_source=data["data_source"],
        data_category=data["data_category"],
        product_group=data["product_group"],
        tier=tuple(data["tier"]),
        instrumentation=_instrumentation(data["instrumentation"]),
        product_section=data.get("product_section"),
        product_stage=data.get("product_stage"),
        milestone=data.get("milestone"),
        source=str(file),
    )
    errors = _rule_errors(metric)
    if errors:
        raise MetricDefinitionError(f"{file}: " + "; ".join(errors))
    return metric


class MetricDictionary(Mapping[str, MetricDefinition]):
    """Every metric, by key path.

    Example:
        >>> metrics = MetricDictionary.load("config/metrics")  # doctest: +SKIP
        >>> metrics["counts.issues"].data_source
        'database'
    """

    def __init__(self, metrics: Iterable[MetricDefinition] = ()) -> None:
        self._metrics: dict[str, MetricDefinition] = {}
        for metric in metrics:
            self.add(metric)

    def add(self, metric: MetricDefinition) -> None:
        """Register a metric; a duplicate key path, or one nested under a value, is refused."""
        if metric.key_path in self._metrics:
            first = self._metrics[metric.key_path]
            raise MetricDefinitionError(
                f"{metric.source}: key_path {metric.key_path!r} is already defined in "
                f"{first.source}"
            )
        for other in self._metrics.values():
            short, long = sorted((metric, other), key=lambda m: len(m.key_path))
            if long.key_path.startswith(short.key_path + "."):
                raise MetricDefinitionError(
                    f"{metric.source}: key_path {long.key_path!r} would nest under the value "
                    f"{short.key_path!r} ({short.source})"
                )
        self._metrics[metric.key_path] = metric

    @classmethod
    def load(cls, *paths: Path | str) -> MetricDictionary:
        """Load metric files, or every ``*.yml``/``*.yaml`` below directories."""
        dictionary = cls()
        for file in definition_files(paths):
            dictionary.add(read_definition(file))
        return dictionary

    def active(self) -> list[MetricDefinition]:
        """The metrics that belong in the payload, by key path."""
        return sorted((m for m in self._metrics.values() if m.active), key=lambda m: m.key_path)

    def __getitem__(self, key_path: str) -> MetricDefinition:
        return self._metrics[key_path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._metrics)

    def __len__(self) -> int:
        return len(self._metrics)
