"""partial indexes on columns a new complaint mostly leaves empty

A new complaint has an e-mail or a phone, not both, and no agency or cluster yet: their indexes
now hold only the rows where the column is set, so that filing one writes four index pages
fewer (lookups by value use them as before).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PARTIAL = [
    ("complaints", "sender_email"),
    ("complaints", "sender_phone"),
    ("complaints", "agency"),
    ("complaints", "cluster_id"),
    ("queue_items", "agency"),
]


def upgrade() -> None:
    """Upgrade schema."""
    for table, column in PARTIAL:
        where = sa.text(f"{column} IS NOT NULL")
        op.drop_index(f"ix_{table}_{column}", table_name=table)
        op.create_index(
            f"ix_{table}_{column}",
            table,
            [column],
            unique=False,
            sqlite_where=where,
            postgresql_where=where,
        )


def downgrade() -> None:
    """Downgrade schema."""
    for table, column in PARTIAL:
        op.drop_index(f"ix_{table}_{column}", table_name=table)
        op.create_index(f"ix_{table}_{column}", table, [column], unique=False)
