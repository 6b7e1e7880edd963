"""Filing a batch of decoded messages in one transaction, with set-based SQL.

Per batch, not per message: one query each for thread, ticket and same-sender matches, one
counter update per year for ticket numbers, and one multi-row insert per table. Messages of the
same batch see each other (a reply filed together with the mail it answers is merged into it).

Dedupe levels, in order (precision first — merging two different complaints hides one):
2. threading: ``in_reply_to``, then ``references`` newest first, then the ticket in the subject;
3. the same person (``dedupe.identify``: phone, e-mail, linked identities) sending the same
   complaint again (``normalizer.similarity``) within the window, into an open complaint;
4. a new complaint about the same matter as another joins its cluster (``dedupe.cluster_new``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from normalizer.normalize import body_fingerprint
from normalizer.similarity import Signature, compare, conflicting, same_complaint
from omnichannel import audit, dedupe, survey
from omnichannel.schema import NormalizedMessage, Outcome, format_utc
from omnichannel.store import insert_ignore
from omnichannel.store.tables import (
    UTCDateTime,
    attachments,
    complaint_events,
    complaints,
    messages,
    outbound_messages,
    outbox,
    queue_items,
    ticket_counters,
)
from omnichannel.values import storable_id

__all__ = [
    "Filed",
    "add_working_days",
    "file_messages",
    "next_tickets",
    "outbox_row",
    "reply_route",
    "sha256_hex",
]

CHUNK = 500
SAME_SENDER_CANDIDATES = 50
"""A person's latest texts a new message is compared with (a sender of hundreds of messages
a day costs no more than this)."""
_IN: sa.BindParameter[Any] = sa.bindparam("values", expanding=True)
_INSERT_COMPLAINTS = sa.insert(complaints).returning(complaints.c.id, sort_by_parameter_order=True)
_INSERT_MESSAGES = sa.insert(messages).returning(messages.c.id, sort_by_parameter_order=True)
_INSERT_ATTACHMENTS = sa.insert(attachments)
_INSERT_QUEUE_ITEMS = sa.insert(queue_items)
_INSERT_OUTBOX = sa.insert(outbox)
_INSERT_EVENTS = sa.insert(complaint_events).returning(
    complaint_events.c.id, sort_by_parameter_order=True
)
_TOUCH_COMPLAINT = (
    sa.update(complaints)
    .where(complaints.c.id == sa.bindparam("cid"))
    .values(
        updated_at=sa.bindparam("now", type_=UTCDateTime()),
        anonymous=sa.or_(complaints.c.anonymous, sa.bindparam("anon", type_=sa.Boolean())),
        confidential=sa.or_(complaints.c.confidential, sa.bindparam("conf", type_=sa.Boolean())),
    )
)
_ADD_TO_COUNTER = (
    sa.update(ticket_counters)
    .where(
        ticket_counters.c.prefix == sa.bindparam("p"), ticket_counters.c.year == sa.bindparam("y")
    )
    .values(value=ticket_counters.c.value + sa.bindparam("n", type_=sa.Integer()))
    .returning(ticket_counters.c.value)
)
_THREADS = (
    sa.select(messages.c.message_id, complaints.c.id, complaints.c.ticket)
    .join(complaints, complaints.c.id == messages.c.complaint_id)
    .where(messages.c.message_id.in_(_IN))
)
_OUR_THREADS = (
    sa.select(outbound_messages.c.provider_id, complaints.c.id, complaints.c.ticket)
    .join(complaints, complaints.c.id == outbound_messages.c.complaint_id)
    .where(outbound_messages.c.provider_id.in_(_IN))
)
"""A citizen's answer to what we sent (an e-mail's In-Reply-To, a quoted WhatsApp message)."""
_ANSWERED = (
    sa.select(
        outbound_messages.c.to_address,
        outbound_messages.c.sent_at,
        complaints.c.id,
        complaints.c.ticket,
    )
    .join(complaints, complaints.c.id == outbound_messages.c.complaint_id)
    .where(
        outbound_messages.c.to_address.in_(_IN),
        outbound_messages.c.kind == "reply",
        outbound_messages.c.sent_at >= sa.bindparam("since", type_=UTCDateTime()),
        complaints.c.status.in_(("open", "assigned", "in_progress", "resolved")),
    )
)
"""Complaints whose team answered an address lately: that address's next SMS joins it."""
_TICKETS = sa.select(complaints.c.ticket, complaints.c.id).where(complaints.c.ticket.in_(_IN))


