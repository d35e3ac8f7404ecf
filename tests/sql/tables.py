"""Test tables and the plain-SQL truth that batch counters are checked against."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa


def events_table(metadata: sa.MetaData, name: str = "events") -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("author_id", sa.BigInteger, index=True),
        sa.Column("project_id", sa.Integer),
        sa.Column("weight", sa.Integer),
        sa.Column("score", sa.Numeric(10, 2)),
        sa.Column("title", sa.String(40)),
    )


def projects_table(metadata: sa.MetaData) -> sa.Table:
    """Projects to join events with: project 0 is active, project 1 archived."""
    return sa.Table(
        "projects",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("archived", sa.Boolean, nullable=False),
    )


PROJECTS = [{"id": 0, "archived": False}, {"id": 1, "archived": True}]


def create(engine: sa.Engine, table: sa.Table, rows: Sequence[dict[str, Any]]) -> sa.Table:
    table.metadata.create_all(engine, tables=[table])
    if rows:
        with engine.begin() as conn:
            conn.execute(table.insert(), list(rows))
    return table


def plain(engine: sa.Engine, query: sa.Select[Any]) -> Any:
    """One unbatched query: the truth."""
    with engine.connect() as conn:
        return conn.execute(query).scalar()


def plain_grouped(engine: sa.Engine, query: sa.Select[Any]) -> dict[Any, Any]:
    with engine.connect() as conn:
        return {row[0]: row[1] for row in conn.execute(query)}


def row(i: int, **values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": i,
        "author_id": i % 7,
        "project_id": i % 3,
        "weight": i % 5,
        "score": None,
        "title": f"t{i % 11}",
    }
    base.update(values)
    return base
