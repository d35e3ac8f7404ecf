"""The tracking configuration: checked when made, and read from the instance's settings."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from usage_ping.settings import Settings
from usage_ping.tracking import TrackingConfig, TrackingConfigError


def test_defaults_are_off_without_an_endpoint() -> None:
    """Enabled but without an endpoint, nothing is active."""
    assert not TrackingConfig().active
    assert TrackingConfig(endpoint="https://collector.example.com").active
    assert not TrackingConfig(endpoint="https://collector.example.com", enabled=False).active


def test_method_is_case_insensitive() -> None:
    """``GET`` and ``post`` are accepted and stored in lower case."""
    assert TrackingConfig(method="GET").method == "get"
    assert TrackingConfig(method="post").method == "post"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"method": "PUT"}, "method"),
        ({"endpoint": "collector.example.com"}, "endpoint"),
        ({"endpoint": "ftp://collector.example.com"}, "endpoint"),
        ({"batch_size": 0}, "batch_size"),
        ({"request_timeout": 0}, "request_timeout"),
        ({"flush_interval": -1.0}, "flush_interval"),
        ({"environment": ""}, "environment"),
    ],
)
def test_invalid_configuration_fails_loudly_naming_the_field(
    options: dict[str, Any], field: str
) -> None:
    """A bad configuration is a definition error: raised at once, the field named."""
    with pytest.raises(TrackingConfigError, match=f"^{field}: "):
        TrackingConfig(**options)


def test_from_settings_uses_the_collector_url_and_stays_off_by_default() -> None:
    """The central service's URL is the endpoint; tracking waits for an explicit opt-in."""
    settings = Settings(collector_url="https://usage.example.com")
    config = TrackingConfig.from_settings(settings)
    assert config.endpoint == "https://usage.example.com"
    assert not config.active
    assert TrackingConfig.from_settings(settings, enabled=True, plan="free").active


def test_settings_that_lock_usage_ping_off_lock_tracking_off() -> None:
    """``enabled: false`` in the settings wins over ``enabled=True`` from the host's code."""
    settings = Settings(enabled=False, collector_url="https://usage.example.com")
    assert not TrackingConfig.from_settings(settings, enabled=True).active


def test_from_settings_reads_tracking_keys_when_settings_have_them() -> None:
    """Keys that a later Settings may add (tracking_url, tracking_enabled...) are honoured."""
    settings = SimpleNamespace(
        locked_off=False,
        collector_url="https://usage.example.com",
        tracking_enabled=True,
        tracking_url="https://events.example.com",
        tracking_app_id="shop",
        environment="staging",
        plan="ultimate",
    )
    config = TrackingConfig.from_settings(cast(Settings, settings))
    assert (config.endpoint, config.app_id, config.environment, config.plan) == (
        "https://events.example.com",
        "shop",
        "staging",
        "ultimate",
    )
    assert config.active


def test_from_settings_refuses_unknown_options() -> None:
    """A misspelt override is refused rather than ignored."""
    with pytest.raises(TrackingConfigError, match="unknown tracking option"):
        TrackingConfig.from_settings(Settings(), endpiont="https://x.example.com")
