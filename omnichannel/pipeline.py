"""The one path every message takes: raw first, then filed by a worker.

1. **Intake** (``store_raw``): a connector's raw payloads are inserted if absent (unique on
   connector + external id: a redelivery is recognised by the database, race-safe), together
   with a poller's cursor, in one transaction. Its commit is all a connector waits for before
   it acknowledges (IMAP flag, gateway ``Processed``, webhook 2xx).
2. **Claiming** (``claim``): a filing worker takes rows still ``received`` (or ``quarantined``
   for a replay), in id order; on PostgreSQL with ``FOR UPDATE SKIP LOCKED``, so any number of
   workers in any number of processes take disjoint rows; on SQLite the transaction holds the
   database's one write lock.
3. **Decoding** (``prepare``) is pure; a failure becomes the message's quarantine record.
4. **Filing** (``file_claimed``), in the claiming transaction: complaints, messages,
   attachments, queue items, outbox rows (``filing.file_messages``), and each raw row marked
   with its outcome. What fails there is isolated by the worker (``worker.FilingWorker``) and
   quarantined with its error (``quarantine``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from normalizer.keywords import PrivacyKeywords
from normalizer.normalize import normalize
from normalizer.similarity import MERGE_THRESHOLD, RELATED_THRESHOLD
from omnichannel import audit, filing, queries
from omnichannel.privacy import LOG_MASKER
from omnichannel.routing import Router
from omnichannel.schema import NormalizedMessage, Outcome, RawMessage
from omnichannel.store import insert_ignore
from omnichannel.store.tables import UTCDateTime, complaints, cursors, quarantine, raw_messages
from omnichannel.survey import SurveySettings
from omnichannel.values import storable_id, storable_inbound, storable_normalized

__all__ = [
    "Prepared",
    "Settings",
    "Stored",
    "claim",
    "describe",
    "file_claimed",
    "prepare",
    "quarantine_one",
    "storable_id",
    "store_raw",
]

RECEIVED, PROCESSED, QUARANTINED = "received", "processed", "quarantined"
Decoder = Callable[[RawMessage], Any]
CHUNK = 500


@dataclass(frozen=True)
class Settings:
    """What filing needs to know of the configuration."""

    ticket_prefix: str = "ADU"
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Makassar"))
    region: str = "ID"
    acknowledgements: bool = True
    same_sender_window: timedelta = timedelta(hours=72)
    """A person's message that is the same complaint as one of their open complaints with a
    message within this window is merged into it."""
    merge_threshold: float = MERGE_THRESHOLD
    related_threshold: float = RELATED_THRESHOLD
    clusters: bool = True
    cluster_window: timedelta = timedelta(days=30)
    """New complaints are clustered with related complaints received within this window."""
    verify_working_days: int = 3
    holidays: frozenset[date] = frozenset()
    router: Router = field(default_factory=Router)
    inline_ack: frozenset[str] = frozenset()
    """Connectors whose webhook reply may carry the acknowledgement (TwiML): their outbox rows
    are held back (``inline_hold``) so that the reply can take them first."""
    inline_hold: timedelta = timedelta(seconds=30)
    deadlines: Callable[[str | None], tuple[int, int]] | None = None
    """(verify, follow-up) working days of a category; None: ``verify_working_days`` for all."""
    smtp: bool = False
    """Outgoing mail is configured: e-mail addresses can be answered."""
    senders: frozenset[str] = frozenset()
    """Connectors that send on their own channel (twilio, whatsapp-cloud, gammu)."""
    sms_via: str | None = None
    """The connector that sends SMS for complaints from channels that cannot (web, files)."""
    forwarders: tuple[Any, ...] = ()
    """``ForwarderSpec`` s: where new complaints and their events are forwarded."""
    reply_window: timedelta = timedelta(days=7)
    """An SMS/WhatsApp message from an address the team answered within this window joins
    the complaint answered."""
    privacy_keywords: PrivacyKeywords = field(default_factory=PrivacyKeywords)
    """What a citizen writes to complain anonymously (``#ANONIM``) or confidentially."""
    survey: SurveySettings = field(default_factory=SurveySettings)
    """When the satisfaction survey is sent, and how long an answer counts (``[survey]``)."""


@dataclass
class Prepared:
    """A claimed raw row and what decoding it gave: a normalized message or an error."""

    raw_id: int
    raw: RawMessage
    message: NormalizedMessage | None = None
    error: BaseException | None = None


@dataclass(frozen=True)
class Stored:
    """What intake made of a list of raw messages, position by position."""

    ids: list[int]
    """The raw row id of each message."""
    new: list[bool]
    """Whether this call inserted it (False: stored before, or earlier in the same list)."""
    status: dict[int, str]
    """Each row's status as intake saw it (``received`` rows are still to be filed)."""


# -- intake ------------------------------------------------------------------------------------


def store_raw(
    conn: sa.Connection,
    raws: Sequence[RawMessage],
    now: datetime,
    *,
    cursor: tuple[str, Any] | None = None,
) -> Stored:
    """Insert each raw message if absent, and save ``cursor`` (connector name, value), in this
    transaction; the row id and state of each message."""
    keys = [(r.connector, storable_id(r.external_id)) for r in raws]
    rows = [_raw_row(r, key[1], now) for r, key in zip(raws, keys, strict=True)]
    rows.sort(key=lambda row: (row["connector"], row["external_id"]))  # one lock order
    unique = ("connector", "external_id")
    written = insert_ignore(conn, raw_messages, rows, unique, returning=("id", *unique))
    audit.append_raws(conn, written, rows)
    found = {(c, e): (rid, RECEIVED) for rid, c, e in written}
    inserted = {rid for rid, _, _ in written}
    if len(found) < len(set(keys)):
        found = _stored(conn, set(keys)) | found  # some were stored before: look them up
    ids, new, seen = [], [], set()
    for key in keys:
        rid = found[key][0]
        ids.append(rid)
        new.append(rid in inserted and rid not in seen)
        seen.add(rid)
    if cursor is not None:
        save_cursor(conn, cursor[0], cursor[1], now)
    return Stored(ids, new, {rid: status for rid, status in found.values()})


def _raw_row(raw: RawMessage, external_id: str, now: datetime) -> dict[str, Any]:
    """The row of ``raw``, under ``external_id`` as stored (``storable_id``)."""
    meta = dict(raw.meta)
    if external_id != raw.external_id:
        meta["external_id_hashed"] = True
    return {
        "connector": raw.connector,
        "external_id": external_id,
        "received_at": raw.received_at,
        "stored_at": now,
        "content_type": raw.content_type[:255],
        "payload": raw.payload,
        "size": len(raw.payload),
        "sha256": filing.sha256_hex(raw.payload),
        "meta": meta,
        "status": RECEIVED,
        "receipt": None,
    }


_STORED = sa.select(raw_messages.c.id, raw_messages.c.external_id, raw_messages.c.status).where(
    raw_messages.c.connector == sa.bindparam("c"),
    raw_messages.c.external_id.in_(sa.bindparam("ids", expanding=True)),
)


def _stored(
    conn: sa.Connection, keys: set[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, str]]:
    """``{(connector, stored external id): (raw id, status)}`` of the stored rows of ``keys``."""
    found: dict[tuple[str, str], tuple[int, str]] = {}
    by_connector: dict[str, set[str]] = {}
    for connector, external_id in keys:
        by_connector.setdefault(connector, set()).add(external_id)
    for connector, wanted in sorted(by_connector.items()):
        ordered = sorted(wanted)
        for start in range(0, len(ordered), CHUNK):
            params = {"c": connector, "ids": ordered[start : start + CHUNK]}
            for rid, ext, status in conn.execute(_STORED, params):
                found[(connector, ext)] = (rid, status)
    return found


# -- claiming ----------------------------------------------------------------------------------


def claim(
    conn: sa.Connection,
    *,
    status: str = RECEIVED,
    ids: Sequence[int] | None = None,
    limit: int = 100,
) -> list[tuple[int, RawMessage]]:
    """Lock and return up to ``limit`` rows in ``status`` (only among ``ids`` when given), in
    id order. On PostgreSQL rows locked by another transaction are skipped, not waited for."""
    query = sa.select(raw_messages).where(raw_messages.c.status == status)
    if ids is not None:
        query = query.where(raw_messages.c.id.in_(sorted(set(ids))))
    query = query.order_by(raw_messages.c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [(row["id"], queries.raw_message(row)) for row in conn.execute(query).mappings()]


# -- decoding ----------------------------------------------------------------------------------


def prepare(raw_id: int, raw: RawMessage, decode: Decoder, settings: Settings) -> Prepared:
    """Decode and normalize; any failure is captured (it will quarantine, never crash)."""
    stored_id = storable_id(raw.external_id)
    if stored_id != raw.external_id:  # the decoder sees the id the row is stored under
        raw = raw.model_copy(update={"external_id": stored_id})
    try:
        inbound = storable_inbound(decode(raw))
        message = storable_normalized(
            normalize(
                inbound,
                connector=raw.connector,
                received_at=raw.received_at,
                region=settings.region,
                keywords=settings.privacy_keywords,
            )
        )
    except Exception as exc:
        return Prepared(raw_id, raw, error=exc)
    return Prepared(raw_id, raw, message=message)


# -- filing ------------------------------------------------------------------------------------

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


def file_claimed(
    conn: sa.Connection,
    items: Sequence[Prepared],
    settings: Settings,
    now: datetime,
    *,
    replay: bool = False,
) -> None:
    """File claimed rows in this transaction: the decoded ones as complaints and messages, the
    others quarantined with their error; each raw row marked with its outcome."""
    decoded = [item for item in items if item.message is not None]
    if replay:
        for item in decoded:
            _resolve_quarantine(conn, item.raw_id, now)
    filed = filing.file_messages(
        conn, [(i.raw_id, i.message) for i in decoded if i.message], settings, now
    )
    updates = [_raw_update(i.raw_id, f, now) for i, f in zip(decoded, filed, strict=True)]
    for item in items:
        if item.message is None:
            assert item.error is not None
            quarantine_one(conn, item.raw_id, item.raw.connector, item.error, now)
    if updates:
        conn.execute(_MARK_RAW, updates)


def _raw_update(raw_id: int, filed: filing.Filed, now: datetime) -> dict[str, Any]:
    return {
        "rid": raw_id,
        "o": filed.outcome.value,
        "c": filed.complaint_id,
        "s": PROCESSED,
        "t": now,
    }


# -- quarantine --------------------------------------------------------------------------------

_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'|\([^)]*\)=\([^)]*\)")


def error_text(error: BaseException) -> str:
    """What is kept and shown of an error: for a database error only the driver's first line,
    with quoted values removed (never the statement's parameters, which carry personal data);
    no NUL or lone surrogate (it must itself be storable)."""
    if isinstance(error, sa.exc.StatementError):
        original = error.orig if error.orig is not None else error
        first = (str(original).strip().splitlines() or [""])[0]
        text = f"{type(original).__name__}: {_QUOTED.sub('…', first)}".rstrip(": ")
    else:
        text = str(error).strip() or type(error).__name__
    text = text.replace("\x00", "\\0").encode("utf-8", "replace").decode("utf-8")
    return LOG_MASKER.text(text[:2000])


def quarantine_one(
    conn: sa.Connection, raw_id: int, connector: str, error: BaseException, now: datetime
) -> None:
    """Record ``error`` for raw row ``raw_id`` and mark the row quarantined."""
    values = {"error_type": type(error).__name__[:128], "error": error_text(error)}
    updated = conn.execute(
        sa.update(quarantine)
        .where(quarantine.c.raw_id == raw_id)
        .values(attempts=quarantine.c.attempts + 1, resolved_at=None, last_attempt=now, **values)
    ).rowcount
    if not updated:
        conn.execute(
            sa.insert(quarantine).values(
                raw_id=raw_id,
                connector=connector,
                attempts=1,
                first_seen=now,
                last_attempt=now,
                **values,
            )
        )
    conn.execute(
        _MARK_RAW,
        {"rid": raw_id, "o": Outcome.QUARANTINED.value, "c": None, "s": QUARANTINED, "t": now},
    )


def _resolve_quarantine(conn: sa.Connection, raw_id: int, now: datetime) -> None:
    conn.execute(
        sa.update(quarantine)
        .where(quarantine.c.raw_id == raw_id, quarantine.c.resolved_at.is_(None))
        .values(resolved_at=now, last_attempt=now)
    )


# -- cursors -----------------------------------------------------------------------------------


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


# -- reading results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Filing:
    """A raw row's state: its status, and once filed its outcome and where it went."""

    status: str
    outcome: Outcome | None = None
    complaint_id: int | None = None
    ticket: str | None = None
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.status in (PROCESSED, QUARANTINED)


def describe(conn: sa.Connection, raw_ids: Iterable[int]) -> dict[int, Filing]:
    """The state of raw rows, by id."""
    ids = sorted(set(raw_ids))
    out: dict[int, Filing] = {}
    for start in range(0, len(ids), CHUNK):
        query = (
            sa.select(
                raw_messages.c.id,
                raw_messages.c.status,
                raw_messages.c.outcome,
                raw_messages.c.complaint_id,
                complaints.c.ticket,
                quarantine.c.error,
            )
            .outerjoin(complaints, complaints.c.id == raw_messages.c.complaint_id)
            .outerjoin(quarantine, quarantine.c.raw_id == raw_messages.c.id)
            .where(raw_messages.c.id.in_(ids[start : start + CHUNK]))
        )
        for rid, status, outcome, cid, ticket, error in conn.execute(query):
            quarantined = status == QUARANTINED
            out[rid] = Filing(
                status,
                Outcome(outcome) if outcome else None,
                cid,
                ticket,
                error if quarantined else None,
            )
    return out


# -- receipts ----------------------------------------------------------------------------------


def issue_receipt(conn: sa.Connection, raw_id: int) -> str:
    """The receipt of raw row ``raw_id`` (made on first use): an unguessable token for
    ``GET /receipts/<receipt>``."""
    import secrets

    token = secrets.token_urlsafe(18)
    conn.execute(
        sa.update(raw_messages)
        .where(raw_messages.c.id == raw_id, raw_messages.c.receipt.is_(None))
        .values(receipt=token)
    )
    found: str = conn.execute(
        sa.select(raw_messages.c.receipt).where(raw_messages.c.id == raw_id)
    ).scalar_one()
    return found


def find_receipt(conn: sa.Connection, receipt: str) -> tuple[int, Filing] | None:
    """The raw row a receipt was given for, and its state; None for an unknown receipt."""
    raw_id = conn.execute(
        sa.select(raw_messages.c.id).where(raw_messages.c.receipt == receipt)
    ).scalar_one_or_none()
    if raw_id is None:
        return None
    return raw_id, describe(conn, [raw_id])[raw_id]