def _fetch_in(
    conn: sa.Connection, statement: sa.Select[Any], values: Sequence[Any], **params: Any
) -> list[tuple[Any, ...]]:
    """The rows of ``statement`` (with an expanding ``values`` IN list) over ``values``."""
    return [tuple(row) for row in conn.execute(statement, {"values": list(values), **params})]


def _execute(conn: sa.Connection, statement: sa.Executable, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        conn.execute(statement, list(rows))


@dataclass
class Filed:
    """Where one message went."""

    outcome: Outcome
    complaint_id: int | None = None
    ticket: str | None = None


@dataclass
class _Target:
    """A complaint a message joins: existing (id known) or created in this batch."""

    complaint_id: int | None = None
    ticket: str | None = None
    new_index: int | None = None  # position among this batch's new complaints


@dataclass
class _Plan:
    """What to write for a batch."""

    outcomes: list[tuple[Outcome, _Target | None]] = field(default_factory=list)
    new: list[int] = field(default_factory=list)  # item positions that open a complaint
    why: list[tuple[str | None, float | None]] = field(default_factory=list)
    """For each message, why it was merged (thread, ticket, same_sender, answer, survey) and
    the similarity that decided a same-sender merge."""
    answers: dict[int, survey.Answer] = field(default_factory=dict)
    """Survey answers, by position: their ratings are stored with the batch."""


@dataclass(frozen=True)
class _Keys:
    """The dedupe keys of one message, computed once."""

    thread: list[str]
    ticket: str | None
    fingerprint: str | None
    signature: Signature
    people: list[str] = field(default_factory=list)
    """The sender's identity keys, its own first, then those of the person it is linked to."""

    @property
    def sender(self) -> str | None:
        return self.people[0] if self.people else None


def file_messages(
    conn: sa.Connection,
    items: Sequence[tuple[int, NormalizedMessage]],
    settings: Any,
    now: datetime,
) -> list[Filed]:
    """File ``(raw_id, message)`` pairs; one Filed per pair, in order."""
    if not items:
        return []
    people = dedupe.identify(conn, items, now, settings.region)
    keys = [
        _keys(message, settings.ticket_prefix, who)
        for (_, message), who in zip(items, people, strict=True)
    ]
    plan = _plan(conn, [m for _, m in items], keys, settings)
    complaint_ids, tickets = _insert_complaints(conn, items, plan, settings, now)
    message_ids = _insert_messages(conn, items, keys, plan, complaint_ids)
    _insert_attachments(conn, items, message_ids, plan, complaint_ids)
    survey.record(conn, items, message_ids, plan.answers, settings, now)
    _enqueue(conn, items, plan, complaint_ids, tickets, message_ids, settings, now)
    _touch(conn, items, plan, complaint_ids, now)
    _record_merges(conn, items, plan, complaint_ids, message_ids, now)
    if settings.clusters:
        new = [
            dedupe.Clustered(
                cid, ticket, items[i][1].received_at, keys[i].signature, frozenset(keys[i].people)
            )
            for i, cid, ticket in zip(plan.new, complaint_ids, tickets, strict=True)
            if not keys[i].signature.empty
        ]
        dedupe.cluster_new(conn, new, settings.cluster_window, settings.related_threshold, now)
    return [_filed(outcome, target, complaint_ids, tickets) for outcome, target in plan.outcomes]


def _filed(outcome: Outcome, target: _Target | None, ids: list[int], tickets: list[str]) -> Filed:
    if target is None:
        return Filed(outcome)
    if target.new_index is not None:
        return Filed(outcome, ids[target.new_index], tickets[target.new_index])
    return Filed(outcome, target.complaint_id, target.ticket)


# -- planning ----------------------------------------------------------------------------------


def _keys(message: NormalizedMessage, prefix: str, people: list[str]) -> _Keys:
    # stored and looked up as stored: an id longer than its column is its sha256, never cut
    thread = [storable_id(i) for i in [message.in_reply_to, *reversed(message.references)] if i]
    pattern = rf"\b({re.escape(prefix)}-\d{{4}}-\d{{6,}})\b"
    match = re.search(pattern, message.subject or "", re.IGNORECASE)
    if match is None and message.channel in ("sms", "whatsapp"):
        match = re.search(pattern, message.body, re.IGNORECASE)  # "ADU-2026-000123 kapan …"
    return _Keys(
        thread,
        match.group(1).upper() if match else None,
        body_fingerprint(message.body),
        dedupe.text_signature(message.display_subject, message.body),
        people,
    )


def _has_content(message: NormalizedMessage) -> bool:
    return bool(message.body.strip() or message.attachments or message.location)


def _plan(
    conn: sa.Connection, batch: list[NormalizedMessage], keys: list[_Keys], settings: Any
) -> _Plan:
    window = settings.same_sender_window
    oldest = min((m.received_at for m in batch), default=None)
    threads = _live(conn, _known_threads(conn, {i for k in keys for i in k.thread}))
    tickets = _live(conn, _known_tickets(conn, {k.ticket for k in keys if k.ticket}))
    recent: dict[str, list[dedupe.Candidate]] = {}
    if oldest is not None and window > timedelta(0):
        recent = dedupe.recent_of(conn, {p for k in keys for p in k.people}, oldest - window)
    answered = _answered(conn, batch, oldest, settings.reply_window)
    pointed = (t.complaint_id for t in (*threads.values(), *tickets.values()))
    surveys = survey.Surveys.load(conn, batch, pointed, settings)
    plan = _Plan()
    local_threads: dict[str, _Target] = {}
    local: dict[str, list[tuple[datetime, Signature, _Target]]] = {}
    for message, key in zip(batch, keys, strict=True):
        if message.is_automatic or not _has_content(message):
            if not _has_content(message):
                message.flags["empty"] = True
            # a bounce is linked to the complaint whose message bounced, when it is known
            bounced = (
                _first(key.thread, local_threads, threads) if message.flags.get("bounce") else None
            )
            plan.outcomes.append((Outcome.IGNORED, bounced))
            plan.why.append((None, None))
            continue
        why: tuple[str | None, float | None] = (None, None)
        target = _first(key.thread, local_threads, threads)
        if _survey_answer(plan, message, surveys, target, tickets.get(key.ticket or "")):
            continue
        if target is not None:
            why = ("thread", None)
        elif key.ticket and key.ticket in tickets:
            target, why = tickets[key.ticket], ("ticket", None)
        else:
            found = _same_sender(message, key, local, recent, window, settings.merge_threshold)
            if found is not None:
                target, why = found[0], ("same_sender", found[1])
            else:
                target = _answer_to(message, answered, settings.reply_window)
                why = ("answer", None) if target is not None else why
        if target is None:
            target = _Target(new_index=len(plan.new))
            plan.new.append(len(plan.outcomes))
            plan.outcomes.append((Outcome.NEW, target))
        else:
            plan.outcomes.append((Outcome.MERGED, target))
        plan.why.append(why)
        local_threads[storable_id(message.message_id or message.external_id)] = target
        if key.sender and not key.signature.empty:
            local.setdefault(key.sender, []).append((message.received_at, key.signature, target))
    return plan


def _survey_answer(
    plan: _Plan,
    message: NormalizedMessage,
    surveys: survey.Surveys,
    thread: _Target | None,
    ticket: _Target | None,
) -> bool:
    """Plan ``message`` as a survey answer when it is one: merged into the complaint it
    rates, or ignored when it cannot be told which (``omnichannel.survey``)."""
    by = "thread" if thread is not None else "ticket" if ticket is not None else None
    pointed = thread or ticket
    answer = surveys.answer(message, pointed.complaint_id if pointed else None, by)
    if answer is None:
        return False
    survey.mark(message, answer)
    plan.answers[len(plan.outcomes)] = answer
    if answer.complaint_id is None:
        plan.outcomes.append((Outcome.IGNORED, None))
        plan.why.append((None, None))
    else:
        plan.outcomes.append((Outcome.MERGED, _Target(answer.complaint_id, answer.ticket)))
        plan.why.append(("survey", None))
    return True


def _first(ids: list[str], *maps: dict[str, _Target]) -> _Target | None:
    for i in ids:
        for mapping in maps:
            if i in mapping:
                return mapping[i]
    return None


def _same_sender(
    message: NormalizedMessage,
    key: _Keys,
    local: dict[str, list[tuple[datetime, Signature, _Target]]],
    recent: dict[str, list[dedupe.Candidate]],
    window: timedelta,
    threshold: float,
) -> tuple[_Target, float] | None:
    """The open complaint of this person, with a message within the window, that this message
    is the same complaint as (the most alike), and the similarity."""
    if key.signature.empty or window <= timedelta(0):
        return None
    found: list[tuple[datetime, Signature, _Target]] = []
    for person_key in key.people:
        found += local.get(person_key, [])
        found += [
            (c.received_at, c.signature, _Target(c.complaint_id, c.ticket))
            for c in recent.get(person_key, [])
        ]
    latest: dict[tuple[Signature, int | None, int | None], tuple[datetime, _Target]] = {}
    for when, sig, target in found:  # each text of each complaint once, its latest message
        if abs(message.received_at - when) > window:
            continue
        slot = (sig, target.complaint_id, target.new_index)
        if slot not in latest or latest[slot][0] < when:
            latest[slot] = (when, target)
    best: tuple[float, datetime, _Target] | None = None
    for (sig, _, _), (when, target) in sorted(latest.items(), key=lambda i: i[1][0])[
        -SAME_SENDER_CANDIDATES:
    ]:
        if sig != key.signature and conflicting(key.signature, sig):
            continue
        result = compare(key.signature, sig) if sig != key.signature else None
        score = 1.0 if result is None else result.score
        if (result is None or same_complaint(result, threshold)) and (
            best is None or (score, when) > (best[0], best[1])
        ):
            best = (score, when, target)
    return (best[2], best[0]) if best else None


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    ordered = sorted(values)
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start : start + CHUNK]


