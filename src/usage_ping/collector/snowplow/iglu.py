"""Iglu schemas: schema keys, a resolver over the bundled and the operator's schemas, validation.

A self-describing JSON names its schema with an Iglu URI,
``iglu:<vendor>/<name>/<format>/<model>-<revision>-<addition>``, and the schema itself is a JSON
Schema (draft 4) document with a ``self`` block, stored at ``<vendor>/<name>/<format>/<version>``
(no extension). The collector resolves schemas from two places, in this order:

1. the schemas bundled in this package (``schemas/``): the core Snowplow ones the trackers use
   (``payload_data``, ``contexts``, ``unstruct_event``, ``web_page``, and the two the collector
   derives) and usage-ping's ``standard_context``;
2. the operator's directory (``snowplow.schema_dir``), in the same layout, for their own events
   and entities. It may add schemas, not replace bundled ones.

Every schema is read and checked when the resolver is built (a broken file fails loudly, naming
it); validators are compiled once and cached. Resolution is exact, as Iglu's is: a URI names one
version.

Validation runs twice as fast as it needs to be: ``jsonschema-rs`` (compiled Rust, well under a
microsecond per event) answers whether a document is valid, and only for the rare invalid one
does ``jsonschema`` (the reference implementation) list the errors; when the two disagree on an
invalid document, ``jsonschema`` decides. Without ``jsonschema-rs`` installed, ``jsonschema``
does both, some hundred times slower. Formats are checked as draft 4 defines them.

    >>> resolver = Resolver()
    >>> resolver.validate(SchemaKey.parse(STANDARD_CONTEXT), {"environment": "production"})
    []
    >>> resolver.validate(SchemaKey.parse(STANDARD_CONTEXT), {"user_id": "1"})[0].split(": ")[1:]
    ['user_id', "'1' is not of type 'integer', 'null'"]
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import jsonschema

try:
    import jsonschema_rs
except ImportError:  # pragma: no cover - the accelerator is optional
    jsonschema_rs = None  # type: ignore[assignment]

__all__ = [
    "CONTEXTS",
    "PAYLOAD_DATA",
    "STANDARD_CONTEXT",
    "UNSTRUCT_EVENT",
    "InvalidSchemaKeyError",
    "Resolver",
    "SchemaFileError",
    "SchemaKey",
]

PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
CONTEXTS = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0"
UNSTRUCT_EVENT = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
STANDARD_CONTEXT = "iglu:dev.usage-ping/standard_context/jsonschema/1-0-0"
"""usage-ping's standard context, sent by the backend and frontend tracking wrappers."""

MAX_ERRORS = 10
"""At most this many errors are reported per validated document."""
_MAX_MESSAGE = 300

_KEY = re.compile(
    r"^iglu:([a-zA-Z0-9_.-]+)/([a-zA-Z0-9_-]+)/([a-zA-Z0-9_-]+)/([0-9]+-[0-9]+-[0-9]+)$"
)


class InvalidSchemaKeyError(ValueError):
    """A string is not an Iglu URI."""


class SchemaFileError(Exception):
    """A schema file cannot be used: not JSON, not a draft-4 schema, or its ``self`` is wrong."""


@dataclass(frozen=True, slots=True)
class SchemaKey:
    """The four parts of an Iglu URI."""

    vendor: str
    name: str
    format: str
    version: str

    @classmethod
    def parse(cls, uri: str) -> SchemaKey:
        """``iglu:vendor/name/format/m-r-a`` as a key; :class:`InvalidSchemaKeyError` otherwise."""
        if cls is SchemaKey and isinstance(uri, str) and len(uri) <= _MAX_CACHED_URI:
            return _parse_key(uri)  # the same few URIs, on every event
        return cls._parse(uri)

    @classmethod
    def _parse(cls, uri: str) -> SchemaKey:
        match = _KEY.match(uri) if isinstance(uri, str) else None
        if match is None:
            raise InvalidSchemaKeyError(f"{_short(uri)} is not an Iglu URI")
        return cls(*match.groups())

    @property
    def uri(self) -> str:
        """The key as an Iglu URI."""
        return f"iglu:{self.vendor}/{self.name}/{self.format}/{self.version}"

    @property
    def path(self) -> str:
        """Where the schema lives in a static registry (``vendor/name/format/version``)."""
        return f"{self.vendor}/{self.name}/{self.format}/{self.version}"


_MAX_CACHED_URI = 300


@functools.lru_cache(maxsize=1024)
def _parse_key(uri: str) -> SchemaKey:
    return SchemaKey._parse(uri)  # an exception is not cached: a bad URI is checked each time


def _short(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=repr)[:_MAX_MESSAGE]
    return repr(text[:_MAX_MESSAGE] + ("…" if len(text) > _MAX_MESSAGE else ""))


def _files(root: Traversable) -> Iterator[tuple[str, Traversable]]:
    """``(vendor/name/format/version, file)`` for every schema file under ``root``."""
    for vendor in root.iterdir():
        if not vendor.is_dir():
            continue
        for name in vendor.iterdir():
            if not name.is_dir():
                continue
            for fmt in name.iterdir():
                if not fmt.is_dir():
                    continue
                for version in fmt.iterdir():
                    if version.is_file():
                        yield f"{vendor.name}/{name.name}/{fmt.name}/{version.name}", version


