"""Turning what the caller passes (a Table, an ORM model, a Select) into something to batch over.

The relation keeps its FROM, joins, WHERE and GROUP BY; each batch swaps its columns for the
aggregate and adds a range condition on the batching column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from usage_ping.errors import InvalidRelationError

__all__ = ["Relation", "Target", "resolve", "resolve_column"]

Relation = Any
"""A ``Table``, an ORM-mapped class, or a ``Select`` (with filters, joins and GROUP BY)."""


@dataclass(frozen=True)
class Target:
    """A relation made ready for batching."""

    base: sa.Select[Any]
    table: sa.Table
    pk: sa.Column[Any]
    group_by: tuple[ColumnElement[Any], ...]
    tables: tuple[sa.Table, ...]

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def filtered(self) -> bool:
        """True when the relation narrows the primary table (WHERE or joins)."""
        return self.base.whereclause is not None or len(self.tables) > 1

    def select(self, *columns: ColumnElement[Any]) -> sa.Select[Any]:
        """The relation with its columns replaced by ``columns`` (GROUP BY kept)."""
        return self.base.with_only_columns(*columns, maintain_column_froms=True)


def _tables_of(from_clause: sa.FromClause) -> list[sa.Table]:
    if isinstance(from_clause, sa.Table):
        return [from_clause]
    if isinstance(from_clause, sa.Join):
        return _tables_of(from_clause.left) + _tables_of(from_clause.right)
    return []


def _leftmost_table(from_clause: sa.FromClause) -> sa.Table | None:
    while isinstance(from_clause, sa.Join):
        from_clause = from_clause.left
    return from_clause if isinstance(from_clause, sa.Table) else None


def _as_select(relation: Relation) -> sa.Select[Any]:
    if isinstance(relation, sa.Select):
        return relation
    if isinstance(relation, sa.Table):
        return sa.select(relation)
    if isinstance(relation, type):
        mapper: Any
        try:
            mapper = sa.inspect(relation)
        except sa.exc.NoInspectionAvailable:
            mapper = None
        if mapper is not None:
            return sa.select(relation)
    raise InvalidRelationError(
        "relation must be a sqlalchemy Table, an ORM-mapped class or a Select, "
        f"got {type(relation).__name__}"
    )


def resolve(relation: Relation) -> Target:
    """Validate ``relation`` and find its primary table and single integer primary key."""
    select = _as_select(relation)
    if select._limit_clause is not None or select._offset_clause is not None:
        raise InvalidRelationError("relation has LIMIT/OFFSET: it cannot be counted in batches")
    if select._fetch_clause is not None:
        raise InvalidRelationError("relation has FETCH: it cannot be counted in batches")
    if select._distinct or select._distinct_on:
        raise InvalidRelationError(
            "relation has DISTINCT: use distinct_count(engine, relation, column) instead"
        )
    if select._having_criteria:
        raise InvalidRelationError(
            "relation has HAVING: a per-batch HAVING would give wrong totals; filter with WHERE"
        )
    froms = select.get_final_froms()
    if not froms:
        raise InvalidRelationError("relation selects from no table")
    table = _leftmost_table(froms[0])
    if table is None:
        raise InvalidRelationError(
            "relation must select from a table (or a join starting with one), "
            f"not {type(froms[0]).__name__}"
        )
    pk_columns = list(table.primary_key.columns)
    if len(pk_columns) != 1:
        raise InvalidRelationError(
            f"table {table.name!r} needs a single-column primary key to be counted in batches, "
            f"it has {len(pk_columns)}"
        )
    pk = pk_columns[0]
    if not isinstance(pk.type, sa.Integer):
        raise InvalidRelationError(
            f"primary key {table.name}.{pk.name} is {pk.type}, not an integer: "
            "batches walk integer ranges"
        )
    tables = [t for f in froms for t in _tables_of(f)]
    return Target(
        base=select.order_by(None),
        table=table,
        pk=pk,
        group_by=tuple(select._group_by_clauses),
        tables=tuple(dict.fromkeys(tables)),
    )


def resolve_column(target: Target, column: Any) -> ColumnElement[Any]:
    """Find ``column``: a column object, an ORM attribute, ``"name"`` or ``"table.name"``."""
    if isinstance(column, str):
        table_name, _, name = column.rpartition(".")
        candidates = [t for t in target.tables if not table_name or t.name == table_name]
        if not table_name:
            candidates = [target.table] + [t for t in candidates if t is not target.table]
        for table in candidates:
            if name in table.c:
                return table.c[name]
        raise InvalidRelationError(
            f"no column {column!r} in {', '.join(t.name for t in target.tables)}"
        )
    clause = getattr(column, "__clause_element__", None)
    if clause is not None:
        column = clause()
    if isinstance(column, ColumnElement):
        return column
    raise InvalidRelationError(
        f"column must be a column, an ORM attribute or a name, got {type(column).__name__}"
    )


def is_integer(column: ColumnElement[Any]) -> bool:
    return isinstance(column.type, sa.Integer)


def is_numeric(column: ColumnElement[Any]) -> bool:
    return isinstance(column.type, (sa.Integer, sa.Numeric)) and not isinstance(
        column.type, sa.Boolean
    )
