"""Satisfaction surveys: asked when a complaint is resolved, answered on any channel, stored
as the complaint's rating — never filed as a complaint of their own.

**Asking** (``[survey]``): resolving a complaint queues, in the transaction of its event, an
outbox row ``survey`` to where the complaint is answered (``reply_to`` by ``reply_via``), due
``delay_hours`` later (the notification of the resolution goes first; a complaint reopened
meanwhile is asked nothing), and a ``survey.reminder`` ``reminder_days`` after it, which is
sent only when the survey went out and no answer came. One survey per complaint (delivery ids
``survey-<id>`` and ``survey-reminder-<id>``), none to an anonymous complaint (even one that
asked to be answered), none when nothing can answer it or ``[acknowledgements]`` are off.
Both count towards the daily limit of automatic messages.

**Answering**: a message is a survey answer when it reads as a rating
(:func:`normalizer.survey.parse_rating`) and it answers a survey sent within ``window_days``
of a complaint still resolved or closed — by its thread (an e-mail replying to the survey or
to any mail of the complaint, a WhatsApp reply quoting one, a list row picked), by the ticket
it quotes (from the address the survey went to), or else because the survey of exactly one
complaint of its sender's address is waiting for an answer (or, none waiting, exactly one
was answered: a correction). It is ``merged`` into that complaint (``merge_reason`` survey;
the complaint is not reopened) and its score is the complaint's rating (``ratings``: the
latest answer wins), recorded as a ``rated`` event. A text that names two scores joins the
complaint as a message with the flag ``survey_unclear`` and no rating. When the sender has
several surveys waiting and nothing points at one, nothing is guessed: the message is
``ignored`` with the flag ``survey_ambiguous`` (its raw payload kept, as always), and the
sender is asked once, by a ``survey.ambiguous`` message, to send the rating again with the
ticket. A message that is no rating files as any other.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from normalizer.survey import Rating, parse_rating
from omnichannel import audit
from omnichannel.schema import NormalizedMessage
from omnichannel.store import insert_ignore
from omnichannel.store.tables import (
    complaint_events,
    complaints,
    outbound_messages,
    outbox,
    ratings,
)

if TYPE_CHECKING:
    from omnichannel.config import SurveyConfig

__all__ = [
    "ANSWERABLE",
    "ASKING",
    "SURVEY_KINDS",
    "Answer",
    "SurveySettings",
    "Surveys",
    "mark",
    "plan",
    "record",
    "settings_of",
    "skip_reason",
]

SURVEY_KINDS = ("survey", "survey.reminder", "survey.ambiguous")
"""Outbox rows of the survey: the question, its reminder, and the request for a ticket."""
ASKING = ("survey", "survey.reminder")
"""What asks for a rating: an answer within the window after one of them counts."""
ANSWERABLE = ("resolved", "closed")
"""A complaint in these states takes a rating (reopened, its survey is void)."""
_CHUNK = 500


@dataclass(frozen=True)
class SurveySettings:
    """What filing and the outbox need of ``[survey]``."""

    enabled: bool = True
    delay: timedelta = timedelta(hours=1)
    window: timedelta = timedelta(days=14)
    reminder: timedelta = timedelta(days=3)
    """After the survey; zero for none."""

    @classmethod
    def from_config(cls, config: SurveyConfig) -> SurveySettings:
        return cls(
            enabled=config.enabled,
            delay=timedelta(hours=config.delay_hours),
            window=timedelta(days=config.window_days),
            reminder=timedelta(days=config.reminder_days),
        )


def settings_of(settings: Any) -> SurveySettings:
    """The survey settings of filing's ``Settings`` (the defaults when it has none)."""
    found = getattr(settings, "survey", None)
    return found if isinstance(found, SurveySettings) else SurveySettings()


# -- asking ------------------------------------------------------------------------------------


def plan(conn: sa.Connection, event: Any, settings: Any, reply_to: str | None, via: str) -> None:
    """Queue the survey of a complaint just resolved (``event``, a ``QueueEvent``) and its
    reminder; a survey not sent yet (skipped: reopened before it was due) is due again, after
    this resolution."""
    options = settings_of(settings)
    if not (options.enabled and settings.acknowledgements and reply_to):
        return
    if event.to_status != "resolved" or event.from_status == event.to_status:
        return
    cid = event.complaint_id
    anonymous = conn.execute(
        sa.select(complaints.c.anonymous).where(complaints.c.id == cid)
    ).scalar_one()
    if anonymous:
        return
    from omnichannel.filing import outbox_row

    due, payload = event.at + options.delay, {"via": via}
    rows = [outbox_row(cid, "survey", reply_to, f"survey-{cid}", payload, event.at, due=due)]
    if options.reminder > timedelta(0):
        reminder = due + options.reminder
        key = f"survey-reminder-{cid}"
        rows.append(
            outbox_row(cid, "survey.reminder", reply_to, key, payload, event.at, due=reminder)
        )
    insert_ignore(conn, outbox, rows, ("delivery_id",))
    for row in rows:  # not sent yet (skipped, or still waiting): due after this resolution
        conn.execute(
            sa.update(outbox)
            .where(
                outbox.c.delivery_id == row["delivery_id"],
                outbox.c.status.in_(("skipped", "pending")),
            )
            .values(
                status="pending",
                attempts=0,
                target=reply_to,
                payload=payload,
                next_attempt_at=row["next_attempt_at"],
                last_error=None,
                updated_at=event.at,
            )
        )


