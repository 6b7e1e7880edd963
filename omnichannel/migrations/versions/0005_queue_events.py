"""the team queue: an append-only event per transition, and a person a complaint is assigned to

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "complaint_events",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("complaint_id", Id, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("from_status", sa.String(24)),
        sa.Column("to_status", sa.String(24)),
        sa.Column("note", sa.Text()),
        sa.ForeignKeyConstraint(
            ["complaint_id"],
            ["complaints.id"],
            name="fk_complaint_events_complaint_id_complaints",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_complaint_events"),
    )
    op.create_index("ix_complaint_events_complaint_id", "complaint_events", ["complaint_id"])
    op.add_column("queue_items", sa.Column("assignee", sa.String(128), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("queue_items") as batch:
        batch.drop_column("assignee")
    op.drop_index("ix_complaint_events_complaint_id", table_name="complaint_events")
    op.drop_table("complaint_events")
