"""The outbox: acknowledgements, notifications, replies and forwards, sent at least once.

Rows are written in the transaction that decides them (a new complaint's acknowledgement and
forwards while it is filed; a status change's notification and forwards with its event; a team
member's reply with its event). A worker then delivers them:

1. **claim** due rows — ``pending`` and due, or ``sending`` with an expired lease (a worker
   that died mid-send) — setting ``sending``, a lease and one more attempt, in one short
   transaction (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so workers never take the same row);
2. **send** outside any transaction, with the row's ``delivery_id`` as the idempotency key
   (``webhook-id`` of a forward, the Message-ID of a mail, a gateway's ``CreatorID``): a worker
   killed between sending and recording leaves the row to be sent again *with the same key*;
3. **record**: ``sent`` (and an ``outbound_messages`` row for what went to a citizen), or back
   to ``pending`` after an exponential backoff with jitter (tenacity's), at least what a
   ``Retry-After`` asked for, or ``dead`` after ``max_attempts`` or an
   :class:`~omnichannel.errors.Undeliverable`. ``outbox retry`` makes dead rows pending again.

A row is recorded only by the worker that holds its lease (its attempt number), so a worker
that outlived its lease cannot overwrite what a later one did.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import tenacity

from omnichannel import survey
from omnichannel.acks import Templates
from omnichannel.errors import RetryableError, StorageUnavailable, Undeliverable
from omnichannel.outbound import Outbound
from omnichannel.privacy import LOG_MASKER
from omnichannel.store import Store
from omnichannel.store.tables import complaints, messages, outbound_messages, outbox

__all__ = [
    "CITIZEN_KINDS",
    "DeliveryPolicy",
    "Outbox",
    "OutboxRow",
    "plan_event",
    "run_outbox_worker",
]

log = logging.getLogger("omnichannel.outbox")
Clock = Callable[[], datetime]
CITIZEN_KINDS = ("acknowledgement", "notification", "reply", *survey.SURVEY_KINDS)
"""Rows that go to a citizen (the rest are forwards to the team's systems)."""
NOTIFIED = ("resolved", "rejected")
"""Status changes the citizen is told of."""
LIMITED_KINDS = ("acknowledgement", "notification", *survey.SURVEY_KINDS)
"""Automatic messages: at most ``daily_limit`` per address per day. Replies are people's."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


# -- policy ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard and how often the outbox tries (``[outbox]``)."""

    max_attempts: int = 10
    backoff: float = 30.0
    """Seconds before the second attempt; doubling each time, with up to as much again of
    jitter, to ``backoff_max``."""
    backoff_max: float = 3600.0
    lease: float = 120.0
    """Seconds a worker holds a delivery it is sending; past that another may take it."""
    batch_size: int = 20
    daily_limit: int = 3
    """Automatic messages (acknowledgements, notifications) per citizen address per day."""
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Makassar"))

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        wait = tenacity.wait_exponential(
            multiplier=self.backoff, max=self.backoff_max
        ) + tenacity.wait_random(0, self.backoff)
        state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
        state.attempt_number = attempt
        computed = min(float(wait(state)), self.backoff_max)
        return max(computed, min(retry_after or 0.0, 86_400.0))


# -- the rows ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboxRow:
    """One delivery, as ``outbox list`` shows it."""

    id: int
    kind: str
    target: str
    delivery_id: str
    status: str
    attempts: int
    complaint_id: int | None
    next_attempt_at: datetime | None
    sent_at: datetime | None
    last_error: str | None
    payload: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "payload"}
        for key in ("next_attempt_at", "sent_at"):
            value = data[key]
            data[key] = value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None
        if self.kind not in CITIZEN_KINDS:
            data["event"] = self.payload.get("event")
        return data


_COLUMNS = (
    outbox.c.id,
    outbox.c.kind,
    outbox.c.target,
    outbox.c.delivery_id,
    outbox.c.status,
    outbox.c.attempts,
    outbox.c.complaint_id,
    outbox.c.next_attempt_at,
    outbox.c.sent_at,
    outbox.c.last_error,
    outbox.c.payload,
)


