"""quarantine: the content type a replaced payload had (replay --decoder)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("quarantine", sa.Column("original_content_type", sa.String(255), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_column("original_content_type")
