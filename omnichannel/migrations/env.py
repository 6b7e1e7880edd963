"""Alembic environment: run by ``omnichannel init-db`` (or on open with auto_migrate)."""

from __future__ import annotations

from typing import Any, Literal

import sqlalchemy as sa
from alembic import context

from omnichannel.store.tables import UTCDateTime, metadata

# a fixed key: replicas starting together on PostgreSQL migrate one at a time
MIGRATION_LOCK_KEY = 0x6F6D6E69


def render_item(kind: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    """Render our UTC type as the plain timezone-aware DateTime it is in the database."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations_online() -> None:
    connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY}
            )
        context.run_migrations()


run_migrations_online()
