"""Key paths by number: ``ping_metrics``, ``ping_meta`` and ``metric_errors`` name key paths by id.

A ping sends the same few hundred key paths as the one before it; storing each as text in every
row, and in the key path index, made a ping's rows twice as wide as they need be. The ingest maps
paths to ids from a cache (:class:`KeyPathIds`), numbering new ones in a short transaction of
their own; readers look a path's id up once (:func:`key_path_id`) or join ``key_paths`` for names.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import sqlalchemy as sa

from usage_ping.collector.storage import ON_CONFLICT_INSERTS, key_paths

__all__ = ["KeyPathIds", "key_path_id"]

_CHUNK = 500
"""Paths numbered per statement (SQLite's bound parameters are limited)."""


_ID_OF = sa.select(key_paths.c.id).where(key_paths.c.path == sa.bindparam("path"))


def key_path_id(conn: sa.Connection, path: str) -> int | None:
    """The id of ``path``, or None if no ping ever sent it (then it has no rows either)."""
    found = conn.execute(_ID_OF, {"path": path}).scalar()
    return None if found is None else int(found)


class KeyPathIds:
    """Key path -> id for one process's ingests, numbering the paths seen for the first time.

    New paths are numbered in their own transaction, committed before the ping's: a ping that
    fails later leaves its paths numbered (harmless) and the cache never holds an id that was
    rolled back. Paths are inserted in sorted order, so two workers numbering overlapping sets
    wait for each other instead of deadlocking. The cache is bounded (instances may send any
    number of distinct key paths) and safe to share between threads: it only grows, until a new
    one replaces it.
    """

    def __init__(self, engine: sa.Engine, *, limit: int = 100_000) -> None:
        self.engine = engine
        self.limit = limit
        self._ids: dict[str, int] = {}

    def ids(self, *groups: Collection[str]) -> Mapping[str, int]:
        """A map holding the id of every path in ``groups`` (each path at most ``MAX_KEY_PATH``
        characters); only read it, and drop it after use (it may be the shared cache)."""
        known = self._ids
        missing = {path for paths in groups for path in paths if path not in known}
        if not missing:
            return known
        numbered = self._number(sorted(missing))
        if len(known) + len(numbered) <= self.limit:
            known.update(numbered)  # additions only: other threads' lookups stay valid
            return known
        # Full: a new cache. The old one is left as it was, for the threads still reading it.
        fresh = {path: known[path] for paths in groups for path in paths if path in known}
        fresh.update(numbered)
        self._ids = fresh
        return fresh

    def _number(self, paths: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        with self.engine.begin() as conn:
            insert = ON_CONFLICT_INSERTS.get(conn.dialect.name)
            for start in range(0, len(paths), _CHUNK):
                chunk = paths[start : start + _CHUNK]
                found.update(self._select(conn, chunk))
                new = [path for path in chunk if path not in found]
                if not new:  # numbered by another process, or before the cache was cleared
                    continue
                if insert is not None:
                    conn.execute(
                        insert(key_paths)
                        .values([{"path": path} for path in new])
                        .on_conflict_do_nothing(index_elements=[key_paths.c.path])
                    )
                else:  # pragma: no cover - the service runs on PostgreSQL or SQLite
                    for path in new:
                        try:
                            with conn.begin_nested():
                                conn.execute(key_paths.insert().values(path=path))
                        except sa.exc.IntegrityError:
                            pass  # another process numbered it meanwhile
                found.update(self._select(conn, new))
        return found

    @staticmethod
    def _select(conn: sa.Connection, paths: list[str]) -> dict[str, int]:
        rows = conn.execute(
            sa.select(key_paths.c.path, key_paths.c.id).where(key_paths.c.path.in_(paths))
        )
        return {row.path: int(row.id) for row in rows}
