"""The configuration file and its environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from usage_ping.settings import ConfigError, Settings


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No file, no variables: the embedded defaults (SQLite everywhere, enabled)."""
    monkeypatch.chdir(tmp_path)
    settings = Settings.load(environ={})
    assert settings.enabled
    assert settings.database_url == f"sqlite:///{tmp_path}/usage_ping.sqlite3"
    assert settings.store_url == f"sqlite:///{tmp_path}/usage_ping_counters.sqlite3"
    assert settings.metrics == (tmp_path / "config/metrics",)
    assert settings.concurrency == 2


def test_file_values_and_paths_relative_to_it(tmp_path: Path) -> None:
    """Relative paths and SQLite files resolve next to the configuration file."""
    config = tmp_path / "etc" / "usage-ping.yml"
    config.parent.mkdir()
    config.write_text(
        "enabled: false\n"
        "database_url: sqlite:///host.db\n"
        "store_url: redis://127.0.0.1:6379/0\n"
        "metrics: [metrics, /abs/metrics]\n"
        "events: [events]\n"
        "version: 2.1.0\n"
        "edition: EE\n"
        "installation_type: helm\n"
        "hostname: git.example.com\n"
        "concurrency: 4\n"
        "metric_timeout: 30\n"
    )
    settings = Settings.load(config, environ={})
    etc = config.parent.resolve()
    assert settings.locked_off
    assert settings.database_url == f"sqlite:///{etc}/host.db"
    assert settings.store_url == "redis://127.0.0.1:6379/0"
    assert settings.metrics == (etc / "metrics", Path("/abs/metrics"))
    assert settings.events == (etc / "events",)
    assert (settings.version, settings.edition, settings.installation_type) == (
        "2.1.0",
        "EE",
        "helm",
    )
    assert settings.hostname == "git.example.com"
    assert (settings.concurrency, settings.metric_timeout) == (4, 30.0)
    assert settings.source == str(config)


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    """USAGE_PING_<KEY> wins; the file itself can be named by USAGE_PING_CONFIG."""
    config = tmp_path / "c.yml"
    config.write_text("version: 1.0.0\nconcurrency: 2\n")
    env = {
        "USAGE_PING_CONFIG": str(config),
        "USAGE_PING_VERSION": "1.0.1",
        "USAGE_PING_CONCURRENCY": "3",
        "USAGE_PING_ENABLED": "false",
        "USAGE_PING_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1/test",
        "USAGE_PING_METRICS": "a, b",
    }
    settings = Settings.load(environ=env)
    assert settings.version == "1.0.1"
    assert settings.concurrency == 3
    assert not settings.enabled
    assert settings.database_url == "postgresql+psycopg://postgres@127.0.0.1/test"
    assert settings.metrics == (tmp_path / "a", tmp_path / "b")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("concurrency: 0\n", "concurrency: 0 is less than the minimum of 1"),
        ("enabled: perhaps\n", "enabled: 'perhaps' is not of type 'boolean'"),
        (
            "databse_url: x\n",
            "Additional properties are not allowed ('databse_url' was unexpected)",
        ),
        ("- a\n", "expected a mapping of settings, got list"),
        ("a: [\n", "not valid YAML"),
    ],
)
def test_bad_files_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    """A typo, a bad value or a broken file is refused with the file and the key named."""
    config = tmp_path / "usage-ping.yml"
    config.write_text(text)
    with pytest.raises(ConfigError) as raised:
        Settings.load(config, environ={})
    assert str(raised.value).startswith(f"{config}: ")
    assert message in str(raised.value)


def test_a_named_file_must_exist(tmp_path: Path) -> None:
    """A configuration file that was named but is missing is an error, not the defaults."""
    with pytest.raises(ConfigError, match="cannot read"):
        Settings.load(tmp_path / "missing.yml", environ={})


def test_a_bad_override_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable with a value of the wrong type fails like a bad file."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="metric_timeout: 'soon' is not of type 'number'"):
        Settings.load(environ={"USAGE_PING_METRIC_TIMEOUT": "soon"})