def _known_threads(conn: sa.Connection, ids: set[str]) -> dict[str, _Target]:
    found: dict[str, _Target] = {}
    for chunk in _chunks(ids):
        for statement in (_OUR_THREADS, _THREADS):  # a message of the citizen's wins
            rows = _fetch_in(conn, statement, chunk)
            found.update({message_id: _Target(cid, ticket) for message_id, cid, ticket in rows})
    return found


_MERGED_INTO = sa.select(complaints.c.id, complaints.c.merged_into, complaints.c.ticket).where(
    complaints.c.id.in_(_IN), complaints.c.merged_into.is_not(None)
)
_TICKET_OF = sa.select(complaints.c.id, complaints.c.ticket).where(complaints.c.id.in_(_IN))


def _live(conn: sa.Connection, found: dict[str, _Target]) -> dict[str, _Target]:
    """``found`` with each complaint an operator merged into another replaced by the one it
    was merged into (a citizen quoting the old ticket reaches the complaint the team works)."""
    ids = {t.complaint_id for t in found.values() if t.complaint_id is not None}
    into: dict[int, int] = {}
    for _ in range(16):  # merged into one merged later: follow the chain
        rows = _fetch_in(conn, _MERGED_INTO, sorted(ids - set(into))) if ids else []
        if not rows:
            break
        into.update({cid: target for cid, target, _ in rows})
        ids = {target for _, target, _ in rows}
    if not into:
        return found

    def final(cid: int) -> int:
        for _ in range(16):
            if cid not in into:
                break
            cid = into[cid]
        return cid

    finals = {cid: final(cid) for cid in into}
    tickets = dict(_fetch_in(conn, _TICKET_OF, sorted(set(finals.values()))))
    return {
        key: _Target(finals[t.complaint_id], tickets[finals[t.complaint_id]])
        if t.complaint_id in finals
        else t
        for key, t in found.items()
    }