def skip_reason(conn: sa.Connection, kind: str, complaint_id: int | None) -> str | None:
    """Why a survey or its reminder due now is not to be sent (None: send it)."""
    if kind not in ASKING or complaint_id is None:
        return None
    status, anonymous, rated = conn.execute(
        sa.select(complaints.c.status, complaints.c.anonymous, ratings.c.id)
        .outerjoin(ratings, ratings.c.complaint_id == complaints.c.id)
        .where(complaints.c.id == complaint_id)
    ).one()
    if status not in ANSWERABLE:
        return f"the complaint is {status} now"
    if anonymous:
        return "the complaint is anonymous"
    if rated is not None:
        return "the survey is answered"
    if kind == "survey.reminder":
        survey = conn.execute(
            sa.select(outbox.c.status).where(outbox.c.delivery_id == f"survey-{complaint_id}")
        ).scalar()
        if survey not in ("sent", "sent-inline"):
            return "the survey itself was not sent"
    return None


# -- answering ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Asked:
    """A survey message sent: to which complaint, where, when."""

    complaint_id: int
    ticket: str
    address: str
    via: str
    sent_at: datetime
    rated: bool


@dataclass(frozen=True)
class Answer:
    """A message read as a survey answer, and the complaint it answers."""

    rating: Rating
    matched_by: str
    """``thread``, ``ticket`` or ``sender``; ``ambiguous`` when no one complaint is meant."""
    complaint_id: int | None = None
    ticket: str | None = None
    candidates: tuple[_Asked, ...] = ()
    """For an ambiguous answer: the surveys it may answer (the latest of each complaint)."""


class Surveys:
    """The surveys a batch of messages may answer, read at once."""

    def __init__(self, asked: Iterable[_Asked], window: timedelta, prefix: str) -> None:
        asked = list(asked)
        self.window = window
        self.by_address: dict[str, list[_Asked]] = {}
        self.by_complaint: dict[int, list[_Asked]] = {}
        for item in sorted(set(asked), key=lambda a: a.sent_at):
            self.by_address.setdefault(item.address, []).append(item)
            self.by_complaint.setdefault(item.complaint_id, []).append(item)
        self.rated = {a.complaint_id for a in asked if a.rated}
        self._ticket = re.compile(rf"\b{re.escape(prefix)}-\d{{4}}-\d{{6,}}\b", re.IGNORECASE)

    @classmethod
    def load(
        cls,
        conn: sa.Connection,
        batch: Sequence[NormalizedMessage],
        pointed: Iterable[int | None],
        settings: Any,
    ) -> Surveys:
        """The surveys sent within the window to the batch's senders or of the complaints
        its messages point at (thread, ticket)."""
        window = settings_of(settings).window
        asked: list[_Asked] = []
        if batch:
            since = min(m.received_at for m in batch) - window
            addresses = sorted({a for m in batch for a in _addresses(m)})
            ids = sorted({i for i in pointed if i is not None})
            for column, values in ((outbound_messages.c.to_address, addresses), (_CID, ids)):
                for start in range(0, len(values), _CHUNK):
                    chunk = values[start : start + _CHUNK]
                    rows = conn.execute(_asked(column, chunk, since))
                    asked += [_asked_of(row) for row in rows]
        return cls(asked, window, settings.ticket_prefix)

    def answer(
        self, message: NormalizedMessage, pointed: int | None, by: str | None
    ) -> Answer | None:
        """The survey answer ``message`` is, or None. ``by`` says how it points at complaint
        ``pointed`` (``thread``, ``ticket``; ``pointed`` None: a complaint of its own batch),
        None when it points at none."""
        since = message.received_at - self.window
        mine = set(_addresses(message))
        if by is not None:
            asked = [
                a
                for a in self.by_complaint.get(pointed or 0, [])
                if a.sent_at >= since and (by == "thread" or a.address in mine)
            ]
            rating = self.rating(message) if asked else None
            if rating is None:
                return None
            return self._chosen(Answer(rating, by, asked[-1].complaint_id, asked[-1].ticket))
        asked = [a for to in mine for a in self.by_address.get(to, []) if a.sent_at >= since]
        rating = self.rating(message) if asked else None
        if rating is None:
            return None
        waiting = {a.complaint_id: a for a in asked if a.complaint_id not in self.rated}
        pool = waiting or {a.complaint_id: a for a in asked}
        if len(pool) == 1:
            [only] = pool.values()
            return self._chosen(Answer(rating, "sender", only.complaint_id, only.ticket))
        candidates = tuple(sorted(pool.values(), key=lambda a: a.complaint_id))
        return Answer(rating, "ambiguous", candidates=candidates)

    def rating(self, message: NormalizedMessage) -> Rating | None:
        """The rating the message's text gives, its tickets left out."""
        return parse_rating(self._ticket.sub(" ", message.body), strict=True)

    def _chosen(self, answer: Answer) -> Answer:
        if answer.complaint_id is not None and answer.rating.score is not None:
            self.rated.add(answer.complaint_id)
        return answer


