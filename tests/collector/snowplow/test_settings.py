"""The snowplow section of the service's configuration file."""

from __future__ import annotations

from pathlib import Path

import pytest

from usage_ping.collector.settings import ServiceSettings, SnowplowSettings
from usage_ping.settings import ConfigError


def test_the_snowplow_section_is_read(tmp_path: Path) -> None:
    """Every key of the section reaches SnowplowSettings; the others keep their defaults."""
    path = tmp_path / "service.yaml"
    path.write_text(
        "snowplow:\n"
        "  allowed_origins: [https://app.example.com]\n"
        "  schema_dir: /etc/usage-ping/schemas\n"
        "  anonymise_ip_octets: 1\n"
        "  cookie_domain: .example.com\n"
        "  micro: true\n"
    )
    settings = ServiceSettings.load(path)
    assert settings.snowplow == SnowplowSettings(
        allowed_origins=("https://app.example.com",),
        schema_dir="/etc/usage-ping/schemas",
        anonymise_ip_octets=1,
        cookie_domain=".example.com",
        micro=True,
    )


def test_defaults_keep_micro_off() -> None:
    """Without a section the collector is on and the Micro API off."""
    settings = ServiceSettings()
    assert settings.snowplow.enabled is True
    assert settings.snowplow.micro is False
    assert settings.snowplow.cookie_name == "sp"


@pytest.mark.parametrize(
    "section",
    ["  anonymise_ip_octets: 5\n", "  micro: maybe\n", "  colour: red\n", "  cookie_name: 'a b'\n"],
)
def test_a_wrong_key_names_itself(tmp_path: Path, section: str) -> None:
    """A bad value or an unknown key is a ConfigError naming the key."""
    path = tmp_path / "service.yaml"
    path.write_text("snowplow:\n" + section)
    with pytest.raises(ConfigError, match="snowplow"):
        ServiceSettings.load(path)
