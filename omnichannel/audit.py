"""The tamper-evident record: every raw payload and every complaint event, in a hash chain.

Each entry of ``audit_chain`` records one row by the sha256 of its content: ``raw`` (a raw
payload stored), ``replace`` (a quarantined payload replaced), ``purge`` (a payload purged) —
``ref`` is a ``raw_messages.id`` — and ``event`` (``complaint_events.id``). An entry's ``hash``
covers its position, the previous entry's hash, what it records and when: an entry edited,
removed or slipped in breaks the chain there, and a recorded row edited or deleted (or a row
inserted outside omnichannel, which has no entry) no longer matches the record. ``verify``
names each such change, the first broken link first. ``anchor`` gives the head of the chain
for the operator to keep outside the database: a chain rewritten from before it (every hash
computed again) still links, but no longer has that hash at that position.

**Writing.** Code that inserts a recorded row calls ``append_raws`` or ``append_events`` (and
``append_replacements``, ``append_purges``) in that transaction. The entries are written when
the transaction commits (a ``commit`` listener on every engine), in it: on PostgreSQL under a
transaction-level advisory lock taken right before the chain's head is read, so that several
writers append one after the other, and hold the lock only for their commit's last instant (a
lock taken earlier, with row and dedupe locks still to come, could deadlock with them); SQLite
has one writer at a time. A transaction rolled back writes none.

**Encoding** (version 1; fixed, since every chain written depends on it). Each hash is the
sha256 of a tag and fields, each field its UTF-8 bytes preceded by their length (4 bytes,
big-endian; ``ff ff ff ff`` alone for a null), times in UTC as
``2026-01-31T08:00:00.000000+00:00``:

- ``hash``: tag ``omnichannel-audit-1``; the entry's position (``id``, decimal), ``prev_hash``
  (64 zeros for entry 1), ``kind``, ``ref`` (decimal), ``content_sha256``, ``at``.
- ``content_sha256`` of a raw payload: tag ``omnichannel-raw-1``; ``connector``,
  ``external_id``, ``received_at``, ``content_type``, the hex sha256 of the payload as stored.
- of a complaint event: tag ``omnichannel-event-1``; ``complaint_id`` (decimal), ``kind``,
  ``actor``, ``from_status``, ``to_status``, ``note``, ``at``.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from omnichannel.errors import StorageUnavailable
from omnichannel.schema import format_utc
from omnichannel.store import Store
from omnichannel.store.tables import (
    audit_chain,
    complaint_events,
    complaints,
    messages,
    raw_messages,
    ticket_counters,
)

__all__ = [
    "Anchor",
    "Problem",
    "Report",
    "anchor",
    "append_events",
    "append_purges",
    "append_raws",
    "append_redactions",
    "append_replacements",
    "entry_hash",
    "event_content",
    "log_anchors",
    "raw_content",
    "record_existing",
    "size",
    "snapshot",
    "verify",
]

log = logging.getLogger("omnichannel.audit")

ZERO_HASH = "0" * 64
"""The ``prev_hash`` of entry 1."""
RAW_KINDS = ("raw", "replace", "purge")
MAX_PROBLEMS = 1000
"""Problems a report lists (the rest are counted): its memory is bounded too."""
_BATCH = 2000
_PENDING = "omnichannel.audit.pending"
_MARKS = "omnichannel.audit.savepoints"
_LOCK = int.from_bytes(hashlib.sha256(b"omnichannel:audit_chain").digest()[:8], "big", signed=True)
_ENTRY, _RAW, _EVENT = b"omnichannel-audit-1", b"omnichannel-raw-1", b"omnichannel-event-1"
_Pending = tuple[str, int, str | None]  # kind, ref, content sha256 (None: read at commit)


# -- the encoding ------------------------------------------------------------------------------


def _instant(moment: datetime) -> str:
    """A time as the encoding has it: UTC, to the microsecond."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _digest(tag: bytes, fields: Iterable[str | None]) -> str:
    """sha256 of ``tag`` and each field's UTF-8 bytes preceded by their length (4 bytes,
    big-endian; ``ff ff ff ff`` and no bytes for None): no two inputs encode alike."""
    data = bytearray(tag)
    for text in fields:
        if text is None:
            data += b"\xff\xff\xff\xff"
        else:
            encoded = text.encode("utf-8")
            data += len(encoded).to_bytes(4, "big")
            data += encoded
    return hashlib.sha256(data).hexdigest()


