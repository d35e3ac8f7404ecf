"""The central service's configuration: one YAML file (``--config``), every key optional.

Example (the defaults)::

    database_url: sqlite:///usage_ping_service.sqlite3   # PostgreSQL in production
    max_body_bytes: 10485760          # larger pings get 413 (measured after gunzip too)
    ingest_per_minute: 120            # pings, errors and metadata per client address and minute
    ingest_concurrency: 2             # pings each worker stores at once; the rest wait their turn
    secret_key: null                  # signs operator sessions (set it, or sessions end on restart)
    operators: {}                     # name -> hash from `usage-ping service hash-password`
    api_tokens: []                    # SHA-256 hex digests of the BI API's bearer tokens
    score:
      features:                       # feature -> key path of its 28-day count
        issues: counts_monthly.issues
        ...
      active_users: active_user_count # the key path the counts are divided by
      leader_percentile: 90
      leader_window_days: 35          # instances that pinged in this window make the leaders
      min_instances: 10               # fewer: the default leaders below are used
      default_leaders: {issues: 10.0, ...}
    snowplow:                         # the Snowplow-compatible event collector
      enabled: true                   # GET /i, GET|POST /com.snowplowanalytics.snowplow/tp2
      allowed_origins: []             # CORS: [] echoes every Origin (as Snowplow does)
      schema_dir: null                # the operator's Iglu schemas (vendor/name/jsonschema/1-0-0)
      anonymise_ip_octets: 0          # IPv4: the last N octets become x (1-4)
      anonymise_ip_segments: 0        # IPv6: the last N segments become x (1-8)
      trust_forwarded_for: true       # the client address is X-Forwarded-For's first entry
      cookie_enabled: true            # the network user id cookie
      cookie_name: sp
      cookie_domain: null
      cookie_max_age_days: 365
      cookie_secure: true             # SameSite=None needs Secure; browsers allow it on localhost
      max_body_bytes: 1000000         # larger bodies become one bad row ("size violation")
      micro: false                    # the Snowplow Micro testing API under /micro (no login!)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jsonschema

from usage_ping.settings import ConfigError, read_config

__all__ = ["DEFAULT_FEATURES", "ScoreCard", "ServiceSettings", "SnowplowSettings"]

DEFAULT_FEATURES: dict[str, str] = {
    "issues": "counts_monthly.issues",
    "notes": "counts_monthly.notes",
    "milestones": "counts_monthly.milestones",
    "boards": "counts_monthly.boards",
    "merge_requests": "counts_monthly.merge_requests",
    "ci_pipelines": "counts_monthly.ci_pipelines",
    "environments": "counts_monthly.environments",
    "deployments": "counts_monthly.deployments",
    "projects_prometheus_active": "counts_monthly.projects_prometheus_active",
    "service_desk_issues": "counts_monthly.service_desk_issues",
}
"""The default score card: each feature's 28-day count (per active user) in the payload."""

DEFAULT_LEADERS: dict[str, float] = {
    "issues": 4.0,
    "notes": 30.0,
    "milestones": 0.3,
    "boards": 0.2,
    "merge_requests": 3.0,
    "ci_pipelines": 20.0,
    "environments": 0.3,
    "deployments": 5.0,
    "projects_prometheus_active": 0.05,
    "service_desk_issues": 0.5,
}
"""Leaders (28-day count per active user) used while too few instances report."""


@dataclass(frozen=True)
class ScoreCard:
    """How the DevOps score is computed (see :mod:`usage_ping.collector.score`)."""

    features: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_FEATURES))
    active_users: str = "active_user_count"
    leader_percentile: float = 90.0
    leader_window_days: int = 35
    min_instances: int = 10
    default_leaders: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_LEADERS))