def _answerable_phone(message: NormalizedMessage) -> str | None:
    phone = message.sender.phone
    if message.channel in ("sms", "whatsapp") and phone and _PHONE.fullmatch(phone):
        return phone
    return None


def _answered(
    conn: sa.Connection, batch: list[NormalizedMessage], oldest: datetime | None, window: timedelta
) -> dict[str, list[tuple[datetime, _Target]]]:
    phones = {p for p in map(_answerable_phone, batch) if p}
    found: dict[str, list[tuple[datetime, _Target]]] = {}
    if not phones or oldest is None or window <= timedelta(0):
        return found
    for chunk in _chunks(phones):
        for to, sent_at, cid, ticket in _fetch_in(conn, _ANSWERED, chunk, since=oldest - window):
            found.setdefault(to, []).append((sent_at, _Target(cid, ticket)))
    return found


def _answer_to(
    message: NormalizedMessage,
    answered: dict[str, list[tuple[datetime, _Target]]],
    window: timedelta,
) -> _Target | None:
    """The complaint whose team last answered this sender, within the window, before this
    message: an SMS carries no thread, so the citizen's next message is taken as the answer."""
    phone = _answerable_phone(message)
    if phone is None:
        return None
    recent = [
        (when, target)
        for when, target in answered.get(phone, [])
        if message.received_at - window <= when <= message.received_at
    ]
    return max(recent, key=lambda item: item[0])[1] if recent else None