def _entry_hash(position: int, prev: str, kind: str, ref: int, content: str, at: str) -> str:
    return _digest(_ENTRY, (str(position), prev, kind, str(ref), content, at))


def entry_hash(
    position: int, prev_hash: str, kind: str, ref: int, content_sha256: str, at: datetime
) -> str:
    """The ``hash`` of an entry (encoding version 1, in the module's docstring)."""
    return _entry_hash(position, prev_hash, kind, ref, content_sha256, _instant(at))


def raw_content(
    connector: str,
    external_id: str,
    received_at: datetime,
    content_type: str,
    payload_sha256: str | None,
) -> str:
    """The ``content_sha256`` of a raw payload's row (``payload_sha256`` of the stored payload,
    None when it has none)."""
    fields = (connector, external_id, _instant(received_at), content_type, payload_sha256)
    return _digest(_RAW, fields)


def event_content(row: Mapping[Any, Any]) -> str:
    """The ``content_sha256`` of a complaint event (a mapping of its columns)."""
    fields = (str(int(row["complaint_id"])), row["kind"], row["actor"], row["from_status"])
    return _digest(_EVENT, (*fields, row["to_status"], row["note"], _instant(row["at"])))


# -- appending ---------------------------------------------------------------------------------


def append_raws(
    conn: sa.Connection,
    inserted: Iterable[tuple[int, str, str]],
    rows: Iterable[Mapping[str, Any]],
) -> None:
    """Record raw payloads this transaction inserted: ``inserted`` holds their (id, connector,
    external id), ``rows`` the rows given to the insert (with ``sha256`` of the payload)."""
    written = sorted(inserted)
    if not written:
        return
    by_key = {(row["connector"], row["external_id"]): row for row in rows}
    pending = _pending(conn)
    for raw_id, connector, external_id in written:
        row = by_key[(connector, external_id)]
        content = raw_content(
            connector, external_id, row["received_at"], row["content_type"], row["sha256"]
        )
        pending.append(("raw", int(raw_id), content))


def append_events(
    conn: sa.Connection, ids: Sequence[int], rows: Sequence[Mapping[str, Any]]
) -> None:
    """Record complaint events this transaction inserted: their ids and their rows."""
    if len(ids) != len(rows):
        raise ValueError(f"{len(ids)} event ids for {len(rows)} rows")
    pending = _pending(conn)
    pending.extend(("event", int(i), event_content(row)) for i, row in zip(ids, rows, strict=True))


def append_redactions(
    conn: sa.Connection, ids: Sequence[int], rows: Sequence[Mapping[str, Any]]
) -> None:
    """Record complaint events whose personal data this transaction masked (a purge): the
    chain says it was a redaction, and ``verify`` checks the events as they now are."""
    if len(ids) != len(rows):
        raise ValueError(f"{len(ids)} event ids for {len(rows)} rows")
    pending = _pending(conn)
    pending.extend(("redact", int(i), event_content(row)) for i, row in zip(ids, rows, strict=True))


def append_replacements(conn: sa.Connection, raw_ids: Iterable[int]) -> None:
    """Record that raw payloads were replaced in this transaction (their rows as committed)."""
    _pending(conn).extend(("replace", int(i), None) for i in sorted(set(raw_ids)))


def append_purges(conn: sa.Connection, raw_ids: Iterable[int]) -> None:
    """Record that raw payloads were purged in this transaction (their rows as committed,
    ``purged_at`` set): ``verify`` then accepts them without their content."""
    _pending(conn).extend(("purge", int(i), None) for i in sorted(set(raw_ids)))


def _pending(conn: sa.Connection) -> list[_Pending]:
    found: list[_Pending] = conn.info.setdefault(_PENDING, [])
    return found


class _Chain:
    """Entries appended after a head (position, hash), at one time."""

    def __init__(self, position: int, prev_hash: str, at: datetime) -> None:
        self.position, self.prev_hash, self.at = position, prev_hash, at
        self._at = _instant(at)

    def entry(self, kind: str, ref: int, content: str) -> dict[str, Any]:
        self.position += 1
        digest = _entry_hash(self.position, self.prev_hash, kind, ref, content, self._at)
        row = {
            "id": self.position,
            "kind": kind,
            "ref": ref,
            "content_sha256": content,
            "at": self.at,
            "prev_hash": self.prev_hash,
            "hash": digest,
        }
        self.prev_hash = digest
        return row


