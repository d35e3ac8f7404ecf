"""The Snowplow tracker protocol: requests to raw events, and the JSON fields they carry.

Two ways in, as the official collector has them:

- ``GET /i`` (and ``GET /com.snowplowanalytics.snowplow/tp2``): one event, its fields in the
  querystring;
- ``POST /com.snowplowanalytics.snowplow/tp2``: a ``payload_data`` self-describing JSON whose
  ``data`` is a list of events, each an object of string fields. Querystring parameters on the
  POST are merged into every event and win on a clash; a POST without a body is one event built
  from the querystring.

Each POSTed event is validated against the ``payload_data`` item schema on its own, so one broken
event does not take the rest of its batch to the bad store with it (Snowplow's enrich rejects
the whole batch). A body that is not JSON, or an envelope that is not ``payload_data``, is one
bad payload.

The JSON fields of an event: ``ue_pr`` (raw JSON) or ``ue_px`` (base64url) holds the
self-describing event, ``co`` (raw JSON) or ``cx`` (base64url) the entities; the raw form wins
when both are present. Base64 is accepted with or without its padding, in the URL-safe alphabet
or the standard one, as the JavaScript and Python trackers write it differently.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from usage_ping.collector.snowplow.iglu import (
    InvalidSchemaKeyError,
    Resolver,
    SchemaKey,
)

__all__ = [
    "PIXEL_PATH",
    "TP2_PATH",
    "TP2_VENDOR",
    "Failure",
    "JSONFieldError",
    "decode_json_field",
    "events_from_body",
    "events_from_querystring",
    "loads",
]

TP2_VENDOR = "com.snowplowanalytics.snowplow"
TP2_PATH = f"/{TP2_VENDOR}/tp2"
PIXEL_PATH = "/i"

_B64_TRANSLATE = bytes.maketrans(b"+/", b"-_")


@dataclass(frozen=True, slots=True)
class Failure:
    """A payload or an event that cannot become a good event, and why."""

    errors: list[str]
    parameters: Any = None
    """The event as it came (its fields, or whatever JSON stood in their place), if any."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise ValueError(f"{text[:50]} is too large a number")
    return number


def loads(document: str | bytes) -> Any:
    """Strict JSON: no NaN or Infinity, and no number too large for a float.

    Raises:
        ValueError: not JSON (also for a document nested too deeply).
    """
    try:
        return json.loads(document, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError as exc:
        raise ValueError("nested too deeply") from exc


class JSONFieldError(ValueError):
    """A ``ue_px``/``cx`` field is not base64, or a JSON field is not JSON."""


def decode_json_field(parameters: dict[str, str], raw: str, encoded: str) -> Any:
    """The JSON document in field ``raw`` (plain) or ``encoded`` (base64url); None if neither.

    Raises:
        JSONFieldError: naming the field.
    """
    if raw in parameters:
        name, text = raw, parameters[raw]
    elif encoded in parameters:
        name = encoded
        value = parameters[encoded].strip().encode("ascii", "replace").translate(_B64_TRANSLATE)
        try:
            decoded = base64.urlsafe_b64decode(value + b"=" * (-len(value) % 4))
            text = decoded.decode("utf-8")
        except (binascii.Error, ValueError) as exc:
            raise JSONFieldError(f"Field [{name}]: not base64url-encoded UTF-8 ({exc})") from exc
    else:
        return None
    try:
        return loads(text)
    except ValueError as exc:
        raise JSONFieldError(f"Field [{name}]: not JSON ({exc})") from exc


def events_from_querystring(querystring: str) -> list[dict[str, str] | Failure]:
    """The one event of a GET: its querystring's parameters (the first of a repeated name)."""
    parameters: dict[str, str] = {}
    for name, value in parse_qsl(querystring, keep_blank_values=True):
        parameters.setdefault(name, value)
    return [parameters]


def _envelope(body: bytes, resolver: Resolver) -> tuple[SchemaKey, Any] | Failure:
    """The ``payload_data`` key and data of a body, or why it is not one."""
    try:
        document = loads(body)
    except ValueError as exc:
        return Failure([f"the body is not JSON ({exc})"])
    if not isinstance(document, dict) or set(document) != {"schema", "data"}:
        return Failure(["the body is not a self-describing JSON (an object of schema and data)"])
    try:
        key = SchemaKey.parse(document["schema"])
    except InvalidSchemaKeyError as exc:
        return Failure([str(exc)])
    if (key.vendor, key.name) != (TP2_VENDOR, "payload_data") or key not in resolver:
        return Failure([f"{key.uri}: not a payload_data schema this collector knows"])
    return key, document["data"]


def events_from_body(
    body: bytes, query: dict[str, str], resolver: Resolver
) -> list[dict[str, str] | Failure]:
    """The events of a POST body: good ones as their fields, the others as failures."""
    if not body.strip():
        return [dict(query)] if query else [Failure(["empty body and no querystring"])]
    envelope = _envelope(body, resolver)
    if isinstance(envelope, Failure):
        return [envelope]
    key, data = envelope
    if not isinstance(data, list) or not data:
        return [Failure(resolver.validate(key, data))]
    events: list[dict[str, str] | Failure] = []
    for item in data:
        errors = resolver.validate(key, item, part="items")
        if errors:
            events.append(Failure(errors, item))
        else:
            events.append({**item, **query} if query else item)
    return events
