"""The integrated team's queue: claim, assign, comment, resolve, close, reject, reopen.

States: ``open → assigned → in_progress → resolved → closed``, and ``rejected`` (with a reason);
``reopen`` brings a resolved, closed or rejected complaint back to ``open``. Every change is an
append-only row of ``complaint_events`` (who, when, from, to, note), in the transaction that
makes it.

``claim`` takes the most urgent complaint (earliest ``due_at``) that is not closed, resolved or
rejected and whose lease is free or expired, and leases it to a team member: on PostgreSQL with
``FOR UPDATE SKIP LOCKED``, so concurrent claims never return the same complaint; on SQLite the
claim is one write transaction. An expired lease makes the complaint claimable again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from omnichannel import audit, queries
from omnichannel.errors import QueueError
from omnichannel.schema import Complaint, Sender
from omnichannel.store import Store
from omnichannel.store.tables import complaint_events, complaints, queue_items

__all__ = ["ACTIVE", "Queue", "QueueError", "QueueEvent", "QueueRow"]

ACTIVE = ("open", "assigned", "in_progress")
"""The states a complaint is worked in (claimable, overdue when past ``due_at``)."""
_FROM: dict[str, tuple[str, ...]] = {
    "assigned": ACTIVE,
    "in_progress": ACTIVE,
    "resolved": ACTIVE,
    "rejected": ACTIVE,
    "closed": ("resolved", "rejected"),
    "open": ("resolved", "closed", "rejected"),
}
"""For each state, the states a complaint may come to it from."""


@dataclass(frozen=True)
class QueueEvent:
    """One recorded move, as the outbound side sees it (forwards, notifications, replies)."""

    complaint_id: int
    event_id: int
    kind: str
    from_status: str
    to_status: str
    note: str | None
    actor: str
    at: datetime


Planner = Callable[[sa.Connection, QueueEvent], None]
"""Called in the transaction of each event, to queue what it sends (the outbox rows)."""
FollowUp = Callable[[str | None, datetime], datetime]
"""When a complaint of a category assigned to an agency at a time is due."""


@dataclass(frozen=True)
class QueueRow:
    """One complaint as ``queue list`` shows it (``as_json`` is the stable machine form)."""

    id: int
    ticket: str
    status: str
    channel: str
    agency: str | None
    category: str | None
    received_at: datetime
    due_at: datetime | None
    claimed_by: str | None
    lease_until: datetime | None
    assignee: str | None
    subject: str | None
    cluster_id: str | None
    overdue: bool
    anonymous: bool = False
    confidential: bool = False
    sender: Sender = field(default_factory=Sender)
    """Who complained, as the team sees it: a confidential complaint's sender is shown (to
    the team only), an anonymous one's never."""

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.__dict__)
        data["sender"] = self.sender.model_dump(mode="json")
        for key in ("received_at", "due_at", "lease_until"):
            value = data[key]
            data[key] = value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None
        return data


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Queue:
    """The team queue of one store (``inbox.queue``)."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], datetime] = _utcnow,
        planner: Planner | None = None,
        follow_up: FollowUp | None = None,
    ) -> None:
        self.store = store
        self._clock = clock
        self._planner = planner
        self._follow_up = follow_up

    # -- claiming ----------------------------------------------------------------------------

    def claim(
        self,
        worker: str,
        *,
        agency: str | None = None,
        lease: timedelta = timedelta(minutes=30),
    ) -> Complaint | None:
        """Lease the most urgent free complaint (of ``agency``) to ``worker``; None when none
        is left. It moves to ``in_progress``."""
        now = self._clock()
        with self.store.transaction() as conn:
            query = (
                sa.select(complaints.c.id, complaints.c.status)
                .join(queue_items, queue_items.c.complaint_id == complaints.c.id)
                .where(
                    complaints.c.status.in_(ACTIVE),
                    sa.or_(queue_items.c.lease_until.is_(None), queue_items.c.lease_until < now),
                )
                .order_by(complaints.c.due_at, complaints.c.id)
                .limit(1)
            )
            if agency is not None:
                query = query.where(complaints.c.agency == agency)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True, of=queue_items)
            found = conn.execute(query).first()
            if found is None:
                return None
            complaint_id, status = found
            conn.execute(
                sa.update(queue_items)
                .where(queue_items.c.complaint_id == complaint_id)
                .values(claimed_by=worker, lease_until=now + lease, updated_at=now)
            )
            self._move(conn, complaint_id, status, "in_progress", worker, "claimed", None, now)
            return queries.complaint(conn, complaint_id, team=True)

    # -- transitions ----------------------------------------------------------------------------

    def assign(
        self, key: int | str, *, actor: str, agency: str | None = None, person: str | None = None
    ) -> Complaint:
        """Assign to an agency and/or a person (``assigned``)."""
        if agency is None and person is None:
            raise QueueError("assign needs an agency, a person or both")
        note = ", ".join(f"{k} {v}" for k, v in (("agency", agency), ("person", person)) if v)

        def change(conn: sa.Connection, complaint_id: int, now: datetime) -> None:
            if agency is not None:
                values: dict[str, Any] = {"agency": agency}
                if self._follow_up is not None:  # the agency's own deadline starts now
                    category = conn.execute(
                        sa.select(complaints.c.category).where(complaints.c.id == complaint_id)
                    ).scalar_one()
                    values["due_at"] = self._follow_up(category, now)
                conn.execute(
                    sa.update(complaints).where(complaints.c.id == complaint_id).values(**values)
                )
            item: dict[str, Any] = {"updated_at": now}
            if agency is not None:
                item["agency"] = agency
            if person is not None:
                item["assignee"] = person
            conn.execute(
                sa.update(queue_items)
                .where(queue_items.c.complaint_id == complaint_id)
                .values(**item)
            )

        return self._transition(key, "assigned", actor, "assigned", note, change)

    def comment(self, key: int | str, note: str, *, actor: str) -> Complaint:
        """A note on the complaint's record; its state does not change."""
        if not note.strip():
            raise QueueError("a comment needs a text")
        now = self._clock()
        with self.store.transaction() as conn:
            complaint_id, status = self._find(conn, key, lock=True)
            self._event(conn, complaint_id, actor, "comment", status, status, note, now, plan=False)
            return self._loaded(conn, complaint_id)

    def reply(self, key: int | str, text: str, *, actor: str) -> Complaint:
        """Answer the citizen on the complaint's channel (through the outbox); recorded as an
        event, and as an outbound message of the complaint once sent. The citizen's answer to
        it joins the complaint again."""
        if not text.strip():
            raise QueueError("a reply needs a text")
        now = self._clock()
        with self.store.transaction() as conn:
            complaint_id, status = self._find(conn, key, lock=True)
            reply_to = conn.execute(
                sa.select(complaints.c.reply_to).where(complaints.c.id == complaint_id)
            ).scalar_one()
            if reply_to is None:
                raise QueueError(
                    f"complaint {key} cannot be answered: it is anonymous, came from an "
                    "automatic sender, or has no address this deployment can send to"
                )
            self._event(conn, complaint_id, actor, "reply", status, status, text, now)
            return self._loaded(conn, complaint_id)

    def resolve(self, key: int | str, *, actor: str, note: str | None = None) -> Complaint:
        return self._transition(key, "resolved", actor, "resolved", note, _release)

    def close(self, key: int | str, *, actor: str, note: str | None = None) -> Complaint:
        return self._transition(key, "closed", actor, "closed", note, _release)

    def reject(self, key: int | str, *, actor: str, reason: str) -> Complaint:
        """Rejected, with the reason (required) in its event."""
        if not reason.strip():
            raise QueueError("a rejection needs a reason")
        return self._transition(key, "rejected", actor, "rejected", reason, _release)

    def reopen(self, key: int | str, *, actor: str, note: str | None = None) -> Complaint:
        return self._transition(key, "open", actor, "reopened", note, _release)

    def set_privacy(
        self,
        key: int | str,
        *,
        actor: str,
        reason: str,
        anonymous: bool | None = None,
        confidential: bool | None = None,
    ) -> Complaint:
        """An operator makes a complaint anonymous (for good: the team never sees who again)
        or confidential (the team sees the sender; exports and forwards do not), or no longer
        confidential; recorded as a ``privacy`` event with the reason."""
        if anonymous is False:
            raise QueueError("an anonymous complaint stays anonymous")
        if not reason.strip():
            raise QueueError("a privacy change needs a reason")
        changes = {
            name: value
            for name, value in (("anonymous", anonymous), ("confidential", confidential))
            if value is not None
        }
        if not changes:
            raise QueueError("say --anonymous, --confidential or --not-confidential")
        now = self._clock()
        with self.store.transaction() as conn:
            complaint_id, status = self._find(conn, key, lock=True)
            conn.execute(
                sa.update(complaints)
                .where(complaints.c.id == complaint_id)
                .values(**changes, updated_at=now)
            )
            what = ", ".join(f"{k} {'on' if v else 'off'}" for k, v in changes.items())
            note = f"{what}: {reason}"
            self._event(conn, complaint_id, actor, "privacy", status, status, note, now, plan=False)
            return self._loaded(conn, complaint_id)

    def record_disclosure(self, complaint_ids: Sequence[int], *, actor: str, reason: str) -> None:
        """Record that confidential complaints' senders were given out (an export asked for
        with ``--include-confidential``): one ``disclosed`` event each, who and why."""
        if not reason.strip() or not actor.strip():
            raise QueueError("a disclosure needs an actor and a reason")
        now = self._clock()
        with self.store.transaction() as conn:
            for complaint_id in complaint_ids:
                status = conn.execute(
                    sa.select(complaints.c.status).where(complaints.c.id == complaint_id)
                ).scalar_one()
                note = f"sender disclosed in an export: {reason}"
                self._event(
                    conn, complaint_id, actor, "disclosed", status, status, note, now, plan=False
                )

    def events(self, key: int | str) -> list[dict[str, Any]]:
        """The complaint's story, oldest first: ``{at, actor, kind, from, to, note}``."""
        with self.store.transaction() as conn:
            complaint_id, _ = self._find(conn, key)
            return _events(conn, complaint_id)

    # -- listing ------------------------------------------------------------------------------

    def list(
        self,
        *,
        status: str | None = None,
        agency: str | None = None,
        channel: str | None = None,
        overdue: bool = False,
        since: datetime | None = None,
        until: datetime | None = None,
        cluster: str | None = None,
        limit: int = 50,
    ) -> tuple[list[QueueRow], bool]:
        """Complaints, newest first, and whether more match than ``limit``."""
        now = self._clock()
        query = (
            sa.select(
                complaints.c.id,
                complaints.c.ticket,
                complaints.c.status,
                complaints.c.channel,
                complaints.c.agency,
                complaints.c.category,
                complaints.c.received_at,
                complaints.c.due_at,
                queue_items.c.claimed_by,
                queue_items.c.lease_until,
                queue_items.c.assignee,
                complaints.c.subject,
                complaints.c.cluster_id,
                *_SENDER_COLUMNS,
            )
            .outerjoin(queue_items, queue_items.c.complaint_id == complaints.c.id)
            .order_by(complaints.c.received_at.desc(), complaints.c.id.desc())
            .limit(limit + 1)
        )
        for column, value in (
            (complaints.c.status, status),
            (complaints.c.agency, agency),
            (complaints.c.channel, channel),
            (complaints.c.cluster_id, cluster),
        ):
            if value is not None:
                query = query.where(column == value)
        if overdue:
            query = query.where(complaints.c.status.in_(ACTIVE), complaints.c.due_at < now)
        if since is not None:
            query = query.where(complaints.c.received_at >= since)
        if until is not None:
            query = query.where(complaints.c.received_at < until)
        with self.store.transaction() as conn:
            rows = list(conn.execute(query))
        items = [
            QueueRow(
                **{name: row[i] for i, name in enumerate(_ROW_FIELDS)},
                overdue=bool(row[2] in ACTIVE and row[7] is not None and row[7] < now),
                **_team_sender(row[len(_ROW_FIELDS) :]),
            )
            for row in rows[:limit]
        ]
        return items, len(rows) > limit

    # -- the machinery ------------------------------------------------------------------------

    def _transition(
        self,
        key: int | str,
        to: str,
        actor: str,
        kind: str,
        note: str | None,
        change: Callable[[sa.Connection, int, datetime], None],
    ) -> Complaint:
        now = self._clock()
        with self.store.transaction() as conn:
            complaint_id, status = self._find(conn, key, lock=True)
            if status not in _FROM[to] and not (kind == "assigned" and status == "assigned"):
                raise QueueError(f"complaint {key} is {status}: it cannot be {kind}")
            change(conn, complaint_id, now)
            self._move(conn, complaint_id, status, to, actor, kind, note, now)
            return self._loaded(conn, complaint_id)

    def _move(
        self,
        conn: sa.Connection,
        complaint_id: int,
        status: str,
        to: str,
        actor: str,
        kind: str,
        note: str | None,
        now: datetime,
    ) -> None:
        conn.execute(
            sa.update(complaints)
            .where(complaints.c.id == complaint_id)
            .values(status=to, updated_at=now)
        )
        conn.execute(
            sa.update(queue_items)
            .where(queue_items.c.complaint_id == complaint_id)
            .values(status=to, updated_at=now)
        )
        self._event(conn, complaint_id, actor, kind, status, to, note, now)

    def _event(
        self,
        conn: sa.Connection,
        complaint_id: int,
        actor: str,
        kind: str,
        status: str,
        to: str,
        note: str | None,
        now: datetime,
        *,
        plan: bool = True,
    ) -> None:
        row = {
            "complaint_id": complaint_id,
            "at": now,
            "actor": actor[:128],
            "kind": kind,
            "from_status": status,
            "to_status": to,
            "note": note,
        }
        key = conn.execute(sa.insert(complaint_events).values(row)).inserted_primary_key
        assert key is not None
        event_id = int(key[0])
        audit.append_events(conn, [event_id], [row])
        if plan and self._planner is not None:
            event = QueueEvent(complaint_id, event_id, kind, status, to, note, actor[:128], now)
            self._planner(conn, event)

    def _find(self, conn: sa.Connection, key: int | str, *, lock: bool = False) -> tuple[int, str]:
        query = sa.select(complaints.c.id, complaints.c.status)
        text = str(key).strip()
        if text.isdecimal() and len(text) > 18:
            raise QueueError(f"no complaint {text[:40]}")
        if text.isdecimal():
            query = query.where(complaints.c.id == int(text))
        else:
            query = query.where(complaints.c.ticket == text.upper())
        if lock and conn.dialect.name == "postgresql":
            query = query.with_for_update()
        found = conn.execute(query).first()
        if found is None:
            raise QueueError(f"no complaint {key!s}")
        return int(found[0]), str(found[1])

    @staticmethod
    def _loaded(conn: sa.Connection, complaint_id: int) -> Complaint:
        found = queries.complaint(conn, complaint_id, team=True)
        assert found is not None
        return found