def _known_tickets(conn: sa.Connection, tickets: set[str | None]) -> dict[str, _Target]:
    found: dict[str, _Target] = {}
    for chunk in _chunks(t for t in tickets if t):
        rows = _fetch_in(conn, _TICKETS, chunk)
        found.update({ticket: _Target(cid, ticket) for ticket, cid in rows})
    return found


# -- writing -----------------------------------------------------------------------------------


def next_tickets(conn: sa.Connection, prefix: str, year: int, count: int) -> list[str]:
    """``count`` consecutive ticket numbers; the counter row lock serializes writers."""
    if count <= 0:
        return []
    params = {"p": prefix, "y": year, "n": count}
    rows = conn.execute(_ADD_TO_COUNTER, params).all()
    last = rows[0][0] if rows else None
    if last is None:  # first ticket of the year: create the counter (race-safe), then count
        insert_ignore(
            conn,
            ticket_counters,
            [{"prefix": prefix, "year": year, "value": 0}],
            ("prefix", "year"),
        )
        last = conn.execute(_ADD_TO_COUNTER, params).scalar_one()
    return [f"{prefix}-{year}-{n:06d}" for n in range(last - count + 1, last + 1)]


def add_working_days(
    start: datetime, days: int, tz: ZoneInfo, holidays: Collection[date] = ()
) -> datetime:
    """``start`` plus ``days`` working days in the office's timezone: Monday to Friday, less
    the ``holidays``."""
    local = start.astimezone(tz)
    while days > 0:
        local += timedelta(days=1)
        if local.weekday() < 5 and local.date() not in holidays:
            days -= 1
    return local.astimezone(UTC)


