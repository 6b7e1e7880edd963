"""What the outbox sends to a citizen, and how a channel sends it.

A connector that can answer on its channel implements :class:`Sender` (``send``); outgoing
mail goes through :mod:`omnichannel.mail` (SMTP). The outbox worker builds one
:class:`Outbound` per delivery and reads what a sender raises:

- :class:`~omnichannel.errors.RetryableError` (with ``retry_after`` seconds when the provider
  said so): try again later, with backoff, up to the configured number of attempts;
- :class:`~omnichannel.errors.Undeliverable`: this delivery is refused for good (an invalid
  recipient, a 4xx answer other than 408/429): ``dead`` at once;
- any other error: counted as a failed attempt and retried like a retryable one.

``delivery_id`` is the idempotency key: the same on every attempt of one delivery, so a
sender that can pass it on (a header, a ``CreatorID`` column, a Message-ID) lets the far side
recognise a repeat after a crash between sending and recording.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol, runtime_checkable

__all__ = ["Outbound", "Sender", "Sent", "retry_after_seconds"]


@dataclass(frozen=True)
class Outbound:
    """One message to a citizen, rendered and addressed (its ``repr`` leaves out the address
    and the texts, so that no log or traceback shows them)."""

    delivery_id: str
    """The idempotency key: the same on every attempt of this delivery."""
    kind: str
    """``acknowledgement``, ``notification`` (a status change) or ``reply`` (a team member's)."""
    to: str = field(repr=False)
    """An E.164 phone number (``+6281234567890``) or an e-mail address."""
    text: str = field(repr=False)
    ticket: str
    language: str = "id"
    subject: str | None = field(default=None, repr=False)
    """For e-mail: the subject line (it carries the ticket)."""
    in_reply_to: str | None = None
    """The provider id of the citizen's message this answers (Message-ID, wamid, SID)."""
    references: tuple[str, ...] = ()
    """For e-mail: the thread's Message-IDs, oldest first, ending with ``in_reply_to``."""
    our_address: str | None = None
    """The number the citizen wrote to: Twilio's ``To`` (``+62…`` or ``whatsapp:+62…``), a
    WhatsApp Cloud ``phone_number_id``; None when the channel has no choice."""
    last_inbound_at: datetime | None = None
    """When the citizen last wrote on this channel (WhatsApp's 24-hour window)."""
    automatic: bool = True
    """An automatic message (acknowledgement, notification): e-mail marks it Auto-Submitted."""


@dataclass(frozen=True)
class Sent:
    """What a sender sent when it is not ``Outbound.text`` (a WhatsApp template outside the
    24-hour window): the provider's id and the text the citizen actually received."""

    provider_id: str | None
    text: str


@runtime_checkable
class Sender(Protocol):
    """A connector (or anything) that can send an :class:`Outbound` on its channel."""

    def send(self, outbound: Outbound) -> str | Sent | None:
        """Send it; return the provider's id of the sent message (Message-ID, SID, wamid,
        gateway row id) or None, or a :class:`Sent` when what went out is not
        ``outbound.text``. Raise RetryableError / Undeliverable as described above."""
        ...


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: a number of seconds, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
