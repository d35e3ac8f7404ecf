"""The tracker protocol's parsing: JSON fields, querystrings and POST bodies."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.collector.snowplow.conftest import batch, event
from usage_ping.collector.snowplow.iglu import Resolver
from usage_ping.collector.snowplow.protocol import (
    Failure,
    JSONFieldError,
    decode_json_field,
    events_from_body,
    events_from_querystring,
)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner)))  # fmt: skip
def test_base64_fields_decode_with_or_without_padding(document: object) -> None:
    """Whatever JSON a tracker encodes, in either alphabet, padded or not, decodes back."""
    raw = json.dumps(document).encode()
    for encoded in (
        base64.urlsafe_b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        base64.b64encode(raw).decode(),
    ):
        assert decode_json_field({"cx": encoded}, "co", "cx") == document


def test_the_raw_field_wins() -> None:
    """co is read before cx; neither gives None."""
    fields = {"co": "[1]", "cx": base64.b64encode(b"[2]").decode()}
    assert decode_json_field(fields, "co", "cx") == [1]
    assert decode_json_field({}, "co", "cx") is None


@pytest.mark.parametrize("value", ["***", "e30", base64.b64encode(b"\xff\xfe").decode()])
def test_broken_fields_name_themselves(value: str) -> None:
    """Not base64, truncated JSON, or not UTF-8: a JSONFieldError naming the field."""
    with pytest.raises(JSONFieldError, match=r"Field \[ue_px\]"):
        decode_json_field({"ue_px": value[:-1] if value == "e30" else value}, "ue_pr", "ue_px")


def test_the_first_of_a_repeated_parameter_counts() -> None:
    """A querystring is one event; a repeated name keeps its first value."""
    assert events_from_querystring("e=pv&e=se&url=a%20b&x=") == [{"e": "pv", "url": "a b", "x": ""}]


def test_a_body_is_validated_item_by_item() -> None:
    """A good and a bad item: one event and one failure holding the bad item."""
    document = batch(event(), {"e": "se"})
    parsed = events_from_body(json.dumps(document).encode(), {}, Resolver())
    assert parsed[0] == event()
    assert isinstance(parsed[1], Failure)
    assert parsed[1].parameters == {"e": "se"}
    assert any("'tv' is a required property" in e for e in parsed[1].errors)


@pytest.mark.parametrize("body", [b'{"a": NaN}', b"[1e999]", b"[" * 100_000])
def test_json_that_cannot_be_stored_is_not_json(body: bytes) -> None:
    """NaN, infinite numbers and runaway nesting are refused as not JSON."""
    (failure,) = events_from_body(body, {}, Resolver())
    assert isinstance(failure, Failure)
    assert "the body is not JSON" in failure.errors[0]
