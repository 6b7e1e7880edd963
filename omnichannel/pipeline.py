"""The raw-first pipeline: store, decode, normalize, dedupe, file — each input exactly once.

1. ``store_raw``: every raw payload is inserted if absent (unique on connector + external id) and
   committed before anything else; this commit is what a webhook's 200 or an IMAP flag waits for.
2. Decoding and normalizing are pure and run outside any transaction.
3. ``file_batch``: one transaction claims the raw rows (``UPDATE … WHERE status='received'``: a
   row another process already filed, or is filing right now, is not claimed and is reported as
   a ``duplicate``), writes complaints, messages, attachments, queue items, outbox rows and the
   connector's cursor, and marks each raw row with its outcome.  A crash anywhere before the
   commit leaves the raw rows ``received``, to be filed by the next run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from normalizer.normalize import body_fingerprint, normalize, sender_key
from omnichannel.schema import NormalizedMessage, Outcome, RawMessage, ReceiveResult
from omnichannel.store import insert_ignore
from omnichannel.store.tables import (
    UTCDateTime,
    attachments,
    complaints,
    cursors,
    messages,
    outbox,
    quarantine,
    queue_items,
    raw_messages,
    ticket_counters,
)

__all__ = ["Prepared", "Settings", "file_batch", "prepare", "store_raw"]

RECEIVED, PROCESSED, QUARANTINED = "received", "processed", "quarantined"
Decoder = Callable[[RawMessage], Any]


@dataclass(frozen=True)
class Settings:
    """What filing needs to know of the configuration."""

    ticket_prefix: str = "ADU"
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Makassar"))
    region: str = "ID"
    acknowledgements: bool = True
    same_sender_window: timedelta = timedelta(days=14)
    verify_working_days: int = 3


@dataclass
class Prepared:
    """A stored raw row and what decoding it gave: a normalized message or an error."""

    raw_id: int
    raw: RawMessage
    message: NormalizedMessage | None = None
    error: BaseException | None = None


@dataclass
class _Filed:
    outcome: Outcome
    complaint_id: int | None = None
    ticket: str | None = None


# Statements built once: constructing SQLAlchemy statements per message costs more than
# running them.
_INSERT_COMPLAINT = sa.insert(complaints).returning(complaints.c.id)
_INSERT_MESSAGE = sa.insert(messages).returning(messages.c.id)
_INSERT_QUEUE_ITEM = sa.insert(queue_items)
_INSERT_OUTBOX = sa.insert(outbox)
_INSERT_ATTACHMENTS = sa.insert(attachments)
_TOUCH_COMPLAINT = (
    sa.update(complaints)
    .where(complaints.c.id == sa.bindparam("cid"))
    .values(updated_at=sa.bindparam("now"))
)
_NEXT_TICKET = (
    sa.update(ticket_counters)
    .where(
        ticket_counters.c.prefix == sa.bindparam("p"), ticket_counters.c.year == sa.bindparam("y")
    )
    .values(value=ticket_counters.c.value + 1)
    .returning(ticket_counters.c.value)
)
_SAME_SENDER = (
    sa.select(complaints.c.id, complaints.c.ticket)
    .join(messages, complaints.c.id == messages.c.complaint_id)
    .where(
        messages.c.sender_key == sa.bindparam("key"),
        messages.c.body_hash == sa.bindparam("fp"),
        messages.c.received_at >= sa.bindparam("since", type_=UTCDateTime()),
    )
    .order_by(messages.c.received_at.desc())
    .limit(1)
)
_BY_TICKET = sa.select(complaints.c.id, complaints.c.ticket).where(
    complaints.c.ticket == sa.bindparam("ticket")
)


# -- stage 1: raw first ------------------------------------------------------------------------


def store_raw(conn: sa.Connection, raws: Sequence[RawMessage], now: datetime) -> list[int]:
    """Insert each raw message if absent; return the raw row id of each, in order."""
    rows = [
        {
            "connector": r.connector,
            "external_id": r.external_id,
            "received_at": r.received_at,
            "stored_at": now,
            "content_type": r.content_type,
            "payload": r.payload,
            "size": len(r.payload),
            "sha256": _sha256(r.payload),
            "meta": r.meta,
            "status": RECEIVED,
        }
        for r in raws
    ]
    rows.sort(key=lambda row: (row["connector"], row["external_id"]))  # same lock order everywhere
    insert_ignore(conn, raw_messages, rows, ("connector", "external_id"))
    return _raw_ids(conn, [(r.connector, r.external_id) for r in raws])


def _raw_ids(conn: sa.Connection, keys: Sequence[tuple[str, str]]) -> list[int]:
    found: dict[tuple[str, str], int] = {}
    by_connector: dict[str, list[str]] = {}
    for connector, external_id in keys:
        by_connector.setdefault(connector, []).append(external_id)
    for connector, ids in by_connector.items():
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            query = sa.select(raw_messages.c.id, raw_messages.c.external_id).where(
                raw_messages.c.connector == connector, raw_messages.c.external_id.in_(chunk)
            )
            found.update({(connector, ext): rid for rid, ext in conn.execute(query)})
    return [found[key] for key in keys]


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


# -- stage 2: pure decoding --------------------------------------------------------------------


def prepare(raw_id: int, raw: RawMessage, decode: Decoder, settings: Settings) -> Prepared:
    """Decode and normalize; any failure is captured (it will quarantine, never crash)."""
    try:
        inbound = decode(raw)
        message = normalize(
            inbound, connector=raw.connector, received_at=raw.received_at, region=settings.region
        )
    except Exception as exc:
        return Prepared(raw_id, raw, error=exc)
    return Prepared(raw_id, raw, message=message)


# -- stage 3: filing ---------------------------------------------------------------------------


def file_batch(
    conn: sa.Connection,
    items: Sequence[Prepared],
    settings: Settings,
    now: datetime,
    *,
    from_status: str = RECEIVED,
    cursor: tuple[str, Any] | None = None,
) -> dict[int, ReceiveResult]:
    """File the claimable items in this transaction; return results keyed by raw id.

    Items not claimed (already filed by this or another process) are left out of the result.
    """
    claimed = _claim(conn, [item.raw_id for item in items], from_status)
    results: dict[int, ReceiveResult] = {}
    updates = []
    for item in items:
        if item.raw_id not in claimed or item.raw_id in results:
            continue
        filed = _file_one(conn, item, settings, now, replay=from_status == QUARANTINED)
        updates.append(
            {
                "rid": item.raw_id,
                "o": filed.outcome.value,
                "c": filed.complaint_id,
                "s": QUARANTINED if filed.outcome is Outcome.QUARANTINED else PROCESSED,
                "t": now,
            }
        )
        results[item.raw_id] = ReceiveResult(
            connector=item.raw.connector,
            external_id=item.raw.external_id,
            outcome=filed.outcome,
            complaint_id=filed.complaint_id,
            ticket=filed.ticket,
            raw_id=item.raw_id,
            error=_error_text(item.error) if item.error else None,
        )
    _mark_raw(conn, updates)
    if cursor is not None:
        save_cursor(conn, cursor[0], cursor[1], now)
    return results


def _claim(conn: sa.Connection, raw_ids: Sequence[int], from_status: str) -> set[int]:
    """Lock (in id order, so concurrent batches cannot deadlock) and take the claimable rows.

    On PostgreSQL a row being filed by another transaction is waited for, then re-checked: once
    that transaction commits, the row is no longer claimable and is reported as a duplicate.
    """
    claimed: set[int] = set()
    ordered = sorted(set(raw_ids))
    for start in range(0, len(ordered), 500):
        chunk = ordered[start : start + 500]
        locked = list(
            conn.execute(
                sa.select(raw_messages.c.id)
                .where(raw_messages.c.id.in_(chunk), raw_messages.c.status == from_status)
                .order_by(raw_messages.c.id)
                .with_for_update()
            ).scalars()
        )
        if locked:
            conn.execute(
                sa.update(raw_messages).where(raw_messages.c.id.in_(locked)).values(status="filing")
            )
        claimed.update(locked)
    return claimed


def _mark_raw(conn: sa.Connection, updates: list[dict[str, Any]]) -> None:
    if not updates:
        return
    statement = (
        sa.update(raw_messages)
        .where(raw_messages.c.id == sa.bindparam("rid"))
        .values(
            status=sa.bindparam("s"),
            outcome=sa.bindparam("o"),
            complaint_id=sa.bindparam("c"),
            processed_at=sa.bindparam("t"),
        )
    )
    conn.execute(statement, updates)


def _file_one(
    conn: sa.Connection, item: Prepared, settings: Settings, now: datetime, *, replay: bool = False
) -> _Filed:
    if item.message is None:
        _quarantine(conn, item, now)
        return _Filed(Outcome.QUARANTINED)
    if replay:
        _resolve_quarantine(conn, item.raw_id, now)
    message = item.message
    if message.is_automatic or not _has_content(message):
        if not _has_content(message):
            message.flags["empty"] = True
        _insert_message(conn, item.raw_id, message, None, Outcome.IGNORED)
        return _Filed(Outcome.IGNORED)
    existing = _find_related(conn, message, settings)
    if existing is not None:
        complaint_id, ticket = existing
        _insert_message(conn, item.raw_id, message, complaint_id, Outcome.MERGED)
        conn.execute(_TOUCH_COMPLAINT, {"cid": complaint_id, "now": now})
        return _Filed(Outcome.MERGED, complaint_id, ticket)
    complaint_id, ticket = _new_complaint(conn, message, settings, now)
    message_row = _insert_message(conn, item.raw_id, message, complaint_id, Outcome.NEW)
    _enqueue(conn, complaint_id, message_row, message, ticket, settings, now)
    return _Filed(Outcome.NEW, complaint_id, ticket)


def _has_content(message: NormalizedMessage) -> bool:
    return bool(message.body.strip() or message.attachments or message.location)


# -- dedupe levels 2 and 3 ---------------------------------------------------------------------


def _find_related(
    conn: sa.Connection, message: NormalizedMessage, settings: Settings
) -> tuple[int, str] | None:
    """The complaint this message continues: thread, ticket in the subject, or same sender."""
    return (
        _by_thread(conn, message)
        or _by_ticket(conn, message, settings.ticket_prefix)
        or _by_same_sender(conn, message, settings.same_sender_window)
    )


def _by_thread(conn: sa.Connection, message: NormalizedMessage) -> tuple[int, str] | None:
    ids = [i for i in [message.in_reply_to, *reversed(message.references)] if i]
    if not ids:
        return None
    query = (
        sa.select(messages.c.message_id, complaints.c.id, complaints.c.ticket)
        .join(complaints, complaints.c.id == messages.c.complaint_id)
        .where(messages.c.message_id.in_(ids))
    )
    found = {row.message_id: (row.id, row.ticket) for row in conn.execute(query)}
    return next((found[i] for i in ids if i in found), None)


def _by_ticket(
    conn: sa.Connection, message: NormalizedMessage, prefix: str
) -> tuple[int, str] | None:
    if not message.subject:
        return None
    match = re.search(rf"\b({re.escape(prefix)}-\d{{4}}-\d{{6,}})\b", message.subject)
    if match is None:
        return None
    row = conn.execute(_BY_TICKET, {"ticket": match.group(1)}).first()
    return (row.id, row.ticket) if row else None


def _by_same_sender(
    conn: sa.Connection, message: NormalizedMessage, window: timedelta
) -> tuple[int, str] | None:
    key, fingerprint = sender_key(message.sender), body_fingerprint(message.body)
    if key is None or fingerprint is None or window <= timedelta(0):
        return None
    since = message.received_at - window
    row = conn.execute(_SAME_SENDER, {"key": key, "fp": fingerprint, "since": since}).first()
    return (row.id, row.ticket) if row else None


# -- rows --------------------------------------------------------------------------------------


def next_ticket(conn: sa.Connection, prefix: str, year: int) -> str:
    """The next ticket number; the counter row lock serializes concurrent writers."""
    value = conn.execute(_NEXT_TICKET, {"p": prefix, "y": year}).scalar_one_or_none()
    if value is None:  # first ticket of the year: create the counter (race-safe), then count
        insert_ignore(
            conn,
            ticket_counters,
            [{"prefix": prefix, "year": year, "value": 0}],
            ("prefix", "year"),
        )
        value = conn.execute(_NEXT_TICKET, {"p": prefix, "y": year}).scalar_one()
    return f"{prefix}-{year}-{value:06d}"


def add_working_days(start: datetime, days: int, tz: ZoneInfo) -> datetime:
    """``start`` plus ``days`` working days (Monday to Friday) in the office's timezone."""
    local = start.astimezone(tz)
    while days > 0:
        local += timedelta(days=1)
        if local.weekday() < 5:
            days -= 1
    return local.astimezone(UTC)


