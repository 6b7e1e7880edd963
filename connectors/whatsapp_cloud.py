"""WhatsApp Cloud API: Meta's WhatsApp Business Platform, called directly (no Twilio).

- **Channel**: ``whatsapp``.
- **Mode**: webhook. ``GET`` is the subscription handshake, ``POST`` the notifications.
- **Configuration**: ``app_secret`` (**secret**; signs the notifications), ``verify_token``
  (**secret**; the handshake), ``access_token`` (**secret**; Graph API bearer for media and
  sending), ``phone_number_ids`` (only these numbers are accepted; the first one also sends
  what names none of them), ``graph_api_url``, ``graph_api_version``, ``media_hosts``,
  ``max_bytes`` (4 MiB: Meta sends up to 3 MB), ``timeout``, ``template_name`` and
  ``template_language`` (default ``id``: the approved template sent outside the 24-hour
  window, its one body parameter the ticket), ``survey_template_name`` (the same for a
  satisfaction survey: a template asking for the rating, e.g. with quick-reply buttons).
- **Cursor**: none.
- **Dedupe key**: the message's ``wamid`` — permanent, since Meta retries anything but a 200
  for up to seven days, to every subscribed app.
- **Webhook verification**: ``X-Hub-Signature-256: sha256=<64 lowercase hex>`` =
  HMAC-SHA256(app_secret, raw body), checked in constant time before the JSON is parsed;
  handshake token compared in constant time, 403 without echo when wrong.
- **Media**: attachments are ``pending`` with ``whatsapp-media:<id>``; downloaded in the
  background: ``GET {graph}/{version}/{id}`` (bearer) gives a short-lived URL, then that URL
  (bearer again); an expired URL is looked up afresh; Meta's sha256 is checked by the core.
  The id must be digits and the URL ``https`` on a ``media_hosts`` host (default
  ``lookaside.fbsbx.com``) or the host of ``graph_api_url``, checked before any request, so a
  payload cannot point our token at another path or host; redirects are followed only to those
  hosts, with the token only to the host it was meant for. Anything else is refused for good.
- **Sending** (``send``, the outbox): ``POST {graph}/{version}/{phone_number_id}/messages``
  (bearer), from the ``phone_number_id`` the citizen wrote to (``our_address``) when it is one of
  ours, to the number's digits. Inside the 24-hour customer-service window (the citizen's last
  message less than 24 h ago) a text, quoting the citizen's message (``context``) when it
  answers a wamid; outside it, or when the window is unknown, the template — none configured:
  ``Undeliverable``. A text refused as outside the window (131047) goes out as the template
  when there is one. A satisfaction survey (and its reminder) inside the window is an
  interactive **list message** — reply buttons are at most three, a list holds the five
  points of the scale — whose rows have the ids ``survey:<ticket>:<score>``; the citizen's
  pick comes back quoting it, its title the score's name; outside the window it is the
  ``survey_template_name`` template, none configured: ``Undeliverable``. Returns the wamid.
  HTTP 408/429/5xx, network errors and the rate-limit codes (4, 80007, 130429, 131048,
  131056) are retryable (``Retry-After`` kept); 401/403 and code 190 (the token) are fatal;
  any other refusal is ``Undeliverable``.
- **Provider docs**: developers.facebook.com/docs/whatsapp/cloud-api/webhooks, …/reference/media,
  …/reference/messages, …/support/error-codes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import requests
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from normalizer.survey import choices
from normalizer.whatsapp import MEDIA_SCHEME, decode_whatsapp_message, split_webhook
from omnichannel.connector import Media
from omnichannel.errors import (
    ConnectorError,
    FatalError,
    RetryableError,
    SkippableError,
    Undeliverable,
)
from omnichannel.media import follow_redirects, host_allowed, url_netloc
from omnichannel.outbound import Outbound, Sent, retry_after_seconds
from omnichannel.schema import InboundMessage, RawMessage, ReceiveResult
from omnichannel.values import loads_json
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
_MEDIA_ID = re.compile(r"[0-9]{1,64}")
_EXPIRED = (401, 403, 404, 410)
WINDOW = timedelta(hours=24)
_RATE_LIMITED = frozenset({4, 80007, 130429, 131048, 131056})
_OUTSIDE_WINDOW = 131047
_BAD_TOKEN = 190
_SURVEY = ("survey", "survey.reminder")
"""Outbound kinds sent as a list of the rating scale."""
_LIST_TEXT = {"id": ("Beri nilai", "Kepuasan Anda"), "en": ("Rate", "Your satisfaction")}
"""The list's button (at most 20 characters) and section title (at most 24)."""
_LIST_BODY = 1024
"""Characters of an interactive message's body."""


class WhatsAppCloudOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    app_secret: SecretStr
    verify_token: SecretStr
    access_token: SecretStr
    phone_number_ids: list[str] = Field(min_length=1)
    graph_api_url: str = "https://graph.facebook.com"
    graph_api_version: str = "v21.0"
    media_hosts: list[str] = Field(default_factory=lambda: ["lookaside.fbsbx.com"])
    max_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    timeout: float = Field(default=30, gt=0)
    template_name: str | None = Field(default=None, min_length=1)
    template_language: str = Field(default="id", min_length=2)
    survey_template_name: str | None = Field(default=None, min_length=1)


class _OutsideWindow(Undeliverable):
    """Meta refused a text as outside the 24-hour window (131047)."""


_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{1,128}")
"""What the verification handshake echoes (Meta's ``hub.challenge`` is an integer)."""


class WhatsAppCloudConnector(WebhookConnector[WhatsAppCloudOptions]):
    """Meta WhatsApp Cloud API notifications."""

    type = "whatsapp-cloud"
    channel = "whatsapp"
    Options = WhatsAppCloudOptions
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
        if not _CHALLENGE.fullmatch(challenge):  # Meta sends a number: echo nothing else
            raise WebhookRejected(400, "hub.challenge must be 1 to 128 letters or digits")
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
        try:  # NaN and Infinity are kept: such a message is stored, then quarantined by decode
            envelope = loads_json(request.body, finite=False)
        except ValueError:  # not JSON, nested too deeply, an integer Python cannot convert
            return [self._unreadable(request.body)]
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
                payload=_payload(one),
            )
            for wamid, one in messages
        ]

    def _unreadable(self, body: bytes) -> RawMessage:
        """A body Meta signed that cannot be read: kept whole, under its hash (a redelivery is
        a duplicate), for decode to quarantine — never answered 400 and lost when Meta gives
        up retrying."""
        log.warning(
            "whatsapp %s: a signed body that is not readable JSON is quarantined", self.name
        )
        return RawMessage(
            connector=self.name,
            external_id="sha256:" + hashlib.sha256(body).hexdigest(),
            received_at=datetime.now(UTC),
            content_type=CONTENT_TYPE,
            payload=body,
        )

    def decode(self, raw: RawMessage) -> InboundMessage:
        return decode_whatsapp_message(
            raw.payload, connector=self.name, received_at=raw.received_at
        )

    def respond(self, request: WebhookRequest, results: list[ReceiveResult]) -> WebhookResponse:
        return json_response(200, {"received": request.scratch.get("messages", len(results))})

    # -- sending -------------------------------------------------------------------------------

    def send(self, outbound: Outbound) -> str | Sent | None:
        """Send ``outbound`` inside the 24-hour window as a text (a survey: a list of the
        scale), else as the template; return the wamid (with the template's description when
        the template went out)."""
        opts = self.options
        ours = outbound.our_address
        number = ours if ours in opts.phone_number_ids else opts.phone_number_ids[0]
        url = f"{opts.graph_api_url.rstrip('/')}/{opts.graph_api_version}/{number}/messages"
        to = _wa_id(outbound.to)
        survey = outbound.kind.startswith("survey")
        template = opts.survey_template_name if survey else opts.template_name
        if _in_window(outbound.last_inbound_at, datetime.now(UTC)):
            message = _list_message(to, outbound) if outbound.kind in _SURVEY else None
            try:
                return self._post_message(url, message or _text_message(to, outbound), outbound)
            except _OutsideWindow:
                if template is None:
                    raise
                log.info(
                    "whatsapp %s: %s is outside the 24-hour window after all: the template",
                    self.name,
                    outbound.delivery_id,
                )
        if template is None:
            option = "survey_template_name" if survey else "template_name"
            raise Undeliverable(f"outside WhatsApp's 24-hour window and no {option} configured")
        message = _template_message(to, template, opts.template_language, outbound)
        wamid = self._post_message(url, message, outbound)
        described = f"[template {template} ({opts.template_language}): {outbound.ticket}]"
        return Sent(wamid, described)

    def _post_message(self, url: str, message: dict[str, Any], outbound: Outbound) -> str | None:
        headers = {"Authorization": f"Bearer {self.options.access_token.get_secret_value()}"}
        try:
            response = requests.post(
                url,
                json=message,
                headers=headers,
                timeout=self.options.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise RetryableError(f"Graph API unreachable: {type(exc).__name__}") from None
        with response:
            body = _json_of(response)
            if response.status_code >= 300 or "error" in body:
                raise _send_refused(response, body)
        sent = _dict(body.get("messages"), 0).get("id")
        wamid = sent if isinstance(sent, str) and sent else None
        if wamid is None:
            log.warning("whatsapp %s: Meta accepted a message but gave no wamid", self.name)
        log.info(
            "whatsapp %s: sent %s %s (%s) as %s",
            self.name,
            outbound.kind,
            outbound.delivery_id,
            message["type"],
            wamid,
        )
        return wamid

    # -- media ---------------------------------------------------------------------------------

    def _get(self, url: str, *, stream: bool = False, bearer: bool = True) -> requests.Response:
        """One GET, redirects not followed (:func:`follow_redirects` decides where they go)."""
        token = self.options.access_token.get_secret_value()
        headers = {"Authorization": f"Bearer {token}"} if bearer else {}
        try:
            return requests.get(
                url,
                headers=headers,
                timeout=self.options.timeout,
                stream=stream,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise RetryableError(f"Graph API unreachable: {type(exc).__name__}") from None

    def _media_hosts(self) -> list[str]:
        own = url_netloc(self.options.graph_api_url)
        return [*self.options.media_hosts, *([own] if own else [])]

    def _media_url(self, media_id: str) -> str:
        base = self.options.graph_api_url.rstrip("/")
        response = self._get(f"{base}/{self.options.graph_api_version}/{media_id}")
        _raise_for(response, "media lookup")
        url = (
            _json_of(response).get("url")
            if response.headers.get("content-type", "").startswith("application/json")
            else None
        )
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise RetryableError("media lookup gave no URL")
        if not host_allowed(url, self._media_hosts()):
            raise SkippableError("media URL from the Graph API is not on an allowed media host")
        return url

    def _download(self, url: str) -> requests.Response:
        """The media at ``url``; the bearer token only to that URL's own host."""

        def get(target: str, credentials: bool) -> requests.Response:
            return self._get(target, stream=True, bearer=credentials)

        return follow_redirects(get, url, self._media_hosts())

    def fetch_media(self, url: str, *, max_bytes: int) -> Media:
        if not url.startswith(MEDIA_SCHEME):
            raise SkippableError("not a WhatsApp media reference")
        media_id = url[len(MEDIA_SCHEME) :]
        if not _MEDIA_ID.fullmatch(media_id):  # checked before any request is built from it
            raise SkippableError("not a WhatsApp media id (digits only)")
        for attempt in range(2):  # the download URL lives ~5 minutes: look it up again once
            response = self._download(self._media_url(media_id))
            if response.status_code in _EXPIRED and attempt == 0:
                response.close()
                continue
            _raise_for(response, "media download")
            return Media(
                _read_capped(response, max_bytes),
                response.headers.get("content-type", "").split(";")[0] or None,
            )
        raise RetryableError("media URL expired twice")


def _payload(message: dict[str, Any]) -> bytes:
    """One message's stored payload: UTF-8 JSON; with ``\\u`` escapes when it holds a lone
    surrogate (which UTF-8 cannot encode), so that it is stored and its decoding refuses it."""
    try:
        return json.dumps(message, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(message, ensure_ascii=True).encode("ascii")


def _raise_for(response: requests.Response, what: str) -> None:
    status = response.status_code
    if status < 300:
        return
    response.close()
    if status in (401, 403, 429) or status >= 500:  # a token can be renewed: keep retrying
        raise RetryableError(f"{what}: HTTP {status}")
    raise SkippableError(f"{what}: HTTP {status}")


def _in_window(last_inbound_at: datetime | None, now: datetime) -> bool:
    """Whether the customer-service window is open (unknown: closed)."""
    if last_inbound_at is None:
        return False
    if last_inbound_at.tzinfo is None:
        last_inbound_at = last_inbound_at.replace(tzinfo=UTC)
    return now - last_inbound_at < WINDOW


def _wa_id(to: str) -> str:
    """The recipient as Meta wants it: the E.164 number's digits, without ``+``."""
    digits = to.strip().removeprefix("whatsapp:").removeprefix("+")
    if not (digits.isascii() and digits.isdigit() and 6 <= len(digits) <= 15):
        raise Undeliverable("the recipient is not an E.164 phone number")
    return digits


def _text_message(to: str, outbound: Outbound) -> dict[str, Any]:
    message: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": {"preview_url": False, "body": outbound.text},
    }
    if outbound.in_reply_to and outbound.in_reply_to.startswith("wamid."):
        message["context"] = {"message_id": outbound.in_reply_to}
    return message


def _list_message(to: str, outbound: Outbound) -> dict[str, Any]:
    """A survey as an interactive list: one row per point of the scale, best first."""
    language = outbound.language if outbound.language in _LIST_TEXT else "id"
    button, section = _LIST_TEXT[language]
    of = "dari" if language == "id" else "of"
    rows = [
        {
            "id": f"survey:{outbound.ticket}:{score}",
            "title": label,
            "description": f"{score} {of} 5",
        }
        for score, label in choices(language)
    ]
    text = outbound.text
    if len(text) > _LIST_BODY:
        text = text[: _LIST_BODY - 1] + "…"
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "interactive",
        "interactive": {
            "type": "list",
            "body": {"text": text},
            "action": {"button": button, "sections": [{"title": section, "rows": rows}]},
        },
    }


def _template_message(to: str, name: str, language: str, outbound: Outbound) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": {
            "name": name,
            "language": {"code": language},
            "components": [
                {"type": "body", "parameters": [{"type": "text", "text": outbound.ticket}]}
            ],
        },
    }


