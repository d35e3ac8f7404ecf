"""What the library keeps in the host's database: the instance's identity and the admin's switches.

``raw_usage_data`` is the outbox of built payloads (see :mod:`usage_ping.delivery.outbox`).

One row in ``usage_ping_settings``: the instance ``uuid`` (generated once, on first use, and kept
for good: it is how the central service tells instances apart), whether usage ping is
``enabled`` (the admin's master switch) and which data ``categories`` are sent.

A configuration file that says ``enabled: false`` locks usage ping off: :class:`InstanceState` made
with ``locked_off=True`` reports it disabled whatever the row says and refuses to enable it.

The tables are created by :func:`migrate` (idempotent; PostgreSQL, MariaDB/MySQL and SQLite), and
concurrent first uses by several processes agree on one uuid.
"""

from __future__ import annotations

import time
import uuid as uuid_module
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.dialects.mysql

from usage_ping.errors import UsagePingError

__all__ = [
    "CATEGORIES",
    "LONG_TEXT",
    "InstanceState",
    "SwitchLockedError",
    "UTCDateTime",
    "metadata",
    "migrate",
    "outbox_table",
    "settings_table",
]

CATEGORIES = ("standard", "subscription", "operational", "optional")
"""The data categories, from the most to the least essential."""


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, stored as naive UTC with microseconds.

    One behaviour on every database: PostgreSQL, MariaDB (whose DATETIME has no zone and, by
    default, no fractions) and SQLite.
    """

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(sa.dialects.mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value} given: use an aware (UTC) datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


metadata = sa.MetaData()
"""Every table the library owns in the host database."""

settings_table = sa.Table(
    "usage_ping_settings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("uuid", sa.String(36), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("categories", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

LONG_TEXT = sa.Text().with_variant(sa.dialects.mysql.LONGTEXT(), "mysql", "mariadb")
"""Text that can pass MariaDB's 64 KB TEXT (payloads); shared with the central service."""

outbox_table = sa.Table(
    "raw_usage_data",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("recorded_at", UTCDateTime(), nullable=False, unique=True),
    sa.Column("payload", LONG_TEXT, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("sent_at", UTCDateTime()),
    sa.Column("exported_at", UTCDateTime()),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.String(500)),
    sa.Column("given_up", sa.Boolean, nullable=False, default=False),
    sa.Column("usage_data_id", sa.BigInteger),
    sa.Column("response", LONG_TEXT),
    sa.Index("ix_raw_usage_data_pending", "sent_at", "given_up"),
)
"""The outbox: every built payload, exactly as sent, kept until delivered and a while after."""

_ROW_ID = 1


class SwitchLockedError(UsagePingError):
    """Usage ping is locked off in the configuration and cannot be enabled at run time."""


def migrate(engine: sa.Engine) -> None:
    """Create the library's tables that do not exist yet (safe to run again, and concurrently)."""
    for attempt in range(5):
        try:
            metadata.create_all(engine, checkfirst=True)
            return
        except sa.exc.DatabaseError:
            # Another process created a table between the check and the CREATE: check again.
            if attempt == 4:
                raise
            time.sleep(0.05 * (attempt + 1))


class InstanceState:
    """The instance's persisted identity and switches.

    Args:
        engine: the host's database.
        locked_off: usage ping is locked off by configuration (``enabled: false``).

    Example:
        >>> state = InstanceState(engine)  # doctest: +SKIP
        >>> state.uuid
        '0b6d2f3c-…'
        >>> state.set_categories(["standard", "subscription"])  # doctest: +SKIP
    """

    def __init__(self, engine: sa.Engine, *, locked_off: bool = False) -> None:
        self.engine = engine
        self.locked_off = locked_off
        self._migrated = False

    def _row(self) -> sa.Row[tuple[int, str, bool, str, datetime, datetime]]:
        if not self._migrated:
            migrate(self.engine)
            self._migrated = True
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(settings_table).where(settings_table.c.id == _ROW_ID))
            found = row.one_or_none()
        if found is not None:
            return found
        now = datetime.now(UTC)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    settings_table.insert().values(
                        id=_ROW_ID,
                        uuid=str(uuid_module.uuid4()),
                        enabled=True,
                        categories=",".join(CATEGORIES),
                        created_at=now,
                        updated_at=now,
                    )
                )
        except sa.exc.IntegrityError:
            pass  # another process made the row first: its uuid is the instance's
        return self._row()

    def _update(self, **values: object) -> None:
        self._row()
        with self.engine.begin() as conn:
            conn.execute(
                settings_table.update()
                .where(settings_table.c.id == _ROW_ID)
                .values(updated_at=datetime.now(UTC), **values)
            )

    @property
    def uuid(self) -> str:
        """The instance's identity, generated on first use and never changed."""
        return str(self._row().uuid)

    @property
    def enabled(self) -> bool:
        """Whether payloads are built and sent: the admin's switch, unless locked off."""
        return not self.locked_off and bool(self._row().enabled)

    def set_enabled(self, value: bool) -> None:
        """Turn usage ping on or off; turning it on when it is locked off raises."""
        if value and self.locked_off:
            raise SwitchLockedError(
                "usage ping is locked off in the configuration (enabled: false) and cannot be "
                "enabled here; change the configuration file instead"
            )
        self._update(enabled=value)

    @property
    def categories(self) -> frozenset[str]:
        """The data categories the admin lets the payload include."""
        return frozenset(c for c in str(self._row().categories).split(",") if c)

    def set_categories(self, categories: Iterable[str]) -> None:
        """Choose the data categories to send; unknown names are refused."""
        chosen = set(categories)
        unknown = sorted(chosen - set(CATEGORIES))
        if unknown:
            raise ValueError(
                f"unknown data categories {', '.join(unknown)} (known: {', '.join(CATEGORIES)})"
            )
        self._update(categories=",".join(c for c in CATEGORIES if c in chosen))