def _new_complaint(
    conn: sa.Connection, message: NormalizedMessage, settings: Settings, now: datetime
) -> tuple[int, str]:
    year = message.received_at.astimezone(settings.timezone).year
    ticket = next_ticket(conn, settings.ticket_prefix, year)
    location = message.location
    row = {
        "ticket": ticket,
        "status": "open",
        "channel": message.channel,
        "connector": message.connector,
        "received_at": message.received_at,
        "updated_at": now,
        "sender_name": message.sender.name,
        "sender_email": message.sender.email,
        "sender_phone": message.sender.phone,
        "sender_handle": message.sender.handle,
        "subject": message.subject,
        "body": message.body,
        "language": message.language,
        "location_lat": location.lat if location else None,
        "location_lon": location.lon if location else None,
        "location_address": location.address if location else None,
        "category": message.category,
        "agency": message.agency,
        "due_at": add_working_days(
            message.received_at, settings.verify_working_days, settings.timezone
        ),
        "anonymous": message.anonymous,
        "confidential": message.confidential,
    }
    complaint_id = conn.execute(_INSERT_COMPLAINT, row).scalar_one()
    return complaint_id, ticket


def _insert_message(
    conn: sa.Connection,
    raw_id: int,
    message: NormalizedMessage,
    complaint_id: int | None,
    outcome: Outcome,
) -> int:
    sender = message.sender
    row = {
        "raw_id": raw_id,
        "complaint_id": complaint_id,
        "channel": message.channel,
        "connector": message.connector,
        "external_id": message.external_id,
        "received_at": message.received_at,
        "sent_at": message.sent_at,
        "sender_name": sender.name,
        "sender_email": sender.email,
        "sender_phone": sender.phone,
        "sender_handle": sender.handle,
        "sender_key": sender_key(sender),
        "subject": message.subject,
        "body": message.body,
        "text_full": message.text_full,
        "html": message.html,
        "body_hash": body_fingerprint(message.body),
        "language": message.language,
        "message_id": (message.message_id or message.external_id)[:512],
        "in_reply_to": message.in_reply_to,
        "references": message.references,
        "headers": message.headers,
        "flags": message.flags,
        "location": message.location.model_dump() if message.location else None,
        "outcome": outcome.value,
    }
    message_row = conn.execute(_INSERT_MESSAGE, row).scalar_one()
    _insert_attachments(conn, message_row, complaint_id, message)
    return int(message_row)