def _load(path: str, file: Traversable, where: str) -> tuple[SchemaKey, dict[str, Any]]:
    try:
        schema = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SchemaFileError(f"{where}: not a JSON file ({exc})") from exc
    if not isinstance(schema, dict):
        raise SchemaFileError(f"{where}: a schema is a JSON object")
    try:
        key = SchemaKey.parse(f"iglu:{path}")
    except InvalidSchemaKeyError as exc:
        raise SchemaFileError(f"{where}: the path is not vendor/name/format/m-r-a") from exc
    self_block = schema.get("self")
    expected = {
        "vendor": key.vendor,
        "name": key.name,
        "format": key.format,
        "version": key.version,
    }
    if self_block != expected:
        raise SchemaFileError(f"{where}: its self block must be {json.dumps(expected)}")
    try:
        jsonschema.Draft4Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise SchemaFileError(f"{where}: not a valid JSON Schema (draft 4): {exc.message}") from exc
    return key, schema


class _Compiled:
    """One schema's validators: the fast yes/no, and the one that explains."""

    __slots__ = ("fast", "full")

    def __init__(self, schema: dict[str, Any]) -> None:
        self.full = jsonschema.Draft4Validator(
            schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
        )
        self.fast = (
            jsonschema_rs.Draft4Validator(schema, validate_formats=True, offline=True)
            if jsonschema_rs is not None
            else None
        )

    def is_valid(self, instance: Any) -> bool:
        if self.fast is not None:
            try:
                if self.fast.is_valid(instance):
                    return True
            except (ValueError, TypeError, OverflowError):  # what Rust cannot take, Python judges
                pass
        return next(self.full.iter_errors(instance), None) is None


class Resolver:
    """Finds schemas by key and validates documents against them.

    Args:
        schema_dir: the operator's schemas, laid out as ``vendor/name/jsonschema/version``.

    Raises:
        SchemaFileError: a schema file (bundled or the operator's) cannot be used.
    """

    def __init__(self, schema_dir: Path | str | None = None) -> None:
        self._schemas: dict[SchemaKey, dict[str, Any]] = {}
        bundled = resources.files("usage_ping.collector.snowplow").joinpath("schemas")
        for path, file in _files(bundled):
            key, schema = _load(path, file, f"bundled schema {path}")
            self._schemas[key] = schema
        if schema_dir is not None:
            root = Path(schema_dir)
            if not root.is_dir():
                raise SchemaFileError(f"{root}: the schema directory does not exist")
            for path, file in _files(root):
                key, schema = _load(path, file, str(root / path))
                self._schemas.setdefault(key, schema)  # bundled schemas win
        self._validators: dict[tuple[SchemaKey, str], _Compiled] = {}
        self._lock = threading.Lock()

    def __contains__(self, key: SchemaKey) -> bool:
        return key in self._schemas

    def schema_keys(self) -> list[SchemaKey]:
        """Every schema this resolver knows, sorted."""
        return sorted(self._schemas, key=lambda k: (k.vendor, k.name, k.format, k.version))

    def schema(self, key: SchemaKey) -> dict[str, Any] | None:
        """The schema document, or None when it is not known."""
        return self._schemas.get(key)

    def _validator(self, key: SchemaKey, part: str) -> _Compiled | None:
        validator = self._validators.get((key, part))
        if validator is None:
            schema = self._schemas.get(key)
            if schema is None:
                return None
            if part:
                schema = schema.get(part, {})
            with self._lock:
                validator = _Compiled(schema)
                self._validators[(key, part)] = validator
        return validator

    def validate(self, key: SchemaKey, instance: Any, *, part: str = "") -> list[str]:
        """Errors of ``instance`` against the schema (``[]`` when valid).

        ``part`` validates against one keyword of the schema instead (``"items"``: one item of
        an array schema). Each error names the schema and the path into the instance.
        """
        validator = self._validator(key, part)
        if validator is None:
            return [f"{key.uri}: the schema is not known to this collector"]
        if validator.is_valid(instance):
            return []
        errors = []
        for error in itertools.islice(validator.full.iter_errors(instance), MAX_ERRORS):
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            message = error.message
            if len(message) > _MAX_MESSAGE:
                message = message[:_MAX_MESSAGE] + "…"
            errors.append(f"{key.uri}: {where}: {message}")
        return errors

    def validate_self_describing(
        self, document: Any, label: str
    ) -> tuple[SchemaKey | None, list[str]]:
        """The key of a ``{"schema", "data"}`` document and the errors of its data."""
        if not isinstance(document, dict) or set(document) != {"schema", "data"}:
            return None, [f"{label}: not a self-describing JSON (an object of schema and data)"]
        try:
            key = SchemaKey.parse(document["schema"])
        except InvalidSchemaKeyError as exc:
            return None, [f"{label}: {exc}"]
        return key, self.validate(key, document["data"])
