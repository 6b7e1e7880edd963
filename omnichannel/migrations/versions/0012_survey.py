"""survey: the satisfaction rating of a complaint, from the citizen's answer to its survey

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-10

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "ratings",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("complaint_id", Id, nullable=False),
        sa.Column("score", sa.SmallInteger(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("matched_by", sa.String(16), nullable=False),
        sa.Column("message_id", Id, nullable=False),
        sa.Column("raw_id", Id, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("score BETWEEN 1 AND 5", name="ck_ratings_score"),
        sa.ForeignKeyConstraint(
            ["complaint_id"], ["complaints.id"], name="fk_ratings_complaint_id_complaints"
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name="fk_ratings_message_id_messages"
        ),
        sa.ForeignKeyConstraint(
            ["raw_id"], ["raw_messages.id"], name="fk_ratings_raw_id_raw_messages"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_ratings"),
        sa.UniqueConstraint("complaint_id", name="uq_ratings_complaint_id"),
    )
    op.create_index("ix_ratings_received_at", "ratings", ["received_at"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_ratings_received_at", table_name="ratings")
    op.drop_table("ratings")
