"""The instance's configuration: one YAML file, every key optional, environment overrides.

Example ``usage-ping.yml`` (every key shown with its default)::

    enabled: true                      # false locks usage ping off: the admin cannot enable it
    database_url: sqlite:///usage_ping.sqlite3   # the host's database (SQLAlchemy URL)
    store_url: sqlite:///usage_ping_counters.sqlite3   # counter store: sqlite:///PATH or redis://
    metrics: [config/metrics]          # metric dictionary: files or directories
    events: []                         # known events: files or directories
    version: 0.0.0                     # the host application's version
    edition: CE
    installation_type: source
    hostname: null                     # null: this machine's fully qualified name
    concurrency: 2                     # metrics computed at once
    metric_timeout: 60                 # seconds one metric may take
    collector_url: null                # the central service, e.g. https://usage.example.com
    send_attempts: 5                   # HTTP attempts per payload and run
    retention_days: 90                 # outbox rows are pruned after this
    prometheus: null                   # the topology block's Prometheus, e.g.
    #   url: http://127.0.0.1:9090       (no prometheus key: no topology block)
    #   query_timeout_s: 5               hard deadline of one query
    #   total_timeout_s: 15              hard deadline of the whole block
    #   services: {web: web}             Prometheus job -> service name (see usage_ping.topology)

Relative paths (metrics, events, SQLite files) are relative to the configuration file. Each key can
be overridden by an environment variable ``USAGE_PING_<KEY>`` (``USAGE_PING_DATABASE_URL``...);
lists there are comma-separated; ``USAGE_PING_PROMETHEUS_URL``, ``..._QUERY_TIMEOUT_S`` and
``..._TOTAL_TIMEOUT_S`` set the keys under ``prometheus`` (an empty URL removes the block). A key
the library does not know, or a value of the wrong type, is refused with the file and the key
named.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from usage_ping.errors import UsagePingError
from usage_ping.topology.config import SCHEMA as _PROMETHEUS_SCHEMA
from usage_ping.topology.config import TopologySettings

__all__ = ["CONFIG_ENV", "DEFAULT_CONFIG", "ConfigError", "Settings", "read_config"]

CONFIG_ENV = "USAGE_PING_CONFIG"
"""The environment variable naming the configuration file."""
DEFAULT_CONFIG = Path("usage-ping.yml")
"""The configuration file used when none is named (it may be absent: defaults apply)."""

_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "enabled": {"type": "boolean"},
        "database_url": {"type": "string", "minLength": 1},
        "store_url": {"type": "string", "minLength": 1},
        "metrics": {"type": "array", "items": {"type": "string"}},
        "events": {"type": "array", "items": {"type": "string"}},
        "version": {"type": "string"},
        "edition": {"type": "string"},
        "installation_type": {"type": "string"},
        "hostname": {"type": ["string", "null"]},
        "concurrency": {"type": "integer", "minimum": 1},
        "metric_timeout": {"type": "number", "exclusiveMinimum": 0},
        "collector_url": {"type": ["string", "null"], "pattern": "^https?://"},
        "send_attempts": {"type": "integer", "minimum": 1},
        "retention_days": {"type": "integer", "minimum": 1},
        "prometheus": _PROMETHEUS_SCHEMA,
    },
}


class ConfigError(UsagePingError, ValueError):
    """The configuration is invalid; the message names the file (or variable) and the key."""


@dataclass(frozen=True)
class Settings:
    """The configuration of one instance (see the module's documentation for each key)."""

    enabled: bool = True
    database_url: str = "sqlite:///usage_ping.sqlite3"
    store_url: str = "sqlite:///usage_ping_counters.sqlite3"
    metrics: tuple[Path, ...] = (Path("config/metrics"),)
    events: tuple[Path, ...] = ()
    version: str = "0.0.0"
    edition: str = "CE"
    installation_type: str = "source"
    hostname: str | None = None
    concurrency: int = 2
    metric_timeout: float = 60.0
    collector_url: str | None = None
    send_attempts: int = 5
    retention_days: int = 90
    prometheus: TopologySettings | None = None
    """Where the topology block finds Prometheus (None: no topology block)."""
    source: str = "<defaults>"
    """Where the settings came from (for messages)."""

    @property
    def locked_off(self) -> bool:
        """Whether the configuration locks usage ping off (``enabled: false``)."""
        return not self.enabled

    @classmethod
    def load(
        cls, path: Path | str | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Read the configuration file, then apply ``USAGE_PING_*`` overrides.

        Args:
            path: the file; default ``$USAGE_PING_CONFIG``, else ``usage-ping.yml`` if it exists.
            environ: the environment (default ``os.environ``).

        Raises:
            ConfigError: the file is unreadable or invalid, or an override has a bad value.
        """
        env = os.environ if environ is None else environ
        named = path if path is not None else env.get(CONFIG_ENV)
        file = Path(named) if named else DEFAULT_CONFIG
        data: dict[str, Any] = {}
        if named or file.exists():
            data = read_config(file)
        base = file.resolve().parent
        for key, value in _overrides(env).items():
            if key == "prometheus" and value is not None:  # merged into the file's mapping
                data[key] = {**(data.get("prometheus") or {}), **value}
            else:
                data[key] = value
        errors = sorted(
            jsonschema.Draft202012Validator(_SCHEMA).iter_errors(data), key=lambda e: e.path
        )
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path) or "(the file)"
            raise ConfigError(f"{file}: {where}: {errors[0].message}")
        settings = cls(source=str(file))
        changes: dict[str, Any] = {}
        for key, value in data.items():
            if key in ("metrics", "events"):
                changes[key] = tuple(_relative(base, Path(p)) for p in value)
            elif key in ("database_url", "store_url"):
                changes[key] = _sqlite_relative(base, value)
            elif key == "metric_timeout":
                changes[key] = float(value)
            elif key == "prometheus":
                try:
                    changes[key] = None if value is None else TopologySettings.from_mapping(value)
                except ValueError as exc:
                    raise ConfigError(f"{file}: prometheus: {exc}") from None
            else:
                changes[key] = value
        if "metrics" not in data:
            changes["metrics"] = tuple(_relative(base, p) for p in settings.metrics)
        for key in ("database_url", "store_url"):
            changes.setdefault(key, _sqlite_relative(base, getattr(settings, key)))
        return replace(settings, **changes)


def read_config(file: Path) -> dict[str, Any]:
    """A YAML mapping from ``file``; ConfigError names the file when it cannot be read."""
    try:
        data = yaml.safe_load(file.read_text())
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a mapping of settings, got {type(data).__name__}")
    return data


_KEYS = {f.name for f in fields(Settings)} - {"source"}


def _overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """``USAGE_PING_<KEY>`` variables as typed values (YAML scalars; lists comma-separated)."""
    found: dict[str, Any] = {}
    prometheus = _prometheus_overrides(env)
    if prometheus != {}:
        found["prometheus"] = prometheus
    for key in sorted(_KEYS - {"prometheus"}):
        raw = env.get(f"USAGE_PING_{key.upper()}")
        if raw is None:
            continue
        if key in ("metrics", "events"):
            found[key] = [p.strip() for p in raw.split(",") if p.strip()]
        elif key in ("enabled", "concurrency", "metric_timeout", "send_attempts", "retention_days"):
            try:
                found[key] = yaml.safe_load(raw)
            except yaml.YAMLError:
                raise ConfigError(f"USAGE_PING_{key.upper()}: cannot read {raw!r}") from None
        else:
            found[key] = raw
    return found


def _prometheus_overrides(env: Mapping[str, str]) -> dict[str, Any] | None:
    """``USAGE_PING_PROMETHEUS_*`` as keys of ``prometheus``; None when the URL is set empty."""
    found: dict[str, Any] = {}
    for key in ("url", "query_timeout_s", "total_timeout_s"):
        name = f"USAGE_PING_PROMETHEUS_{key.upper()}"
        raw = env.get(name)
        if raw is None:
            continue
        if key == "url":
            if not raw.strip():
                return None
            found[key] = raw.strip()
            continue
        try:
            found[key] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"{name}: cannot read {raw!r}") from None
    return found


def _relative(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else base / path


def _sqlite_relative(base: Path, url: str) -> str:
    """``sqlite:///name.db`` (a relative file) becomes relative to the configuration file."""
    prefix, _, rest = url.partition(":///")
    if prefix.split("+")[0] != "sqlite" or not rest or rest.startswith("/") or rest == ":memory:":
        return url
    return f"{prefix}:///{base / rest}"