_HEAD = sa.select(audit_chain.c.id, audit_chain.c.hash).order_by(audit_chain.c.id.desc()).limit(1)


def _head(conn: sa.Connection, at: datetime) -> _Chain:
    """The chain to append to; on PostgreSQL once this transaction holds the append lock."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK})
    head = conn.execute(_HEAD).first()
    return _Chain(int(head[0]), str(head[1]), at) if head else _Chain(0, ZERO_HASH, at)


def _write(conn: sa.Connection, pending: list[_Pending]) -> None:
    reread = sorted({ref for _, ref, content in pending if content is None})
    current = _raw_contents(conn, reread)
    missing = [ref for ref in reread if ref not in current]
    if missing:
        raise ValueError(f"raw {missing[0]} cannot be recorded: there is no such raw payload")
    chain = _head(conn, datetime.now(UTC))
    entries = [
        chain.entry(kind, ref, content if content is not None else current[ref])
        for kind, ref, content in pending
    ]
    conn.execute(sa.insert(audit_chain), entries)


def _state(conn: sa.Connection) -> dict[Any, Any] | None:
    """Where a transaction's appends wait: the connection's ``info`` (None once invalidated)."""
    return None if conn.invalidated else conn.info


@event.listens_for(Engine, "commit")
def _on_commit(conn: sa.Connection) -> None:
    """Write the entries this transaction appended, in it, just before it commits."""
    state = _state(conn)
    pending = state.pop(_PENDING, None) if state is not None else None
    if state is not None:
        state.pop(_MARKS, None)
    if not pending:
        return
    try:
        _write(conn, pending)
    except BaseException:
        # the transaction must not stay open on the driver's connection (SQLAlchemy, having
        # failed to commit, would not roll it back)
        with contextlib.suppress(Exception):
            conn.connection.dbapi_connection.rollback()  # type: ignore[union-attr]
        raise


@event.listens_for(Engine, "begin")
@event.listens_for(Engine, "rollback")
def _on_end(conn: sa.Connection) -> None:
    state = _state(conn)
    if state is not None:
        state.pop(_PENDING, None)
        state.pop(_MARKS, None)


@event.listens_for(Engine, "savepoint")
def _on_savepoint(conn: sa.Connection, _name: str | None) -> None:
    state = _state(conn)
    if state is not None:
        state.setdefault(_MARKS, []).append(len(state.get(_PENDING, ())))


@event.listens_for(Engine, "rollback_savepoint")
def _on_rollback_savepoint(conn: sa.Connection, _name: str, _context: Any) -> None:
    state = _state(conn)
    marks = state.get(_MARKS) if state is not None else None
    if state is not None and marks:
        del state.get(_PENDING, [])[marks.pop() :]


@event.listens_for(Engine, "release_savepoint")
def _on_release_savepoint(conn: sa.Connection, _name: str, _context: Any) -> None:
    state = _state(conn)
    marks = state.get(_MARKS) if state is not None else None
    if marks:
        marks.pop()


_EVENT_COLUMNS = [
    complaint_events.c[name]
    for name in ("id", "complaint_id", "kind", "actor", "from_status", "to_status", "note", "at")
]


def record_existing(conn: sa.Connection) -> int:
    """Append an entry for every raw payload and complaint event, in id order (the migration
    that makes the record calls it once, on an empty chain); how many."""
    chain = _head(conn, datetime.now(UTC))
    count = 0
    raws = sa.select(
        raw_messages.c.id,
        raw_messages.c.connector,
        raw_messages.c.external_id,
        raw_messages.c.received_at,
        raw_messages.c.content_type,
        raw_messages.c.sha256,
    ).order_by(raw_messages.c.id)
    rows: Iterator[tuple[str, int, str]] = (
        (
            "raw",
            r.id,
            raw_content(r.connector, r.external_id, r.received_at, r.content_type, r.sha256),
        )
        for r in _stream(conn, raws)
    )
    events = sa.select(*_EVENT_COLUMNS).order_by(complaint_events.c.id)
    recorded = itertools.chain(
        rows, (("event", e.id, event_content(e._mapping)) for e in _stream(conn, events))
    )
    while batch := list(itertools.islice(recorded, _BATCH)):
        conn.execute(sa.insert(audit_chain), [chain.entry(*item) for item in batch])
        count += len(batch)
    return count


def _raw_contents(conn: sa.Connection, ids: Sequence[int]) -> dict[int, str]:
    """The ``content_sha256`` of raw rows as they are in this transaction, by id."""
    found: dict[int, str] = {}
    for start in range(0, len(ids), 500):
        query = sa.select(
            raw_messages.c.id,
            raw_messages.c.connector,
            raw_messages.c.external_id,
            raw_messages.c.received_at,
            raw_messages.c.content_type,
            raw_messages.c.payload,
        ).where(raw_messages.c.id.in_(ids[start : start + 500]))
        for row in conn.execute(query):
            digest = _sha256(row.payload)
            found[row.id] = raw_content(
                row.connector, row.external_id, row.received_at, row.content_type, digest
            )
    return found


def _sha256(data: bytes | None) -> str | None:
    return hashlib.sha256(data).hexdigest() if data is not None else None


# -- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Anchor:
    """Entry ``entry`` of the chain has ``hash``: kept outside the database, it shows later
    that the chain up to there was not rewritten."""

    entry: int
    hash: str
    at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        at = format_utc(self.at) if self.at else None
        return {"entry": self.entry, "hash": self.hash, "at": at}

    @classmethod
    def parse(cls, text: str) -> Anchor:
        """``N:HASH``, or a line holding the JSON object ``audit anchor`` prints (a log line
        of the daemon's will do)."""
        text = text.strip()
        start = text.find("{")
        try:
            if start >= 0:
                data, _ = json.JSONDecoder().raw_decode(text, start)
                entry, digest = data["entry"], data["hash"]
            else:
                number, _, digest = text.partition(":")
                entry = int(number)
        except (ValueError, KeyError, TypeError):
            entry, digest = None, None
        if not isinstance(entry, int) or entry < 0 or not _is_hash(digest):
            raise ValueError(f"not an anchor (N:HASH, or a line 'audit anchor' printed): {text!r}")
        return cls(entry, digest)


def _is_hash(value: Any) -> bool:
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


@dataclass(frozen=True)
class Problem:
    """One thing ``verify`` found: ``code`` says what (``entry-missing``, ``link``,
    ``entry-edited``, ``anchor`` — the chain itself; ``changed``, ``missing``, ``unrecorded``,
    ``purge``, ``status`` — the rows it records), ``entry`` the chain entry concerned."""

    code: str
    message: str
    entry: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "entry": self.entry, "message": self.message}


