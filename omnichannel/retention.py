"""Retention: the personal data of finished complaints is removed after an age, and the
anonymized complaint stays (UU PDP 27/2022: personal data is kept no longer than needed).

**Policy** (``[retention]``): an age per finished status — ``closed``, ``resolved`` and
``rejected``, five years each by default — measured from the complaint's last update
(``updated_at``), so that a complaint still being worked on is never purged; ``open``,
``assigned`` and ``in_progress`` complaints never are. Ages are ``5y``, ``18m``, ``90d`` or
``2w`` (years and months by the calendar). A complaint merged into another follows the one it
was merged into.

**What goes**, for each complaint purged: the sender (name, e-mail, phone, handle) of the
complaint and its messages, where answers went (``reply_to``), the raw payloads (emptied,
``purged_at`` set, the purge recorded in the audit chain) and what their rows and quarantine
entries hold of them, attachment contents and URLs (the filename becomes ``attachment-N.ext``),
what was sent to the citizen (recipient and text) and the outbox rows behind it, the identities
nothing else refers to, the e-mail headers, HTML and the location's address (its coordinates
are rounded to 2 decimals, about 1 km). Texts (subject, body, messages, event notes, the
cluster's label) are kept with every phone number, e-mail address, NIK and NPWP masked
(``privacy.mask_text``), and the sender's names written ``B***``.

**What stays**: the complaint (ticket, status, channel, connector, dates, category, agency,
cluster, flags), its messages and events (ids, outcomes, kinds, actors, times) and the audit
chain — counts and reports are unchanged, and ``audit verify`` stays intact (an event whose
note was masked is recorded again).

**Batches**: complaints are purged a batch at a time (200 by default), each batch in one
transaction; a run killed midway leaves each batch done or untouched, and the next run goes on
where it stopped. A purged complaint has ``purged_at``: a second run finds nothing. Without
``apply`` nothing is written (a read-only snapshot) and the summary says what would go.
"""

from __future__ import annotations

import calendar
import contextlib
import hashlib
import mimetypes
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from omnichannel import audit
from omnichannel.dedupe import sender_keys
from omnichannel.errors import StorageUnavailable
from omnichannel.privacy import HIDDEN, mask_name, mask_text
from omnichannel.store import Store, migrate
from omnichannel.store.tables import (
    attachments,
    clusters,
    complaint_events,
    complaints,
    identities,
    identity_events,
    messages,
    outbound_messages,
    outbox,
    quarantine,
    ratings,
    raw_messages,
    similarity_bands,
)

__all__ = [
    "FINISHED",
    "Age",
    "Policy",
    "Summary",
    "parse_age",
    "pending",
    "purge",
]

FINISHED = ("closed", "resolved", "rejected")
"""The statuses a complaint can be purged in (the rest are still being worked on)."""
BATCH = 200
"""Complaints purged per transaction."""
CHUNK = 500
"""Values per ``IN (…)`` (SQLite takes a bounded number of parameters)."""
MAX_DEPTH = 64
"""Merges followed from a complaint to the one it was merged into, at most."""

_AGE = re.compile(r"\s*([0-9]{1,6})\s*([ymwd])\s*", re.IGNORECASE)
_MAX_DAYS = 200 * 366
_EXTENSION = re.compile(r"\.([A-Za-z0-9]{1,8})$")
_WORD = re.compile(r"[^\W\d_]{3,}")
"""A word of a name worth masking in a text (initials and particles are left)."""


# -- ages and the policy ---------------------------------------------------------------------


@dataclass(frozen=True)
class Age:
    """How long after its last update a finished complaint keeps its personal data."""

    months: int = 0
    days: int = 0
    text: str = ""

    def before(self, now: datetime) -> datetime:
        """The moment ``now`` minus this age (months by the calendar: 29 February less a year
        is 28 February)."""
        total = now.year * 12 + now.month - 1 - self.months
        year, month = divmod(total, 12)
        day = min(now.day, calendar.monthrange(year, month + 1)[1])
        return now.replace(year=year, month=month + 1, day=day) - timedelta(days=self.days)


