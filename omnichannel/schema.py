"""The one schema every channel is brought into.

Data flows one way: a connector produces a :class:`RawMessage` (bytes as received), a decoder
turns it into an :class:`InboundMessage`, the normalizer into a :class:`NormalizedMessage`, and
the core files it into a :class:`Complaint` made of :class:`Message` s.  Every inbound message ends
in exactly one :class:`Outcome`.

All times are timezone-aware UTC and serialize as ISO 8601 with ``Z``; phone numbers are E.164.
"""

from __future__ import annotations

import base64
import enum
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)

__all__ = [
    "Attachment",
    "AttachmentInfo",
    "Complaint",
    "InboundMessage",
    "Location",
    "Message",
    "NormalizedMessage",
    "OutboundMessage",
    "Outcome",
    "RawMessage",
    "ReceiveResult",
    "Sender",
    "format_utc",
]


def format_utc(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix (``2026-11-30T02:15:00Z``)."""
    value = value.astimezone(UTC)
    text = value.isoformat(timespec="microseconds" if value.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def _require_aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp needs a timezone (naive times are read by the normalizer)")
    return value.astimezone(UTC)


UtcDatetime = Annotated[
    datetime,
    AfterValidator(_require_aware),
    PlainSerializer(format_utc, return_type=str, when_used="json"),
    WithJsonSchema(
        {"type": "string", "format": "date-time", "pattern": r"Z$"}, mode="serialization"
    ),
]
"""An aware datetime, converted to UTC on input and written with ``Z`` in JSON."""


def _b64encode(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


Base64Bytes = Annotated[bytes, PlainSerializer(_b64encode, return_type=str, when_used="json")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=False)


class Outcome(enum.StrEnum):
    """What became of one inbound message (contract)."""

    NEW = "new"
    MERGED = "merged"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    QUARANTINED = "quarantined"


class Sender(_Model):
    """Who sent a message; any field may be unknown."""

    name: str | None = None
    email: str | None = None
    phone: str | None = None
    handle: str | None = None

    def is_empty(self) -> bool:
        return not (self.name or self.email or self.phone or self.handle)


class Location(_Model):
    """A place a citizen shared or typed."""

    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    address: str | None = None

    @model_validator(mode="after")
    def _something_known(self) -> Location:
        if self.address is None and (self.lat is None or self.lon is None):
            raise ValueError("a location needs lat and lon, or an address")
        return self


class Attachment(_Model):
    """A file that came with a message: metadata, and the content or where to fetch it."""

    filename: str | None = None
    content_type: str = "application/octet-stream"
    size: int | None = Field(default=None, ge=0)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    content: Base64Bytes | None = None
    url: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _decode_base64(cls, value: Any) -> Any:
        if isinstance(value, str):
            return base64.b64decode(value, validate=True)
        return value


class AttachmentInfo(_Model):
    """Attachment metadata as exported with a complaint (never the content)."""

    filename: str | None = None
    content_type: str
    size: int | None = None
    sha256: str | None = None


class RawMessage(_Model):
    """Bytes exactly as a connector received them; stored before anything else happens.

    ``(connector, external_id)`` is the idempotency key: the same pair seen again is a
    ``duplicate``.
    """

    connector: str = Field(min_length=1)
    external_id: str = Field(min_length=1)
    """Any length: one longer than its column is stored as its sha256 (``values.storable_id``)."""
    received_at: UtcDatetime
    content_type: str
    payload: Base64Bytes
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("payload", mode="before")
    @classmethod
    def _decode_payload(cls, value: Any) -> Any:
        if isinstance(value, str):
            return base64.b64decode(value, validate=True)
        return value


class InboundMessage(_Model):
    """What a decoder makes of one raw message (contract; also the ``.json`` document format)."""

    channel: str = Field(min_length=1)
    connector: str | None = None
    external_id: str = Field(min_length=1, max_length=512)
    """A decoder whose id may be longer gives ``values.storable_id`` of it (its sha256)."""
    received_at: UtcDatetime | None = None
    sent_at: UtcDatetime | None = None
    sender: Sender = Field(default_factory=Sender)
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    attachments: list[Attachment] = Field(default_factory=list)
    location: Location | None = None
    in_reply_to: str | None = None
    references: list[str] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    flags: dict[str, Any] = Field(default_factory=dict)
    anonymous: bool = False
    confidential: bool = False
    category: str | None = None
    agency: str | None = None

    def has_content(self) -> bool:
        """True when there is something a person could act on."""
        has_text = bool((self.text or "").strip() or (self.html or "").strip())
        return has_text or bool(self.attachments) or self.location is not None


class NormalizedMessage(_Model):
    """An inbound message in canonical form: E.164 phones, clean text, UTC times, flags."""

    channel: str
    connector: str
    external_id: str
    received_at: UtcDatetime
    sent_at: UtcDatetime | None = None
    sender: Sender = Field(default_factory=Sender)
    subject: str | None = None
    display_subject: str | None = None
    """The subject without reply/forward prefixes (``Re:``, ``Balas:``, ``Fwd:``…)."""
    body: str = ""
    """Cleaned text with quoted replies and signatures trimmed: what the team reads."""
    text_full: str = ""
    """Cleaned text without trimming: the whole message as sent."""
    html: str | None = None
    language: str | None = None
    attachments: list[Attachment] = Field(default_factory=list)
    location: Location | None = None
    message_id: str | None = None
    in_reply_to: str | None = None
    references: list[str] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    flags: dict[str, Any] = Field(default_factory=dict)
    anonymous: bool = False
    confidential: bool = False
    category: str | None = None
    agency: str | None = None

    @property
    def is_automatic(self) -> bool:
        """Stored but never a complaint: auto-replies, bounces, delivery callbacks, and what a
        decoder marks ``ignore`` (reactions, system notices, operator messages...)."""
        return any(self.flags.get(k) for k in IGNORED_FLAGS)


IGNORED_FLAGS = ("auto_reply", "bounce", "status_callback", "ignore")
"""Flags that make a message ``ignored`` (stored, flagged, never a complaint or acknowledged)."""


class Message(_Model):
    """One stored message of a complaint, as exported."""

    id: int
    channel: str
    connector: str
    external_id: str
    received_at: UtcDatetime
    sent_at: UtcDatetime | None = None
    """The sender's own time (the e-mail ``Date``, WhatsApp's timestamp), when it has one."""
    body: str
    outcome: Outcome
    merge_reason: str | None = None
    """Why a merged message joined the complaint: ``thread``, ``ticket``, ``same_sender``,
    ``answer`` (to the team's reply), ``split`` (moved by an operator)."""
    merge_score: float | None = None
    """The text similarity that decided a ``same_sender`` merge (0 to 1)."""


class OutboundMessage(_Model):
    """A message sent to the citizen: an acknowledgement, a notification or a reply."""

    kind: str
    via: str
    to: str
    body: str
    sent_at: UtcDatetime


class Complaint(_Model):
    """What the team works on: one or more messages about one matter (contract)."""

    id: int
    ticket: str
    status: str
    channel: str
    connector: str
    received_at: UtcDatetime
    updated_at: UtcDatetime
    sender: Sender
    subject: str | None
    body: str
    language: str | None
    attachments: list[AttachmentInfo]
    location: Location | None
    category: str | None
    agency: str | None
    due_at: UtcDatetime | None
    cluster_id: str | None
    anonymous: bool
    confidential: bool
    messages: list[Message]
    cluster_label: str | None = None
    """What the complaints of the cluster share, in a few words."""
    cluster_size: int | None = None
    """How many complaints the cluster holds."""
    merged_into: int | None = None
    """The complaint an operator merged this one into (status ``merged``)."""
    outbound: list[OutboundMessage] = []
    """What was sent to the citizen, oldest first (empty in exports of anonymous or
    confidential complaints, whose addresses are not shown)."""


class ReceiveResult(_Model):
    """The answer for one inbound message: its outcome and where it went."""

    connector: str
    external_id: str
    outcome: Outcome
    complaint_id: int | None = None
    ticket: str | None = None
    raw_id: int | None = None
    error: str | None = None
