"""Alembic environment for the central service (run through usage_ping.collector.storage)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from usage_ping.collector.storage import metadata

engine: sa.Engine | None = context.config.attributes.get("engine")
if engine is None:
    engine = sa.create_engine(context.config.get_main_option("sqlalchemy.url") or "")

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
