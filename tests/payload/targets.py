"""Callables that test metric definitions point at (``tests.payload.targets:<name>``)."""

from __future__ import annotations

import time
from typing import Any

calls: list[str] = []


def constant(value: Any = 7) -> Any:
    calls.append("constant")
    return value


def boom() -> int:
    raise RuntimeError("boom")


def hang(seconds: float = 5.0) -> int:
    time.sleep(seconds)
    return 1


def wrong_type() -> str:
    return "seven"


class Versioned:
    def __init__(self, prefix: str = "v") -> None:
        self.prefix = prefix

    def value(self) -> str:
        return f"{self.prefix}1.2.3"


engine: Any = None
"""Set by tests whose callable metrics count with the SQL helpers."""


def issues_via_helper() -> Any:
    import usage_ping

    return usage_ping.count(engine, usage_ping_table("issues"))


def usage_ping_table(name: str) -> Any:
    import sqlalchemy as sa

    return sa.Table(name, sa.MetaData(), autoload_with=engine)


def flags() -> dict[str, bool]:
    return {"ldap": True}
