"""Dedupe levels 3 and 4, in the filing transaction: who sent it, and what else it is about.

**Identities** (level 3's "same sender"): every message's sender keys — ``tel:+62…`` (SMS and
WhatsApp share it), ``mailto:…``, ``wa:<business-scoped id>`` — are rows of ``identities``;
the keys of one person share a ``person_id``. A message that carries two keys proves they are
one person and links them: a web form with a phone and an e-mail, an e-mail whose signature
gives a phone on a contact line (``HP/WA: 0812…``). A name never links anything. Operators
link and unlink (``omnichannel.merging``); every link is a row of ``identity_events``.

**Same complaint again** (level 3): a message from a person who has an open complaint with a
message within the window (72 hours by default), whose text is the same complaint
(``normalizer.similarity.same_complaint``), is ``merged`` into it; the score is recorded on the
message and as a complaint event.

**Clusters** (level 4): a new complaint whose text is about the same matter as a complaint of
the cluster window (``normalizer.similarity.related``) joins that complaint's cluster (or makes
one with it). Candidates come from ``similarity_bands``, the MinHash band keys of every
complaint, looked up by key within the window — an index range scan per band, whatever the
size of the archive — and are verified on their text.

**Concurrency**: on PostgreSQL, a filing transaction takes transaction-level advisory locks on
its messages' sender keys, then on their persons, each set in sorted order (no deadlock), before
it looks for their open complaints: two workers filing one person's resends at once file them
one after the other, so the second sees the first's complaint. SQLite has one writer at a time.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from normalizer.phone import normalize_phone
from normalizer.similarity import (
    Comparison,
    Signature,
    apart,
    bands,
    compare,
    label,
    related,
    signature,
)
from omnichannel import audit
from omnichannel.schema import NormalizedMessage
from omnichannel.store import insert_ignore
from omnichannel.store.tables import (
    UTCDateTime,
    clusters,
    complaint_events,
    complaints,
    identities,
    identity_events,
    messages,
    similarity_bands,
)

__all__ = [
    "ACTIVE",
    "Candidate",
    "Clustered",
    "best_related",
    "cluster_new",
    "identify",
    "join_persons",
    "lock",
    "message_keys",
    "postings",
    "recent_of",
    "register",
    "resize",
    "sender_keys",
    "text_signature",
]

ACTIVE = ("open", "assigned", "in_progress")
"""The statuses of a complaint a resend joins (a resolved one gets a new complaint)."""
CHUNK = 500
CANDIDATES = 20
KEYS_PER_QUERY = 200
"""Sketch keys looked up per statement (SQLite allows 500 terms in a compound SELECT)."""
PER_KEY = 50
"""The latest complaints of one sketch key that are counted as candidates."""
"""At most this many candidate complaints are verified for one new complaint (the ones that
share the most bands, then the newest)."""
_IN: sa.BindParameter[Any] = sa.bindparam("values", expanding=True)
_CONTACT_LINE = re.compile(
    r"^[^\w>]*(?:hp|no\.?\s*hp|hp\s*/\s*wa|wa\s*/\s*hp|telp?|tlp|telepon|phone|mobile|cell|wa"
    r"|whatsapp|kontak|contact)\b[^0-9+\n]{0,12}(\+?[0-9][0-9 ().-]{7,18}[0-9])\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_SIGNATURE_LINES = 8


def sender_keys(
    email: str | None, phone: str | None, handle: str | None, channel: str
) -> list[str]:
    """The identity keys of a sender, the most telling first."""
    keys = []
    if phone and phone.startswith("+"):
        keys.append("tel:" + phone)
    if email and "@" in email:
        keys.append("mailto:" + email.lower())
    if handle and channel == "whatsapp":
        keys.append("wa:" + handle)
    return keys


def _signature_phones(message: NormalizedMessage, region: str) -> list[str]:
    """Phones an e-mail's signature gives on a contact line (``HP/WA: 0812-…``) among the last
    lines of what the sender wrote — the body, quoted and forwarded text cut off, never a
    ``>`` line: the sender's own number, by the custom of signatures."""
    lines = [line for line in message.body.split("\n") if line.strip()]
    tail = "\n".join(line for line in lines[-_SIGNATURE_LINES:] if not line.startswith(">"))
    found = []
    for match in _CONTACT_LINE.finditer(tail):
        parsed = normalize_phone(match.group(1), region)
        if parsed.e164:
            found.append("tel:" + parsed.e164)
    return found[:1]  # two numbers on contact lines: the first is the sender's, by custom