def parse_age(text: str) -> Age:
    """``5y``, ``18m``, ``90d`` or ``2w`` (a whole number, at least 1, and a unit); a
    ``ValueError`` saying what an age looks like otherwise."""
    match = _AGE.fullmatch(text or "")
    if match is None or int(match.group(1)) < 1:
        raise ValueError(
            f"not an age: {text.strip()[:40]!r} (a whole number and y, m, w or d: 5y, 18m, 90d, 2w)"
        )
    number, unit = int(match.group(1)), match.group(2).lower()
    months = number * 12 if unit == "y" else number if unit == "m" else 0
    days = number * 7 if unit == "w" else number if unit == "d" else 0
    if months * 31 + days > _MAX_DAYS:
        raise ValueError(f"not an age: {text.strip()[:40]!r} is more than 200 years")
    return Age(months=months, days=days, text=f"{number}{unit}")


@dataclass(frozen=True)
class Policy:
    """An age per finished status (the statuses not in it are never purged)."""

    ages: Mapping[str, Age]

    def __post_init__(self) -> None:
        unknown = sorted(set(self.ages) - set(FINISHED))
        if unknown:
            raise ValueError(f"statuses {unknown} are never purged; finished: {list(FINISHED)}")

    @classmethod
    def uniform(cls, age: Age | str) -> Policy:
        """One age for every finished status (``purge --older-than``)."""
        chosen = parse_age(age) if isinstance(age, str) else age
        return cls({status: chosen for status in FINISHED})

    @classmethod
    def from_config(cls, section: Any) -> Policy:
        """The policy of a ``[retention]`` section (``config.retention``)."""
        return cls({status: parse_age(getattr(section, status)) for status in FINISHED})

    def cutoffs(self, now: datetime) -> dict[str, datetime]:
        """For each status, the last update before which a complaint is purged."""
        return {status: age.before(now) for status, age in self.ages.items()}


# -- the summary -----------------------------------------------------------------------------


def _instant(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


@dataclass
class Summary:
    """What a purge removed (``applied``) or would remove."""

    applied: bool
    ages: dict[str, str]
    cutoffs: dict[str, datetime]
    complaints: dict[str, int] = field(default_factory=dict)
    """Complaints purged, by status (``merged`` for those merged into one purged)."""
    messages: int = 0
    raw_payloads: int = 0
    attachments: int = 0
    attachment_bytes: int = 0
    """Bytes of attachment content stored in the database."""
    outbound_messages: int = 0
    identities: int = 0
    notes: int = 0
    """Event notes that held personal data (masked, and recorded again)."""
    oldest: datetime | None = None
    """The earliest last update among the complaints purged."""
    newest: datetime | None = None

    @property
    def total(self) -> int:
        return sum(self.complaints.values())

    def as_json(self) -> dict[str, Any]:
        """The stable machine form (``purge --format json``)."""
        return {
            "applied": self.applied,
            "policy": {
                status: {"age": self.ages[status], "updated_before": _instant(moment)}
                for status, moment in sorted(self.cutoffs.items())
            },
            "complaints": {"total": self.total, "by_status": dict(sorted(self.complaints.items()))},
            "messages": self.messages,
            "raw_payloads": self.raw_payloads,
            "attachments": self.attachments,
            "attachment_bytes": self.attachment_bytes,
            "outbound_messages": self.outbound_messages,
            "identities": self.identities,
            "notes": self.notes,
            "oldest_update": _instant(self.oldest),
            "newest_update": _instant(self.newest),
        }

    def _add(self, batch: _Batch) -> None:
        for row in batch.complaints:
            self.complaints[row.status] = self.complaints.get(row.status, 0) + 1
            self.oldest = min(self.oldest or row.updated_at, row.updated_at)
            self.newest = max(self.newest or row.updated_at, row.updated_at)
        self.messages += len(batch.messages)
        self.raw_payloads += len(batch.raws)
        self.attachments += len(batch.attachments)
        self.attachment_bytes += sum(int(a.stored or 0) for a in batch.attachments)
        self.outbound_messages += len(batch.outbound)
        self.identities += len(batch.identities)
        self.notes += len(batch.notes)


# -- selection -------------------------------------------------------------------------------


def _finished(table: Any, cutoffs: Mapping[str, datetime]) -> sa.ColumnElement[bool]:
    """``table``'s row is finished and was last updated before its status's cutoff."""
    terms = [
        sa.and_(table.c.status == status, table.c.updated_at < before)
        for status, before in sorted(cutoffs.items())
    ]
    return sa.or_(*terms) if terms else sa.false()


_CHILD = complaints.alias("child")


def _roots(
    conn: sa.Connection, cutoffs: Mapping[str, datetime], after: int, size: int, lock: bool
) -> list[int]:
    """The next ``size`` complaints after id ``after``, not merged into another, that are due
    and not purged yet (or have a complaint merged into them that is not); locked."""
    unpurged_child = sa.exists().where(
        _CHILD.c.merged_into == complaints.c.id, _CHILD.c.purged_at.is_(None)
    )
    query = (
        sa.select(complaints.c.id)
        .where(
            complaints.c.id > after,
            complaints.c.merged_into.is_(None),
            _finished(complaints, cutoffs),
            sa.or_(complaints.c.purged_at.is_(None), unpurged_child),
        )
        .order_by(complaints.c.id)
        .limit(size)
    )
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update(of=complaints)
    return list(conn.execute(query).scalars())


def _chunks(values: Iterable[Any]) -> Iterator[list[Any]]:
    ordered = sorted(set(values))
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start : start + CHUNK]


