"""Read side: complaints in their exported form, quarantine listings."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from omnichannel import audit
from omnichannel.privacy import Masker
from omnichannel.schema import (
    AttachmentInfo,
    Complaint,
    Location,
    Message,
    OutboundMessage,
    Outcome,
    RawMessage,
    Sender,
)
from omnichannel.store.tables import (
    attachments,
    clusters,
    complaints,
    messages,
    outbound_messages,
    quarantine,
    raw_messages,
)

__all__ = [
    "backlog_by_connector",
    "complaint",
    "list_quarantine",
    "load_complaints",
    "overview",
    "quarantined_raws",
    "raw_message",
    "replace_payload",
]


def load_complaints(
    conn: sa.Connection,
    *,
    limit: int | None = 50,
    status: str | None = None,
    after_id: int = 0,
    ids: Sequence[int] | None = None,
    team: bool = False,
    cluster: str | None = None,
    masker: Masker | None = None,
) -> list[Complaint]:
    """Complaints in their exported form; ``team`` shows a confidential complaint's sender
    (the team's own view: never an export's or a forward's). An anonymous one's never.

    ``masker`` masks personal data in the text (subject, body, messages, what was sent,
    location address, cluster label): ``[privacy] mask_in_text`` for exports and forwards.
    Without one the exported form masks the NIK and NPWP numbers (the default of
    ``mask_in_text``) and the team's view (``team``) nothing."""
    query = (
        sa.select(
            complaints,
            clusters.c.label.label("cluster_label"),
            clusters.c.size.label("cluster_size"),
        )
        .outerjoin(clusters, clusters.c.id == complaints.c.cluster_id)
        .where(complaints.c.id > after_id)
        .order_by(complaints.c.id)
    )
    if status is not None:
        query = query.where(complaints.c.status == status)
    if cluster is not None:
        query = query.where(complaints.c.cluster_id == cluster)
    if ids is not None:
        query = query.where(complaints.c.id.in_(list(ids)))
    if limit is not None:
        query = query.limit(limit)
    rows = list(conn.execute(query).mappings())
    if not rows:
        return []
    ids = [row["id"] for row in rows]
    by_complaint = _messages_of(conn, ids)
    files = _attachments_of(conn, ids)
    sent = _outbound_of(conn, ids)
    found = []
    for row in rows:
        item = _complaint(row, by_complaint.get(row["id"], []), files.get(row["id"], []), team)
        if not (row["anonymous"] or (row["confidential"] and not team)):
            item.outbound = sent.get(row["id"], [])
        found.append(item)
    chosen = masker if masker is not None else None if team else _DEFAULT_MASKER
    if chosen is not None and chosen.kinds:
        for item in found:
            _mask_text_of(item, chosen)
    return found


_DEFAULT_MASKER = Masker()


def _mask_text_of(item: Complaint, masker: Masker) -> None:
    """``item`` with personal data masked in every text a citizen or the team wrote."""
    item.subject = masker.optional(item.subject)
    item.body = masker.text(item.body)
    item.cluster_label = masker.optional(item.cluster_label)
    if item.location is not None:
        item.location.address = masker.optional(item.location.address)
    for message in item.messages:
        message.body = masker.text(message.body)
    for sent in item.outbound:
        sent.body = masker.text(sent.body)


def _outbound_of(conn: sa.Connection, ids: list[int]) -> dict[int, list[OutboundMessage]]:
    query = (
        sa.select(
            outbound_messages.c.complaint_id,
            outbound_messages.c.kind,
            outbound_messages.c.via,
            outbound_messages.c.to_address,
            outbound_messages.c.body,
            outbound_messages.c.sent_at,
        )
        .where(outbound_messages.c.complaint_id.in_(ids))
        .order_by(outbound_messages.c.sent_at, outbound_messages.c.id)
    )
    out: dict[int, list[OutboundMessage]] = {}
    for cid, kind, via, to, body, sent_at in conn.execute(query):
        item = OutboundMessage(kind=kind, via=via, to=to, body=body, sent_at=sent_at)
        out.setdefault(cid, []).append(item)
    return out


def complaint(conn: sa.Connection, key: int | str, *, team: bool = False) -> Complaint | None:
    """By numeric id, or by ticket number (``team``: see :func:`load_complaints`)."""
    if isinstance(key, int) or str(key).isdigit():
        found = load_complaints(conn, ids=[int(key)], limit=1, team=team)
    else:
        row = conn.execute(
            sa.select(complaints.c.id).where(complaints.c.ticket == str(key).upper())
        ).scalar_one_or_none()
        found = load_complaints(conn, ids=[row], limit=1, team=team) if row is not None else []
    return found[0] if found else None


def _messages_of(conn: sa.Connection, ids: list[int]) -> dict[int, list[Message]]:
    query = (
        sa.select(
            messages.c.id,
            messages.c.complaint_id,
            messages.c.channel,
            messages.c.connector,
            messages.c.external_id,
            messages.c.received_at,
            messages.c.sent_at,
            messages.c.body,
            messages.c.outcome,
            messages.c.merge_reason,
            messages.c.merge_score,
        )
        .where(messages.c.complaint_id.in_(ids))
        .order_by(messages.c.received_at, messages.c.id)
    )
    out: dict[int, list[Message]] = {}
    for row in conn.execute(query).mappings():
        item = Message(
            id=row["id"],
            channel=row["channel"],
            connector=row["connector"],
            external_id=row["external_id"],
            received_at=row["received_at"],
            sent_at=row["sent_at"],
            body=row["body"],
            outcome=Outcome(row["outcome"]),
            merge_reason=row["merge_reason"],
            merge_score=row["merge_score"],
        )
        out.setdefault(row["complaint_id"], []).append(item)
    return out


def _attachments_of(conn: sa.Connection, ids: list[int]) -> dict[int, list[AttachmentInfo]]:
    query = (
        sa.select(
            attachments.c.complaint_id,
            attachments.c.filename,
            attachments.c.content_type,
            attachments.c.size,
            attachments.c.sha256,
        )
        .where(attachments.c.complaint_id.in_(ids))
        .order_by(attachments.c.message_id, attachments.c.position)
    )
    out: dict[int, list[AttachmentInfo]] = {}
    for row in conn.execute(query).mappings():
        info = AttachmentInfo(
            filename=row["filename"],
            content_type=row["content_type"],
            size=row["size"],
            sha256=row["sha256"],
        )
        out.setdefault(row["complaint_id"], []).append(info)
    return out


# Complaint fields stored as they are exported, column for column.
_DIRECT_FIELDS = (
    "id",
    "ticket",
    "status",
    "channel",
    "connector",
    "received_at",
    "updated_at",
    "subject",
    "body",
    "language",
    "category",
    "agency",
    "due_at",
    "cluster_id",
    "cluster_label",
    "cluster_size",
    "merged_into",
    "anonymous",
    "confidential",
)


def _complaint(
    row: Any, items: list[Message], files: list[AttachmentInfo], team: bool = False
) -> Complaint:
    hidden = row["anonymous"] or (row["confidential"] and not team)
    sender = (
        Sender()
        if hidden
        else Sender(
            name=row["sender_name"],
            email=row["sender_email"],
            phone=row["sender_phone"],
            handle=row["sender_handle"],
        )
    )
    location = None
    if row["location_address"] is not None or row["location_lat"] is not None:
        location = Location(
            lat=row["location_lat"], lon=row["location_lon"], address=row["location_address"]
        )
    direct = {name: row[name] for name in _DIRECT_FIELDS}
    if hidden:  # a provider's id can spell the sender (a wamid holds the phone, a Message-ID
        items = [_sealed(item) for item in items]  # often the address): a digest instead
    return Complaint(**direct, sender=sender, attachments=files, location=location, messages=items)


def _sealed(message: Message) -> Message:
    """The message with its external id replaced by a digest that still tells messages
    apart (``sealed:`` + 24 hex digits of its sha256), for a sender who must stay hidden."""
    digest = hashlib.sha256(message.external_id.encode("utf-8", "surrogatepass")).hexdigest()
    return message.model_copy(update={"external_id": f"sealed:{digest[:24]}"})


def quarantined_raws(
    conn: sa.Connection, raw_ids: Sequence[int] | None
) -> list[tuple[int, RawMessage]]:
    query = sa.select(raw_messages).where(raw_messages.c.status == "quarantined")
    if raw_ids is not None:
        query = query.where(raw_messages.c.id.in_(list(raw_ids)))
    rows = conn.execute(query.order_by(raw_messages.c.id)).mappings()
    return [(row["id"], raw_message(row)) for row in rows]


def raw_message(row: Any) -> RawMessage:
    """A stored raw row as the RawMessage it was stored from."""
    return RawMessage(
        connector=row["connector"],
        external_id=row["external_id"],
        received_at=row["received_at"],
        content_type=row["content_type"],
        payload=row["payload"],
        meta=row["meta"] or {},
    )


def list_quarantine(conn: sa.Connection, *, include_resolved: bool = False) -> list[dict[str, Any]]:
    query = (
        sa.select(
            quarantine.c.raw_id.label("id"),
            quarantine.c.connector,
            raw_messages.c.external_id,
            raw_messages.c.meta,
            quarantine.c.error_type,
            quarantine.c.error,
            quarantine.c.attempts,
            quarantine.c.first_seen,
            quarantine.c.last_attempt,
            quarantine.c.resolved_at,
        )
        .join(raw_messages, raw_messages.c.id == quarantine.c.raw_id)
        .order_by(quarantine.c.raw_id)
    )
    if not include_resolved:
        query = query.where(quarantine.c.resolved_at.is_(None))
    return [dict(row) for row in conn.execute(query).mappings()]


def replace_payload(
    conn: sa.Connection, raw_id: int, payload: bytes, content_type: str | None = None
) -> None:
    """Give a quarantined raw message a corrected payload (and, to have another decoder read
    it, another content type); the first original of each is kept in its quarantine row."""
    original = conn.execute(
        sa.select(raw_messages.c.payload, raw_messages.c.content_type).where(
            raw_messages.c.id == raw_id
        )
    ).one()
    conn.execute(
        sa.update(quarantine)
        .where(quarantine.c.raw_id == raw_id, quarantine.c.original_payload.is_(None))
        .values(original_payload=original.payload, original_content_type=original.content_type)
    )
    values: dict[str, Any] = {"payload": payload, "size": len(payload), "sha256": _sha256(payload)}
    if content_type is not None:
        values["content_type"] = content_type
    conn.execute(sa.update(raw_messages).where(raw_messages.c.id == raw_id).values(**values))
    audit.append_replacements(conn, [raw_id])


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def overview(conn: sa.Connection, now: datetime) -> dict[str, Any]:
    """The numbers an operator watches (``omnichannel status``, ``/metrics``): the raw backlog
    and the age of its oldest row, quarantine, outbox by status and its oldest due row,
    complaints by status and how many are overdue."""
    from omnichannel.store.tables import outbox

    def count(table: sa.Table, *where: Any) -> int:
        query = sa.select(sa.func.count()).select_from(table).where(*where)
        return int(conn.execute(query).scalar_one())

    oldest_raw = conn.execute(
        sa.select(sa.func.min(raw_messages.c.stored_at)).where(raw_messages.c.status == "received")
    ).scalar_one()
    oldest_due = conn.execute(
        sa.select(sa.func.min(outbox.c.next_attempt_at)).where(outbox.c.status == "pending")
    ).scalar_one()
    outbox_counts: dict[Any, Any] = dict(
        conn.execute(sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status)).all()
    )
    complaint_counts: dict[Any, Any] = dict(
        conn.execute(
            sa.select(complaints.c.status, sa.func.count()).group_by(complaints.c.status)
        ).all()
    )
    open_states = ("open", "assigned", "in_progress")
    return {
        "raw_backlog": count(raw_messages, raw_messages.c.status == "received"),
        "raw_backlog_age_seconds": _age(now, oldest_raw),
        "quarantined": count(quarantine, quarantine.c.resolved_at.is_(None)),
        "outbox": {str(k): int(v) for k, v in outbox_counts.items()},
        "outbox_oldest_due_seconds": _age(now, oldest_due),
        "complaints": {str(k): int(v) for k, v in complaint_counts.items()},
        "overdue": count(
            complaints, complaints.c.status.in_(open_states), complaints.c.due_at < now
        ),
    }


def _age(now: datetime, since: datetime | None) -> float:
    if since is None:
        return 0.0
    moment = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
    return max(0.0, float((now - moment).total_seconds()))


def backlog_by_connector(conn: sa.Connection) -> dict[str, int]:
    """Raw messages stored and not yet filed, by connector."""
    query = (
        sa.select(raw_messages.c.connector, sa.func.count())
        .where(raw_messages.c.status == "received")
        .group_by(raw_messages.c.connector)
    )
    return {str(name): int(count) for name, count in conn.execute(query)}