def _allocate(conn: sa.Connection, years: list[int], prefix: str) -> list[str]:
    tickets: list[str | None] = [None] * len(years)
    for year in sorted(set(years)):
        positions = [i for i, y in enumerate(years) if y == year]
        for position, ticket in zip(
            positions, next_tickets(conn, prefix, year, len(positions)), strict=True
        ):
            tickets[position] = ticket
    return [t for t in tickets if t is not None]


def _insert_complaints(
    conn: sa.Connection,
    items: Sequence[tuple[int, NormalizedMessage]],
    plan: _Plan,
    settings: Any,
    now: datetime,
) -> tuple[list[int], list[str]]:
    if not plan.new:
        return [], []
    opening = [items[i][1] for i in plan.new]
    routes = []
    for message in opening:  # the agency and category of each new complaint
        message.agency, message.category, route = settings.router.route(message)
        routes.append(route)
    years = [m.received_at.astimezone(settings.timezone).year for m in opening]
    tickets = _allocate(conn, years, settings.ticket_prefix)
    rows = []
    for message, ticket, route in zip(opening, tickets, routes, strict=True):
        to, via = reply_route(message, settings) or (None, None)
        rows.append(
            _complaint_row(message, ticket, settings, now)
            | {"route": route, "reply_to": to, "reply_via": via}
        )
    ids = list(conn.execute(_INSERT_COMPLAINTS, rows).scalars())
    return ids, tickets


def _complaint_row(
    message: NormalizedMessage, ticket: str, settings: Any, now: datetime
) -> dict[str, Any]:
    location, sender = message.location, message.sender
    return {
        "ticket": ticket,
        "status": "open",
        "channel": message.channel,
        "connector": message.connector,
        "received_at": message.received_at,
        "updated_at": now,
        "sender_name": sender.name,
        "sender_email": sender.email,
        "sender_phone": sender.phone,
        "sender_handle": sender.handle,
        "subject": message.display_subject or message.subject,
        "body": message.body,
        "language": message.language,
        "location_lat": location.lat if location else None,
        "location_lon": location.lon if location else None,
        "location_address": location.address if location else None,
        "category": message.category,
        "agency": message.agency,
        "due_at": add_working_days(
            message.received_at,
            settings.deadlines(message.category)[0]
            if settings.deadlines
            else settings.verify_working_days,
            settings.timezone,
            settings.holidays,
        ),
        "cluster_id": None,
        "anonymous": message.anonymous,
        "confidential": message.confidential,
    }


def _complaint_of(target: _Target | None, ids: list[int]) -> int | None:
    if target is None:
        return None
    return ids[target.new_index] if target.new_index is not None else target.complaint_id


def _insert_messages(
    conn: sa.Connection,
    items: Sequence[tuple[int, NormalizedMessage]],
    keys: list[_Keys],
    plan: _Plan,
    complaint_ids: list[int],
) -> list[int]:
    rows = [
        _message_row(raw_id, message, key, outcome, _complaint_of(target, complaint_ids))
        | {"merge_reason": reason, "merge_score": score}
        for (raw_id, message), key, (outcome, target), (reason, score) in zip(
            items, keys, plan.outcomes, plan.why, strict=True
        )
    ]
    return list(conn.execute(_INSERT_MESSAGES, rows).scalars())


def _message_row(
    raw_id: int, message: NormalizedMessage, key: _Keys, outcome: Outcome, complaint_id: int | None
) -> dict[str, Any]:
    sender = message.sender
    return {
        "raw_id": raw_id,
        "complaint_id": complaint_id,
        "channel": message.channel,
        "connector": message.connector,
        "external_id": storable_id(message.external_id),
        "received_at": message.received_at,
        "sent_at": message.sent_at,
        "sender_name": sender.name,
        "sender_email": sender.email,
        "sender_phone": sender.phone,
        "sender_handle": sender.handle,
        "sender_key": key.sender,
        "subject": message.subject,
        "body": message.body,
        "text_full": message.text_full,
        "html": message.html,
        "body_hash": key.fingerprint,
        "language": message.language,
        "message_id": storable_id(message.message_id or message.external_id),
        "in_reply_to": storable_id(message.in_reply_to) if message.in_reply_to else None,
        "references": message.references,
        "headers": message.headers,
        "flags": message.flags,
        "location": message.location.model_dump() if message.location else None,
        "outcome": outcome.value,
    }


