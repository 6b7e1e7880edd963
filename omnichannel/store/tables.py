"""The tables, as SQLAlchemy Core metadata (the Alembic migrations are the source of truth
for the database; a test checks that they produce exactly this metadata)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

__all__ = [
    "attachments",
    "audit_chain",
    "clusters",
    "complaint_events",
    "complaints",
    "cursors",
    "identities",
    "identity_events",
    "messages",
    "metadata",
    "outbound_messages",
    "outbox",
    "quarantine",
    "queue_items",
    "ratings",
    "raw_messages",
    "similarity_bands",
    "ticket_counters",
]


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _where_set(column: str) -> sa.Index:
    """An index of ``column`` over the rows where it is set (partial): a new complaint, whose
    e-mail or phone, agency and cluster are mostly not known yet, adds nothing to it, and
    ``column = value`` is looked up there all the same."""
    where = sa.text(f"{column} IS NOT NULL")
    return sa.Index(None, column, sqlite_where=where, postgresql_where=where)


def _id() -> sa.Column[int]:
    return sa.Column("id", Id, primary_key=True, autoincrement=True)


def _ts(name: str, nullable: bool = False, index: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, UTCDateTime(), nullable=nullable, index=index)


raw_messages = sa.Table(
    "raw_messages",
    metadata,
    _id(),
    sa.Column("connector", sa.String(64), nullable=False),
    sa.Column("external_id", sa.String(512), nullable=False),
    _ts("received_at"),
    _ts("stored_at"),
    sa.Column("content_type", sa.String(255), nullable=False),
    sa.Column("payload", sa.LargeBinary(), nullable=False),
    sa.Column("size", sa.Integer(), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("meta", sa.JSON(), nullable=False),
    # received -> processed | quarantined ; quarantined -> processed on replay
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("outcome", sa.String(16), nullable=True),
    sa.Column("complaint_id", Id, nullable=True),
    _ts("processed_at", nullable=True),
    # a token for ``GET /receipts/<receipt>``, given to a web submission answered 202
    sa.Column("receipt", sa.String(64), nullable=True),
    # when a purge cleared its payload (the purge is recorded in ``audit_chain``)
    _ts("purged_at", nullable=True),
    sa.UniqueConstraint("connector", "external_id"),
    sa.Index(None, "receipt", unique=True),
)

complaints = sa.Table(
    "complaints",
    metadata,
    _id(),
    sa.Column("ticket", sa.String(40), nullable=False, unique=True),
    sa.Column("status", sa.String(24), nullable=False, index=True),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("connector", sa.String(64), nullable=False),
    _ts("received_at"),
    _ts("updated_at"),
    sa.Column("sender_name", sa.Text()),
    sa.Column("sender_email", sa.String(320)),
    sa.Column("sender_phone", sa.String(32)),
    sa.Column("sender_handle", sa.String(255)),
    sa.Column("subject", sa.Text()),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("language", sa.String(8)),
    sa.Column("location_lat", sa.Float()),
    sa.Column("location_lon", sa.Float()),
    sa.Column("location_address", sa.Text()),
    sa.Column("category", sa.String(64)),
    sa.Column("agency", sa.String(64)),
    sa.Column("route", sa.String(64)),  # the routing rule that decided agency and category
    _ts("due_at", nullable=True),
    sa.Column("cluster_id", sa.String(64)),
    sa.Column("anonymous", sa.Boolean(), nullable=False, default=False),
    sa.Column("confidential", sa.Boolean(), nullable=False, default=False),
    # where answers to the citizen go: an e-mail address or E.164 phone, and how ("smtp" or
    # the name of a connector that sends); null when the citizen is not to be answered
    sa.Column("reply_to", sa.String(320)),
    sa.Column("reply_via", sa.String(64)),
    # an operator merged this complaint into another (status ``merged``)
    sa.Column("merged_into", Id, nullable=True),
    # when a purge removed its personal data (``omnichannel.retention``)
    _ts("purged_at", nullable=True),
    *[
        _where_set(name)
        for name in ("sender_email", "sender_phone", "agency", "cluster_id", "merged_into")
    ],
)

messages = sa.Table(
    "messages",
    metadata,
    _id(),
    sa.Column("raw_id", Id, sa.ForeignKey("raw_messages.id"), nullable=False, unique=True),
    sa.Column("complaint_id", Id, sa.ForeignKey("complaints.id"), nullable=True, index=True),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("connector", sa.String(64), nullable=False),
    sa.Column("external_id", sa.String(512), nullable=False),
    _ts("received_at"),
    _ts("sent_at", nullable=True),
    sa.Column("sender_name", sa.Text()),
    sa.Column("sender_email", sa.String(320)),
    sa.Column("sender_phone", sa.String(32)),
    sa.Column("sender_handle", sa.String(255)),
    # the identity used for same-sender dedupe: e164 phone, e-mail, or connector handle
    sa.Column("sender_key", sa.String(320), index=True),
    sa.Column("subject", sa.Text()),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("text_full", sa.Text(), nullable=False),
    sa.Column("html", sa.Text()),
    sa.Column("body_hash", sa.String(64), index=True),
    sa.Column("language", sa.String(8)),
    sa.Column("message_id", sa.String(512), index=True),
    sa.Column("in_reply_to", sa.String(512)),
    sa.Column("references", sa.JSON(), nullable=False),
    sa.Column("headers", sa.JSON(), nullable=False),
    sa.Column("flags", sa.JSON(), nullable=False),
    sa.Column("location", sa.JSON(none_as_null=True)),
    sa.Column("outcome", sa.String(16), nullable=False),
    # why a merged message joined its complaint (thread, ticket, same_sender, answer, operator)
    # and, for a same-sender merge, the similarity that decided it
    sa.Column("merge_reason", sa.String(24)),
    sa.Column("merge_score", sa.Float()),
)

attachments = sa.Table(
    "attachments",
    metadata,
    _id(),
    sa.Column("message_id", Id, sa.ForeignKey("messages.id"), nullable=False, index=True),
    sa.Column("complaint_id", Id, sa.ForeignKey("complaints.id"), nullable=True, index=True),
    sa.Column("position", sa.Integer(), nullable=False),
    sa.Column("filename", sa.Text()),
    sa.Column("content_type", sa.String(255), nullable=False),
    sa.Column("size", sa.BigInteger()),
    sa.Column("sha256", sa.String(64)),
    sa.Column("content", sa.LargeBinary()),
    sa.Column("url", sa.Text()),
    # stored (content here) | pending (to download from url) | failed | refused | purged
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    _ts("next_attempt_at", nullable=True),
    sa.Column("last_error", sa.Text()),
    sa.UniqueConstraint("message_id", "position"),
)

cursors = sa.Table(
    "cursors",
    metadata,
    sa.Column("connector", sa.String(64), primary_key=True),
    sa.Column("value", sa.JSON(none_as_null=True)),
    _ts("updated_at"),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    _id(),
    sa.Column("raw_id", Id, sa.ForeignKey("raw_messages.id"), nullable=False, unique=True),
    sa.Column("connector", sa.String(64), nullable=False),
    sa.Column("error_type", sa.String(128), nullable=False),
    sa.Column("error", sa.Text(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    _ts("first_seen"),
    _ts("last_attempt"),
    _ts("resolved_at", nullable=True),
    sa.Column("original_payload", sa.LargeBinary()),
    sa.Column("original_content_type", sa.String(255)),
)

queue_items = sa.Table(
    "queue_items",
    metadata,
    _id(),
    sa.Column("complaint_id", Id, sa.ForeignKey("complaints.id"), nullable=False, unique=True),
    sa.Column("agency", sa.String(64)),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("claimed_by", sa.String(128)),
    _ts("lease_until", nullable=True),
    sa.Column("assignee", sa.String(128)),
    _ts("created_at"),
    _ts("updated_at"),
    _where_set("agency"),
)

outbox = sa.Table(
    "outbox",
    metadata,
    _id(),
    sa.Column("complaint_id", Id, sa.ForeignKey("complaints.id"), nullable=True, index=True),
    sa.Column("message_id", Id, sa.ForeignKey("messages.id"), nullable=True),
    sa.Column("kind", sa.String(32), nullable=False),  # acknowledgement | forward | ...
    sa.Column("target", sa.String(320), nullable=False),
    sa.Column("delivery_id", sa.String(64), nullable=False, unique=True),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("attempts", sa.Integer(), nullable=False),
    _ts("next_attempt_at"),
    sa.Column("last_error", sa.Text()),
    _ts("created_at"),
    _ts("updated_at"),
    _ts("lease_until", nullable=True),  # a worker is sending it until then
    _ts("sent_at", nullable=True),
    sa.Column("provider_id", sa.String(512)),  # the far side's id of what was sent
)

outbound_messages = sa.Table(
    "outbound_messages",
    metadata,
    _id(),
    sa.Column("complaint_id", Id, sa.ForeignKey("complaints.id"), nullable=False, index=True),
    sa.Column("outbox_id", Id, sa.ForeignKey("outbox.id"), nullable=False, unique=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("via", sa.String(64), nullable=False),
    sa.Column("to_address", sa.String(320), nullable=False, index=True),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("provider_id", sa.String(512), index=True),
    _ts("sent_at", index=True),
)

complaint_events = sa.Table(
    "complaint_events",
    metadata,
    _id(),
    sa.Column("complaint_id", Id, sa.ForeignKey("complaints.id"), nullable=False, index=True),
    _ts("at"),
    sa.Column("actor", sa.String(128), nullable=False),
    # claimed | assigned | comment | resolved | closed | rejected | reopened
    sa.Column("kind", sa.String(24), nullable=False),
    sa.Column("from_status", sa.String(24)),
    sa.Column("to_status", sa.String(24)),
    sa.Column("note", sa.Text()),
)

ticket_counters = sa.Table(
    "ticket_counters",
    metadata,
    sa.Column("prefix", sa.String(16), primary_key=True),
    sa.Column("year", sa.Integer(), primary_key=True),
    sa.Column("value", sa.BigInteger(), nullable=False),
)

identities = sa.Table(
    "identities",
    metadata,
    _id(),
    # ``tel:+62…`` (SMS and WhatsApp alike), ``mailto:…``, ``wa:<business-scoped id>``
    sa.Column("key", sa.String(340), nullable=False, unique=True),
    # one person's identities share a person id (that of the first of them)
    sa.Column("person_id", Id, nullable=True, index=True),
    _ts("created_at"),
)

identity_events = sa.Table(
    "identity_events",
    metadata,
    _id(),
    _ts("at"),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),  # link | unlink
    sa.Column("key", sa.String(340), nullable=False, index=True),
    sa.Column("other", sa.String(340), index=True),
    sa.Column("reason", sa.Text()),
)

clusters = sa.Table(
    "clusters",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("label", sa.Text(), nullable=False),
    sa.Column("size", sa.Integer(), nullable=False),
    _ts("created_at"),
    _ts("updated_at"),
)

similarity_bands = sa.Table(
    "similarity_bands",
    metadata,
    # a MinHash band key of a complaint's text (normalizer.similarity.bands); the key leads
    # the primary key, so candidates are an index range scan bounded by the window
    sa.Column("band", sa.BigInteger(), nullable=False),
    _ts("received_at"),
    sa.Column("complaint_id", Id, sa.ForeignKey("complaints.id"), nullable=False),
    sa.PrimaryKeyConstraint("band", "received_at", "complaint_id"),
)

ratings = sa.Table(
    "ratings",
    metadata,
    _id(),
    # the complaint rated: one rating each, from the citizen's answer to its satisfaction
    # survey (the latest answer wins; ``omnichannel.survey``)
    sa.Column("complaint_id", Id, sa.ForeignKey("complaints.id"), nullable=False, unique=True),
    sa.Column("score", sa.SmallInteger(), nullable=False),  # 1 (very dissatisfied) to 5
    sa.Column("comment", sa.Text()),  # the rest of the answer's text
    sa.Column("channel", sa.String(32), nullable=False),  # of the answer
    # how the answer was matched to the complaint: thread | ticket | sender
    sa.Column("matched_by", sa.String(16), nullable=False),
    # the answer: its message (merged into the complaint) and its raw payload
    sa.Column("message_id", Id, sa.ForeignKey("messages.id"), nullable=False),
    sa.Column("raw_id", Id, sa.ForeignKey("raw_messages.id"), nullable=False),
    _ts("received_at", index=True),  # when the answer was received
    sa.CheckConstraint("score BETWEEN 1 AND 5", name="score"),
)

audit_chain = sa.Table(
    "audit_chain",
    metadata,
    # the entry's position: 1, 2, 3, … without gaps (given by the writer, under a lock)
    sa.Column("id", Id, primary_key=True, autoincrement=False),
    # raw | replace | purge (of raw_messages.id) ; event (complaint_events.id)
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("ref", Id, nullable=False),
    sa.Column("content_sha256", sa.String(64), nullable=False),
    _ts("at"),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)
