"""Memory: an in-process channel, the reference connector and the test double.

- **Channel**: ``memory`` by default (each message's own ``channel`` wins).
- **Mode**: both. Poll: messages put on a named in-process queue (:func:`put`) are fetched in
  order. Webhook: ``POST /webhooks/<name>`` with an InboundMessage JSON document.
- **Configuration**: ``queue`` (the queue's name; default the connector's name), ``secret``
  (**secret**; the Standard Webhooks signing key, ``whsec_``-prefixed base64 or plain text),
  ``tolerance_seconds`` (300), ``batch_size`` (100), ``poll_interval`` (1 s).
- **Cursor**: the number of queue entries already fetched (an ``int``).
- **Dedupe key**: the document's ``external_id``, else ``sha256:`` of its bytes.
- **Webhook verification**: Standard Webhooks (``webhook-id``, ``webhook-timestamp`` within
  ``tolerance_seconds``, ``webhook-signature: v1,<base64 HMAC-SHA256>``); unsigned refused.
- **Provider docs**: none; this module is the one to copy when writing a connector.

Queues live in this process only: nothing survives a restart, which is what a test wants::

    from connectors.memory import put
    put("sms-test", {"channel": "sms", "external_id": "1", "text": "Jalan rusak"})
    inbox.poll("memory")            # a [[connectors]] entry with type = "memory"
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from normalizer.jsondoc import decode_json_document, json_external_id
from omnichannel.connector import Batch, PollingConnector
from omnichannel.schema import InboundMessage, RawMessage
from omnichannel.webhook import (
    WebhookConnector,
    WebhookRejected,
    WebhookRequest,
    same_secret,
    signing_key,
    standard_signature,
)

__all__ = ["MemoryConnector", "MemoryOptions", "acked", "clear", "put"]

CONTENT_TYPE = "application/json"
_lock = threading.Lock()
_queues: dict[str, list[bytes]] = {}
_acked: dict[str, list[str]] = {}


def put(queue: str, message: InboundMessage | Mapping[str, Any] | bytes) -> None:
    """Append a message (an InboundMessage, its JSON form, or the document's bytes)."""
    if isinstance(message, InboundMessage):
        payload = message.model_dump_json(exclude_none=True).encode()
    elif isinstance(message, bytes):
        payload = message
    else:
        payload = InboundMessage.model_validate(dict(message)).model_dump_json().encode()
    with _lock:
        _queues.setdefault(queue, []).append(payload)


def acked(queue: str) -> list[str]:
    """The external ids acknowledged on ``queue``, in order (for tests)."""
    with _lock:
        return list(_acked.get(queue, []))


def clear(queue: str | None = None) -> None:
    """Forget one queue, or all of them."""
    with _lock:
        for store in (_queues, _acked):
            if queue is None:
                store.clear()
            else:
                store.pop(queue, None)


class MemoryOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queue: str | None = None
    secret: SecretStr | None = None
    tolerance_seconds: int = Field(default=300, ge=1)
    batch_size: int = Field(default=100, ge=1, le=10_000)
    poll_interval: float = Field(default=1.0, gt=0)


class MemoryConnector(PollingConnector[MemoryOptions], WebhookConnector[MemoryOptions]):
    """Messages from an in-process queue, or posted as signed JSON documents."""

    type = "memory"
    channel = "memory"
    Options = MemoryOptions

    @property
    def queue(self) -> str:
        return self.options.queue or self.name

    # -- polling -------------------------------------------------------------------------------

    def fetch(self, cursor: Any, *, since: date | None = None) -> Iterator[Batch]:
        start = 0 if since is not None or not isinstance(cursor, int) else cursor
        while True:
            with _lock:
                payloads = _queues.get(self.queue, [])[start : start + self.options.batch_size]
            if not payloads:
                return
            start += len(payloads)
            yield Batch([self._raw(p) for p in payloads], cursor=start)

    def ack(self, messages: Sequence[RawMessage]) -> None:
        with _lock:
            _acked.setdefault(self.queue, []).extend(m.external_id for m in messages)

    def _raw(self, payload: bytes) -> RawMessage:
        return RawMessage(
            connector=self.name,
            external_id=json_external_id(payload),
            received_at=datetime.now(UTC),
            content_type=CONTENT_TYPE,
            payload=payload,
        )

    # -- webhook -------------------------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        secret = self.options.secret
        webhook_id = request.headers.get("webhook-id", "")
        timestamp = request.headers.get("webhook-timestamp", "")
        if secret is None or not webhook_id or not timestamp.isascii() or not timestamp.isdigit():
            raise WebhookRejected(403, "missing or bad signature headers")
        if abs(time.time() - int(timestamp[:15])) > self.options.tolerance_seconds:
            raise WebhookRejected(403, "timestamp outside the tolerance (a replay?)")
        key = signing_key(secret.get_secret_value())
        expected = standard_signature(key, webhook_id, timestamp, request.body)
        given = request.headers.get("webhook-signature", "").split()
        if not any(same_secret(expected, signature) for signature in given):
            raise WebhookRejected(403, "bad signature")

    def parse(self, request: WebhookRequest) -> list[RawMessage]:
        return [self._raw(request.body)]

    # -- decoding (pure) -----------------------------------------------------------------------

    def decode(self, raw: RawMessage) -> InboundMessage:
        message = decode_json_document(
            raw.payload,
            connector=self.name,
            received_at=raw.received_at,
            timezone=self.context.timezone,
        )
        message.external_id = raw.external_id
        return message