def message_keys(message: NormalizedMessage, region: str = "ID") -> list[str]:
    """The identity keys a message proves belong to one person, the most telling first (none
    for an automatic message: a bounce or an auto-reply proves nothing of a person)."""
    if message.is_automatic:
        return []
    sender = message.sender
    keys = sender_keys(sender.email, sender.phone, sender.handle, message.channel)
    if message.channel == "email" and keys:
        keys += [k for k in _signature_phones(message, region) if k not in keys]
    return keys


def _lock_id(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), signed=True)


def lock(conn: sa.Connection, names: Iterable[str]) -> None:
    """Transaction-level advisory locks on ``names``, in a fixed order (PostgreSQL; SQLite's
    one writer needs none)."""
    if conn.dialect.name != "postgresql":
        return
    for key in sorted({_lock_id(n) for n in names}):
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def _chunks(values: Iterable[Any]) -> Iterable[list[Any]]:
    ordered = sorted(set(values))
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start : start + CHUNK]


def _persons(conn: sa.Connection, keys: Iterable[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in _chunks(keys):
        query = sa.select(identities.c.key, identities.c.person_id).where(
            identities.c.key.in_(chunk)
        )
        found.update({key: person for key, person in conn.execute(query)})
    return found


def register(conn: sa.Connection, keys: Iterable[str], now: datetime) -> dict[str, int]:
    """Each key's person id, inserting the keys not known yet (each its own person)."""
    wanted = sorted(set(keys))
    rows = [{"key": k, "person_id": None, "created_at": now} for k in wanted]
    for start in range(0, len(rows), CHUNK):
        insert_ignore(conn, identities, rows[start : start + CHUNK], ("key",))
    for chunk in _chunks(wanted):
        conn.execute(
            sa.update(identities)
            .where(identities.c.key.in_(chunk), identities.c.person_id.is_(None))
            .values(person_id=identities.c.id)
        )
    return _persons(conn, wanted)


def join_persons(
    conn: sa.Connection, keys: Sequence[str], persons: dict[str, int], now: datetime, **why: Any
) -> int:
    """Make ``keys`` one person (the smallest of their person ids), recording each link."""
    target = min(persons[k] for k in keys)
    others = sorted({persons[k] for k in keys} - {target})
    if not others:
        return target
    conn.execute(
        sa.update(identities).where(identities.c.person_id.in_(others)).values(person_id=target)
    )
    first = next(k for k in keys if persons[k] == target)
    events = [
        {"at": now, "action": "link", "key": first, "other": k} | why
        for k in keys
        if persons[k] != target
    ]
    conn.execute(sa.insert(identity_events), events)
    for key, person in list(persons.items()):
        if person in others:
            persons[key] = target
    return target


def _unlinked(conn: sa.Connection, keys: list[str]) -> bool:
    """Whether an operator took one of ``keys`` out of a person: filing does not link it
    again on its own."""
    query = sa.select(identity_events.c.id).where(
        identity_events.c.key.in_(keys), identity_events.c.action == "unlink"
    )
    return conn.execute(query.limit(1)).first() is not None


def identify(
    conn: sa.Connection,
    batch: Sequence[tuple[int, NormalizedMessage]],
    now: datetime,
    region: str = "ID",
) -> list[list[str]]:
    """For each message, its own keys first and then every other key of its person; linking
    what a message proves, and (PostgreSQL) holding the locks that make a person's messages
    file one transaction after the other."""
    own = [message_keys(message, region) for _, message in batch]
    every = {k for keys in own for k in keys}
    if not every:
        return [[] for _ in batch]
    lock(conn, every)
    persons = register(conn, every, now)
    for (raw_id, message), keys in zip(batch, own, strict=True):
        if len({persons[k] for k in keys}) > 1 and not _unlinked(conn, keys):
            why = f"message {raw_id} ({message.channel}) carries both"
            join_persons(conn, keys, persons, now, actor="filing", reason=why)
    lock(conn, (f"person:{p}" for p in persons.values()))
    members: dict[int, list[str]] = {}
    for chunk in _chunks(persons.values()):
        query = (
            sa.select(identities.c.person_id, identities.c.key)
            .where(identities.c.person_id.in_(chunk))
            .order_by(identities.c.id)
        )
        for person, key in conn.execute(query):
            members.setdefault(person, []).append(key)
    return [
        keys + [k for k in members.get(persons[keys[0]], []) if k not in keys] if keys else []
        for keys in own
    ]


# -- level 3: the same complaint again -------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A message of an open complaint, with its text's signature."""

    received_at: datetime
    complaint_id: int
    ticket: str
    signature: Signature


RECENT = 50
"""The latest messages of one sender key a new message is compared with."""


def _recent_query() -> sa.Select[Any]:
    latest = (
        sa.func.row_number()
        .over(partition_by=messages.c.sender_key, order_by=messages.c.received_at.desc())
        .label("latest")
    )
    ranked = (
        sa.select(
            messages.c.received_at,
            messages.c.subject,
            messages.c.body,
            complaints.c.id,
            complaints.c.ticket,
            messages.c.sender_key,
            latest,
        )
        .join(complaints, complaints.c.id == messages.c.complaint_id)
        .where(
            messages.c.sender_key.in_(_IN),
            messages.c.received_at >= sa.bindparam("since", type_=UTCDateTime()),
            complaints.c.status.in_(ACTIVE),
        )
        .subquery()
    )
    return sa.select(*(c for c in ranked.c if c.name != "latest")).where(ranked.c.latest <= RECENT)


_RECENT = _recent_query()
"""The latest ``RECENT`` messages of open complaints of each sender key since a time: a
sender of thousands of messages costs no more than one of fifty."""


def text_signature(subject: str | None, body: str) -> Signature:
    """The signature dedupe compares (kept for the texts looked at lately: the candidates of
    one new complaint are mostly those of the last; the cache keeps only what is compared)."""
    return _cached_signature((subject or "")[:500], body[:20_000])


@functools.lru_cache(maxsize=8192)
def _cached_signature(subject: str, body: str) -> Signature:
    return signature(body, subject or None)


def recent_of(
    conn: sa.Connection, keys: Iterable[str], since: datetime
) -> dict[str, list[Candidate]]:
    """The latest messages of open complaints sent by each key since ``since``."""
    found: dict[str, list[Candidate]] = {}
    for chunk in _chunks(keys):
        for at, subject, body, cid, ticket, key in conn.execute(
            _RECENT, {"values": chunk, "since": since}
        ):
            found.setdefault(key, []).append(
                Candidate(at, cid, ticket, text_signature(subject, body))
            )
    return found


# -- level 4: clusters -------------------------------------------------------------------------


@dataclass
class Clustered:
    """A new complaint, to index and to cluster."""

    complaint_id: int
    ticket: str
    received_at: datetime
    signature: Signature
    people: frozenset[str] = frozenset()
    """The sender's identity keys: complaints of the same person are not clustered (a second
    complaint of one person that is not the same complaint is about something else)."""


@functools.lru_cache(maxsize=256)
def _latest_of(count: int) -> sa.CompoundSelect[Any]:
    """For ``count`` keys (``:k0``…) the latest ``PER_KEY`` postings of each since ``:since``
    (an index range scan that stops there, so a key shared by thousands of complaints of the
    window — a mass report — costs no more than a rare one); built once per count."""
    parts = []
    for i in range(count):
        latest = (
            sa.select(
                similarity_bands.c.band,
                similarity_bands.c.complaint_id,
                similarity_bands.c.received_at,
            )
            .where(
                similarity_bands.c.band == sa.bindparam(f"k{i}", type_=sa.BigInteger()),
                similarity_bands.c.received_at >= sa.bindparam("since", type_=UTCDateTime()),
            )
            .order_by(similarity_bands.c.received_at.desc())
            .limit(PER_KEY)
            .subquery()
        )
        parts.append(sa.select(*latest.c))
    return sa.union_all(*parts)


Posting = tuple[int, datetime]
"""A complaint that has a key, and when it was received."""


def postings(conn: sa.Connection, keys: Iterable[int], since: datetime) -> dict[int, list[Posting]]:
    """For each key, the latest ``PER_KEY`` complaints since ``since`` that have it."""
    found: dict[int, list[Posting]] = {}
    wanted = sorted(set(keys))
    for start in range(0, len(wanted), KEYS_PER_QUERY):
        chunk = wanted[start : start + KEYS_PER_QUERY]
        params: dict[str, Any] = {f"k{i}": key for i, key in enumerate(chunk)}
        for band, cid, at in conn.execute(_latest_of(len(chunk)), params | {"since": since}):
            found.setdefault(band, []).append((cid, at))
    return found


def _ranked(
    keys: list[int], found: dict[int, list[Posting]], since: datetime, exclude: int
) -> list[int]:
    """The complaints since ``since`` that share the most telling of ``keys``, at most
    ``CANDIDATES``: a key counts one over the number of complaints found with it, so a rare
    key (a village's name) outweighs many common ones (``pungutan``, ``bau``) — the weight
    of an inverse document frequency, taken from the postings themselves."""
    weight: dict[int, float] = {}
    for key in set(keys):
        posted = [cid for cid, at in found.get(key, []) if at >= since and cid != exclude]
        for cid in posted:
            weight[cid] = weight.get(cid, 0.0) + 1 / len(posted)
    ranked = sorted(weight.items(), key=lambda item: (-item[1], -item[0]))
    return [cid for cid, _ in ranked[:CANDIDATES]]


@dataclass
class _Known:
    """A candidate complaint: ticket, cluster, its text's signature, its sender's keys."""

    ticket: str
    cluster: str | None
    signature: Signature
    sender: set[str]


def _stored(conn: sa.Connection, ids: Iterable[int]) -> dict[int, _Known]:
    query = sa.select(
        complaints.c.id,
        complaints.c.ticket,
        complaints.c.cluster_id,
        complaints.c.subject,
        complaints.c.body,
        complaints.c.sender_email,
        complaints.c.sender_phone,
        complaints.c.sender_handle,
        complaints.c.channel,
    ).where(complaints.c.id.in_(_IN), complaints.c.status != "merged")
    found = {}
    for chunk in _chunks(ids):
        for row in conn.execute(query, {"values": chunk}):
            sender = set(sender_keys(row[5], row[6], row[7], row[8]))
            found[row[0]] = _Known(row[1], row[2], text_signature(row[3], row[4]), sender)
    return found


def cluster_new(
    conn: sa.Connection,
    new: Sequence[Clustered],
    window: timedelta,
    threshold: float,
    now: datetime,
) -> None:
    """Index each new complaint, and put it in the cluster of the complaint of the window its
    text is most related to (making that cluster if there is none yet). Per batch: the
    postings of every key in a few queries, the candidates read in one; the new complaints
    see each other in the order given."""
    if not new:
        return
    keys = {item.complaint_id: bands(item.signature) for item in new}
    since = min(item.received_at for item in new) - window
    found = postings(conn, (k for ks in keys.values() for k in ks), since)
    chosen = {
        item.complaint_id: _ranked(
            keys[item.complaint_id], found, item.received_at - window, item.complaint_id
        )
        for item in new
    }
    known = _stored(conn, {cid for ids in chosen.values() for cid in ids})
    local: dict[int, list[Posting]] = {}
    for item in new:
        candidates = chosen[item.complaint_id] + _ranked(
            keys[item.complaint_id], local, item.received_at - window, item.complaint_id
        )
        best = _best(item, candidates, known, threshold)
        if best is not None:
            known[best[1]].cluster = _join(conn, item, best, known[best[1]], now)
        known[item.complaint_id] = _Known(item.ticket, None, item.signature, set(item.people))
        if best is not None:
            known[item.complaint_id].cluster = known[best[1]].cluster
        for key in keys[item.complaint_id]:
            local.setdefault(key, []).append((item.complaint_id, item.received_at))
    rows = [
        {"band": k, "received_at": item.received_at, "complaint_id": item.complaint_id}
        for item in new
        for k in sorted(set(keys[item.complaint_id]))
    ]
    if rows:
        conn.execute(sa.insert(similarity_bands), rows)


def _best(
    item: Clustered, candidates: list[int], known: dict[int, _Known], threshold: float
) -> tuple[Comparison, int] | None:
    best: tuple[Comparison, int] | None = None
    for cid in dict.fromkeys(candidates):
        other = known.get(cid)
        if other is None or other.sender & item.people or apart(item.signature, other.signature):
            continue
        result = compare(item.signature, other.signature)
        if related(result, threshold) and (best is None or result.score > best[0].score):
            best = (result, cid)
    return best


def best_related(
    conn: sa.Connection,
    sig: Signature,
    since: datetime,
    threshold: float,
) -> tuple[Comparison, int] | None:
    """The complaint received since ``since`` that a text of signature ``sig`` is most
    related to, if any (what ``cluster_new`` does for one complaint, without writing)."""
    keys = bands(sig)
    probe = Clustered(0, "", since, sig)
    candidates = _ranked(keys, postings(conn, keys, since), since, 0)
    return _best(probe, candidates, _stored(conn, candidates), threshold)


def resize(conn: sa.Connection, ids: Iterable[str], now: datetime) -> None:
    """Count the complaints of each cluster again (after a join, a merge or a split)."""
    for cluster in sorted(set(ids)):
        size = (
            sa.select(sa.func.count())
            .where(complaints.c.cluster_id == cluster, complaints.c.status != "merged")
            .scalar_subquery()
        )
        conn.execute(
            sa.update(clusters).where(clusters.c.id == cluster).values(size=size, updated_at=now)
        )


def _join(
    conn: sa.Connection,
    item: Clustered,
    best: tuple[Comparison, int],
    other: _Known,
    now: datetime,
) -> str:
    """Put ``item`` in the cluster of complaint ``best`` (made with it if it has none); the
    cluster's id."""
    result, other_id = best
    cluster = other.cluster
    if cluster is None:
        cluster = other.ticket
        row = {"id": cluster, "label": label(other.signature, item.signature), "size": 0}
        insert_ignore(conn, clusters, [row | {"created_at": now, "updated_at": now}], ("id",))
        conn.execute(
            sa.update(complaints).where(complaints.c.id == other_id).values(cluster_id=cluster)
        )
    conn.execute(
        sa.update(complaints).where(complaints.c.id == item.complaint_id).values(cluster_id=cluster)
    )
    resize(conn, [cluster], now)
    note = f"cluster {cluster}: related to {other.ticket}, similarity {result.score:.2f}"
    row = {
        "complaint_id": item.complaint_id,
        "at": now,
        "actor": "dedupe",
        "kind": "clustered",
        "from_status": None,
        "to_status": None,
        "note": note,
    }
    inserted = conn.execute(sa.insert(complaint_events).returning(complaint_events.c.id), row)
    audit.append_events(conn, [inserted.scalar_one()], [row])
    return cluster
