"""Forwarders: a complaint's events sent on to the systems the team uses.

Each ``[[forwarders]]`` entry names a type: ``webhook``, ``email`` or any class registered
under the ``omnichannel.forwarders`` entry-point group. A forwarder gets one :class:`Forward`
per event (``complaint.created``, ``complaint.assigned``, ``complaint.status_changed``) and
sends it; the outbox retries, backs off and marks it dead (see :mod:`omnichannel.outbox`), so a
forwarder only sends once and raises:

- :class:`~omnichannel.errors.RetryableError` (``retry_after`` from a ``Retry-After``) for a
  failure worth trying again: a timeout, a refused connection, HTTP 408, 429 or 5xx;
- :class:`~omnichannel.errors.Undeliverable` for a refusal that will not change: another 4xx.

``delivery_id`` is the idempotency key: the same on every attempt of one event (the
``webhook-id`` header of a webhook, the Message-ID of a mail).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol

import requests
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from omnichannel.errors import ConfigError, RetryableError, Undeliverable
from omnichannel.outbound import retry_after_seconds
from omnichannel.webhook import signing_key, standard_signature

__all__ = [
    "EVENTS",
    "EmailForwarder",
    "Forward",
    "Forwarder",
    "ForwarderContext",
    "WebhookForwarder",
    "build_forwarder",
]

EVENTS = ("complaint.created", "complaint.assigned", "complaint.status_changed")
GROUP = "omnichannel.forwarders"


@dataclass(frozen=True)
class Forward:
    """One event of one complaint, for one forwarder."""

    delivery_id: str
    event: str
    complaint: dict[str, Any]
    """The complaint's JSON, as exported (a confidential or anonymous sender is hidden; the
    NIK and NPWP numbers in its text masked, or what ``[privacy] mask_in_text`` says)."""
    at: datetime
    """When the event happened."""

    @property
    def agency(self) -> str | None:
        value = self.complaint.get("agency")
        return str(value) if value else None


@dataclass(frozen=True)
class ForwarderContext:
    """What a forwarder may use of the deployment: outgoing mail (``[smtp]``), the timezone."""

    mailer: Any = None
    timezone: Any = None


class Forwarder(Protocol):
    """What a ``[[forwarders]]`` type provides."""

    name: str

    def forward(self, item: Forward) -> str | None:
        """Send it; the far side's id of what was sent, or None."""
        ...


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- webhook -----------------------------------------------------------------------------------


class WebhookOptions(_Options):
    url: str
    secret: SecretStr | None = None
    """Standard Webhooks signing key (``whsec_`` + base64, or any text); without one the
    forward is not signed (not recommended)."""
    timeout: float = Field(default=15.0, gt=0, le=300)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


