"""Web: the portal's complaint form, and any system that can post JSON or a form.

- **Channel**: ``web`` by default (``channel`` option, or a constant in the mapping: an Android
  SMS-gateway app can post as ``sms``).
- **Mode**: webhook, ``POST /webhooks/<name>`` with ``application/json``,
  ``application/x-www-form-urlencoded`` or ``multipart/form-data`` (file attachments).
- **Configuration**: ``secret`` (**secret**; Standard Webhooks signing key, ``whsec_``-prefixed
  base64 or plain text), ``previous_secrets`` (**secret**, accepted during a key rotation),
  ``signature`` (``standard-webhooks`` | ``hmac-header``), ``hmac_header``, ``hmac_prefix``,
  ``hmac_encoding``, ``tolerance_seconds``, ``mapping`` (schema field → dotted payload path or
  ``=constant``; default: the portal form), ``required`` (fields that must be present),
  ``max_bytes`` (10 MiB), ``max_attachments``, ``max_attachment_bytes``, ``attachment_types``.
- **Cursor**: none.
- **Dedupe key**: the portal's own submission id (the mapped ``external_id`` field, ``id`` in
  the portal form) when the payload has one; else ``webhook-id`` (Standard Webhooks), or in
  HMAC-header mode a hash of the body.
- **Webhook verification**: Standard Webhooks — ``webhook-signature: v1,<base64 HMAC-SHA256 of
  "id.timestamp.body">`` (several space-separated, for rotation), ``webhook-timestamp`` within
  five minutes; or one HMAC-SHA256 header over the raw body. Checked before parsing.
- **Reply**: JSON ``{ticket, complaint_id, outcome}``; problems are ``400 {"error", "field"}``.
- **Provider docs**: https://www.standardwebhooks.com/ (the spec), DESIGN.md (the form shape).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from normalizer.web import FIELDS, PORTAL_MAPPING, FieldError, map_payload, parse_body
from omnichannel.schema import InboundMessage, RawMessage, ReceiveResult
from omnichannel.webhook import (
    WebhookConnector,
    WebhookRejected,
    WebhookRequest,
    WebhookResponse,
    json_response,
    same_secret,
    signing_key,
    standard_signature,
)

__all__ = ["WebConnector", "WebOptions", "signing_key", "standard_signature"]

DEFAULT_TYPES = [
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/heic",
    "application/pdf",
    "video/mp4",
    "audio/mpeg",
    "audio/ogg",
]
_WEBHOOK_ID = re.compile(r"[\x21-\x7e]{1,255}")
"""A ``webhook-id``: visible ASCII, no spaces (two joined copies never pass), fits the column."""
_TIMESTAMP = re.compile(r"[0-9]{1,15}", re.ASCII)
"""Unix seconds: ASCII digits only (``str.isdigit`` takes ``²``), short enough for ``int``."""


class WebOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    secret: SecretStr
    previous_secrets: list[SecretStr] = Field(default_factory=list)
    signature: Literal["standard-webhooks", "hmac-header"] = "standard-webhooks"
    hmac_header: str = "x-signature"
    hmac_prefix: str = "sha256="
    hmac_encoding: Literal["hex", "base64"] = "hex"
    tolerance_seconds: int = Field(default=300, ge=1)
    channel: str = "web"
    mapping: dict[str, str] | None = None
    required: list[str] = Field(default_factory=list)
    max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_attachments: int = Field(default=5, ge=0)
    max_attachment_bytes: int = Field(default=5 * 1024 * 1024, ge=1)
    attachment_types: list[str] = Field(default_factory=lambda: list(DEFAULT_TYPES))

    @field_validator("mapping")
    @classmethod
    def _known_fields(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        unknown = sorted(set(value or {}) - set(FIELDS))
        if unknown:
            raise ValueError(f"unknown mapping fields {unknown}; known: {list(FIELDS)}")
        return value


class WebConnector(WebhookConnector[WebOptions]):
    """Signed JSON and form posts, mapped to the schema by configuration."""

    type = "web"
    channel = "web"
    Options = WebOptions
    content_types: ClassVar[tuple[str, ...]] = (
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    )
    clock: Callable[[], float] = staticmethod(time.time)

    # -- verification --------------------------------------------------------------------------

    def _keys(self) -> list[bytes]:
        secrets = [self.options.secret, *self.options.previous_secrets]
        return [signing_key(s.get_secret_value()) for s in secrets]

    def verify(self, request: WebhookRequest) -> None:
        if self.options.signature == "hmac-header":
            self._verify_hmac(request)
        else:
            self._verify_standard(request)

    def _verify_standard(self, request: WebhookRequest) -> None:
        webhook_id = request.headers.get("webhook-id", "")
        stamp = request.headers.get("webhook-timestamp", "")
        # space-separated signatures; a header sent twice arrives joined with ", "
        given = [g.rstrip(",") for g in request.headers.get("webhook-signature", "").split()]
        if not _WEBHOOK_ID.fullmatch(webhook_id) or not _TIMESTAMP.fullmatch(stamp) or not given:
            raise WebhookRejected(403, "missing or malformed webhook signature headers")
        if abs(self.clock() - int(stamp)) > self.options.tolerance_seconds:
            raise WebhookRejected(403, "webhook timestamp outside the tolerance")
        expected = [standard_signature(k, webhook_id, stamp, request.body) for k in self._keys()]
        if not any(same_secret(e, g) for e in expected for g in given):
            raise WebhookRejected(403, "bad signature")

    def _verify_hmac(self, request: WebhookRequest) -> None:
        given = request.headers.get(self.options.hmac_header.lower(), "")
        for key in self._keys():
            digest = hmac.new(key, request.body, hashlib.sha256).digest()
            encoded = (
                digest.hex()
                if self.options.hmac_encoding == "hex"
                else (base64.b64encode(digest).decode())
            )
            if same_secret(self.options.hmac_prefix + encoded, given):
                return
        raise WebhookRejected(403, "bad signature")

    # -- parsing (after verification, before storage) ------------------------------------------

    def parse(self, request: WebhookRequest) -> list[RawMessage]:
        external_id = request.headers.get("webhook-id") or _body_key(request.body)
        raw = RawMessage(
            connector=self.name,
            external_id=external_id,
            received_at=datetime.now(UTC),
            content_type=request.headers.get("content-type", "application/json"),
            payload=request.body,
        )
        try:
            message = self.decode(raw)
        except FieldError as exc:
            raise WebhookRejected(400, exc.problem, exc.field) from None
        self._check_attachments(message)
        raw.external_id = message.external_id
        return [raw]

    def _check_attachments(self, message: InboundMessage) -> None:
        items = message.attachments
        if len(items) > self.options.max_attachments:
            raise WebhookRejected(
                413, f"at most {self.options.max_attachments} attachments", "attachments"
            )
        for index, item in enumerate(items):
            field = f"attachments[{index}]"
            if item.content is not None and len(item.content) > self.options.max_attachment_bytes:
                raise WebhookRejected(413, "attachment too large", field)
            if item.content_type not in self.options.attachment_types:
                raise WebhookRejected(415, "attachment type not accepted", field)

    def decode(self, raw: RawMessage) -> InboundMessage:
        mapping = dict(self.options.mapping or PORTAL_MAPPING)
        # the portal's own submission id, when the form carries one, is the idempotency key:
        # a resend of the same submission under a new webhook-id is a duplicate; without
        # one, the webhook-id (or, in HMAC-header mode, a hash of the body) is
        data = parse_body(raw.content_type, raw.payload)
        return map_payload(
            data,
            mapping,
            channel=self.options.channel,
            external_id=raw.external_id,
            received_at=raw.received_at,
            timezone=self.context.timezone,
            required=tuple(self.options.required or (() if self.options.mapping else ("text",))),
            portal=self.options.mapping is None,
        )

    def waits_for_filing(self) -> bool:
        return True  # the portal shows the citizen a ticket

    def respond_pending(
        self, request: WebhookRequest, receipt: str, status_url: str
    ) -> WebhookResponse:
        return json_response(202, {"receipt": receipt, "status_url": status_url})

    def respond(self, request: WebhookRequest, results: list[ReceiveResult]) -> WebhookResponse:
        if not results:
            return json_response(202, {"status": "stored"})
        result = results[0]
        return json_response(
            200,
            {
                "ticket": result.ticket,
                "complaint_id": result.complaint_id,
                "outcome": result.outcome.value,
            },
        )


def _body_key(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()
