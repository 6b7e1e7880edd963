"""receipts for web submissions answered before they were filed

A web submission that is stored but not filed within the wait is answered ``202 {receipt,
status_url}``; ``GET /receipts/<receipt>`` finds its raw row by this token.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("raw_messages", sa.Column("receipt", sa.String(64), nullable=True))
    op.create_index("ix_raw_messages_receipt", "raw_messages", ["receipt"], unique=True)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_raw_messages_receipt", table_name="raw_messages")
    with op.batch_alter_table("raw_messages") as batch:
        batch.drop_column("receipt")