_ROW_FIELDS = (
    "id",
    "ticket",
    "status",
    "channel",
    "agency",
    "category",
    "received_at",
    "due_at",
    "claimed_by",
    "lease_until",
    "assignee",
    "subject",
    "cluster_id",
)


_SENDER_COLUMNS = (
    complaints.c.anonymous,
    complaints.c.confidential,
    complaints.c.sender_name,
    complaints.c.sender_email,
    complaints.c.sender_phone,
    complaints.c.sender_handle,
)


def _team_sender(values: Any) -> dict[str, Any]:
    """The privacy flags and the sender the team may see (none for an anonymous complaint)."""
    anonymous, confidential, name, email, phone, handle = values
    sender = Sender() if anonymous else Sender(name=name, email=email, phone=phone, handle=handle)
    return {"anonymous": bool(anonymous), "confidential": bool(confidential), "sender": sender}


def _release(conn: sa.Connection, complaint_id: int, now: datetime) -> None:
    """The complaint is no one's to work on now: its lease ends."""
    conn.execute(
        sa.update(queue_items)
        .where(queue_items.c.complaint_id == complaint_id)
        .values(claimed_by=None, lease_until=None, updated_at=now)
    )


def _events(conn: sa.Connection, complaint_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(
            complaint_events.c.at,
            complaint_events.c.actor,
            complaint_events.c.kind,
            complaint_events.c.from_status,
            complaint_events.c.to_status,
            complaint_events.c.note,
        )
        .where(complaint_events.c.complaint_id == complaint_id)
        .order_by(complaint_events.c.id)
    )
    return [
        {"at": at, "actor": actor, "kind": kind, "from": old, "to": new, "note": note}
        for at, actor, kind, old, new, note in rows
    ]