def _groups(conn: sa.Connection, roots: Sequence[int]) -> dict[int, int]:
    """Each complaint of ``roots`` and every complaint merged into one of them (through any
    number of merges), with its root."""
    root_of = {root: root for root in roots}
    frontier = list(roots)
    for _ in range(MAX_DEPTH):
        found: list[int] = []
        for chunk in _chunks(frontier):
            query = sa.select(complaints.c.id, complaints.c.merged_into).where(
                complaints.c.merged_into.in_(chunk)
            )
            for child, parent in conn.execute(query):
                if child not in root_of:
                    root_of[child] = root_of[parent]
                    found.append(child)
        if not found:
            break
        frontier = found
    return root_of


# -- what one batch holds --------------------------------------------------------------------


@dataclass
class _Batch:
    """The rows of one batch of complaints that hold personal data, as read."""

    root_of: dict[int, int]
    """Every complaint of the batch's groups (a root and those merged into it), with its root;
    a root purged before is here when a complaint merged into it since is not."""
    region: str
    complaints: list[Any] = field(default_factory=list)
    """The complaints not purged yet."""
    messages: list[Any] = field(default_factory=list)
    """The messages of the groups not purged yet (their raw payload is not)."""
    raws: list[int] = field(default_factory=list)
    attachments: list[Any] = field(default_factory=list)
    outbound: list[Any] = field(default_factory=list)
    outbox: list[Any] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)
    notes: dict[int, str] = field(default_factory=dict)
    """The masked note of each event whose note masking changes."""
    quarantined: list[Any] = field(default_factory=list)
    clusters: list[Any] = field(default_factory=list)
    identities: list[Any] = field(default_factory=list)
    """Identities (id, key) to delete."""
    scrubbers: dict[int, _Scrubber] = field(default_factory=dict)
    """The text masker of each root complaint (its senders' names)."""

    @property
    def ids(self) -> list[int]:
        return [row.id for row in self.complaints]

    def scrubber(self, complaint_id: int) -> _Scrubber:
        return self.scrubbers[self.root_of[complaint_id]]


_COMPLAINT_COLUMNS = [
    complaints.c[name]
    for name in (
        "id",
        "status",
        "updated_at",
        "sender_name",
        "sender_email",
        "sender_phone",
        "sender_handle",
        "reply_to",
        "channel",
        "subject",
        "body",
        "location_lat",
        "location_lon",
        "cluster_id",
    )
]
_MESSAGE_COLUMNS = [
    messages.c[name]
    for name in (
        "id",
        "external_id",
        "raw_id",
        "complaint_id",
        "channel",
        "sender_name",
        "sender_email",
        "sender_phone",
        "sender_handle",
        "sender_key",
        "subject",
        "body",
        "location",
    )
]


def _select_in(
    conn: sa.Connection, query: sa.Select[Any], column: Any, ids: Iterable[Any]
) -> list[Any]:
    """The rows of ``query`` whose ``column`` is among ``ids`` (a chunk at a time)."""
    rows: list[Any] = []
    for chunk in _chunks(ids):
        rows += conn.execute(query.where(column.in_(chunk))).all()
    return rows