@dataclass
class Report:
    """What ``verify`` checked and found (problems in the order found: the chain's first
    broken link first)."""

    entries: int = 0
    raws: int = 0
    events: int = 0
    complaints: int = 0
    head: Anchor | None = None
    problems: list[Problem] = field(default_factory=list)
    unlisted: int = 0
    """Problems found beyond the ``MAX_PROBLEMS`` listed."""

    @property
    def intact(self) -> bool:
        return not self.problems

    def add(self, code: str, message: str, entry: int | None = None) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(code, message, entry))
        else:
            self.unlisted += 1

    def as_json(self) -> dict[str, Any]:
        return {
            "intact": self.intact,
            "entries": self.entries,
            "raws": self.raws,
            "events": self.events,
            "complaints": self.complaints,
            "head": self.head.as_json() if self.head else None,
            "problems": [p.as_json() for p in self.problems],
            "unlisted": self.unlisted,
        }


Progress = Callable[[int], None]


def _ignore(_count: int) -> None:
    pass


def size(conn: sa.Connection) -> int:
    """The rows ``verify`` reads (for a progress bar)."""
    tables = (audit_chain, raw_messages, complaint_events, complaints)
    counts = [sa.select(sa.func.count()).select_from(t).scalar_subquery() for t in tables]
    return int(conn.execute(sa.select(sum(counts[1:], counts[0]))).scalar_one())


