"""Iglu keys, the bundled schemas, the operator's directory, and loud errors for broken files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from usage_ping.collector.snowplow.iglu import (
    STANDARD_CONTEXT,
    InvalidSchemaKeyError,
    Resolver,
    SchemaFileError,
    SchemaKey,
)

SELF_DESC = (
    "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0#"
)


def write_schema(root: Path, uri: str, body: dict[str, Any], **self_block: str) -> Path:
    key = SchemaKey.parse(uri)
    path = root / key.path
    path.parent.mkdir(parents=True, exist_ok=True)
    block = {"vendor": key.vendor, "name": key.name, "format": key.format, "version": key.version}
    block.update(self_block)
    path.write_text(json.dumps({"$schema": SELF_DESC, "self": block, **body}))
    return path


def test_keys_parse_and_print() -> None:
    """An Iglu URI round-trips through SchemaKey; anything else is refused."""
    key = SchemaKey.parse(STANDARD_CONTEXT)
    assert (key.vendor, key.name, key.format, key.version) == (
        "dev.usage-ping", "standard_context", "jsonschema", "1-0-0",
    )  # fmt: skip
    assert key.uri == STANDARD_CONTEXT
    for bad in ("iglu:a/b/c/1-0", "http://a/b/c/1-0-0", "iglu:a/b/jsonschema/1-0-0/x", 3):
        with pytest.raises(InvalidSchemaKeyError):
            SchemaKey.parse(bad)  # type: ignore[arg-type]


def test_the_core_schemas_are_bundled() -> None:
    """payload_data, contexts, unstruct_event, web_page and the standard context resolve."""
    resolver = Resolver()
    names = {(k.vendor, k.name, k.version) for k in resolver.schema_keys()}
    snowplow = "com.snowplowanalytics.snowplow"
    assert {
        (snowplow, "payload_data", "1-0-4"),
        (snowplow, "contexts", "1-0-0"),
        (snowplow, "contexts", "1-0-1"),
        (snowplow, "unstruct_event", "1-0-0"),
        (snowplow, "web_page", "1-0-0"),
        ("dev.usage-ping", "standard_context", "1-0-0"),
    } <= names


@pytest.mark.parametrize(
    ("data", "valid"),
    [
        ({}, True),
        ({"environment": "production", "source": "rails", "plan": None, "namespace_id": 1,
          "project_id": None, "user_id": 3, "extra": {"any": ["thing"]}}, True),
        ({"plan": "premium", "extra": None}, True),
        ({"user_id": "3"}, False),
        ({"project_id": 1.5}, False),
        ({"environment": 1}, False),
        ({"extra": []}, False),
        ({"unknown": 1}, False),
        ([], False),
    ],
)  # fmt: skip
def test_the_standard_context_schema(data: Any, valid: bool) -> None:
    """The standard context: optional typed properties, nothing else."""
    errors = Resolver().validate(SchemaKey.parse(STANDARD_CONTEXT), data)
    assert (errors == []) is valid


def test_the_operators_schemas_are_resolved(tmp_path: Path) -> None:
    """A schema in schema_dir validates; it cannot replace a bundled one."""
    write_schema(tmp_path, "iglu:com.acme/signup/jsonschema/1-0-0", {"type": "object",
                 "properties": {"plan": {"enum": ["free", "pro"]}}})  # fmt: skip
    write_schema(tmp_path, STANDARD_CONTEXT, {"type": "string"})
    resolver = Resolver(tmp_path)
    signup = SchemaKey.parse("iglu:com.acme/signup/jsonschema/1-0-0")
    assert resolver.validate(signup, {"plan": "pro"}) == []
    (error,) = resolver.validate(signup, {"plan": "gold"})
    assert error.startswith("iglu:com.acme/signup/jsonschema/1-0-0: plan: 'gold' is not one of")
    assert resolver.validate(SchemaKey.parse(STANDARD_CONTEXT), {}) == []


def test_an_unknown_schema_is_an_error_not_an_exception() -> None:
    """Validating against a schema nobody has names it."""
    key = SchemaKey.parse("iglu:com.acme/nope/jsonschema/1-0-0")
    assert Resolver().validate(key, {}) == [f"{key.uri}: the schema is not known to this collector"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a JSON file"),
        ("[]", "a schema is a JSON object"),
        (None, "its self block must be"),
        ('{"self": {"vendor": "com.acme", "name": "x", "format": "jsonschema",'
         ' "version": "1-0-0"}, "type": 5}', r"not a valid JSON Schema \(draft 4\)"),
    ],
)  # fmt: skip
def test_a_broken_schema_file_fails_loudly(
    tmp_path: Path, content: str | None, message: str
) -> None:
    """Bad JSON, a wrong self block or an invalid schema names the file."""
    if content is None:
        path = write_schema(tmp_path, "iglu:com.acme/x/jsonschema/1-0-0", {}, version="1-0-1")
    else:
        path = tmp_path / "com.acme" / "x" / "jsonschema" / "1-0-0"
        path.parent.mkdir(parents=True)
        path.write_text(content)
    with pytest.raises(SchemaFileError, match=message) as raised:
        Resolver(tmp_path)
    assert str(path) in str(raised.value)


def test_a_missing_schema_dir_fails_loudly(tmp_path: Path) -> None:
    """A schema_dir that does not exist is a configuration error."""
    with pytest.raises(SchemaFileError, match="does not exist"):
        Resolver(tmp_path / "nope")


def test_errors_are_capped_and_short() -> None:
    """A huge invalid document gives at most 10 errors of bounded length."""
    resolver = Resolver()
    key = SchemaKey.parse("iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4")
    errors = resolver.validate(key, [{"tv": "x" * 10_000} for _ in range(50)])
    assert len(errors) == 10
    assert all(len(e) < 500 for e in errors)


def test_without_the_accelerator_the_answers_are_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """jsonschema alone (jsonschema-rs not installed) finds the same errors."""
    from usage_ping.collector.snowplow import iglu

    key = SchemaKey.parse(STANDARD_CONTEXT)
    documents: list[Any] = [{}, {"user_id": "1"}, {"extra": []}, {"plan": None}, []]
    fast = [Resolver().validate(key, d) for d in documents]
    monkeypatch.setattr(iglu, "jsonschema_rs", None)
    slow = Resolver()
    assert [slow.validate(key, d) for d in documents] == fast
    assert slow._validator(key, "") is not None
    assert slow._validator(key, "").fast is None  # type: ignore[union-attr]
