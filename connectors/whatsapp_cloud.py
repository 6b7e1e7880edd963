"""WhatsApp Cloud API: Meta's WhatsApp Business Platform, called directly (no Twilio).

- **Channel**: ``whatsapp``.
- **Mode**: webhook. ``GET`` is the subscription handshake, ``POST`` the notifications.
- **Configuration**: ``app_secret`` (**secret**; signs the notifications), ``verify_token``
  (**secret**; the handshake), ``access_token`` (**secret**; Graph API bearer for media),
  ``phone_number_ids`` (only these numbers are accepted), ``graph_api_url``,
  ``graph_api_version``, ``max_bytes`` (4 MiB: Meta sends up to 3 MB), ``timeout``.
- **Cursor**: none.
- **Dedupe key**: the message's ``wamid`` — permanent, since Meta retries anything but a 200
  for up to seven days, to every subscribed app.
- **Webhook verification**: ``X-Hub-Signature-256: sha256=<64 lowercase hex>`` =
  HMAC-SHA256(app_secret, raw body), checked in constant time before the JSON is parsed;
  handshake token compared in constant time, 403 without echo when wrong.
- **Media**: attachments are ``pending`` with ``whatsapp-media:<id>``; downloaded in the
  background: ``GET {graph}/{version}/{id}`` (bearer) gives a short-lived URL, then that URL
  (bearer again); an expired URL is looked up afresh; Meta's sha256 is checked by the core.
- **Provider docs**: developers.facebook.com/docs/whatsapp/cloud-api/webhooks, …/reference/media.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from datetime import UTC, datetime
from typing import ClassVar

import requests
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from normalizer.whatsapp import MEDIA_SCHEME, decode_whatsapp_message, split_webhook
from omnichannel.connector import Media
from omnichannel.errors import RetryableError, SkippableError
from omnichannel.schema import InboundMessage, RawMessage, ReceiveResult
from omnichannel.webhook import (
    WebhookConnector,
    WebhookRejected,
    WebhookRequest,
    WebhookResponse,
    json_response,
)

__all__ = ["WhatsAppCloudConnector", "WhatsAppCloudOptions"]

log = logging.getLogger("omnichannel.connectors.whatsapp_cloud")
CONTENT_TYPE = "application/vnd.whatsapp.message+json"
_SIGNATURE = re.compile(r"sha256=([0-9a-f]{64})")
_EXPIRED = (401, 403, 404, 410)


class WhatsAppCloudOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    app_secret: SecretStr
    verify_token: SecretStr
    access_token: SecretStr
    phone_number_ids: list[str] = Field(min_length=1)
    graph_api_url: str = "https://graph.facebook.com"
    graph_api_version: str = "v21.0"
    max_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    timeout: float = Field(default=30, gt=0)


class WhatsAppCloudConnector(WebhookConnector):
    """Meta WhatsApp Cloud API notifications."""

    type = "whatsapp-cloud"
    channel = "whatsapp"
    Options = WhatsAppCloudOptions
    options: WhatsAppCloudOptions
    content_types: ClassVar[tuple[str, ...]] = ("application/json",)
    default_max_bytes = 4 * 1024 * 1024

    # -- webhook -------------------------------------------------------------------------------

    def handshake(self, request: WebhookRequest) -> WebhookResponse:
        params = request.query_params()
        token = params.get("hub.verify_token", "").encode()
        expected = self.options.verify_token.get_secret_value().encode()
        challenge = params.get("hub.challenge", "")
        if params.get("hub.mode") != "subscribe" or not hmac.compare_digest(token, expected):
            raise WebhookRejected(403, "verification failed")
        return WebhookResponse(200, challenge.encode(), "text/plain; charset=utf-8")

    def verify(self, request: WebhookRequest) -> None:
        match = _SIGNATURE.fullmatch(request.headers.get("x-hub-signature-256", ""))
        if match is None:
            raise WebhookRejected(403, "missing or malformed X-Hub-Signature-256")
        key = self.options.app_secret.get_secret_value().encode()
        expected = hmac.new(key, request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, match.group(1)):
            raise WebhookRejected(403, "bad signature")

    def parse(self, request: WebhookRequest) -> list[RawMessage]:
        try:
            envelope = json.loads(request.body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise WebhookRejected(400, "body is not JSON") from None
        if not isinstance(envelope, dict) or envelope.get("object") != "whatsapp_business_account":
            return []  # another object type: acknowledged, nothing to store
        messages, foreign = split_webhook(envelope, set(self.options.phone_number_ids))
        for number in foreign:
            log.warning(
                "security: %s received messages for phone_number_id %s, which is not "
                "configured; ignored",
                self.name,
                number,
            )
        now = datetime.now(UTC)
        request.scratch["messages"] = len(messages)
        return [
            RawMessage(
                connector=self.name,
                external_id=wamid,
                received_at=now,
                content_type=CONTENT_TYPE,
                payload=json.dumps(one, ensure_ascii=False).encode(),
            )
            for wamid, one in messages
        ]

    def decode(self, raw: RawMessage) -> InboundMessage:
        return decode_whatsapp_message(
            raw.payload, connector=self.name, received_at=raw.received_at
        )

    def respond(self, request: WebhookRequest, results: list[ReceiveResult]) -> WebhookResponse:
        return json_response(200, {"received": request.scratch.get("messages", len(results))})

    # -- media ---------------------------------------------------------------------------------

    def _get(self, url: str, *, stream: bool = False) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.options.access_token.get_secret_value()}"}
        try:
            return requests.get(
                url,
                headers=headers,
                timeout=self.options.timeout,
                stream=stream,
                allow_redirects=True,
            )
        except requests.RequestException as exc:
            raise RetryableError(f"Graph API unreachable: {type(exc).__name__}") from None

    def _media_url(self, media_id: str) -> str:
        base = self.options.graph_api_url.rstrip("/")
        response = self._get(f"{base}/{self.options.graph_api_version}/{media_id}")
        _raise_for(response, "media lookup")
        url = (
            response.json().get("url")
            if response.headers.get("content-type", "").startswith("application/json")
            else None
        )
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise RetryableError("media lookup gave no URL")
        return url

    def fetch_media(self, url: str, *, max_bytes: int) -> Media:
        if not url.startswith(MEDIA_SCHEME):
            raise SkippableError("not a WhatsApp media reference")
        media_id = url[len(MEDIA_SCHEME) :]
        for attempt in range(2):  # the download URL lives ~5 minutes: look it up again once
            response = self._get(self._media_url(media_id), stream=True)
            if response.status_code in _EXPIRED and attempt == 0:
                response.close()
                continue
            _raise_for(response, "media download")
            return Media(
                _read_capped(response, max_bytes),
                response.headers.get("content-type", "").split(";")[0] or None,
            )
        raise RetryableError("media URL expired twice")


def _raise_for(response: requests.Response, what: str) -> None:
    status = response.status_code
    if status < 300:
        return
    response.close()
    if status in (401, 403, 429) or status >= 500:  # a token can be renewed: keep retrying
        raise RetryableError(f"{what}: HTTP {status}")
    raise SkippableError(f"{what}: HTTP {status}")


def _read_capped(response: requests.Response, limit: int) -> bytes:
    chunks, total = [], 0
    with response:
        for chunk in response.iter_content(65536):
            total += len(chunk)
            if total > limit:
                raise SkippableError(f"media larger than {limit} bytes")
            chunks.append(chunk)
    return b"".join(chunks)