def _insert_attachments(
    conn: sa.Connection, message_row: int, complaint_id: int | None, message: NormalizedMessage
) -> None:
    rows = []
    for position, item in enumerate(message.attachments):
        content = item.content
        rows.append(
            {
                "message_id": message_row,
                "complaint_id": complaint_id,
                "position": position,
                "filename": item.filename,
                "content_type": item.content_type,
                "size": len(content) if content is not None else item.size,
                "sha256": _sha256(content) if content is not None else item.sha256,
                "content": content,
                "url": item.url,
                "status": "stored"
                if content is not None
                else ("pending" if item.url else "stored"),
            }
        )
    if rows:
        conn.execute(_INSERT_ATTACHMENTS, rows)


def _enqueue(
    conn: sa.Connection,
    complaint_id: int,
    message_row: int,
    message: NormalizedMessage,
    ticket: str,
    settings: Settings,
    now: datetime,
) -> None:
    conn.execute(
        _INSERT_QUEUE_ITEM,
        {
            "complaint_id": complaint_id,
            "agency": message.agency,
            "status": "pending",
            "claimed_by": None,
            "lease_until": None,
            "created_at": now,
            "updated_at": now,
        },
    )
    target = _reply_address(message)
    if settings.acknowledgements and target is not None:
        conn.execute(
            _INSERT_OUTBOX,
            {
                "complaint_id": complaint_id,
                "message_id": message_row,
                "kind": "acknowledgement",
                "target": target,
                "delivery_id": f"ack-{complaint_id}",
                "payload": {
                    "ticket": ticket,
                    "channel": message.channel,
                    "connector": message.connector,
                },
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "last_error": None,
                "created_at": now,
                "updated_at": now,
            },
        )