def _read(conn: sa.Connection, root_of: dict[int, int], region: str, lock: bool) -> _Batch:
    """The rows of the complaints of ``root_of`` not purged yet (locked when ``lock``), and
    what of theirs and of their group's is not purged yet."""
    batch = _Batch(root_of=root_of, region=region)
    query = sa.select(*_COMPLAINT_COLUMNS).where(complaints.c.purged_at.is_(None))
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    batch.complaints = sorted(_select_in(conn, query, complaints.c.id, root_of), key=_id)
    group = list(root_of)
    batch.messages = _messages_of(conn, group)
    batch.scrubbers = _scrubbers(batch)
    batch.raws = _raws_of(conn, group, [m.raw_id for m in batch.messages])
    batch.attachments = _attachments_of(conn, [m.id for m in batch.messages])
    sent = sa.select(outbound_messages.c.id, outbound_messages.c.outbox_id).where(
        (outbound_messages.c.to_address != "") | (outbound_messages.c.body != "")
    )
    batch.outbound = _select_in(conn, sent, outbound_messages.c.complaint_id, group)
    rows = sa.select(outbox.c.id, outbound_messages.c.id.label("sent")).outerjoin(
        outbound_messages, outbound_messages.c.outbox_id == outbox.c.id
    )
    batch.outbox = _select_in(conn, rows, outbox.c.complaint_id, group)
    events = sa.select(complaint_events).where(complaint_events.c.note.is_not(None))
    for event in _select_in(conn, events, complaint_events.c.complaint_id, group):
        masked = batch.scrubber(event.complaint_id)(event.note)
        if masked != event.note:
            batch.events.append(event)
            batch.notes[event.id] = masked
    batch.quarantined = _select_in(
        conn, sa.select(quarantine.c.id, quarantine.c.error), quarantine.c.raw_id, batch.raws
    )
    cluster_ids = {row.cluster_id for row in batch.complaints if row.cluster_id}
    batch.clusters = _select_in(
        conn, sa.select(clusters.c.id, clusters.c.label), clusters.c.id, cluster_ids
    )
    return batch


def _messages_of(conn: sa.Connection, complaint_ids: Sequence[int]) -> list[Any]:
    """The messages of these complaints whose raw payload is not purged yet."""
    query = (
        sa.select(*_MESSAGE_COLUMNS)
        .join(raw_messages, raw_messages.c.id == messages.c.raw_id)
        .where(raw_messages.c.purged_at.is_(None))
    )
    return sorted(_select_in(conn, query, messages.c.complaint_id, complaint_ids), key=_id)


def _id(row: Any) -> int:
    return int(row.id)


def _raws_of(
    conn: sa.Connection, complaint_ids: Sequence[int], of_messages: list[int]
) -> list[int]:
    """The raw payloads to purge: those of the messages, and those filed into the complaints
    that have no message (none is expected; never one of another complaint's message)."""
    alone = (
        sa.select(raw_messages.c.id)
        .outerjoin(messages, messages.c.raw_id == raw_messages.c.id)
        .where(raw_messages.c.purged_at.is_(None), messages.c.id.is_(None))
    )
    found = set(of_messages)
    found.update(
        row.id for row in _select_in(conn, alone, raw_messages.c.complaint_id, complaint_ids)
    )
    return sorted(found)


def _attachments_of(conn: sa.Connection, message_ids: Sequence[int]) -> list[Any]:
    """The attachments of these messages not purged yet, with the bytes they store."""
    stored = sa.func.coalesce(sa.func.length(attachments.c.content), 0).label("stored")
    query = sa.select(
        attachments.c.id,
        attachments.c.position,
        attachments.c.filename,
        attachments.c.content_type,
        stored,
    ).where(attachments.c.status != PURGED)
    return sorted(_select_in(conn, query, attachments.c.message_id, message_ids), key=_id)


PURGED = "purged"
"""The status of a purged attachment (content and URL gone)."""


# -- masking texts ---------------------------------------------------------------------------


