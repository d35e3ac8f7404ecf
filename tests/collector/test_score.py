"""The DevOps score: defaults while few instances report, then the 90th percentile."""

from __future__ import annotations

import math

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from tests.collector.conftest import SMALL_CARD, ping
from usage_ping.collector.flatten import flatten
from usage_ping.collector.score import conv_index, instance_values

pytestmark = pytest.mark.dialects("postgresql", "sqlite")


def test_few_instances_are_scored_against_the_default_leaders(client: TestClient) -> None:
    """Fewer than min_instances: the configured leaders; a failed count is left out."""
    block = client.post("/usage_data", json=ping()).json()["conv_index"]
    # 40 issues / 10 users = 4 per user against a default leader of 2: capped at 100 %.
    assert (block["leader_issues"], block["instance_issues"], block["percentage_issues"]) == (
        2.0, 4.0, 100.0,
    )  # fmt: skip
    # 300 notes / 10 = 30 against 60: 50 %.
    assert block["percentage_notes"] == 50.0
    # deployments failed (-1): no value, and not counted in the score.
    assert block["instance_deployments"] is None
    assert block["percentage_deployments"] is None
    assert block["score"] == 75.0


def test_leaders_are_the_90th_percentile_of_recent_instances(client: TestClient) -> None:
    """With enough instances the leader is the percentile of their latest values."""
    app = client.app
    for n in range(1, 11):  # instance n: n*10 issues per 10 users = n per user
        client.post("/usage_data", json=ping(uuid=f"i{n}", counts_monthly={"issues": n * 10}))
    app.state.ingestor.leaders.invalidate()  # type: ignore[attr-defined]
    block = client.post(
        "/usage_data", json=ping(uuid="new", counts_monthly={"issues": 55, "notes": 10})
    ).json()["conv_index"]
    # The leaders come from the instances before it: 1..10 issues per user, whose 90th
    # percentile (linear interpolation) is 9.1.
    assert block["leader_issues"] == pytest.approx(9.1)
    assert block["percentage_issues"] == pytest.approx(100 * 5.5 / 9.1, abs=0.01)
    # None of them reported notes: too few values, so the configured default leader stays.
    assert block["leader_notes"] == pytest.approx(60.0)


def test_conv_index_rules() -> None:
    """Percentage is capped at 100 and 0 against a zero leader; score averages known features."""
    block = conv_index(7, {"a": 5.0, "b": 1.0, "c": None, "d": 3.0}, {"a": 2.0, "b": 4.0, "d": 0})
    assert block["usage_data_id"] == 7
    assert (block["percentage_a"], block["percentage_b"], block["percentage_d"]) == (100, 25, 0)
    assert block["percentage_c"] is None
    assert block["score"] == pytest.approx((100 + 25 + 0) / 3, abs=0.01)
    values = instance_values({"counts_monthly.issues": 30, "active_user_count": 0}, SMALL_CARD)
    assert values["issues"] == 30.0  # no active users: divided by 1, never by zero


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


@given(_json)
def test_flatten_never_raises_and_gives_finite_numbers(document: object) -> None:
    """Any JSON flattens to rows of finite floats with non-empty, bounded key paths."""
    rows = flatten(document)
    for key, value in rows.items():
        assert 0 < len(key) <= 255
        assert isinstance(value, float)
        assert math.isfinite(value)