def _row(values: Sequence[Any]) -> OutboxRow:
    return OutboxRow(*values)


Dispatch = Callable[[OutboxRow], tuple[str | None, str | None]]
"""Sends one row: the provider's id of what was sent, and for a citizen the text sent."""


# -- the outbox --------------------------------------------------------------------------------


class Outbox:
    """The outbox of one store: claim, deliver, record, list, retry."""

    def __init__(
        self,
        store: Store,
        dispatcher: Callable[[Sequence[OutboxRow]], Dispatch],
        policy: DeliveryPolicy | None = None,
        *,
        clock: Clock = _utcnow,
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        """Given a claimed batch (to read what it needs of the store at once), what sends
        each of its rows."""
        self.policy = policy or DeliveryPolicy()
        self._clock = clock

    # -- the worker's steps --------------------------------------------------------------------

    def claim(self, limit: int | None = None) -> list[OutboxRow]:
        """Take due rows for this worker: ``sending``, leased, one attempt more."""
        now = self._clock()
        due = sa.or_(
            sa.and_(outbox.c.status == "pending", outbox.c.next_attempt_at <= now),
            sa.and_(outbox.c.status == "sending", outbox.c.lease_until < now),
        )
        with self.store.transaction() as conn:
            query = (
                sa.select(outbox.c.id)
                .where(due)
                .order_by(outbox.c.next_attempt_at, outbox.c.id)
                .limit(limit or self.policy.batch_size)
            )
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            ids = list(conn.execute(query).scalars())
            if not ids:
                return []
            conn.execute(
                sa.update(outbox)
                .where(outbox.c.id.in_(ids))
                .values(
                    status="sending",
                    attempts=outbox.c.attempts + 1,
                    lease_until=now + timedelta(seconds=self.policy.lease),
                    updated_at=now,
                )
            )
            rows = conn.execute(sa.select(*_COLUMNS).where(outbox.c.id.in_(ids)))
            return sorted((_row(r) for r in rows), key=lambda r: ids.index(r.id))

    def deliver(self, row: OutboxRow, dispatch: Dispatch | None = None) -> str:
        """Send one claimed row and record what came of it: its new status."""
        if row.kind in survey.ASKING:
            with self.store.transaction() as conn:
                reason = survey.skip_reason(conn, row.kind, row.complaint_id)
            if reason is not None:
                return self._finish(row, "skipped", reason)
        if row.kind in LIMITED_KINDS and self._over_daily_limit(row):
            limit = self.policy.daily_limit
            return self._finish(row, "skipped", f"daily limit of {limit} reached for this address")
        try:
            provider_id, body = (dispatch or self.dispatcher([row]))(row)
        except Undeliverable as exc:
            error = _error(exc)
            log.warning("outbox: %s %s refused: %s", row.kind, row.delivery_id, error)
            return self._finish(row, "dead", error)
        except (StorageUnavailable, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # retried: RetryableError, FatalError, a bug of a plug-in
            retry_after = exc.retry_after if isinstance(exc, RetryableError) else None
            return self._failed(row, _error(exc), retry_after)
        return self._sent(row, provider_id, body)

    def deliver_due(self, limit: int | None = None) -> dict[str, int]:
        """Claim and deliver one batch of due rows; how many ended in each status."""
        counts: dict[str, int] = {}
        rows = self.claim(limit)
        dispatch = self.dispatcher(rows) if rows else None
        for row in rows:
            status = self.deliver(row, dispatch)
            counts[status] = counts.get(status, 0) + 1
        return counts

    def drain(self, *, max_rounds: int = 1000) -> dict[str, int]:
        """Deliver until nothing is due now (``work --once``, tests)."""
        total: dict[str, int] = {}
        for _ in range(max_rounds):
            counts = self.deliver_due()
            if not counts:
                break
            for key, value in counts.items():
                total[key] = total.get(key, 0) + value
        return total

    # -- recording ----------------------------------------------------------------------------

    def _held(self, row: OutboxRow) -> sa.ColumnElement[bool]:
        """This row, still leased by this attempt."""
        return sa.and_(
            outbox.c.id == row.id, outbox.c.status == "sending", outbox.c.attempts == row.attempts
        )

    def _sent(self, row: OutboxRow, provider_id: str | None, body: str | None) -> str:
        now = self._clock()
        with self.store.transaction() as conn:
            updated = conn.execute(
                sa.update(outbox)
                .where(self._held(row))
                .values(
                    status="sent",
                    sent_at=now,
                    provider_id=(provider_id or None) and provider_id[:512],
                    lease_until=None,
                    last_error=None,
                    updated_at=now,
                )
            ).rowcount
            if updated and body is not None:
                record_outbound(conn, row, body, provider_id, now)
        if not updated:
            log.warning("outbox: %s was sent after its lease ended", row.delivery_id)
        return "sent"

    def _failed(self, row: OutboxRow, error: str, retry_after: float | None) -> str:
        if row.attempts >= self.policy.max_attempts:
            log.warning("outbox: %s dead after %d attempts", row.delivery_id, row.attempts)
            return self._finish(row, "dead", error)
        delay = self.policy.delay(row.attempts, retry_after)
        now = self._clock()
        with self.store.transaction() as conn:
            conn.execute(
                sa.update(outbox)
                .where(self._held(row))
                .values(
                    status="pending",
                    next_attempt_at=now + timedelta(seconds=delay),
                    lease_until=None,
                    last_error=error,
                    updated_at=now,
                )
            )
        log.info("outbox: %s failed (%s); again in %.0f s", row.delivery_id, error, delay)
        return "pending"

    def _finish(self, row: OutboxRow, status: str, error: str) -> str:
        now = self._clock()
        with self.store.transaction() as conn:
            conn.execute(
                sa.update(outbox)
                .where(self._held(row))
                .values(status=status, lease_until=None, last_error=error, updated_at=now)
            )
        return status

    def _over_daily_limit(self, row: OutboxRow) -> bool:
        with self.store.transaction() as conn:
            return over_daily_limit(conn, row.target, self._clock(), self.policy)

    def take_inline(
        self, conn: sa.Connection, complaint_ids: Sequence[int], templates: Templates
    ) -> dict[int, str]:
        """Send the pending acknowledgements of these new complaints inline, in the webhook's
        own answer (TwiML): each is rendered as the outbox would, counted against the daily
        limit (``skipped`` past it) and recorded as sent. The texts, by complaint. One the
        outbox has already taken is left to it, so that no citizen is acknowledged twice."""
        now = self._clock()
        pending = conn.execute(
            sa.select(*_COLUMNS)
            .where(
                outbox.c.complaint_id.in_(sorted(set(complaint_ids))),
                outbox.c.kind == "acknowledgement",
                outbox.c.status == "pending",
                outbox.c.attempts == 0,
            )
            .order_by(outbox.c.id)
        )
        taken: dict[int, str] = {}
        for row in [_row(r) for r in pending]:
            still_pending = sa.and_(
                outbox.c.id == row.id, outbox.c.status == "pending", outbox.c.attempts == 0
            )
            if over_daily_limit(conn, row.target, now, self.policy):
                error = f"daily limit of {self.policy.daily_limit} reached for this address"
                conn.execute(
                    sa.update(outbox)
                    .where(still_pending)
                    .values(status="skipped", last_error=error, updated_at=now)
                )
                continue
            text = citizen_outbound(conn, row, templates).text
            updated = conn.execute(
                sa.update(outbox)
                .where(still_pending)
                .values(status="sent-inline", sent_at=now, updated_at=now)
            ).rowcount
            if updated and row.complaint_id is not None:
                record_outbound(conn, row, text, None, now)
                taken[row.complaint_id] = text
        return taken

    # -- operators ----------------------------------------------------------------------------

    def list(self, *, status: str | None = None, limit: int = 50) -> tuple[list[OutboxRow], bool]:
        """Rows, newest first, and whether more match than ``limit``."""
        query = sa.select(*_COLUMNS).order_by(outbox.c.id.desc()).limit(limit + 1)
        if status is not None:
            query = query.where(outbox.c.status == status)
        with self.store.transaction() as conn:
            rows = [_row(r) for r in conn.execute(query)]
        return rows[:limit], len(rows) > limit

    def retry(self, row_id: int | None = None) -> int:
        """Make dead rows (or the one ``row_id``, dead or skipped) pending again, with a fresh
        count of attempts; how many."""
        now = self._clock()
        statement = sa.update(outbox).values(
            status="pending", attempts=0, next_attempt_at=now, lease_until=None, updated_at=now
        )
        if row_id is None:
            statement = statement.where(outbox.c.status == "dead")
        else:
            statement = statement.where(
                outbox.c.id == row_id, outbox.c.status.in_(("dead", "skipped"))
            )
        with self.store.transaction() as conn:
            return int(conn.execute(statement).rowcount)


def _error(exc: BaseException) -> str:
    """What went wrong, for ``outbox list``: the error's class and its first line, personal
    data masked (a provider's answer can quote the recipient)."""
    text = LOG_MASKER.text(str(exc).splitlines()[0][:300]) if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- what a citizen receives -------------------------------------------------------------------


def record_outbound(
    conn: sa.Connection, row: OutboxRow, body: str, provider_id: str | None, now: datetime
) -> None:
    """Record what went to the citizen as an outbound message of its complaint."""
    if row.complaint_id is None:
        return
    conn.execute(
        sa.insert(outbound_messages).values(
            complaint_id=row.complaint_id,
            outbox_id=row.id,
            kind=row.kind,
            via=str(row.payload.get("via", "")),
            to_address=row.target,
            body=body,
            provider_id=(provider_id or None) and provider_id[:512],
            sent_at=now,
        )
    )


def over_daily_limit(
    conn: sa.Connection, address: str, now: datetime, policy: DeliveryPolicy
) -> bool:
    """Whether ``address`` has had ``policy.daily_limit`` automatic messages today (the
    office's day)."""
    if policy.daily_limit <= 0:
        return False
    local = now.astimezone(policy.timezone)
    midnight = datetime.combine(local.date(), time(0), policy.timezone)
    count = conn.execute(
        sa.select(sa.func.count())
        .select_from(outbound_messages)
        .where(
            outbound_messages.c.to_address == address,
            outbound_messages.c.kind.in_(LIMITED_KINDS),
            outbound_messages.c.sent_at >= midnight.astimezone(UTC),
        )
    ).scalar_one()
    return int(count) >= policy.daily_limit


def citizen_outbound(conn: sa.Connection, row: OutboxRow, templates: Templates) -> Outbound:
    """The message a citizen row stands for: rendered, addressed and threaded."""
    complaint = conn.execute(
        sa.select(
            complaints.c.ticket,
            complaints.c.channel,
            complaints.c.language,
            complaints.c.subject,
        ).where(complaints.c.id == row.complaint_id)
    ).one()
    ticket, channel, language, subject = complaint
    via = str(row.payload.get("via", ""))
    last = _last_inbound(conn, row, via)
    channel_of_reply = "email" if via == "smtp" else (last["channel"] if last else channel)
    values = {
        "ticket": ticket,
        "note": str(row.payload.get("note") or ""),
        "text": str(row.payload.get("text") or ""),
    }
    kind = row.kind
    if kind == "notification":
        kind = f"notification.{row.payload.get('status', 'resolved')}"
    text = templates.text(kind, channel_of_reply, language, **values)
    thread_ids: list[str] = []
    if last is not None:
        thread_ids = [*last["references"], last["message_id"]] if last["message_id"] else []
    email_subject = None
    if channel_of_reply == "email":
        email_subject = templates.text("subject", "email", language, ticket=ticket)
        if subject and ticket not in subject:
            email_subject = f"Re: {subject} [{ticket}]"
        elif subject:
            email_subject = f"Re: {subject}"
    return Outbound(
        delivery_id=row.delivery_id,
        kind=row.kind,
        to=row.target,
        text=text,
        ticket=ticket,
        language=language if language in ("id", "en") else templates.language,
        subject=email_subject,
        in_reply_to=last["message_id"] if last else None,
        references=tuple(i for i in thread_ids if i),
        our_address=(last["headers"] or {}).get("to") if last else None,
        last_inbound_at=last["received_at"] if last else None,
        automatic=row.kind != "reply",
    )


def _last_inbound(conn: sa.Connection, row: OutboxRow, via: str) -> dict[str, Any] | None:
    """The citizen's latest message of this complaint on the channel we answer on."""
    query = (
        sa.select(
            messages.c.channel,
            messages.c.connector,
            messages.c.message_id,
            messages.c.references,
            messages.c.headers,
            messages.c.received_at,
        )
        .where(messages.c.complaint_id == row.complaint_id)
        .order_by(messages.c.received_at.desc(), messages.c.id.desc())
    )
    found = [dict(r._mapping) for r in conn.execute(query)]
    if via == "smtp":
        same = [m for m in found if m["channel"] == "email"]
    else:
        same = [m for m in found if m["connector"] == via]
    chosen = same[0] if same else None
    if chosen is not None:
        chosen["references"] = [str(i) for i in chosen["references"] or [] if i]
    return chosen


# -- what an event of the queue sends ---------------------------------------------------------


def plan_event(conn: sa.Connection, event: Any, settings: Any) -> None:
    """Queue what a queue event sends (in its transaction): a team member's reply, the
    citizen's notification of a resolution or rejection (and a resolution's survey), and the
    forwards of an assignment or status change. ``event`` is a
    :class:`~omnichannel.queue.QueueEvent`."""
    from omnichannel.filing import outbox_row

    agency, reply_to, via = conn.execute(
        sa.select(complaints.c.agency, complaints.c.reply_to, complaints.c.reply_via).where(
            complaints.c.id == event.complaint_id
        )
    ).one()
    cid, eid, now = event.complaint_id, event.event_id, event.at
    rows = []
    if event.kind == "reply" and reply_to:
        payload = {"text": event.note or "", "via": via, "actor": event.actor}
        rows.append(outbox_row(cid, "reply", reply_to, f"reply-{eid}", payload, now))
    moved = event.from_status != event.to_status
    if moved and event.to_status in NOTIFIED and reply_to and settings.acknowledgements:
        payload = {"status": event.to_status, "note": event.note or "", "via": via}
        rows.append(outbox_row(cid, "notification", reply_to, f"note-{eid}", payload, now))
    name = "complaint.assigned" if event.kind == "assigned" else None
    if name is None and moved:
        name = "complaint.status_changed"
    for spec in settings.forwarders if name else ():
        if spec.wants(name, agency):
            payload = {
                "event": name,
                "at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "from": event.from_status,
                "to": event.to_status,
            }
            rows.append(
                outbox_row(cid, "forward", spec.name, f"fwd-{spec.name}-e{eid}", payload, now)
            )
    if rows:
        conn.execute(sa.insert(outbox), rows)
    survey.plan(conn, event, settings, reply_to, via)  # after the notification


# -- the worker --------------------------------------------------------------------------------


def run_outbox_worker(outbox_: Outbox, stop: threading.Event, *, interval: float = 2.0) -> None:
    """Deliver due rows until ``stop`` is set; rest ``interval`` s when none are due. A store
    that cannot be reached is waited for; a bug is logged by its class and the loop goes on."""
    reported = False
    while not stop.is_set():
        try:
            busy = bool(outbox_.deliver_due())
            reported = False
        except StorageUnavailable as exc:
            if not reported:
                log.warning("outbox paused: %s", exc)
            reported, busy = True, False
        except Exception as exc:
            log.error("outbox round failed (%s); will try again", type(exc).__name__)
            busy = False
        if not busy:
            stop.wait(interval)