def _reply_address(message: NormalizedMessage) -> str | None:
    """Where the acknowledgement goes, on the channel the citizen used."""
    if message.anonymous:
        return None
    if message.channel == "email":
        return message.sender.email
    if message.channel in ("sms", "whatsapp") and message.sender.phone:
        return message.sender.phone if message.sender.phone.startswith("+") else None
    return None


# -- quarantine and cursors --------------------------------------------------------------------


def _error_text(error: BaseException) -> str:
    return (str(error).strip() or type(error).__name__)[:2000]


def _quarantine(conn: sa.Connection, item: Prepared, now: datetime) -> None:
    assert item.error is not None
    values = {
        "error_type": type(item.error).__name__,
        "error": _error_text(item.error),
        "last_attempt": now,
    }
    updated = conn.execute(
        sa.update(quarantine)
        .where(quarantine.c.raw_id == item.raw_id)
        .values(attempts=quarantine.c.attempts + 1, resolved_at=None, **values)
    ).rowcount
    if not updated:
        conn.execute(
            sa.insert(quarantine).values(
                raw_id=item.raw_id,
                connector=item.raw.connector,
                attempts=1,
                first_seen=now,
                **values,
            )
        )


def _resolve_quarantine(conn: sa.Connection, raw_id: int, now: datetime) -> None:
    conn.execute(
        sa.update(quarantine)
        .where(quarantine.c.raw_id == raw_id, quarantine.c.resolved_at.is_(None))
        .values(resolved_at=now, last_attempt=now)
    )