def verify(
    conn: sa.Connection, *, anchors: Iterable[Anchor] = (), progress: Progress | None = None
) -> Report:
    """Walk the chain and check it against the rows it records, and against ``anchors``;
    ``progress`` is called with the count of each stretch of rows read (of ``size``). Reads in
    batches: memory stays bounded whatever the size of the database. Run it in a
    ``snapshot``."""
    report = Report()
    counted = [0]

    def tick(rows: int) -> None:
        counted[0] += rows
        if counted[0] >= _BATCH:
            (progress or _ignore)(counted[0])
            counted[0] = 0

    _walk(conn, report, anchors, tick)
    _check_raws(conn, report, tick)
    _check_events(conn, report, tick)
    _check_statuses(conn, report, tick)
    _check_filed(conn, report)
    if counted[0]:
        (progress or _ignore)(counted[0])
    return report


def _check_filed(conn: sa.Connection, report: Report) -> None:
    """What filing made from recorded payloads is still there: each payload filed as ``new``
    or ``merged`` has its message, each message its complaint, and each ticket issued (the
    counters) a complaint that holds it — a complaint deleted by hand is named."""
    lost = (
        sa.select(raw_messages.c.id, raw_messages.c.outcome)
        .outerjoin(messages, messages.c.raw_id == raw_messages.c.id)
        .where(raw_messages.c.outcome.in_(("new", "merged")), messages.c.id.is_(None))
        .order_by(raw_messages.c.id)
    )
    for row in _stream(conn, lost):
        report.add("missing", f"raw {row.id} was filed ({row.outcome}), but its message is gone")
    orphans = (
        sa.select(messages.c.id, messages.c.complaint_id)
        .outerjoin(complaints, complaints.c.id == messages.c.complaint_id)
        .where(messages.c.complaint_id.is_not(None), complaints.c.id.is_(None))
        .order_by(messages.c.id)
    )
    for row in _stream(conn, orphans):
        report.add("missing", f"message {row.id}: its complaint {row.complaint_id} is gone")
    for prefix, year, issued in conn.execute(sa.select(ticket_counters)).all():
        held = conn.execute(
            sa.select(sa.func.count()).where(complaints.c.ticket.like(f"{prefix}-{year}-%"))
        ).scalar_one()
        if held < issued:
            report.add(
                "missing",
                f"tickets {prefix}-{year}: {issued} issued, {held} held by a complaint — "
                f"{issued - held} complaint(s) deleted",
            )


def _stream(conn: sa.Connection, query: sa.Select[Any]) -> Iterator[sa.Row[Any]]:
    """The rows of ``query``, fetched a batch at a time (PostgreSQL: a server-side cursor)."""
    with conn.execute(query, execution_options={"yield_per": _BATCH}) as result:
        yield from result


def _label(kind: str, ref: int) -> str:
    names = {"purge": "purge of raw", "replace": "replacement of raw"}
    return f"{names.get(kind, kind)} {ref}"


def _walk(conn: sa.Connection, report: Report, anchors: Iterable[Anchor], tick: Progress) -> None:
    """Each entry's position, link to the one before, hash, and the anchors' hashes."""
    wanted: dict[int, list[str]] = {}
    for kept in anchors:
        wanted.setdefault(kept.entry, []).append(kept.hash)
    if any(digest != ZERO_HASH for digest in wanted.pop(0, [])):
        report.add("anchor", "an anchor of entry 0 (the empty record) has a hash other than 0…0", 0)
    expected, prevs = 1, {ZERO_HASH}
    for row in _stream(conn, sa.select(audit_chain).order_by(audit_chain.c.id)):
        what = _label(row.kind, row.ref)
        if row.id != expected:
            gap = (
                f"entry {expected}"
                if row.id == expected + 1
                else f"entries {expected} to {row.id - 1}"
            )
            after = f"entry {expected - 1}" if expected > 1 else "the start"
            report.add(
                "entry-missing",
                f"{gap} missing: entry {row.id} follows {after} — entries were deleted",
                row.id,
            )
        elif row.prev_hash not in prevs:
            report.add(
                "link",
                f"entry {row.id} ({what}): does not follow entry {row.id - 1} (its prev_hash "
                f"differs) — entry {row.id - 1} was edited, or the record rewritten from it",
                row.id,
            )
        recomputed = entry_hash(
            row.id, row.prev_hash, row.kind, row.ref, row.content_sha256, row.at
        )
        if recomputed != row.hash:
            report.add(
                "entry-edited",
                f"entry {row.id} ({what}): hash does not match — the record was edited",
                row.id,
            )
        for digest in wanted.pop(row.id, []):
            if digest != row.hash:
                report.add(
                    "anchor",
                    f"entry {row.id}: hash differs from its anchor ({digest[:12]}…) — the "
                    f"record was rewritten at or before entry {row.id}",
                    row.id,
                )
        # the next entry may follow this one's hash as stored or as it should be: a hash
        # overwritten is then one problem, not two
        expected, prevs = row.id + 1, {row.hash, recomputed}
        report.entries += 1
        report.head = Anchor(row.id, row.hash, row.at)
        tick(1)
    for entry in sorted(wanted):
        report.add(
            "anchor",
            f"entry {entry} of an anchor is not in the record (it ends at entry {expected - 1}"
            f") — entries were deleted",
            entry,
        )