_CID = outbound_messages.c.complaint_id


def _asked(column: sa.Column[Any], values: list[Any], since: datetime) -> sa.Select[Any]:
    return (
        sa.select(
            outbound_messages.c.complaint_id,
            complaints.c.ticket,
            outbound_messages.c.to_address,
            outbound_messages.c.via,
            outbound_messages.c.sent_at,
            ratings.c.id.is_not(None),
        )
        .join(complaints, complaints.c.id == outbound_messages.c.complaint_id)
        .outerjoin(ratings, ratings.c.complaint_id == outbound_messages.c.complaint_id)
        .where(
            column.in_(values),
            outbound_messages.c.kind.in_(ASKING),
            outbound_messages.c.sent_at >= since,
            complaints.c.status.in_(ANSWERABLE),
        )
    )


def _asked_of(row: Sequence[Any]) -> _Asked:
    complaint_id, ticket, address, via, sent_at, rated = row
    return _Asked(complaint_id, ticket, address, via, sent_at, bool(rated))


def _addresses(message: NormalizedMessage) -> list[str]:
    sender = message.sender
    return [a for a in (sender.phone, sender.email, sender.handle) if a]


def mark(message: NormalizedMessage, answer: Answer) -> None:
    """Flag an answer the team should look at: it named two scores, or no one complaint."""
    if answer.complaint_id is None:
        message.flags["survey_ambiguous"] = True
        message.flags["survey_tickets"] = [a.ticket for a in answer.candidates]
    elif answer.rating.score is None:
        message.flags["survey_unclear"] = True


# -- recording ---------------------------------------------------------------------------------


def record(
    conn: sa.Connection,
    items: Sequence[tuple[int, NormalizedMessage]],
    message_ids: Sequence[int],
    answers: dict[int, Answer],
    settings: Any,
    now: datetime,
) -> None:
    """Store the ratings of a filed batch (``answers`` by position in it), a ``rated`` event
    for each, and the request for a ticket of each ambiguous answer."""
    rated: dict[int, dict[str, Any]] = {}
    asks = []
    for position, answer in sorted(answers.items()):
        raw_id, message = items[position]
        if answer.complaint_id is not None and answer.rating.score is not None:
            rated[answer.complaint_id] = {  # the latest answer of a batch wins
                "complaint_id": answer.complaint_id,
                "score": answer.rating.score,
                "comment": answer.rating.comment or None,
                "channel": message.channel,
                "matched_by": answer.matched_by,
                "message_id": message_ids[position],
                "raw_id": raw_id,
                "received_at": message.received_at,
            }
        elif answer.candidates:
            asks.append(_ask(answer, now))
    if rated:
        conn.execute(_upsert(conn.dialect.name), list(rated.values()))
        _events(conn, list(rated.values()), now)
    options = settings_of(settings)
    if asks and options.enabled and settings.acknowledgements:
        insert_ignore(conn, outbox, asks, ("delivery_id",))


def _upsert(dialect: str) -> sa.Insert:
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(ratings)
    changed = ("score", "comment", "channel", "matched_by", "message_id", "raw_id", "received_at")
    statement: sa.Insert = insert.on_conflict_do_update(
        index_elements=["complaint_id"], set_={name: insert.excluded[name] for name in changed}
    )
    return statement


def _events(conn: sa.Connection, rows: list[dict[str, Any]], now: datetime) -> None:
    ids = [row["complaint_id"] for row in rows]
    status = dict(
        conn.execute(
            sa.select(complaints.c.id, complaints.c.status).where(complaints.c.id.in_(ids))
        ).all()
    )
    events = [
        {
            "complaint_id": row["complaint_id"],
            "at": now,
            "actor": "survey",
            "kind": "rated",
            "from_status": status[row["complaint_id"]],
            "to_status": status[row["complaint_id"]],
            "note": (
                f"satisfaction {row['score']}/5 (message {row['message_id']}, "
                f"{row['channel']}, by {row['matched_by']})"
            ),
        }
        for row in rows
    ]
    statement = sa.insert(complaint_events).returning(
        complaint_events.c.id, sort_by_parameter_order=True
    )
    audit.append_events(conn, conn.execute(statement, events).scalars().all(), events)


def _ask(answer: Answer, now: datetime) -> dict[str, Any]:
    """The request to send the rating again with the ticket: once per set of complaints, on
    the route of the latest survey, recorded under the latest complaint."""
    from omnichannel.filing import outbox_row

    latest = max(answer.candidates, key=lambda a: (a.sent_at, a.complaint_id))
    ids = ",".join(str(a.complaint_id) for a in answer.candidates)
    key = "survey-ambiguous-" + hashlib.sha256(ids.encode()).hexdigest()[:24]
    tickets = ", ".join(a.ticket for a in answer.candidates)
    payload = {"via": latest.via, "text": tickets}
    return outbox_row(latest.complaint_id, "survey.ambiguous", latest.address, key, payload, now)
