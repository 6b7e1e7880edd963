"""The raw-first pipeline: store, decode, normalize, dedupe, file — each input exactly once.

1. Decoding and normalizing are pure and run first, outside any transaction; a failure becomes
   a quarantine record, never an exception.
2. ``store_and_claim`` inserts every raw payload if absent (unique on connector + external id)
   and locks, in id order, the rows still ``received``: the ones this transaction may file.  A
   row another process already filed, or is filing right now (waited for), is not claimable
   and is reported as a ``duplicate``.
3. ``file_batch``, in the same transaction, writes complaints, messages, attachments, queue
   items, outbox rows and the connector's cursor, and marks each raw row with its outcome.

The commit of that one transaction is what a webhook's 200 or an IMAP flag waits for; a crash
before it leaves nothing behind, and the source still holds the message.  When filing fails for
an unexpected reason, ``Inbox.receive_many`` stores the raw payloads on their own first
(``store_raw``, committed) and files them again (``_claim`` + ``file_batch``), so that no error
can take a payload with it; rows left ``received`` that way are filed by the next delivery or
by ``replay``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from normalizer.normalize import normalize
from omnichannel import filing
from omnichannel.schema import NormalizedMessage, Outcome, RawMessage, ReceiveResult
from omnichannel.store import direct, insert_ignore
from omnichannel.store.tables import (
    UTCDateTime,
    complaints,
    cursors,
    quarantine,
    raw_messages,
)

__all__ = ["Prepared", "Settings", "file_batch", "prepare", "store_and_claim", "store_raw"]

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
    inline_ack: frozenset[str] = frozenset()
    """Connectors whose webhook reply carries the acknowledgement (TwiML): their outbox rows
    are written already ``sent-inline``, in the same transaction."""


@dataclass
class Prepared:
    """A stored raw row and what decoding it gave: a normalized message or an error."""

    raw_id: int
    raw: RawMessage
    message: NormalizedMessage | None = None
    error: BaseException | None = None


CHUNK = 500
_IDS: sa.BindParameter[Any] = sa.bindparam("ids", expanding=True)


def _raw_rows(size: int) -> sa.Select[Any]:
    return (
        sa.select(raw_messages.c.id, raw_messages.c.external_id, raw_messages.c.status)
        .where(
            raw_messages.c.connector == sa.bindparam("c", type_=sa.String()),
            raw_messages.c.external_id.in_(direct.in_list(size, sa.String())),
        )
        .order_by(raw_messages.c.id)
    )


def _raw_rows_locked(size: int) -> sa.Select[Any]:
    return _raw_rows(size).with_for_update()


_LOCK_CLAIMABLE = (
    sa.select(raw_messages.c.id)
    .where(raw_messages.c.id.in_(_IDS), raw_messages.c.status == sa.bindparam("s"))
    .order_by(raw_messages.c.id)
    .with_for_update()
)
_MARK_RAW = (
    sa.update(raw_messages)
    .where(raw_messages.c.id == sa.bindparam("rid"))
    .values(
        status=sa.bindparam("s"),
        outcome=sa.bindparam("o"),
        complaint_id=sa.bindparam("c"),
        processed_at=sa.bindparam("t", type_=UTCDateTime()),
    )
)
_MARK_FILING = sa.update(raw_messages).where(raw_messages.c.id.in_(_IDS)).values(status="filing")


# -- stage 1: raw first ------------------------------------------------------------------------


def store_raw(conn: sa.Connection, raws: Sequence[RawMessage], now: datetime) -> list[int]:
    """Insert each raw message if absent; return the raw row id of each, in order."""
    _insert_raw(conn, raws, now)
    found = _stored(conn, _raw_rows, raws)
    return [found[(r.connector, r.external_id)][0] for r in raws]


def store_and_claim(
    conn: sa.Connection, raws: Sequence[RawMessage], now: datetime
) -> tuple[list[int], set[int]]:
    """``store_raw`` and ``_claim`` in one go, for filing in the same transaction.

    Returns the raw row id of each message, in order, and the ids this transaction may file:
    rows still ``received`` (just inserted, or left by an earlier crash), locked in id order.
    Rows filed before, or by a concurrent transaction (waited for), are not claimable.
    """
    rows, known = _insert_raw(conn, raws, now)
    if known is not None:  # every row is new (SQLite): their ids, in insertion order, and ours
        keys = [(row["connector"], row["external_id"]) for row in rows]
        by_key = dict(zip(keys, known, strict=True))
        return [by_key[(r.connector, r.external_id)] for r in raws], set(known)
    found = _stored(conn, _raw_rows_locked, raws)
    ids = [found[(r.connector, r.external_id)][0] for r in raws]
    return ids, {rid for rid, status in found.values() if status == RECEIVED}


def _insert_raw(
    conn: sa.Connection, raws: Sequence[RawMessage], now: datetime
) -> tuple[list[dict[str, Any]], list[int] | None]:
    """Insert the rows that are absent; the rows in the order they were written, and their ids
    when every row was new and the database tells them (SQLite)."""
    rows = [
        {
            "connector": r.connector,
            "external_id": r.external_id,
            "received_at": r.received_at,
            "stored_at": now,
            "content_type": r.content_type,
            "payload": r.payload,
            "size": len(r.payload),
            "sha256": filing.sha256_hex(r.payload),
            "meta": r.meta,
            "status": RECEIVED,
        }
        for r in raws
    ]
    rows.sort(key=lambda row: (row["connector"], row["external_id"]))  # same lock order everywhere
    return rows, insert_ignore(conn, raw_messages, rows, ("connector", "external_id"))[1]


def _stored(
    conn: sa.Connection, build: Callable[[int], sa.Select[Any]], raws: Sequence[RawMessage]
) -> dict[tuple[str, str], tuple[int, str]]:
    """``{(connector, external id): (raw id, status)}`` of the stored rows of ``raws``."""
    found: dict[tuple[str, str], tuple[int, str]] = {}
    by_connector: dict[str, list[str]] = {}
    for r in raws:
        by_connector.setdefault(r.connector, []).append(r.external_id)
    for connector, ids in sorted(by_connector.items()):  # one lock order everywhere
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            for rid, ext, status in direct.fetch_in(conn, build, chunk, {"c": connector}):
                found[(connector, ext)] = (rid, status)
    return found


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
    claimed: set[int] | None = None,
) -> dict[int, ReceiveResult]:
    """File the claimable items in this transaction; return results keyed by raw id.

    Items not claimed (already filed by this or another process) are left out of the result.
    ``claimed``: the rows this transaction has already locked and may file (``store_and_claim``).
    """
    if claimed is None:
        claimed = _claim(conn, [item.raw_id for item in items], from_status)
    todo: dict[int, Prepared] = {}
    for item in items:
        if item.raw_id in claimed:
            todo.setdefault(item.raw_id, item)
    decoded = [item for item in todo.values() if item.message is not None]
    if from_status == QUARANTINED:
        for item in decoded:
            _resolve_quarantine(conn, item.raw_id, now)
    filed = dict(
        zip(
            (item.raw_id for item in decoded),
            filing.file_messages(
                conn, [(i.raw_id, i.message) for i in decoded if i.message], settings, now
            ),
            strict=True,
        )
    )
    for item in todo.values():
        if item.message is None:
            _quarantine(conn, item, now)
            filed[item.raw_id] = filing.Filed(Outcome.QUARANTINED)
    _mark_raw(conn, [_raw_update(rid, f, now) for rid, f in filed.items()])
    if cursor is not None:
        save_cursor(conn, cursor[0], cursor[1], now)
    return {rid: _result(item, filed[rid]) for rid, item in todo.items()}


def _raw_update(raw_id: int, filed: filing.Filed, now: datetime) -> dict[str, Any]:
    quarantined = filed.outcome is Outcome.QUARANTINED
    return {
        "rid": raw_id,
        "o": filed.outcome.value,
        "c": filed.complaint_id,
        "s": QUARANTINED if quarantined else PROCESSED,
        "t": now,
    }


def _result(item: Prepared, filed: filing.Filed) -> ReceiveResult:
    return ReceiveResult(
        connector=item.raw.connector,
        external_id=item.raw.external_id,
        outcome=filed.outcome,
        complaint_id=filed.complaint_id,
        ticket=filed.ticket,
        raw_id=item.raw_id,
        error=_error_text(item.error) if item.error else None,
    )


def _claim(conn: sa.Connection, raw_ids: Sequence[int], from_status: str) -> set[int]:
    """Lock (in id order, so concurrent batches cannot deadlock) and take the claimable rows.

    On PostgreSQL a row being filed by another transaction is waited for, then re-checked: once
    that transaction commits, the row is no longer claimable and is reported as a duplicate.
    """
    claimed: set[int] = set()
    ordered = sorted(set(raw_ids))
    for start in range(0, len(ordered), CHUNK):
        params = {"ids": ordered[start : start + CHUNK], "s": from_status}
        locked = list(conn.execute(_LOCK_CLAIMABLE, params).scalars())
        if locked:
            conn.execute(_MARK_FILING, {"ids": locked})
        claimed.update(locked)
    return claimed


def _mark_raw(conn: sa.Connection, updates: list[dict[str, Any]]) -> None:
    direct.execute_many(conn, _MARK_RAW, updates)


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