def _insert_attachments(
    conn: sa.Connection,
    items: Sequence[tuple[int, NormalizedMessage]],
    message_ids: list[int],
    plan: _Plan,
    complaint_ids: list[int],
) -> None:
    rows = []
    for (_, message), message_id, (_, target) in zip(
        items, message_ids, plan.outcomes, strict=True
    ):
        complaint_id = _complaint_of(target, complaint_ids)
        for position, item in enumerate(message.attachments):
            content = item.content
            rows.append(
                {
                    "message_id": message_id,
                    "complaint_id": complaint_id,
                    "position": position,
                    "filename": item.filename,
                    "content_type": item.content_type,
                    "size": len(content) if content is not None else item.size,
                    "sha256": sha256_hex(content) if content is not None else item.sha256,
                    "content": content,
                    "url": item.url,
                    "status": "pending" if content is None and item.url else "stored",
                }
            )
    _execute(conn, _INSERT_ATTACHMENTS, rows)


def _enqueue(
    conn: sa.Connection,
    items: Sequence[tuple[int, NormalizedMessage]],
    plan: _Plan,
    complaint_ids: list[int],
    tickets: list[str],
    message_ids: list[int],
    settings: Any,
    now: datetime,
) -> None:
    queue, out = [], []
    for index, position in enumerate(plan.new):
        message, complaint_id = items[position][1], complaint_ids[index]
        queue.append(
            {
                "complaint_id": complaint_id,
                "agency": message.agency,
                "status": "pending",
                "claimed_by": None,
                "lease_until": None,
                "created_at": now,
                "updated_at": now,
            }
        )
        route = reply_route(message, settings)
        if settings.acknowledgements and route is not None:
            # a reply that may carry it inline (TwiML) has the first chance at it
            held = message.connector in settings.inline_ack
            out.append(
                outbox_row(
                    complaint_id,
                    "acknowledgement",
                    route[0],
                    f"ack-{complaint_id}",
                    {"ticket": tickets[index], "via": route[1]},
                    now,
                    due=now + settings.inline_hold if held else now,
                    message_id=message_ids[position],
                )
            )
        for spec in settings.forwarders:
            if spec.wants("complaint.created", message.agency):
                out.append(
                    outbox_row(
                        complaint_id,
                        "forward",
                        spec.name,
                        f"fwd-{spec.name}-c{complaint_id}",
                        {"event": "complaint.created", "at": format_utc(now)},
                        now,
                    )
                )
    _execute(conn, _INSERT_QUEUE_ITEMS, queue)
    _execute(conn, _INSERT_OUTBOX, out)


def outbox_row(
    complaint_id: int,
    kind: str,
    target: str,
    delivery_id: str,
    payload: dict[str, Any],
    now: datetime,
    *,
    due: datetime | None = None,
    message_id: int | None = None,
) -> dict[str, Any]:
    """An outbox row to insert: a delivery, pending from ``due`` (default ``now``)."""
    return {
        "complaint_id": complaint_id,
        "message_id": message_id,
        "kind": kind,
        "target": target,
        "delivery_id": delivery_id,
        "payload": payload,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": due or now,
        "last_error": None,
        "created_at": now,
        "updated_at": now,
        "lease_until": None,
        "sent_at": None,
        "provider_id": None,
    }


