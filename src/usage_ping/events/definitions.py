"""Known events: the unique-value counters an application declares in YAML.

Each YAML file holds a list of events::

    - name: i_compliance_credential_inventory
      category: compliance
      redis_slot: compliance
      aggregation: weekly
      expiry: 42

Files are validated against ``known_event.schema.json`` (shipped in the package) when loaded:
a bad file fails loudly, naming the file, the event and the field; a name declared twice is
refused. Definitions are loud; tracking (see :mod:`usage_ping.events.tracker`) never is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import jsonschema
import yaml

from usage_ping.errors import UsagePingError

__all__ = [
    "DEFAULT_EXPIRY_DAYS",
    "EventDefinitionError",
    "KnownEvent",
    "KnownEvents",
    "definition_files",
]

Aggregation = Literal["daily", "weekly"]

DEFAULT_EXPIRY_DAYS: dict[str, int] = {"daily": 29, "weekly": 42}
"""Days a key lives after its last write, when the event sets no ``expiry`` (as the guide)."""


class EventDefinitionError(UsagePingError, ValueError):
    """A known-events file is invalid; the message names the file and the field."""


@dataclass(frozen=True)
class KnownEvent:
    """One declared event."""

    name: str
    category: str
    aggregation: Aggregation
    redis_slot: str | None = None
    expiry: int | None = None
    feature_flag: str | None = None
    source: str = "<code>"

    @property
    def slot(self) -> str:
        """The hash tag its keys share: ``redis_slot``, or the event's own name."""
        return self.redis_slot or self.name

    @property
    def expiry_days(self) -> int:
        return self.expiry if self.expiry is not None else DEFAULT_EXPIRY_DAYS[self.aggregation]


def _schema() -> dict[str, Any]:
    text = resources.files("usage_ping.events").joinpath("known_event.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


_VALIDATOR = jsonschema.Draft202012Validator(_schema())


def _where(error: jsonschema.ValidationError) -> str:
    path = "/".join(str(p) for p in error.absolute_path)
    return path or "(the event)"


class KnownEvents(Mapping[str, KnownEvent]):
    """The registry of known events, by name.

    Example:
        >>> events = KnownEvents.load(Path("config/known_events"))  # doctest: +SKIP
        >>> events["i_search_total"].category
        'search'
    """

    def __init__(self, events: Iterable[KnownEvent] = ()) -> None:
        self._events: dict[str, KnownEvent] = {}
        for event in events:
            self.add(event)

    def add(self, event: KnownEvent) -> None:
        """Register one event; a second event of the same name is refused."""
        if event.name in self._events:
            first = self._events[event.name]
            raise EventDefinitionError(
                f"{event.source}: event {event.name!r} is already defined in {first.source}"
            )
        self._events[event.name] = event

    @classmethod
    def load(cls, *paths: Path | str) -> KnownEvents:
        """Load YAML files, or every ``*.yml``/``*.yaml`` file of directories, in name order."""
        registry = cls()
        for file in definition_files(paths):
            for event in _read(file):
                registry.add(event)
        return registry

    def __getitem__(self, name: str) -> KnownEvent:
        return self._events[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._events)

    def __len__(self) -> int:
        return len(self._events)

    def in_category(self, category: str) -> list[KnownEvent]:
        return [e for e in self._events.values() if e.category == category]

    def categories(self) -> list[str]:
        return sorted({e.category for e in self._events.values()})


def definition_files(paths: Iterable[Path | str]) -> list[Path]:
    """Files as given, and every ``*.yml``/``*.yaml`` below directories, in name order."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in (".yml", ".yaml"))
        else:
            files.append(path)
    return files


def _read(file: Path) -> list[KnownEvent]:
    try:
        data = yaml.safe_load(file.read_text())
    except OSError as exc:
        raise EventDefinitionError(f"{file}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise EventDefinitionError(f"{file}: not valid YAML: {exc}") from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise EventDefinitionError(f"{file}: expected a list of events, got {type(data).__name__}")
    events = []
    for index, item in enumerate(data):
        label = item.get("name", f"#{index + 1}") if isinstance(item, dict) else f"#{index + 1}"
        errors = sorted(_VALIDATOR.iter_errors(item), key=lambda e: list(e.absolute_path))
        if errors:
            details = "; ".join(f"{_where(e)}: {e.message}" for e in errors)
            raise EventDefinitionError(f"{file}: event {label}: {details}")
        events.append(KnownEvent(**item, source=str(file)))
    return events
