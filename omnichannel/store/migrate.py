"""Schema migrations with Alembic, driven from code (no alembic.ini to ship or find)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from omnichannel.errors import OmnichannelError

__all__ = ["alembic_config", "current_revision", "head_revision", "is_current", "upgrade"]


def alembic_config(engine: Engine | None = None) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", "omnichannel:migrations")
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def is_current(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision``; safe to run from several processes at once. A
    database a newer omnichannel has migrated is refused in one line, never downgraded."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        known = ScriptDirectory.from_config(config)
        current = MigrationContext.configure(connection).get_current_revision()
        if current is not None and current not in {s.revision for s in known.walk_revisions()}:
            raise OmnichannelError(
                f"the database is at schema revision {current}, newer than this version of "
                f"omnichannel knows (up to {known.get_current_head()}): run the newer version"
            )
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