class WebhookForwarder:
    """POSTs the complaint's JSON, signed with Standard Webhooks (``webhook-id``,
    ``webhook-timestamp``, ``webhook-signature``); ``webhook-id`` is the delivery id, so a
    receiver that keeps the ids it has seen accepts each event once."""

    Options: ClassVar[type[BaseModel]] = WebhookOptions

    def __init__(self, name: str, options: WebhookOptions, context: ForwarderContext) -> None:
        self.name = name
        self.options = options
        self._session = requests.Session()

    def forward(self, item: Forward) -> str | None:
        body = json.dumps(item.complaint, ensure_ascii=False, separators=(",", ":")).encode()
        stamp = str(int(time.time()))
        headers = {
            **self.options.headers,
            "Content-Type": "application/json",
            "User-Agent": "omnichannel-forwarder",
            "webhook-id": item.delivery_id,
            "webhook-timestamp": stamp,
            "Idempotency-Key": item.delivery_id,
            "X-Omnichannel-Event": item.event,
        }
        if self.options.secret is not None:
            key = signing_key(self.options.secret.get_secret_value())
            headers["webhook-signature"] = standard_signature(key, item.delivery_id, stamp, body)
        try:
            response = self._session.post(
                self.options.url,
                data=body,
                headers=headers,
                timeout=self.options.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise RetryableError(f"{self.name}: {type(exc).__name__}") from None
        with response:
            status = response.status_code
            if 200 <= status < 300:
                return None
            reason = f"{self.name}: HTTP {status}"
            if status in (408, 409, 425, 429) or status >= 500:
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                raise RetryableError(reason, retry_after=wait)
            raise Undeliverable(reason)


# -- e-mail ------------------------------------------------------------------------------------


class EmailOptions(_Options):
    to: list[str] = Field(default_factory=list)
    """Where every complaint goes, unless its agency has an address in ``addresses``."""
    addresses: dict[str, list[str] | str] = Field(default_factory=dict)
    """An agency's own address(es): ``{PUPR = "pengaduan@pupr.example.go.id"}``."""


class EmailForwarder:
    """Mails the complaint to its agency's address (``addresses``, else ``to``) through
    ``[smtp]``: a readable summary, and its JSON attached."""

    Options: ClassVar[type[BaseModel]] = EmailOptions

    def __init__(self, name: str, options: EmailOptions, context: ForwarderContext) -> None:
        if context.mailer is None:
            raise ConfigError([f"forwarders.{name}: the email forwarder needs [smtp]"])
        self.name = name
        self.options = options
        self.mailer = context.mailer

    def recipients(self, agency: str | None) -> list[str]:
        found = self.options.addresses.get(agency or "") or self.options.to
        return [found] if isinstance(found, str) else list(found)

    def forward(self, item: Forward) -> str | None:
        to = self.recipients(item.agency)
        if not to:
            raise Undeliverable(f"{self.name}: no address for agency {item.agency or '-'}")
        c = item.complaint
        subject = f"[{c.get('ticket')}] {item.event}: {c.get('subject') or c.get('category')}"
        lines = [
            f"Ticket:   {c.get('ticket')}",
            f"Event:    {item.event}",
            f"Status:   {c.get('status')}",
            f"Agency:   {c.get('agency') or '-'}",
            f"Category: {c.get('category') or '-'}",
            f"Channel:  {c.get('channel')}",
            f"Received: {c.get('received_at')}",
            f"Due:      {c.get('due_at') or '-'}",
            "",
            str(c.get("body") or ""),
        ]
        message = self.mailer.build_mail(
            to,
            subject,
            "\n".join(lines),
            message_id_key=item.delivery_id,
            headers={"X-Omnichannel-Event": item.event},
            json_attachment=(
                f"{c.get('ticket')}.json",
                json.dumps(c, ensure_ascii=False, indent=2).encode(),
            ),
        )
        return str(self.mailer.send_message(message))


# -- building ----------------------------------------------------------------------------------

BUILTIN: dict[str, Any] = {"webhook": WebhookForwarder, "email": EmailForwarder}


@dataclass(frozen=True)
class ForwarderSpec:
    """A ``[[forwarders]]`` entry, its type's options validated."""

    name: str
    type: str
    events: tuple[str, ...] = EVENTS
    agencies: tuple[str, ...] = ()
    """Only complaints of these agencies (all when empty)."""
    options: dict[str, Any] = field(default_factory=dict)

    def wants(self, event: str, agency: str | None) -> bool:
        return event in self.events and (not self.agencies or agency in self.agencies)


def forwarder_class(type_name: str) -> Any:
    """The class of a forwarder type: built in, or from an entry point."""
    if type_name in BUILTIN:
        return BUILTIN[type_name]
    for point in entry_points(group=GROUP):
        if point.name == type_name:
            return point.load()
    known = sorted({*BUILTIN, *(p.name for p in entry_points(group=GROUP))})
    raise LookupError(f"unknown forwarder type {type_name!r} (known: {', '.join(known)})")


def build_forwarder(spec: ForwarderSpec, context: ForwarderContext) -> Forwarder:
    cls = forwarder_class(spec.type)
    options_model = getattr(cls, "Options", None)
    options = options_model.model_validate(spec.options) if options_model else spec.options
    built: Forwarder = cls(spec.name, options, context)
    return built