class _Scrubber:
    """``mask_text`` with every kind; the senders' handles hidden and each word of their names
    written ``B***``."""

    def __init__(self, region: str, names: Iterable[str] = (), handles: Iterable[str] = ()):
        words = {w.casefold() for name in names for w in _WORD.findall(name)}
        self._names = _alternation(words, r"(?<!\w)(?:", r")(?!\w)", re.IGNORECASE)
        self._handles = _alternation({h for h in handles if len(h) >= 4}, "(?:", ")")
        self.region = region

    def __call__(self, text: str) -> str:
        if not text:
            return text
        if self._handles is not None:
            text = self._handles.sub(HIDDEN, text)
        text = mask_text(text, nik=True, npwp=True, phones=True, emails=True, region=self.region)
        if self._names is not None:
            text = self._names.sub(lambda m: mask_name(m.group()), text)
        return text

    def optional(self, text: str | None) -> str | None:
        return None if text is None else self(text)


def _alternation(
    values: set[str], before: str, after: str, flags: int = 0
) -> re.Pattern[str] | None:
    """A pattern matching any of ``values``, the longest first (None without any)."""
    if not values:
        return None
    ordered = sorted(values, key=lambda v: (-len(v), v))
    return re.compile(before + "|".join(re.escape(v) for v in ordered) + after, flags)


def _scrubbers(batch: _Batch) -> dict[int, _Scrubber]:
    """One scrubber per root complaint, with the names and handles of every sender of its
    group (the complaint, those merged into it, their messages)."""
    senders = [(batch.root_of[row.id], row) for row in batch.complaints]
    senders += [(batch.root_of[row.complaint_id], row) for row in batch.messages]
    names: dict[int, set[str]] = {}
    handles: dict[int, set[str]] = {}
    for root, row in senders:
        if row.sender_name:
            names.setdefault(root, set()).add(row.sender_name)
        if row.sender_handle:
            handles.setdefault(root, set()).add(row.sender_handle)
    return {
        root: _Scrubber(batch.region, names.get(root, ()), handles.get(root, ()))
        for root in set(batch.root_of.values())
    }


# -- identities ------------------------------------------------------------------------------


def _keys_of(batch: _Batch) -> set[str]:
    """The identity keys the batch's senders had (``tel:``, ``mailto:``, ``wa:``), as filing
    makes them, and the ones its messages were filed under."""
    keys: set[str] = set()
    for row in [*batch.complaints, *batch.messages]:
        keys.update(sender_keys(row.sender_email, row.sender_phone, row.sender_handle, row.channel))
    keys.update(row.sender_key for row in batch.messages if row.sender_key)
    for row in batch.complaints:
        if row.reply_to and "@" in row.reply_to:
            keys.add("mailto:" + row.reply_to.lower())
        elif row.reply_to and row.reply_to.startswith("+"):
            keys.add("tel:" + row.reply_to)
    return keys


def _people(conn: sa.Connection, keys: set[str]) -> list[list[tuple[int, str]]]:
    """The persons ``keys`` belong to, each as all of its identities (id, key)."""
    columns = sa.select(identities.c.id, identities.c.key, identities.c.person_id)
    found = _select_in(conn, columns, identities.c.key, keys)
    persons = {row.person_id for row in found if row.person_id is not None}
    members = _select_in(conn, columns, identities.c.person_id, persons)
    members += [row for row in found if row.person_id is None]
    people: dict[tuple[bool, int], list[tuple[int, str]]] = {}
    for row in members:
        group = (True, row.person_id) if row.person_id is not None else (False, row.id)
        people.setdefault(group, []).append((int(row.id), str(row.key)))
    return list(people.values())


def _still_used(
    conn: sa.Connection, keys: Iterable[str], cutoffs: Mapping[str, datetime]
) -> set[str]:
    """The keys a message that stays after this run refers to: a message not purged, of no
    complaint or of a complaint that is not due."""
    owner = complaints.alias("owner")
    due = sa.and_(owner.c.merged_into.is_(None), _finished(owner, cutoffs))
    query = (
        sa.select(messages.c.sender_key)
        .join(raw_messages, raw_messages.c.id == messages.c.raw_id)
        .outerjoin(owner, owner.c.id == messages.c.complaint_id)
        .where(
            raw_messages.c.purged_at.is_(None),
            sa.or_(messages.c.complaint_id.is_(None), sa.not_(due)),
        )
        .distinct()
    )
    return {str(row[0]) for row in _select_in(conn, query, messages.c.sender_key, keys)}


