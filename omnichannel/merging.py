"""The operator's hand on dedupe: merge, split, unmerge complaints; link and unlink identities.

Every change is made in one transaction and recorded — who, when, why — as complaint events
(``merged``, ``split``) or identity events (``link``, ``unlink``), and forwarded like any other
status change. ``inbox.dedupe`` is an instance; the CLI's ``complaints merge|split|unmerge``
and ``identities list|link|unlink`` call it.

- ``merge(a, b)``: ``b``'s messages, attachments and what was sent about it join ``a``; ``b``
  keeps its ticket (a citizen who quotes it still reaches ``a``), is ``merged`` and leaves the
  queue.
- ``split(key, messages)``: those messages leave the complaint and become a new complaint
  (a new ticket, the same agency and category, queued); the complaint keeps at least one.
- ``unmerge(message)``: ``split`` of one message.
- ``link(a, b)`` / ``unlink(key)``: identities (``+62…``, ``0812…``, ``name@host``, or keys
  ``tel:``, ``mailto:``, ``wa:``) made one person, or taken out of their person. Filing does
  not link again what an operator unlinked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from normalizer.address import normalize_email
from normalizer.phone import normalize_phone
from normalizer.similarity import bands as band_keys
from omnichannel import dedupe
from omnichannel.errors import DedupeError
from omnichannel.filing import next_tickets, reply_route
from omnichannel.pipeline import Settings
from omnichannel.queue import Queue
from omnichannel.schema import Complaint, NormalizedMessage, Sender
from omnichannel.store.tables import (
    attachments,
    complaints,
    identities,
    identity_events,
    messages,
    outbound_messages,
    outbox,
    queue_items,
    similarity_bands,
)

__all__ = ["Dedupe", "DedupeError", "identity_key"]


def identity_key(text: str, region: str = "ID") -> str:
    """The identity key an operator means: ``tel:+62…`` for a phone in any common form,
    ``mailto:…`` for an e-mail address, or a ``tel:``/``mailto:``/``wa:`` key as given."""
    value = text.strip()
    if len(value) > 320:
        raise DedupeError("an identity is at most 320 characters")
    scheme, _, rest = value.partition(":")
    if scheme in ("tel", "mailto", "wa") and rest:
        value = rest
        if scheme == "wa":
            return "wa:" + rest
    if "@" in value:
        email = normalize_email(value)
        if email is None:
            raise DedupeError(f"not an e-mail address: {text!r}")
        return "mailto:" + email.lower()
    phone = normalize_phone(value, region)
    if phone.e164 is None:
        raise DedupeError(f"not a phone number or e-mail address: {text!r}")
    return "tel:" + phone.e164


class Dedupe:
    """Merges, splits and identity links made by people (``inbox.dedupe``)."""

    def __init__(
        self,
        queue: Queue,
        *,
        settings: Callable[[], Settings] = Settings,
        region: str = "ID",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.queue = queue
        self.store = queue.store
        self._settings = settings
        self._region = region
        self._clock = clock or queue._clock  # the queue's clock unless told otherwise

    # -- complaints -------------------------------------------------------------------------

    def merge(
        self, into: int | str, other: int | str, *, actor: str, reason: str | None = None
    ) -> Complaint:
        """Merge complaint ``other`` into ``into``; the complaint merged into."""
        now = self._clock()
        with self.store.transaction() as conn:
            target, _ = self.queue._find(conn, into)
            source, _ = self.queue._find(conn, other)
            for complaint_id in sorted({target, source}):  # one lock order: no deadlock
                self.queue._find(conn, complaint_id, lock=True)
            target_status = self.queue._find(conn, target)[1]
            source_status = self.queue._find(conn, source)[1]
            if target == source:
                raise DedupeError("a complaint cannot be merged into itself")
            for named, status in ((into, target_status), (other, source_status)):
                if status == "merged":
                    raise DedupeError(f"complaint {named} is merged already")
            tickets = dict(
                conn.execute(
                    sa.select(complaints.c.id, complaints.c.ticket).where(
                        complaints.c.id.in_((target, source))
                    )
                ).all()
            )
            for table in (messages, attachments, outbound_messages):
                conn.execute(
                    sa.update(table)
                    .where(table.c.complaint_id == source)
                    .values(complaint_id=target)
                )
            # what is still to be sent to the citizen is recorded where the team works; the
            # forwards of the merged complaint stay its own
            conn.execute(
                sa.update(outbox)
                .where(
                    outbox.c.complaint_id == source,
                    outbox.c.kind != "forward",
                    outbox.c.status != "sent",
                )
                .values(complaint_id=target)
            )
            old_cluster = conn.execute(
                sa.select(complaints.c.cluster_id).where(complaints.c.id == source)
            ).scalar_one()
            conn.execute(
                sa.update(complaints)
                .where(complaints.c.id == source)
                .values(merged_into=target, cluster_id=None)
            )
            conn.execute(
                sa.update(queue_items)
                .where(queue_items.c.complaint_id == source)
                .values(claimed_by=None, lease_until=None)
            )
            why = f": {reason}" if reason else ""
            self.queue._move(
                conn,
                source,
                source_status,
                "merged",
                actor,
                "merged",
                f"merged into {tickets[target]}{why}",
                now,
            )
            self.queue._event(
                conn,
                target,
                actor,
                "merged",
                target_status,
                target_status,
                f"{tickets[source]} merged into this{why}",
                now,
                plan=False,
            )
            conn.execute(
                sa.update(complaints).where(complaints.c.id == target).values(updated_at=now)
            )
            self._resize(conn, [target], now)
            if old_cluster:
                dedupe.resize(conn, [old_cluster], now)
            return self.queue._loaded(conn, target)

    def split(
        self,
        key: int | str,
        message_ids: Sequence[int],
        *,
        actor: str,
        reason: str | None = None,
    ) -> Complaint:
        """Take ``message_ids`` out of complaint ``key`` into a new complaint; the new one."""
        now = self._clock()
        wanted = sorted(set(message_ids))
        if not wanted:
            raise DedupeError("name at least one message to split off")
        with self.store.transaction() as conn:
            complaint_id, status = self.queue._find(conn, key, lock=True)
            if status == "merged":
                raise DedupeError(f"complaint {key} is merged: split the one it was merged into")
            rows = conn.execute(
                sa.select(messages)
                .where(messages.c.complaint_id == complaint_id)
                .order_by(messages.c.received_at, messages.c.id)
            ).all()
            ids = [row.id for row in rows]
            missing = [m for m in wanted if m not in ids]
            if missing:
                raise DedupeError(f"message {missing[0]} is not a message of complaint {key}")
            if len(wanted) == len(ids):
                raise DedupeError("a complaint keeps at least one of its messages")
            moved = [row for row in rows if row.id in wanted]
            new_id, ticket = self._open(conn, complaint_id, moved[0], now)
            conn.execute(
                sa.update(messages)
                .where(messages.c.id.in_(wanted))
                .values(complaint_id=new_id, merge_reason="split", merge_score=None)
            )
            conn.execute(
                sa.update(attachments)
                .where(attachments.c.message_id.in_(wanted))
                .values(complaint_id=new_id)
            )
            if rows[0].id in wanted:  # the complaint now opens with its first message left
                first = next(row for row in rows if row.id not in wanted)
                original = conn.execute(
                    sa.select(complaints).where(complaints.c.id == complaint_id)
                ).one()
                conn.execute(
                    sa.update(complaints)
                    .where(complaints.c.id == complaint_id)
                    .values(self._opener(first, original))
                )
            old_ticket = conn.execute(
                sa.select(complaints.c.ticket).where(complaints.c.id == complaint_id)
            ).scalar_one()
            why = f": {reason}" if reason else ""
            listed = ", ".join(str(m) for m in wanted)
            self.queue._event(
                conn,
                complaint_id,
                actor,
                "split",
                status,
                status,
                f"messages {listed} split off into {ticket}{why}",
                now,
                plan=False,
            )
            self.queue._event(
                conn,
                new_id,
                actor,
                "split",
                "open",
                "open",
                f"split off {old_ticket} (messages {listed}){why}",
                now,
            )
            return self.queue._loaded(conn, new_id)

    def unmerge(self, message_id: int, *, actor: str, reason: str | None = None) -> Complaint:
        """Take one message out of its complaint into a new complaint; the new one."""
        with self.store.transaction() as conn:
            found = conn.execute(
                sa.select(messages.c.complaint_id).where(messages.c.id == message_id)
            ).first()
        if found is None or found[0] is None:
            raise DedupeError(f"no message {message_id} in a complaint")
        return self.split(found[0], [message_id], actor=actor, reason=reason)

    def _open(self, conn: sa.Connection, source: int, first: Any, now: datetime) -> tuple[int, str]:
        """A new complaint for messages split off ``source``: the first message's sender and
        text, the source's agency, category, deadline and privacy."""
        original = conn.execute(sa.select(complaints).where(complaints.c.id == source)).one()
        settings = self._settings()
        year = first.received_at.astimezone(settings.timezone).year
        ticket = next_tickets(conn, settings.ticket_prefix, year, 1)[0]
        row = self._opener(first, original) | {
            "ticket": ticket,
            "status": "open",
            "updated_at": now,
            "category": original.category,
            "agency": original.agency,
            "route": original.route,
            "due_at": original.due_at,
            "cluster_id": None,
            "anonymous": original.anonymous,
            "confidential": original.confidential,
            "merged_into": None,
        }
        new_id = conn.execute(sa.insert(complaints).returning(complaints.c.id), row).scalar_one()
        conn.execute(
            sa.insert(queue_items),
            {
                "complaint_id": new_id,
                "agency": original.agency,
                "status": "pending",
                "claimed_by": None,
                "lease_until": None,
                "assignee": None,
                "created_at": now,
                "updated_at": now,
            },
        )
        sig = dedupe.text_signature(first.subject, first.body)
        bands = sorted(set(band_keys(sig)))
        if bands:
            conn.execute(
                sa.insert(similarity_bands),
                [
                    {"band": b, "received_at": first.received_at, "complaint_id": new_id}
                    for b in bands
                ],
            )
        return int(new_id), ticket

    def _opener(self, first: Any, original: Any) -> dict[str, Any]:
        """The fields a complaint takes from the message it opens with: its sender, text,
        channel, place — and where answers go, worked out from that message (never another
        citizen's address), keeping the complaint's anonymity."""
        location = first.location or {}
        message = NormalizedMessage(
            channel=first.channel,
            connector=first.connector,
            external_id=first.external_id,
            received_at=first.received_at,
            sender=Sender(
                name=first.sender_name,
                email=first.sender_email,
                phone=first.sender_phone,
                handle=first.sender_handle,
            ),
            body=first.body,
            flags=dict(first.flags or {}),
            anonymous=bool(original.anonymous),
            confidential=bool(original.confidential),
        )
        to, via = reply_route(message, self._settings()) or (None, None)
        return {
            "channel": first.channel,
            "connector": first.connector,
            "received_at": first.received_at,
            "sender_name": first.sender_name,
            "sender_email": first.sender_email,
            "sender_phone": first.sender_phone,
            "sender_handle": first.sender_handle,
            "subject": first.subject,
            "body": first.body,
            "language": first.language,
            "location_lat": location.get("lat"),
            "location_lon": location.get("lon"),
            "location_address": location.get("address"),
            "reply_to": to,
            "reply_via": via,
        }

    def _resize(self, conn: sa.Connection, ids: list[int], now: datetime) -> None:
        found = conn.execute(
            sa.select(complaints.c.cluster_id).where(
                complaints.c.id.in_(ids), complaints.c.cluster_id.is_not(None)
            )
        ).scalars()
        dedupe.resize(conn, [c for c in found if c], now)

    # -- identities -------------------------------------------------------------------------

    def link(self, a: str, b: str, *, actor: str, reason: str | None = None) -> list[str]:
        """Make the persons of identities ``a`` and ``b`` one; the keys of that person."""
        keys = [identity_key(a, self._region), identity_key(b, self._region)]
        if keys[0] == keys[1]:
            raise DedupeError("an identity cannot be linked to itself")
        now = self._clock()
        with self.store.transaction() as conn:
            dedupe.lock(conn, keys)
            persons = dedupe.register(conn, keys, now)
            person = dedupe.join_persons(conn, keys, persons, now, actor=actor[:128], reason=reason)
            return self._keys_of(conn, person)

    def unlink(self, key: str, *, actor: str, reason: str | None = None) -> None:
        """Take identity ``key`` out of its person (it becomes a person of its own)."""
        wanted = identity_key(key, self._region)
        now = self._clock()
        with self.store.transaction() as conn:
            dedupe.lock(conn, [wanted])
            row = conn.execute(
                sa.select(identities.c.id, identities.c.person_id).where(identities.c.key == wanted)
            ).first()
            if row is None:
                raise DedupeError(f"no identity {wanted}")
            own, person = row
            others = (
                conn.execute(
                    sa.select(identities.c.id).where(
                        identities.c.person_id == person, identities.c.id != own
                    )
                )
                .scalars()
                .all()
            )
            if not others:
                raise DedupeError(f"{wanted} is not linked to anything")
            if own == person:  # the rest keep a person of their own
                conn.execute(
                    sa.update(identities)
                    .where(identities.c.id.in_(others))
                    .values(person_id=min(others))
                )
            conn.execute(sa.update(identities).where(identities.c.id == own).values(person_id=own))
            conn.execute(
                sa.insert(identity_events),
                {
                    "at": now,
                    "actor": actor[:128],
                    "action": "unlink",
                    "key": wanted,
                    "other": None,
                    "reason": reason,
                },
            )

    def identities(self, key: str | None = None, *, limit: int = 100) -> list[dict[str, Any]]:
        """Persons with more than one identity (or the person of ``key``): their keys, and the
        recorded links and unlinks."""
        with self.store.transaction() as conn:
            if key is not None:
                wanted = identity_key(key, self._region)
                person = conn.execute(
                    sa.select(identities.c.person_id).where(identities.c.key == wanted)
                ).scalar_one_or_none()
                if person is None:
                    raise DedupeError(f"no identity {wanted}")
                persons = [person]
            else:
                persons = list(
                    conn.execute(
                        sa.select(identities.c.person_id)
                        .group_by(identities.c.person_id)
                        .having(sa.func.count() > 1)
                        .order_by(identities.c.person_id.desc())
                        .limit(limit)
                    ).scalars()
                )
            out = []
            for person in persons:
                keys = self._keys_of(conn, person)
                history = conn.execute(
                    sa.select(
                        identity_events.c.at,
                        identity_events.c.actor,
                        identity_events.c.action,
                        identity_events.c.key,
                        identity_events.c.other,
                        identity_events.c.reason,
                    )
                    .where(identity_events.c.key.in_(keys) | identity_events.c.other.in_(keys))
                    .order_by(identity_events.c.id)
                ).mappings()
                out.append({"person": person, "keys": keys, "events": [dict(h) for h in history]})
            return out

    @staticmethod
    def _keys_of(conn: sa.Connection, person: int) -> list[str]:
        return list(
            conn.execute(
                sa.select(identities.c.key)
                .where(identities.c.person_id == person)
                .order_by(identities.c.id)
            ).scalars()
        )
