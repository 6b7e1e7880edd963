"""dedupe: sender identities, clusters, the similarity index, why a message was merged

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("complaints", sa.Column("merged_into", Id, nullable=True))
    op.add_column("messages", sa.Column("merge_reason", sa.String(24), nullable=True))
    op.add_column("messages", sa.Column("merge_score", sa.Float(), nullable=True))
    op.create_table(
        "identities",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(340), nullable=False),
        sa.Column("person_id", Id, nullable=True),
        sa.Column("created_at", When, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_identities"),
        sa.UniqueConstraint("key", name="uq_identities_key"),
    )
    op.create_index("ix_identities_person_id", "identities", ["person_id"])
    op.create_table(
        "identity_events",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("at", When, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("key", sa.String(340), nullable=False),
        sa.Column("other", sa.String(340), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_identity_events"),
    )
    op.create_index("ix_identity_events_key", "identity_events", ["key"])
    op.create_index("ix_identity_events_other", "identity_events", ["other"])
    op.create_table(
        "clusters",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("updated_at", When, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_clusters"),
    )
    op.create_table(
        "similarity_bands",
        sa.Column("band", sa.BigInteger(), nullable=False),
        sa.Column("received_at", When, nullable=False),
        sa.Column("complaint_id", Id, nullable=False),
        sa.ForeignKeyConstraint(
            ["complaint_id"],
            ["complaints.id"],
            name="fk_similarity_bands_complaint_id_complaints",
        ),
        sa.PrimaryKeyConstraint("band", "received_at", "complaint_id", name="pk_similarity_bands"),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("similarity_bands")
    op.drop_table("clusters")
    op.drop_index("ix_identity_events_other", table_name="identity_events")
    op.drop_index("ix_identity_events_key", table_name="identity_events")
    op.drop_table("identity_events")
    op.drop_index("ix_identities_person_id", table_name="identities")
    op.drop_table("identities")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("merge_score")
        batch.drop_column("merge_reason")
    with op.batch_alter_table("complaints") as batch:
        batch.drop_column("merged_into")
