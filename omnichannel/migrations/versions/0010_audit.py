"""audit: the tamper-evident record (a hash chain), and when a raw payload was purged

Rows stored before this revision are recorded when it runs (``audit.record_existing``).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Upgrade schema."""
    from omnichannel import audit

    op.add_column("raw_messages", sa.Column("purged_at", When, nullable=True))
    op.create_table(
        "audit_chain",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ref", Id, nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("at", When, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_chain"),
    )
    audit.record_existing(op.get_bind())


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("audit_chain")
    if op.get_bind().dialect.name == "sqlite":  # in place (SQLite >= 3.35): the batch mode's
        # copy of raw_messages could not drop the table that messages refer to
        op.execute("ALTER TABLE raw_messages DROP COLUMN purged_at")
    else:
        op.drop_column("raw_messages", "purged_at")
