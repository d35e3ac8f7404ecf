"""User agents: parsed with ua-parser (the uap-core rules), and the bot flag that comes with it.

``ua-parser`` is the Python implementation of uap-core, the community-kept rule set that Snowplow's
own ``ua_parser_config`` enrichment uses; its rules ship as a monthly package
(``ua-parser-builtins``) and, when ``ua-parser-rs`` is installed, run in native code. Results
are cached per user agent string: a collector sees the same few thousand agents over and over.

An agent is a bot when uap-core's device rules call it a ``Spider`` (search engines, crawlers,
monitors, link previewers). HTTP libraries (``python-requests``, ``curl``) are not bots: they are
how backend trackers send, and headless browsers are how browser tests send.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import ua_parser

__all__ = ["SPIDERS_AND_ROBOTS", "UA_PARSER_CONTEXT", "Agent", "parse_agent"]

UA_PARSER_CONTEXT = "iglu:com.snowplowanalytics.snowplow/ua_parser_context/jsonschema/1-0-0"
SPIDERS_AND_ROBOTS = "iglu:com.iab.snowplow/spiders_and_robots/jsonschema/1-0-0"


@dataclass(frozen=True, slots=True)
class Agent:
    """What the collector derives from one user agent string."""

    browser_family: str | None
    browser_version: str | None
    os_family: str | None
    device_family: str | None
    is_bot: bool
    contexts: tuple[dict[str, Any], ...]
    """The derived ``ua_parser_context`` and ``spiders_and_robots`` (shared: read only)."""


def _version(*parts: str | None) -> str | None:
    numbers = [p for p in parts if p]
    return ".".join(numbers) if numbers else None


@lru_cache(maxsize=8192)
def parse_agent(useragent: str) -> Agent:
    """The parsed agent (cached)."""
    result = ua_parser.parse(useragent)
    agent, os, device = result.user_agent, result.os, result.device
    browser = agent.family if agent else "Other"
    browser_version = _version(agent.major, agent.minor, agent.patch) if agent else None
    os_family = os.family if os else "Other"
    os_version = _version(os.major, os.minor, os.patch, os.patch_minor) if os else None
    device_family = device.family if device else "Other"
    is_bot = device_family == "Spider"
    parsed = {
        "useragentFamily": browser,
        "useragentMajor": agent.major if agent else None,
        "useragentMinor": agent.minor if agent else None,
        "useragentPatch": agent.patch if agent else None,
        "useragentVersion": f"{browser} {browser_version}" if browser_version else browser,
        "osFamily": os_family,
        "osMajor": os.major if os else None,
        "osMinor": os.minor if os else None,
        "osPatch": os.patch if os else None,
        "osPatchMinor": os.patch_minor if os else None,
        "osVersion": f"{os_family} {os_version}" if os_version else os_family,
        "deviceFamily": device_family,
    }
    robots = {
        "spiderOrRobot": is_bot,
        "category": "SPIDER_OR_ROBOT" if is_bot else "BROWSER",
        "reason": "FAILED_UA_INCLUDE" if is_bot else "PASSED_ALL",
        "primaryImpact": "UNKNOWN" if is_bot else "NONE",
    }
    return Agent(
        browser_family=browser,
        browser_version=browser_version,
        os_family=os_family,
        device_family=device_family,
        is_bot=is_bot,
        contexts=(
            {"schema": UA_PARSER_CONTEXT, "data": parsed},
            {"schema": SPIDERS_AND_ROBOTS, "data": robots},
        ),
    )