def _json_of(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:  # a proxy's HTML error page, an empty body
        return {}
    return body if isinstance(body, dict) else {}


def _dict(value: Any, index: int | None = None) -> dict[str, Any]:
    """``value`` (or its ``index``-th item) when it is a dict, else ``{}``."""
    if index is not None:
        value = value[index] if isinstance(value, list) and len(value) > index else None
    return value if isinstance(value, dict) else {}


def _send_refused(response: requests.Response, body: dict[str, Any]) -> ConnectorError:
    """What a refused send means for the outbox. Meta's own message is left out: it can quote
    the recipient."""
    status = response.status_code
    error = _dict(body.get("error"))
    code = error.get("code") if isinstance(error.get("code"), int) else None
    what = f"send: Graph API answered HTTP {status}" + (f", error {code}" if code else "")
    if code == _BAD_TOKEN:
        return FatalError(f"{what} (the access token is invalid or expired)")
    if code in _RATE_LIMITED or status in (408, 429) or status >= 500:
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        return RetryableError(f"{what}, will retry", retry_after=wait)
    if status in (401, 403):
        return FatalError(f"{what} (the access token was refused)")
    if code == _OUTSIDE_WINDOW:
        return _OutsideWindow(f"{what}: outside WhatsApp's 24-hour window")
    if 400 <= status < 500:
        return Undeliverable(what)
    return RetryableError(what)


def _read_capped(response: requests.Response, limit: int) -> bytes:
    chunks, total = [], 0
    with response:
        for chunk in response.iter_content(65536):
            total += len(chunk)
            if total > limit:
                raise SkippableError(f"media larger than {limit} bytes")
            chunks.append(chunk)
    return b"".join(chunks)