def _merged(
    rows: Iterator[sa.Row[Any]], entries: Iterator[sa.Row[Any]]
) -> Iterator[tuple[int, sa.Row[Any] | None, list[sa.Row[Any]]]]:
    """Rows (by ``id``) beside the entries recording them (by ``ref``), both streams sorted:
    (id, the row or None, its entries in chain order)."""
    groups = itertools.groupby(entries, key=lambda entry: int(entry.ref))
    group = next(groups, None)
    for row in rows:
        while group is not None and group[0] < row.id:
            yield group[0], None, list(group[1])
            group = next(groups, None)
        if group is not None and group[0] == row.id:
            yield row.id, row, list(group[1])
            group = next(groups, None)
        else:
            yield row.id, row, []
    while group is not None:
        yield group[0], None, list(group[1])
        group = next(groups, None)


def _entries(*kinds: str) -> sa.Select[Any]:
    return (
        sa.select(
            audit_chain.c.ref, audit_chain.c.id, audit_chain.c.kind, audit_chain.c.content_sha256
        )
        .where(audit_chain.c.kind.in_(kinds))
        .order_by(audit_chain.c.ref, audit_chain.c.id)
    )


def _payload_sha256(conn: sa.Connection) -> sa.ColumnElement[Any]:
    """The hex sha256 of each payload, computed by the database (no payload is fetched)."""
    if conn.dialect.name == "postgresql":
        return sa.func.encode(sa.func.sha256(raw_messages.c.payload), "hex")
    driver: Any = conn.connection.driver_connection
    driver.create_function("omnichannel_sha256", 1, _sha256, deterministic=True)
    return sa.func.omnichannel_sha256(raw_messages.c.payload)


def _check_raws(conn: sa.Connection, report: Report, tick: Progress) -> None:
    rows = sa.select(
        raw_messages.c.id,
        raw_messages.c.connector,
        raw_messages.c.external_id,
        raw_messages.c.received_at,
        raw_messages.c.content_type,
        _payload_sha256(conn).label("payload_sha256"),
        raw_messages.c.sha256,
        raw_messages.c.purged_at,
    ).order_by(raw_messages.c.id)
    for ref, row, recorded in _merged(_stream(conn, rows), _stream(conn, _entries(*RAW_KINDS))):
        if row is None:
            report.add("missing", f"raw {ref} recorded but missing — deleted", recorded[0].id)
            continue
        if not recorded:
            report.add(
                "unrecorded", f"raw {ref} is not in the record (inserted outside omnichannel?)"
            )
        else:
            _compare_raw(report, row, recorded[-1])
        report.raws += 1
        tick(1)


def _compare_raw(report: Report, row: sa.Row[Any], last: sa.Row[Any]) -> None:
    """A raw row against its last entry (its storing, a replacement, or its purge)."""
    content = raw_content(
        row.connector, row.external_id, row.received_at, row.content_type, row.payload_sha256
    )
    purged = last.kind == "purge"
    if content != last.content_sha256:
        since = "its purge was recorded" if purged else "it was recorded"
        report.add(
            "changed",
            f"raw {row.id}: payload changed since {since} (or its connector, external id, "
            f"received time or content type)",
            last.id,
        )
    elif not purged and row.payload_sha256 != row.sha256:
        report.add(
            "changed", f"raw {row.id}: its sha256 column does not match its payload", last.id
        )
    if row.purged_at is not None and not purged:
        report.add("purge", f"raw {row.id}: marked purged, but no purge is recorded", last.id)
    elif purged and row.purged_at is None:
        report.add(
            "purge", f"raw {row.id}: its purge is recorded, but it is not marked purged", last.id
        )


