"""Alembic environment: run by ``omnichannel init-db`` (or on open with auto_migrate)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from omnichannel.store.tables import metadata

# a fixed key: replicas starting together on PostgreSQL migrate one at a time
MIGRATION_LOCK_KEY = 0x6F6D6E69


def run_migrations_online() -> None:
    connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY}
            )
        context.run_migrations()


run_migrations_online()