def _forgotten(
    conn: sa.Connection, batch: _Batch, cutoffs: Mapping[str, datetime], counted: set[int]
) -> list[tuple[int, str]]:
    """The identities of the batch's senders whose person nothing that stays refers to
    (leaving out those in ``counted``, found by an earlier batch of a dry run)."""
    people = _people(conn, _keys_of(batch))
    every = {key for members in people for _, key in members}
    used = _still_used(conn, every, cutoffs)
    gone = [
        member
        for members in people
        if not any(key in used for _, key in members)
        for member in members
        if member[0] not in counted
    ]
    return sorted(gone)


# -- writing ---------------------------------------------------------------------------------


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 2)


def _location(value: Any) -> dict[str, Any] | None:
    """A message's location without its address, its coordinates rounded (none when it had
    only an address)."""
    if not isinstance(value, dict) or value.get("lat") is None or value.get("lon") is None:
        return None
    return {"lat": _rounded(value["lat"]), "lon": _rounded(value["lon"]), "address": None}


def _neutral_name(position: int, filename: str | None, content_type: str) -> str:
    """``attachment-N.ext``: the extension of the filename, else of the content type."""
    match = _EXTENSION.search(filename or "")
    extension = f".{match.group(1).lower()}" if match else None
    if extension is None:
        extension = mimetypes.guess_extension(content_type.split(";")[0].strip()) or ""
    return f"attachment-{position + 1}{extension}"