@dataclass(frozen=True)
class SnowplowSettings:
    """The event collector (:mod:`usage_ping.collector.snowplow`)."""

    enabled: bool = True
    allowed_origins: tuple[str, ...] = ()
    """Origins whose requests get CORS headers; empty: every Origin is echoed (Snowplow's way)."""
    schema_dir: str | None = None
    """The operator's Iglu schemas, laid out as ``vendor/name/jsonschema/version``."""
    anonymise_ip_octets: int = 0
    anonymise_ip_segments: int = 0
    trust_forwarded_for: bool = True
    cookie_enabled: bool = True
    cookie_name: str = "sp"
    cookie_domain: str | None = None
    cookie_max_age_days: int = 365
    cookie_secure: bool = True
    max_body_bytes: int = 1_000_000
    micro: bool = False
    """The Snowplow Micro API (``/micro/...``): every event readable, and deletable by
    ``/micro/reset``, without a login. For test and development services only."""


_SNOWPLOW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "enabled": {"type": "boolean"},
        "allowed_origins": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "schema_dir": {"type": ["string", "null"], "minLength": 1},
        "anonymise_ip_octets": {"type": "integer", "minimum": 0, "maximum": 4},
        "anonymise_ip_segments": {"type": "integer", "minimum": 0, "maximum": 8},
        "trust_forwarded_for": {"type": "boolean"},
        "cookie_enabled": {"type": "boolean"},
        "cookie_name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"},
        "cookie_domain": {"type": ["string", "null"], "minLength": 1},
        "cookie_max_age_days": {"type": "integer", "minimum": 1},
        "cookie_secure": {"type": "boolean"},
        "max_body_bytes": {"type": "integer", "minimum": 1024},
        "micro": {"type": "boolean"},
    },
}

_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "database_url": {"type": "string", "minLength": 1},
        "max_body_bytes": {"type": "integer", "minimum": 1024},
        "ingest_per_minute": {"type": "integer", "minimum": 1},
        "ingest_concurrency": {"type": "integer", "minimum": 1},
        "secret_key": {"type": "string", "minLength": 16},
        "operators": {"type": "object", "additionalProperties": {"type": "string"}},
        "api_tokens": {
            "type": "array",
            "items": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
        },
        "score": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "features": {"type": "object", "additionalProperties": {"type": "string"}},
                "active_users": {"type": "string"},
                "leader_percentile": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
                "leader_window_days": {"type": "integer", "minimum": 1},
                "min_instances": {"type": "integer", "minimum": 1},
                "default_leaders": {"type": "object", "additionalProperties": {"type": "number"}},
            },
        },
        "snowplow": _SNOWPLOW_SCHEMA,
    },
}


@dataclass(frozen=True)
class ServiceSettings:
    """The central service's configuration."""

    database_url: str = "sqlite:///usage_ping_service.sqlite3"
    max_body_bytes: int = 10 * 1024 * 1024
    ingest_per_minute: int = 120
    ingest_concurrency: int = 2
    """Pings each worker process stores at once; more wait (cheaply) for a turn. Storing a ping
    is CPU work in Python and in the database: dozens at once only add lock and GIL contention
    (see benchmarks/results/collector.md)."""
    secret_key: str | None = None
    operators: Mapping[str, str] = field(default_factory=dict)
    """Operator name -> password hash (``usage-ping service hash-password``)."""
    api_tokens: tuple[str, ...] = ()
    """SHA-256 hex digests of the tokens the BI API accepts (``hash_token`` in the api module)."""
    score: ScoreCard = field(default_factory=ScoreCard)
    snowplow: SnowplowSettings = field(default_factory=SnowplowSettings)

    @classmethod
    def load(cls, path: Path | str) -> ServiceSettings:
        """Read a YAML configuration; errors name the file and the key."""
        file = Path(path)
        data = read_config(file)
        errors = list(jsonschema.Draft202012Validator(_SCHEMA).iter_errors(data))
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path) or "(the file)"
            raise ConfigError(f"{file}: {where}: {errors[0].message}")
        score = ScoreCard(**data.pop("score", {}))
        snowplow = dict(data.pop("snowplow", {}))
        if "allowed_origins" in snowplow:
            snowplow["allowed_origins"] = tuple(snowplow["allowed_origins"])
        if "api_tokens" in data:
            data["api_tokens"] = tuple(data["api_tokens"])
        settings = cls(score=score, snowplow=SnowplowSettings(**snowplow))
        return replace(settings, **data)