_PHONE = re.compile(r"\+[1-9]\d{7,14}")
"""A phone that can be answered: E.164, eight digits or more (not a short code)."""
_NO_REPLY = re.compile(
    r"^(no[-_]?reply|do[-_]?not[-_]?reply|mailer-daemon|postmaster|bounces?|notifications?)([+._-].*)?@",
    re.IGNORECASE,
)
"""Mailboxes nobody reads, or that answer by themselves."""
_EMAIL = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")


def reply_route(message: NormalizedMessage, settings: Any) -> tuple[str, str] | None:
    """Where answers to the citizen go, and how: ``(address, "smtp" | connector)``; None for
    an automatic message (auto-reply, bounce, a status report), an operator's or a short
    code's, an anonymous complaint (unless the citizen asked to be answered), or a channel
    nothing here can answer on."""
    flags = message.flags
    if message.is_automatic or flags.get("auto_reply_suspect") or flags.get("bounce"):
        return None  # never answer what may be an automatic reply (mail loops)
    if message.anonymous and not flags.get("contact_ok"):
        return None
    email = message.sender.email
    email = email if email and _EMAIL.fullmatch(email) and not _NO_REPLY.match(email) else None
    phone = message.sender.phone if message.sender.phone else None
    phone = phone if phone and _PHONE.fullmatch(phone) else None
    if message.channel == "email":
        return (email, "smtp") if email and settings.smtp else None
    if message.channel in ("sms", "whatsapp"):
        if phone and message.connector in settings.senders:
            return phone, message.connector
        if phone and message.channel == "sms" and settings.sms_via:
            return phone, settings.sms_via
        return None
    handle = message.sender.handle
    if message.channel not in ("email", "web") and handle and message.connector in settings.senders:
        return handle, message.connector  # a channel of its own that sends (a chat bot)
    if email and settings.smtp:  # web and others: the contact the form gave
        return email, "smtp"
    if phone and settings.sms_via:
        return phone, settings.sms_via
    return None


def _touch(
    conn: sa.Connection,
    items: Sequence[tuple[int, NormalizedMessage]],
    plan: _Plan,
    complaint_ids: list[int],
    now: datetime,
) -> None:
    """Complaints that messages joined are updated now; a message asking for anonymity or
    confidentiality (``#RAHASIA`` in a follow-up) makes its complaint so — never the reverse."""
    merged: dict[int, tuple[bool, bool]] = {}
    for (outcome, target), (_, message) in zip(plan.outcomes, items, strict=True):
        cid = _complaint_of(target, complaint_ids) if outcome is Outcome.MERGED else None
        if cid is not None:
            anon, conf = merged.get(cid, (False, False))
            merged[cid] = (anon or message.anonymous, conf or message.confidential)
    rows = [
        {"cid": cid, "now": now, "anon": anon, "conf": conf}
        for cid, (anon, conf) in sorted(merged.items())
    ]
    _execute(conn, _TOUCH_COMPLAINT, rows)


def _record_merges(
    conn: sa.Connection,
    items: Sequence[tuple[int, NormalizedMessage]],
    plan: _Plan,
    complaint_ids: list[int],
    message_ids: list[int],
    now: datetime,
) -> None:
    """A complaint event for each same-sender merge: which message, and the similarity."""
    rows = []
    for (_, message), message_id, (_, target), (reason, score) in zip(
        items, message_ids, plan.outcomes, plan.why, strict=True
    ):
        complaint_id = _complaint_of(target, complaint_ids)
        if reason != "same_sender" or complaint_id is None:
            continue
        note = (
            f"message {message_id} ({message.channel}) merged: the same complaint again from "
            f"the same sender, similarity {score:.2f}"
        )
        rows.append(
            {
                "complaint_id": complaint_id,
                "at": now,
                "actor": "dedupe",
                "kind": "merged",
                "from_status": None,
                "to_status": None,
                "note": note,
            }
        )
    if rows:
        audit.append_events(conn, conn.execute(_INSERT_EVENTS, rows).scalars().all(), rows)


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data`` (raw payloads, attachment contents)."""
    return hashlib.sha256(data).hexdigest()
