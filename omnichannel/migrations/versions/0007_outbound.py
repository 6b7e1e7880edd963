"""the outbound side: where a complaint is answered, outbox leases, messages sent to citizens

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_OUTBOX = ("lease_until", "sent_at")


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("complaints", sa.Column("reply_to", sa.String(320), nullable=True))
    op.add_column("complaints", sa.Column("reply_via", sa.String(64), nullable=True))
    for name in _OUTBOX:
        op.add_column("outbox", sa.Column(name, sa.DateTime(timezone=True), nullable=True))
    op.add_column("outbox", sa.Column("provider_id", sa.String(512), nullable=True))
    op.create_table(
        "outbound_messages",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("complaint_id", Id, nullable=False),
        sa.Column("outbox_id", Id, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("via", sa.String(64), nullable=False),
        sa.Column("to_address", sa.String(320), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("provider_id", sa.String(512), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["complaint_id"],
            ["complaints.id"],
            name="fk_outbound_messages_complaint_id_complaints",
        ),
        sa.ForeignKeyConstraint(
            ["outbox_id"], ["outbox.id"], name="fk_outbound_messages_outbox_id_outbox"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_outbound_messages"),
        sa.UniqueConstraint("outbox_id", name="uq_outbound_messages_outbox_id"),
    )
    for column in ("complaint_id", "to_address", "provider_id", "sent_at"):
        op.create_index(f"ix_outbound_messages_{column}", "outbound_messages", [column])


def downgrade() -> None:
    """Downgrade schema."""
    for column in ("complaint_id", "to_address", "provider_id", "sent_at"):
        op.drop_index(f"ix_outbound_messages_{column}", table_name="outbound_messages")
    op.drop_table("outbound_messages")
    with op.batch_alter_table("outbox") as batch:
        for name in (*_OUTBOX, "provider_id"):
            batch.drop_column(name)
    with op.batch_alter_table("complaints") as batch:
        batch.drop_column("reply_via")
        batch.drop_column("reply_to")
