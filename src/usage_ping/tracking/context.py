"""The standard context: who and where, attached to every event that usage-ping's trackers send.

It is a self-describing JSON under our own Iglu schema, :data:`STANDARD_CONTEXT_SCHEMA`. Its data
has exactly these properties (the collector validates them, ``additionalProperties: false``):

=================  ==============  ==============================================================
``environment``    string          ``production``, ``staging``, ``development``...
``source``         string          which tracker sent it: ``usage-ping-python``, ``usage-ping-js``
``plan``           string or null  the instance's (or namespace's) plan
``namespace_id``   integer or null the host's namespace (group, organisation...) of the event
``project_id``     integer or null the host's project of the event
``user_id``        integer or null the host's user who did it
``extra``          object or null  anything else (the leftover keyword arguments of ``event``)
=================  ==============  ==============================================================

The JavaScript module (``frontend/src/tracking.js``) builds the same object with source
``usage-ping-js``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "JS_SOURCE",
    "PYTHON_SOURCE",
    "STANDARD_CONTEXT_SCHEMA",
    "HasId",
    "StandardContext",
    "id_of",
]

STANDARD_CONTEXT_SCHEMA = "iglu:dev.usage-ping/standard_context/jsonschema/1-0-0"
"""The Iglu URI of the standard context (keep in step with the collector's bundled schema)."""
PYTHON_SOURCE = "usage-ping-python"
"""The ``source`` of events sent by the Python tracker."""
JS_SOURCE = "usage-ping-js"
"""The ``source`` of events sent by the JavaScript module."""


class HasId(Protocol):
    """A host object that has an integer ``id`` (a user, project or namespace model)."""

    @property
    def id(self) -> int | None: ...


def id_of(value: int | HasId | None, name: str) -> int | None:
    """The integer id of ``value``: an int, or an object with an ``.id`` (None stays None).

    Raises:
        TypeError: anything else (a str, a bool, an object whose ``id`` is not an int), naming
            the argument: silently sending a wrong id would be worse than not sending.

    Example:
        >>> id_of(7, "user"), id_of(None, "user")
        (7, None)
    """
    if value is None:
        return None
    found: object = value if isinstance(value, int) else getattr(value, "id", _NO_ID)
    if found is None:  # an object not saved yet: no id to send
        return None
    if isinstance(found, bool) or not isinstance(found, int):
        shown = type(found).__name__ if found is not _NO_ID else f"{type(value).__name__} (no .id)"
        raise TypeError(f"{name}: expected an int id or an object with an int .id, got {shown}")
    return found


_NO_ID = object()


@dataclass(frozen=True)
class StandardContext:
    """The standard context of one event (see the module documentation for each field).

    Example:
        >>> StandardContext("production", PYTHON_SOURCE, user_id=3).to_json()["data"]["user_id"]
        3
    """

    environment: str
    source: str
    plan: str | None = None
    namespace_id: int | None = None
    project_id: int | None = None
    user_id: int | None = None
    extra: Mapping[str, Any] | None = None

    def data(self) -> dict[str, Any]:
        """The context's data object (an empty ``extra`` becomes null)."""
        return {
            "environment": self.environment,
            "source": self.source,
            "plan": self.plan,
            "namespace_id": self.namespace_id,
            "project_id": self.project_id,
            "user_id": self.user_id,
            "extra": dict(self.extra) if self.extra else None,
        }

    def to_json(self) -> dict[str, Any]:
        """The self-describing JSON: ``{"schema": STANDARD_CONTEXT_SCHEMA, "data": {...}}``."""
        return {"schema": STANDARD_CONTEXT_SCHEMA, "data": self.data()}
