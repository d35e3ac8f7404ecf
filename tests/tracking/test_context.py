"""The standard context: its exact fields, and how host objects become ids."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from usage_ping.tracking.context import (
    PYTHON_SOURCE,
    STANDARD_CONTEXT_SCHEMA,
    StandardContext,
    id_of,
)


@dataclass
class Model:
    id: int | None


def test_schema_is_our_iglu_uri() -> None:
    """The context is published under the exact Iglu URI that the collector bundles."""
    assert STANDARD_CONTEXT_SCHEMA == "iglu:dev.usage-ping/standard_context/jsonschema/1-0-0"


def test_context_has_exactly_the_schema_fields() -> None:
    """The data object has the seven fields of the schema, no more, and ids as given."""
    context = StandardContext(
        "staging", PYTHON_SOURCE, "premium", 1, 2, 3, {"via": "api"}
    ).to_json()
    assert context == {
        "schema": STANDARD_CONTEXT_SCHEMA,
        "data": {
            "environment": "staging",
            "source": "usage-ping-python",
            "plan": "premium",
            "namespace_id": 1,
            "project_id": 2,
            "user_id": 3,
            "extra": {"via": "api"},
        },
    }


def test_empty_extra_and_missing_ids_are_null() -> None:
    """Without ids or extra the fields are present as nulls (the schema allows null)."""
    data = StandardContext("production", PYTHON_SOURCE, extra={}).data()
    assert data["extra"] is None
    assert data["plan"] is data["user_id"] is data["project_id"] is data["namespace_id"] is None


def test_id_of_accepts_ints_and_objects_with_an_id() -> None:
    """An int is the id; an object gives its ``.id``; None and an unsaved object give None."""
    assert id_of(7, "user") == 7
    assert id_of(Model(8), "user") == 8
    assert id_of(Model(None), "user") is None
    assert id_of(None, "user") is None


@pytest.mark.parametrize("value", ["7", True, 1.5, object(), Model.__new__(Model)])
def test_id_of_refuses_what_is_not_an_int_id(value: object) -> None:
    """Strings, bools, floats and objects without an int ``.id`` are refused, naming the field."""
    with pytest.raises(TypeError, match=r"^project: expected an int id"):
        id_of(value, "project")  # type: ignore[arg-type]