def save_cursor(conn: sa.Connection, connector: str, value: Any, now: datetime) -> None:
    """Upsert a connector's cursor (called inside the transaction of the messages it covers)."""
    insert_ignore(
        conn, cursors, [{"connector": connector, "value": None, "updated_at": now}], ("connector",)
    )
    conn.execute(
        sa.update(cursors)
        .where(cursors.c.connector == connector)
        .values(value=value, updated_at=now)
    )


def load_cursor(conn: sa.Connection, connector: str) -> Any:
    return conn.execute(
        sa.select(cursors.c.value).where(cursors.c.connector == connector)
    ).scalar_one_or_none()


def describe(
    conn: sa.Connection, raw_ids: Iterable[int]
) -> dict[int, tuple[str | None, int | None, str | None, str]]:
    """For raw rows: (outcome, complaint id, ticket, status) as stored."""
    ids = list(raw_ids)
    out: dict[int, tuple[str | None, int | None, str | None, str]] = {}
    for start in range(0, len(ids), 500):
        query = (
            sa.select(
                raw_messages.c.id,
                raw_messages.c.outcome,
                raw_messages.c.complaint_id,
                complaints.c.ticket,
                raw_messages.c.status,
            )
            .outerjoin(complaints, complaints.c.id == raw_messages.c.complaint_id)
            .where(raw_messages.c.id.in_(ids[start : start + 500]))
        )
        out.update({r[0]: (r[1], r[2], r[3], r[4]) for r in conn.execute(query)})
    return out