def _check_events(conn: sa.Connection, report: Report, tick: Progress) -> None:
    rows = sa.select(*_EVENT_COLUMNS).order_by(complaint_events.c.id)
    entries = _stream(conn, _entries("event", "redact"))
    for ref, row, recorded in _merged(_stream(conn, rows), entries):
        if row is None:
            report.add("missing", f"event {ref} recorded but missing — deleted", recorded[0].id)
            continue
        what = f"event {ref} (complaint {row.complaint_id})"
        if not recorded:
            report.add("unrecorded", f"{what} is not in the record (inserted outside omnichannel?)")
        elif recorded[0].kind != "event":
            report.add("changed", f"{what}: redacted but never recorded as written", recorded[0].id)
        elif event_content(row._mapping) != recorded[-1].content_sha256:
            report.add("changed", f"{what}: changed since it was recorded", recorded[-1].id)
        report.events += 1
        tick(1)


def _check_statuses(conn: sa.Connection, report: Report, tick: Progress) -> None:
    """Each complaint's status is the one its last recorded move left it in (``open``, as
    filed, when it has none)."""
    events = complaint_events.c
    last = (
        sa.select(events.to_status)
        .where(events.complaint_id == complaints.c.id, events.to_status.is_not(None))
        .order_by(events.id.desc())
        .limit(1)
        .correlate(complaints)
        .scalar_subquery()
    )
    query = sa.select(
        complaints.c.id, complaints.c.ticket, complaints.c.status, last.label("recorded")
    ).order_by(complaints.c.id)
    for row in _stream(conn, query):
        expected = row.recorded or "open"
        if row.status != expected:
            said = (
                f"its last recorded event says {expected}"
                if row.recorded
                else ("it has no recorded move from open")
            )
            report.add(
                "status", f"complaint {row.id} ({row.ticket}): status {row.status}, but {said}"
            )
        report.complaints += 1
        tick(1)


def anchor(conn: sa.Connection) -> Anchor:
    """The head of the chain (entry 0, hash 0…0 while it is empty)."""
    head = conn.execute(
        sa.select(audit_chain.c.id, audit_chain.c.hash, audit_chain.c.at)
        .order_by(audit_chain.c.id.desc())
        .limit(1)
    ).first()
    return Anchor(int(head.id), str(head.hash), head.at) if head else Anchor(0, ZERO_HASH)


@contextmanager
def snapshot(store: Store) -> Iterator[sa.Connection]:
    """A read-only transaction that sees the database as it was when it began, and holds up
    no writer: on PostgreSQL ``REPEATABLE READ``; on SQLite a deferred read transaction (WAL),
    on a connection of its own."""
    if store.dialect == "postgresql" or store.in_memory:
        with store.transaction() as conn:
            if store.dialect == "postgresql":
                conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield conn
        return
    engine = sa.create_engine(
        store.url, poolclass=NullPool, connect_args={"isolation_level": None, "timeout": 60}
    )

    @event.listens_for(engine, "connect")
    def _read_only(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA query_only=ON")

    @event.listens_for(engine, "begin")
    def _deferred(connection: sa.Connection) -> None:
        connection.connection.driver_connection.execute("BEGIN")  # type: ignore[union-attr]

    try:
        with engine.connect() as conn, conn.begin():
            yield conn
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        first = (str(exc.orig or exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StorageUnavailable(f"storage unavailable (sqlite: {first})") from exc
    finally:
        engine.dispose()


DAY = 24 * 3600.0


def log_anchors(store: Store, stop: threading.Event, *, every: float = DAY) -> None:
    """Log the head of the chain (``audit anchor``) at INFO now and every ``every`` seconds
    until ``stop`` is set: the daemon's log then holds anchors kept outside the database."""
    while True:
        try:
            with store.transaction() as conn:
                head = anchor(conn)
            log.info("audit anchor %s", json.dumps(head.as_json()))
        except StorageUnavailable as exc:
            log.warning("audit anchor not read: %s", exc)
        if stop.wait(every):
            return
