"""usage_ping.testing helpers for host applications: build, read, assert, drift check."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.metrics.files import write_metric
from tests.payload.test_builder import _callable, _issues
from usage_ping.metrics import MetricDictionary
from usage_ping.payload import InstanceFacts
from usage_ping.testing import (
    assert_metric,
    assert_no_drift,
    build_payload,
    drift,
    metric_value,
)


@pytest.fixture
def metrics(tmp_path: Path) -> Path:
    write_metric(tmp_path, "issues", key_path="counts.issues")
    write_metric(tmp_path, "removed", key_path="counts.removed_thing", status="removed")
    _callable(tmp_path, "flags", "flags", value_type="object", data_category="operational")
    return tmp_path


def test_build_payload_and_read_it(engine: sa.Engine, metadata: sa.MetaData, metrics: Path) -> None:
    """A host test builds against its own database and asserts key paths."""
    _issues(engine, metadata)
    payload = build_payload(metrics, engine=engine, facts=InstanceFacts(uuid="u", version="1"))
    assert_metric(payload, "counts.issues", 40)
    assert metric_value(payload, "settings.flags") == {"ldap": True}
    with pytest.raises(AssertionError, match=r"counts.issues: expected 41, got 40"):
        assert_metric(payload, "counts.issues", 41)
    with pytest.raises(KeyError, match=r"no 'isues' in counts \(it has: issues\)"):
        metric_value(payload, "counts.isues")
    assert_no_drift(payload, metrics)


@pytest.mark.swallows
def test_build_payload_fails_loudly_on_a_failed_metric(tmp_path: Path) -> None:
    """A failing metric is a test failure naming it and its error, unless allowed."""
    _callable(tmp_path, "boom", "boom")
    with pytest.raises(AssertionError, match=r"1 metric\(s\) failed:\n  settings.boom: Runtime"):
        build_payload(tmp_path)
    payload = build_payload(tmp_path, allow_failures=True)
    with pytest.raises(AssertionError, match=r"expected 1, got -1 \(RuntimeError: boom\)"):
        assert_metric(payload, "settings.boom", 1)


def test_drift_finds_missing_and_unexpected(metrics: Path) -> None:
    """A metric the payload lacks, and a value the dictionary lacks, are both reported."""
    dictionary = MetricDictionary.load(metrics)
    payload = {
        "uuid": "u",
        "recorded_at": "2026-11-21T00:00:00.000Z",
        "counts": {"issues": 3, "projects": 2, "removed_thing": 1},
        "meta": {"metrics": []},
    }
    found = drift(payload, dictionary)
    assert found.missing == ("settings.flags",)
    assert found.unexpected == ("counts.projects", "counts.removed_thing")
    with pytest.raises(AssertionError) as raised:
        assert_no_drift(payload, dictionary)
    assert str(raised.value) == (
        "payload and metric dictionary drift apart; missing from the payload: settings.flags; "
        "not in the metric dictionary: counts.projects, counts.removed_thing"
    )


def test_drift_respects_categories(metrics: Path) -> None:
    """A switched-off category must be absent, and its absence is not drift."""
    payload = build_payload(metrics, categories=["optional"], allow_failures=True)
    assert_no_drift(payload, metrics, categories=["optional"])
    found = drift(payload, metrics)  # with every category on, the operational one is missing
    assert found.missing == ("settings.flags",)
    with_flags = {**payload, "settings": {"flags": {"ldap": True}}}
    assert drift(with_flags, metrics, categories=["optional"]).unexpected == ("settings.flags",)


def test_object_values_are_one_metric(metrics: Path) -> None:
    """An object metric's inner keys are its value, not unexpected metrics."""
    payload = {"counts": {"issues": 1}, "settings": {"flags": {"ldap": True, "saml": False}}}
    assert not drift(payload, metrics)
