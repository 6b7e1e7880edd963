"""retention: when a purge removed a complaint's personal data, and the complaints merged
into each one found by an index

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-09

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MERGED_INTO = sa.text("merged_into IS NOT NULL")


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("complaints", sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_complaints_merged_into",
        "complaints",
        ["merged_into"],
        unique=False,
        sqlite_where=MERGED_INTO,
        postgresql_where=MERGED_INTO,
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_complaints_merged_into", table_name="complaints")
    if op.get_bind().dialect.name == "sqlite":  # in place (SQLite >= 3.35): the batch mode's
        # copy of complaints could not drop the table that messages refer to
        op.execute("ALTER TABLE complaints DROP COLUMN purged_at")
    else:
        op.drop_column("complaints", "purged_at")