def _execute_many(conn: sa.Connection, statement: Any, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(statement, rows)


def _in_chunks(conn: sa.Connection, make: Callable[[list[Any]], Any], ids: Iterable[Any]) -> None:
    for chunk in _chunks(ids):
        conn.execute(make(chunk))


_B = sa.bindparam


def _write_complaints(conn: sa.Connection, batch: _Batch, now: datetime) -> None:
    statement = (
        sa.update(complaints)
        .where(complaints.c.id == _B("cid"))
        .values(
            sender_name=None,
            sender_email=None,
            sender_phone=None,
            sender_handle=None,
            reply_to=None,
            location_address=None,
            subject=_B("subject"),
            body=_B("body"),
            location_lat=_B("lat"),
            location_lon=_B("lon"),
            purged_at=_B("now"),
        )
    )
    rows = []
    for row in batch.complaints:
        scrub = batch.scrubber(row.id)
        rows.append(
            {
                "cid": row.id,
                "subject": scrub.optional(row.subject),
                "body": scrub(row.body),
                "lat": _rounded(row.location_lat),
                "lon": _rounded(row.location_lon),
                "now": now,
            }
        )
    _execute_many(conn, statement, rows)


def _write_messages(conn: sa.Connection, batch: _Batch) -> None:
    statement = (
        sa.update(messages)
        .where(messages.c.id == _B("mid"))
        .values(
            sender_name=None,
            sender_email=None,
            sender_phone=None,
            sender_handle=None,
            sender_key=None,
            html=None,
            headers={},
            external_id=_B("external_id"),
            message_id=None,
            in_reply_to=None,
            references=[],
            subject=_B("subject"),
            body=_B("body"),
            text_full=_B("text_full"),
            location=_B("location", type_=messages.c.location.type),
        )
    )
    rows = []
    for row in batch.messages:
        scrub = batch.scrubber(row.complaint_id)
        body = scrub(row.body)
        rows.append(
            {
                "mid": row.id,
                "external_id": _sealed_id(row.external_id),
                "subject": scrub.optional(row.subject),
                "body": body,
                "text_full": body,  # the quoted text and signature left out
                "location": _location(row.location),
            }
        )
    _execute_many(conn, statement, rows)


def _sealed_id(external_id: str) -> str:
    """A provider's message id can spell the sender (a wamid holds the phone, a Message-ID
    often the address): a purged message keeps a digest that still tells messages apart.
    The raw row keeps its id, which the audit record covers and redeliveries are checked on."""
    if external_id.startswith("sealed:"):
        return external_id
    digest = hashlib.sha256(external_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"sealed:{digest[:24]}"


def _write_raws(conn: sa.Connection, batch: _Batch, now: datetime) -> None:
    """Payloads emptied, their rows' meta (file names, paths) cleared, the purge recorded;
    quarantine entries lose the original payload kept, and their error is masked."""
    if not batch.raws:
        return
    _in_chunks(
        conn,
        lambda chunk: (
            sa.update(raw_messages)
            .where(raw_messages.c.id.in_(chunk))
            .values(payload=b"", meta={}, purged_at=now)
        ),
        batch.raws,
    )
    audit.append_purges(conn, batch.raws)
    scrub = _Scrubber(batch.region)
    _execute_many(
        conn,
        sa.update(quarantine)
        .where(quarantine.c.id == _B("qid"))
        .values(original_payload=None, error=_B("error")),
        [{"qid": q.id, "error": scrub(q.error)} for q in batch.quarantined],
    )


def _write_attachments(conn: sa.Connection, batch: _Batch) -> None:
    statement = (
        sa.update(attachments)
        .where(attachments.c.id == _B("aid"))
        .values(
            filename=_B("filename"),
            content=None,
            url=None,
            status=PURGED,
            last_error=None,
            next_attempt_at=None,
        )
    )
    rows = [
        {"aid": a.id, "filename": _neutral_name(a.position, a.filename, a.content_type)}
        for a in batch.attachments
    ]
    _execute_many(conn, statement, rows)


def _write_outbound(conn: sa.Connection, batch: _Batch) -> None:
    """What was sent loses its recipient and text; the outbox rows behind it their target and
    payload; every other outbox row of the complaints (pending, dead, forwards) goes."""
    _in_chunks(
        conn,
        lambda chunk: (
            sa.update(outbound_messages)
            .where(outbound_messages.c.id.in_(chunk))
            .values(to_address="", body="")
        ),
        [row.id for row in batch.outbound],
    )
    _in_chunks(
        conn,
        lambda chunk: (
            sa.update(outbox)
            .where(outbox.c.id.in_(chunk))
            .values(target="", payload={}, last_error=None)
        ),
        [row.id for row in batch.outbox if row.sent is not None],
    )
    _in_chunks(
        conn,
        lambda chunk: sa.delete(outbox).where(outbox.c.id.in_(chunk)),
        [row.id for row in batch.outbox if row.sent is None],
    )


def _write_events(conn: sa.Connection, batch: _Batch) -> None:
    """Notes masked, and the events recorded again in the audit chain as they are now."""
    rows = [dict(event._mapping) | {"note": batch.notes[event.id]} for event in batch.events]
    _execute_many(
        conn,
        sa.update(complaint_events)
        .where(complaint_events.c.id == _B("eid"))
        .values(note=_B("note")),
        [{"eid": row["id"], "note": row["note"]} for row in rows],
    )
    if rows:
        audit.append_redactions(conn, [row["id"] for row in rows], rows)


def _write_rest(conn: sa.Connection, batch: _Batch) -> None:
    """Cluster labels masked, the similarity index of the texts and the identities gone."""
    owner = {row.cluster_id: row.id for row in reversed(batch.complaints) if row.cluster_id}
    labels = [{"key": c.id, "label": batch.scrubber(owner[c.id])(c.label)} for c in batch.clusters]
    _execute_many(
        conn,
        sa.update(clusters).where(clusters.c.id == _B("key")).values(label=_B("label")),
        labels,
    )
    _in_chunks(
        conn,
        lambda chunk: sa.delete(similarity_bands).where(similarity_bands.c.complaint_id.in_(chunk)),
        batch.root_of,
    )
    keys = [key for _, key in batch.identities]
    _in_chunks(
        conn,
        lambda chunk: sa.delete(identity_events).where(
            sa.or_(identity_events.c.key.in_(chunk), identity_events.c.other.in_(chunk))
        ),
        keys,
    )
    _in_chunks(
        conn,
        lambda chunk: sa.delete(identities).where(identities.c.id.in_(chunk)),
        [ident for ident, _ in batch.identities],
    )


def _write_ratings(conn: sa.Connection, batch: _Batch) -> None:
    """A satisfaction answer's comment masked like the complaint's texts (it may name people)."""
    rows = _select_in(
        conn,
        sa.select(ratings.c.id, ratings.c.complaint_id, ratings.c.comment).where(
            ratings.c.comment.is_not(None)
        ),
        ratings.c.complaint_id,
        batch.ids,
    )
    _execute_many(
        conn,
        sa.update(ratings).where(ratings.c.id == _B("rid")).values(comment=_B("comment")),
        [{"rid": row.id, "comment": batch.scrubber(row.complaint_id)(row.comment)} for row in rows],
    )


def _write(conn: sa.Connection, batch: _Batch, now: datetime) -> None:
    _write_complaints(conn, batch, now)
    _write_messages(conn, batch)
    _write_raws(conn, batch, now)
    _write_attachments(conn, batch)
    _write_outbound(conn, batch)
    _write_events(conn, batch)
    _write_ratings(conn, batch)
    _write_rest(conn, batch)


# -- the run ---------------------------------------------------------------------------------


Progress = Callable[[int], None]


def _ignore(_count: int) -> None:
    pass


def _require_current(store: Store) -> None:
    current, head = store.revision(), migrate.head_revision()
    if current != head:
        raise StorageUnavailable(
            f"{store!r} is at schema revision {current}; purge needs {head} ('omnichannel "
            "init-db' upgrades an older database)"
        )


def pending(store: Store, policy: Policy, now: datetime | None = None) -> int:
    """About how many complaints a run would purge (for a progress bar): those due and not
    purged, not counting the ones merged into them."""
    cutoffs = policy.cutoffs(now or datetime.now(UTC))
    query = sa.select(sa.func.count()).where(
        complaints.c.merged_into.is_(None),
        complaints.c.purged_at.is_(None),
        _finished(complaints, cutoffs),
    )
    with audit.snapshot(store) as conn:
        return int(conn.execute(query).scalar_one())


def purge(
    store: Store,
    policy: Policy,
    *,
    apply: bool = False,
    now: datetime | None = None,
    region: str = "ID",
    batch_size: int = BATCH,
    progress: Progress | None = None,
) -> Summary:
    """Purge the personal data of the complaints ``policy`` makes due at ``now`` (only say
    what would go unless ``apply``); ``progress`` is called with the count of complaints of
    each batch done."""
    _require_current(store)
    moment = now or datetime.now(UTC)
    cutoffs = policy.cutoffs(moment)
    ages = {status: age.text for status, age in policy.ages.items()}
    summary = Summary(applied=apply, ages=ages, cutoffs=cutoffs)
    tick = progress or _ignore
    if apply:
        _apply(store, cutoffs, moment, region, batch_size, summary, tick)
    else:
        with audit.snapshot(store) as conn:
            _dry_run(conn, cutoffs, region, batch_size, summary, tick)
    return summary


def _dry_run(
    conn: sa.Connection,
    cutoffs: Mapping[str, datetime],
    region: str,
    size: int,
    summary: Summary,
    tick: Progress,
) -> None:
    after, counted = 0, set[int]()
    while roots := _roots(conn, cutoffs, after, size, lock=False):
        batch = _read(conn, _groups(conn, roots), region, lock=False)
        batch.identities = _forgotten(conn, batch, cutoffs, counted)
        counted.update(ident for ident, _ in batch.identities)
        summary._add(batch)
        tick(len(batch.complaints))
        after = roots[-1]


def _apply(
    store: Store,
    cutoffs: Mapping[str, datetime],
    now: datetime,
    region: str,
    size: int,
    summary: Summary,
    tick: Progress,
) -> None:
    after = 0
    while True:
        with store.transaction() as conn:
            roots = _roots(conn, cutoffs, after, size, lock=True)
            if not roots:
                break
            batch = _read(conn, _groups(conn, roots), region, lock=True)
            batch.identities = _forgotten(conn, batch, cutoffs, set())
            with _secure_delete(conn):
                _write(conn, batch, now)
        summary._add(batch)
        tick(len(batch.complaints))
        after = roots[-1]
    if summary.total:
        _checkpoint(store)


@contextmanager
def _secure_delete(conn: sa.Connection) -> Iterator[None]:
    """SQLite overwrites what is deleted or rewritten with zeros meanwhile (not every build
    does by default): the values purged are not left in the database file's free space."""
    if conn.dialect.name != "sqlite":
        yield
        return
    before = conn.exec_driver_sql("PRAGMA secure_delete").scalar()
    conn.exec_driver_sql("PRAGMA secure_delete = ON")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA secure_delete = {int(before or 0)}")


def _checkpoint(store: Store) -> None:
    """SQLite: the write-ahead log, which still holds the pages as they were, copied into the
    database and emptied (best effort: not while another process reads an older snapshot)."""
    if store.dialect != "sqlite" or store.in_memory:
        return
    with contextlib.suppress(sa.exc.DBAPIError), store.engine.connect() as conn:
        driver: Any = conn.connection.driver_connection
        driver.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
