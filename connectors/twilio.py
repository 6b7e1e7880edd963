"""Twilio: SMS and WhatsApp numbers on Twilio, by signed webhook and by reconciling the message log.

- **Channel**: ``sms``; ``whatsapp`` when the sender is ``whatsapp:+62…``. One connector serves
  both kinds of number of one Twilio account.
- **Mode**: ``both`` (default): webhooks, plus a reconciliation poll of Twilio's message log —
  Twilio does not retry a failed webhook by default, so a message that arrived while we were
  down is only in the log. ``webhook``: no polling. ``poll``: no webhooks (404), the log only.
- **Configuration**: ``account_sid``, ``auth_token`` (**secret**), ``mode``, ``poll_interval``
  (seconds, default 300), ``api_base_url`` (default ``https://api.twilio.com``; tests point it
  at a local server), ``public_url`` (overrides ``server.public_url`` for this connector),
  ``phone_numbers`` (our numbers, E.164, ``whatsapp:+62…`` for WhatsApp only; empty = every
  number of the account), ``media_hosts``, ``media_redirect_hosts``, ``max_bytes`` (webhook
  body limit, default 1 MiB), ``poll_page_size``, ``timeout``, ``lookback_days`` (how far the
  very first poll looks back), ``from_number`` and ``messaging_service_sid`` (the sender of
  outgoing messages when the complaint does not name the number it came to).
- **Cursor**: ``{"date_sent": <newest date_sent seen, ISO UTC>, "recent": [sid, ...]}``. Each
  poll lists ``DateSent>=`` (newest - 1 day, as a date: the filter has day granularity), every
  page (``next_page_uri``), ``direction == "inbound"``, ``status == "received"`` and ``To`` one of
  ``phone_numbers``. ``recent`` holds the sids of that window already committed, so a poll does
  not store them or list their media again. The cursor moves only at the end of a complete
  scan (the log is not ordered), in an empty closing batch.
- **Dedupe key**: ``MessageSid`` (the API's ``sid``), for webhook and poll alike, so the core
  files a message once whichever way it came first. Status callbacks: ``<sid>#<status>``.
- **Webhook verification**: ``X-Twilio-Signature`` checked with the official
  ``RequestValidator`` against ``public_url`` + the request path + the raw query (the URL
  Twilio called, behind any TLS proxy), or the request URL itself when no public URL is
  configured; the validator also tries it with and without the default port. All values of
  repeated fields are signed. ``AccountSid`` must be ours. Anything else: 403, nothing stored.
- **Reply**: TwiML (``text/xml``), ``<Response/>`` once the payload is stored: the
  acknowledgement goes through the outbox (``ack = "outbox"``, the default). With
  ``ack = "inline"`` the request waits (``filing.wait``) for its message to be filed and
  answers a ``new`` complaint with the acknowledgement ``<Message>`` carrying the ticket; the
  core marks that outbox row sent inline, and past the wait it stays with the outbox.
- **Media**: ``MediaUrlN`` become pending attachments, downloaded later (``fetch_media``) with
  HTTP Basic auth — only from a ``media_hosts`` host (default ``api.twilio.com``, plus the host
  of ``api_base_url``) and only for exactly ``/2010-04-01/Accounts/<account_sid>/Messages/
  <sid>/Media/<sid>`` (no query, no dot segment, no escape), checked before any request, so a
  payload cannot send our credentials elsewhere, nor to another resource of the API. Twilio
  answers with a redirect to its CDN: redirects are followed, without credentials, only to
  ``media_hosts`` or ``media_redirect_hosts`` (default ``*.twiliocdn.com``; ``*.`` matches any
  subdomain, nothing else). Plain ``http`` only to loopback hosts. Any other host is refused
  for good (SkippableError); the size cap is enforced while streaming.
- **Sending** (``send``, the outbox): ``POST /2010-04-01/Accounts/<sid>/Messages.json`` with the
  official client, from ``our_address`` (the ``To`` the citizen wrote to), else ``from_number``,
  else through ``messaging_service_sid``; a WhatsApp sender (``whatsapp:+62…``) sends to
  ``whatsapp:<to>``. Returns the message SID.
- **Errors**: network errors, HTTP 429 (``Retry-After`` kept) and 5xx are retryable; 401/403 from
  the API are fatal. A send refused with another 4xx (21211 invalid ``To``, 21610 unsubscribed)
  is ``Undeliverable``; the same answer while polling stays fatal.
- **Provider docs**: https://www.twilio.com/docs/messaging/guides/webhook-request,
  https://www.twilio.com/docs/usage/webhooks/webhooks-security,
  https://www.twilio.com/docs/sms/api/message-resource#read-multiple-message-resources,
  https://www.twilio.com/docs/sms/api/media-resource.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from email.utils import format_datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlparse, urlsplit
from xml.sax.saxutils import escape as xml_escape

import requests
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator, add_port, remove_port
from twilio.rest import Client
from twilio.twiml.messaging_response import MessagingResponse

from normalizer.twilio import (
    FORM_TYPE,
    JSON_TYPE,
    decode_twilio,
    external_id_of,
    parse_form,
)
from omnichannel.connector import Batch, Media, PollingConnector
from omnichannel.errors import (
    ConnectorError,
    DecodeError,
    FatalError,
    RetryableError,
    SkippableError,
    Undeliverable,
)
from omnichannel.media import follow_redirects, host_allowed, url_netloc
from omnichannel.outbound import Outbound, retry_after_seconds
from omnichannel.schema import InboundMessage, Outcome, RawMessage, ReceiveResult
from omnichannel.webhook import (
    DEFAULT_MAX_BYTES,
    WebhookConnector,
    WebhookRejected,
    WebhookRequest,
    WebhookResponse,
    http_url,
    same_secret,
)

__all__ = ["TwilioConnector", "TwilioOptions", "host_allowed", "signature_url", "twiml_messages"]

log = logging.getLogger("omnichannel.connectors.twilio")

TWILIO_API = "https://api.twilio.com"
OVERLAP = timedelta(days=1)
MAX_RECENT = 20_000
_MEDIA_PATH = re.compile(
    r"/2010-04-01/Accounts/(?P<account>AC[0-9a-fA-F]{32})"
    r"/Messages/[A-Z]{2}[0-9a-fA-F]{32}/Media/ME[0-9a-fA-F]{32}"
)
T = TypeVar("T")


class TwilioOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_sid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$")
    auth_token: SecretStr
    mode: Literal["webhook", "poll", "both"] = "both"
    poll_interval: float = Field(default=300, gt=0)
    api_base_url: str = TWILIO_API
    public_url: str | None = None
    phone_numbers: list[str] = Field(default_factory=list)
    media_hosts: list[str] = Field(default_factory=lambda: ["api.twilio.com"])
    media_redirect_hosts: list[str] = Field(default_factory=lambda: ["*.twiliocdn.com"])
    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=1024)
    poll_page_size: int = Field(default=1000, ge=1, le=1000)
    timeout: float = Field(default=30, gt=0)
    ack: Literal["outbox", "inline"] = "outbox"
    lookback_days: int = Field(default=1, ge=0, le=400)
    from_number: str | None = None
    messaging_service_sid: str | None = Field(default=None, pattern=r"^MG[0-9a-fA-F]{32}$")

    @field_validator("api_base_url", "public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return http_url(value) if value is not None else None

    @field_validator("phone_numbers")
    @classmethod
    def _e164(cls, value: list[str]) -> list[str]:
        for number in value:
            if not _is_number(number):
                raise ValueError("each number must be E.164 (+62…), or whatsapp:+62…")
        return value

    @field_validator("from_number")
    @classmethod
    def _sender(cls, value: str | None) -> str | None:
        if value is not None and not _is_number(value):
            raise ValueError("must be E.164 (+62…), or whatsapp:+62…")
        return value


def _is_number(number: str) -> bool:
    """E.164 (``+62…``), optionally with a channel prefix (``whatsapp:+62…``)."""
    digits = number.split(":", 1)[-1]
    return digits.startswith("+") and digits[1:].isdigit() and 6 <= len(digits) <= 16


# -- URLs and hosts ----------------------------------------------------------------------------


def signature_url(request_url: str, public_url: str | None) -> str:
    """The URL Twilio signed: ``public_url`` + the request's path and raw query, or the request
    URL itself when no public URL is configured."""
    if not public_url:
        return request_url
    parts = urlsplit(request_url)
    return public_url.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")


# -- the API client ----------------------------------------------------------------------------


def _raise_for_status(status: int, what: str, headers: Any = None) -> None:
    if status in (401, 403):
        raise FatalError(f"{what}: Twilio refused the credentials (HTTP {status})")
    if status == 429 or status >= 500:
        wait = retry_after_seconds(headers.get("Retry-After")) if headers is not None else None
        raise RetryableError(f"{what}: HTTP {status}, will retry", retry_after=wait)


class _ApiHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """The official HTTP client, pointed at ``api_base_url``, with errors mapped to ours and a
    log that shows no query strings (they hold phone numbers)."""

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__(timeout=timeout, logger=log)
        self.base_url = base_url

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if url.startswith(TWILIO_API + "/"):
            url = self.base_url + url[len(TWILIO_API) :]
        try:
            response = super().request(method, url, *args, **kwargs)
        except requests.RequestException as exc:
            raise RetryableError(f"Twilio API unreachable: {type(exc).__name__}") from None
        _raise_for_status(response.status_code, "Twilio API", response.headers)
        return response

    def log_request(self, kwargs: dict[str, Any]) -> None:
        log.debug("Twilio API %s %s", kwargs["method"], urlsplit(kwargs["url"]).path)

    def log_response(self, status_code: int, response: Any) -> None:
        log.debug("Twilio API answered %s", status_code)


def _api_call(call: Callable[[], T], what: str) -> T:
    """Run an API call of the official client; its own errors become ours."""
    try:
        return call()
    except TwilioException as exc:
        status = getattr(exc, "status", None) or getattr(_arg(exc, 1), "status_code", "?")
        raise FatalError(f"{what}: Twilio API answered HTTP {status}") from None
    except ValueError:
        raise RetryableError(f"{what}: the Twilio API answer is not JSON") from None


def _arg(exc: BaseException, index: int) -> Any:
    return exc.args[index] if len(exc.args) > index else None


def _send_refused(exc: TwilioException) -> ConnectorError:
    """What a refused send means for the outbox. 401/403, 429 and 5xx never get here (the HTTP
    client raised them as ours); Twilio's own message is left out: it can quote the number."""
    status = exc.status if isinstance(exc, TwilioRestException) else None
    code = exc.code if isinstance(exc, TwilioRestException) else None
    what = f"send: Twilio API answered HTTP {status or '?'}" + (f", error {code}" if code else "")
    if status in (401, 403):
        return FatalError(what)
    if isinstance(status, int) and 400 <= status < 500 and status not in (408, 429):
        return Undeliverable(what)
    return RetryableError(what)


# -- the reconciliation cursor -----------------------------------------------------------------


@dataclass
class _Cursor:
    newest: datetime | None = None
    recent: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, value: Any) -> _Cursor:
        if not isinstance(value, dict):
            return cls()
        try:
            newest = datetime.fromisoformat(str(value["date_sent"])).astimezone(UTC)
        except (KeyError, TypeError, ValueError):
            return cls()
        recent = value.get("recent")
        return cls(newest, {str(s) for s in recent} if isinstance(recent, list) else set())

    def value(self) -> dict[str, Any] | None:
        if self.newest is None:
            return None
        return {"date_sent": self.newest.isoformat(), "recent": sorted(self.recent)}

    def window_start(self) -> date | None:
        return (self.newest - OVERLAP).date() if self.newest else None


@dataclass
class _Scan:
    """What one poll saw: every matching message's sid and date, for the next cursor."""

    before: _Cursor
    seen: dict[str, datetime] = field(default_factory=dict)

    def take(self, sid: str, when: datetime) -> bool:
        """Note the message; True when it must be stored (not seen in this or the last poll)."""
        new = sid not in self.seen and sid not in self.before.recent
        self.seen[sid] = when
        return new

    def cursor(self) -> _Cursor:
        newest = max([*self.seen.values(), *([self.before.newest] if self.before.newest else [])])
        start = datetime.combine((newest - OVERLAP).date(), time(), UTC)
        recent = sorted((w, s) for s, w in self.seen.items() if w >= start)[-MAX_RECENT:]
        return _Cursor(newest, {sid for _, sid in recent})


def _rfc2822(value: datetime | None) -> str | None:
    return format_datetime(value.astimezone(UTC), usegmt=True) if value else None


# -- the connector -----------------------------------------------------------------------------


def _port_variants(url: str) -> Iterator[str]:
    """``url``, then the forms the official validator also accepts: with the default port
    added, or removed (``twilio.request_validator.add_port`` / ``remove_port``); worked out
    only when ``url`` itself did not match."""
    yield url
    parsed = urlparse(url)
    seen = {url}
    for variant in (add_port(parsed), remove_port(parsed)):
        if variant not in seen:
            seen.add(variant)
            yield variant


def _twiml_parts() -> tuple[bytes, bytes, bytes, bytes]:
    """The official library's TwiML around two ``<Message>`` texts, cut at the texts: the
    answer for any texts is then put together without building an XML tree per request."""
    slot = "OMNICHANNEL-TEXT-SLOT"
    reply = MessagingResponse()
    reply.message(slot)
    reply.message(slot)
    head, between, tail = str(reply).split(slot)
    return str(MessagingResponse()).encode(), head.encode(), between.encode(), tail.encode()


_EMPTY_TWIML, _TWIML_HEAD, _TWIML_BETWEEN, _TWIML_TAIL = _twiml_parts()


def twiml_messages(texts: Sequence[str]) -> bytes:
    """``str(MessagingResponse())`` with one ``.message(text)`` per text, as UTF-8 bytes; the
    same bytes the library writes (ElementTree escapes ``&``, ``<`` and ``>`` in text)."""
    if not texts:
        return _EMPTY_TWIML
    if not all(texts):  # an empty text is written <Message />: left to the library
        reply = MessagingResponse()
        for text in texts:
            reply.message(text)
        return str(reply).encode("utf-8")
    escaped = _TWIML_BETWEEN.join(xml_escape(text).encode("utf-8") for text in texts)
    return _TWIML_HEAD + escaped + _TWIML_TAIL


class _Params(dict[str, list[str]]):
    """Form fields with every value, as the validator signs them (it calls ``getlist``)."""

    def getlist(self, key: str) -> list[str]:
        return self[key]

    getall = getlist  # tried first by the validator: without it, an AttributeError per field


class TwilioConnector(PollingConnector[TwilioOptions], WebhookConnector[TwilioOptions]):
    """SMS and WhatsApp numbers of one Twilio account."""

    type = "twilio"
    channel = "sms"
    Options = TwilioOptions
    content_types = (FORM_TYPE,)

    @property
    def acknowledges_inline(self) -> bool:
        return self.options.ack == "inline"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._validator = RequestValidator(self.options.auth_token.get_secret_value())
        self._rest: Any = None

    def close(self) -> None:
        rest, self._rest = self._rest, None
        if rest is not None and rest.http_client.session is not None:
            rest.http_client.session.close()

    # -- webhooks ------------------------------------------------------------------------------

    def public_url(self) -> str | None:
        return self.options.public_url or self.context.public_url

    def _form(self, request: WebhookRequest) -> _Params:
        """The form fields, parsed once per request (``verify`` then ``parse``)."""
        params: _Params | None = request.scratch.get("twilio.form")
        if params is None:
            try:
                params = request.scratch["twilio.form"] = _Params(parse_form(request.body))
            except DecodeError:
                raise WebhookRejected(400, "malformed form body") from None
        return params

    def verify(self, request: WebhookRequest) -> None:
        if self.options.mode == "poll":
            raise WebhookRejected(404, "webhooks are off for this connector (mode = poll)")
        signature = request.headers.get("x-twilio-signature", "")
        if not signature:  # refused before the body is parsed (signing needs the fields)
            raise WebhookRejected(403, "bad signature")
        params = self._form(request)
        url = signature_url(request.url, self.public_url())
        if not self._signed(url, params, signature):
            raise WebhookRejected(403, "bad signature")
        accounts = params.get("AccountSid", [])
        if len(accounts) != 1 or not same_secret(self.options.account_sid, accounts[0]):
            raise WebhookRejected(403, "not our Twilio account")

    def _signed(self, url: str, params: _Params, signature: str) -> bool:
        """``RequestValidator.validate`` for form bodies: the official signature of ``url`` as
        called, then of ``url`` with or without its default port; stops at the first match
        (``validate`` always computes both)."""
        for candidate in _port_variants(url):
            computed = self._validator.compute_signature(candidate, params)
            if same_secret(computed, signature):
                return True
        return False

    def parse(self, request: WebhookRequest) -> list[RawMessage]:
        fields = {key: values[0] for key, values in self._form(request).items()}
        try:
            external_id = external_id_of(fields)
        except DecodeError:
            raise WebhookRejected(400, "MessageSid missing or malformed", "MessageSid") from None
        log.debug("twilio %s: webhook for %s", self.name, external_id)
        return [self._raw(external_id, datetime.now(UTC), FORM_TYPE, request.body, "webhook")]

    def respond(self, request: WebhookRequest, results: list[ReceiveResult]) -> WebhookResponse:
        taken: dict[int, str] = request.scratch.get("inline_acks", {})
        texts = [
            taken[result.complaint_id]
            for result in results
            if result.outcome is Outcome.NEW and result.complaint_id in taken
        ]
        return WebhookResponse(200, twiml_messages(texts), "text/xml")

    def _raw(
        self, external_id: str, received_at: datetime, kind: str, payload: bytes, source: str
    ) -> RawMessage:
        return RawMessage(
            connector=self.name,
            external_id=external_id,
            received_at=received_at,
            content_type=kind,
            payload=payload,
            meta={"source": source},
        )

    # -- decoding ------------------------------------------------------------------------------

    def decode(self, raw: RawMessage) -> InboundMessage:
        return decode_twilio(
            raw.payload, raw.content_type, connector=self.name, external_id=raw.external_id
        )

    def raw_from_file(self, path: Path, payload: bytes, received_at: datetime) -> RawMessage:
        """A recorded webhook form, or a Messages API resource (``.json``), for ``ingest``."""
        try:
            if payload.lstrip()[:1] == b"{":
                sid = json.loads(payload)["sid"]
                if isinstance(sid, str) and sid:
                    return self._raw(sid, received_at, JSON_TYPE, payload, "file")
            else:
                fields = {k: v[0] for k, v in parse_form(payload).items()}
                return self._raw(external_id_of(fields), received_at, FORM_TYPE, payload, "file")
        except (ValueError, KeyError, TypeError, DecodeError):
            pass  # kept under its content hash, and quarantined by decode
        return super().raw_from_file(path, payload, received_at)

    # -- the REST API --------------------------------------------------------------------------

    def _client(self) -> Any:
        if self._rest is None:
            opts = self.options
            self._rest = Client(
                opts.account_sid,
                opts.auth_token.get_secret_value(),
                http_client=_ApiHttpClient(opts.api_base_url, opts.timeout),
                environment={"OMNICHANNEL": "1"},  # no TWILIO_EDGE/REGION: api_base_url rules
            )
        return self._rest

    def _account(self) -> Any:
        return self._client().api.v2010.accounts(self.options.account_sid)

    def check(self) -> None:
        _api_call(lambda: self._account().fetch(), "account")

    # -- sending -------------------------------------------------------------------------------

    def send(self, outbound: Outbound) -> str | None:
        """Send ``outbound`` as an SMS or a WhatsApp message; return its SID."""
        to, sender = self._addresses(outbound)
        messages = self._account().messages
        try:
            message = messages.create(to=to, body=outbound.text, **sender)
        except TwilioException as exc:
            raise _send_refused(exc) from None
        except ValueError:
            raise RetryableError("send: the Twilio API answer is not JSON") from None
        sid = message.sid if isinstance(message.sid, str) and message.sid else None
        log.info("twilio %s: sent %s %s as %s", self.name, outbound.kind, outbound.delivery_id, sid)
        return sid

    def _addresses(self, outbound: Outbound) -> tuple[str, dict[str, str]]:
        """``to`` and the sender argument (``from_`` or ``messaging_service_sid``): the number
        the citizen wrote to, else ``from_number``, else the messaging service."""
        opts = self.options
        bare = outbound.to.strip().removeprefix("whatsapp:")
        sender = (outbound.our_address or opts.from_number or "").strip()
        if sender:
            to = f"whatsapp:{bare}" if sender.startswith("whatsapp:") else bare
            return to, {"from_": sender}
        if opts.messaging_service_sid:
            to = f"whatsapp:{bare}" if outbound.to.strip().startswith("whatsapp:") else bare
            return to, {"messaging_service_sid": opts.messaging_service_sid}
        raise Undeliverable(
            "no sender: the message names no number of ours, and neither from_number nor "
            "messaging_service_sid is configured"
        )

    # -- polling -------------------------------------------------------------------------------

    def polls(self) -> bool:
        return self.options.mode != "webhook"

    def fetch(self, cursor: Any, *, since: date | None = None) -> Iterator[Batch]:
        if self.options.mode == "webhook":
            return
        before = _Cursor.load(cursor)
        today = datetime.now(UTC).date()
        start = since or before.window_start() or today - timedelta(days=self.options.lookback_days)
        scan, stored, targets = _Scan(before), 0, self._to_filters()
        for to in targets:
            for page in self._pages(start, to):
                raws = [self._api_raw(m) for m in page if self._wanted(m, targets, scan)]
                stored += len(raws)
                if raws:
                    yield Batch(raws, before.value())  # the cursor moves only at the end
        log.info(
            "twilio %s: %d inbound messages in the log since %s, %d to store",
            self.name,
            len(scan.seen),
            start.isoformat(),
            stored,
        )
        after = scan.cursor().value() if scan.seen else before.value()
        if after != before.value():
            yield Batch([], after)

    def _to_filters(self) -> list[str | None]:
        """``To`` values to list: each number as SMS and WhatsApp unless it names a channel."""
        filters: list[str | None] = []
        for number in self.options.phone_numbers:
            for value in (number,) if ":" in number else (number, "whatsapp:" + number):
                if value not in filters:
                    filters.append(value)
        return filters or [None]

    def _pages(self, start: date, to: str | None) -> Iterator[list[Any]]:
        messages = self._account().messages
        filters = {"to": to} if to else {}
        page = _api_call(
            lambda: messages.page(
                date_sent_after=start.isoformat(), page_size=self.options.poll_page_size, **filters
            ),
            "message log",
        )
        while page is not None:
            yield _api_call(partial(list, page), "message log")
            page = _api_call(page.next_page, "message log")

    def _wanted(self, message: Any, targets: list[str | None], scan: _Scan) -> bool:
        if message.direction != "inbound" or message.status != "received" or not message.sid:
            return False
        if targets != [None] and (message.to or "").strip() not in targets:
            return False
        return scan.take(message.sid, self._date_of(message))

    @staticmethod
    def _date_of(message: Any) -> datetime:
        when = message.date_sent or message.date_created
        return when.astimezone(UTC) if isinstance(when, datetime) else datetime.now(UTC)

    def _api_raw(self, message: Any) -> RawMessage:
        resource = {
            "sid": message.sid,
            "account_sid": message.account_sid,
            "messaging_service_sid": message.messaging_service_sid,
            "from": message.from_,
            "to": message.to,
            "body": message.body,
            "num_media": message.num_media,
            "num_segments": message.num_segments,
            "direction": message.direction,
            "status": message.status,
            "api_version": message.api_version,
            "date_sent": _rfc2822(message.date_sent),
            "date_created": _rfc2822(message.date_created),
            "media": self._media_of(message),
        }
        payload = json.dumps(resource, ensure_ascii=False).encode("utf-8")
        return self._raw(message.sid, self._date_of(message), JSON_TYPE, payload, "api")

    def _media_of(self, message: Any) -> list[dict[str, str]] | None:
        """The message's media as ``{url, content_type}``; None when the list is gone (the
        decoder then flags the message incomplete)."""
        if not str(message.num_media or "0").isdigit() or int(message.num_media or 0) == 0:
            return []
        media = self._account().messages(message.sid).media
        try:
            items = media.list(page_size=100)
        except TwilioException:  # 401/403, 429 and 5xx were raised as ours already
            log.warning("twilio %s: the media list of %s is unavailable", self.name, message.sid)
            return None
        except ValueError:
            raise RetryableError("media list: the Twilio API answer is not JSON") from None
        base = self.options.api_base_url
        return [
            {"url": base + str(item.uri).removesuffix(".json"), "content_type": item.content_type}
            for item in items
        ]

    # -- media ---------------------------------------------------------------------------------

    def _api_hosts(self) -> list[str]:
        own = url_netloc(self.options.api_base_url)
        return [*self.options.media_hosts, *([own] if own else [])]

    def _check_media_url(self, url: str) -> None:
        """Only a media resource of our account on Twilio's API host gets our credentials:
        exactly ``/2010-04-01/Accounts/<ours>/Messages/<sid>/Media/<sid>``, nothing added."""
        if not host_allowed(url, self._api_hosts()):
            raise SkippableError("media URL is not on an allowed Twilio API host")
        parts = urlsplit(url)
        path = _MEDIA_PATH.fullmatch(parts.path)
        if path is None or path["account"] != self.options.account_sid or "?" in url or "#" in url:
            raise SkippableError(
                "media URL is not on an allowed Twilio API path (a media resource of our account)"
            )

    def fetch_media(self, url: str, *, max_bytes: int) -> Media:
        self._check_media_url(url)
        try:
            with requests.Session() as session:
                return self._download(session, url, max_bytes)
        except requests.RequestException as exc:
            raise RetryableError(f"media download failed: {type(exc).__name__}") from None

    def _download(self, session: requests.Session, url: str, max_bytes: int) -> Media:
        auth = (self.options.account_sid, self.options.auth_token.get_secret_value())

        def get(target: str, credentials: bool) -> requests.Response:
            return session.get(
                target,
                auth=auth if credentials else None,
                headers={"Connection": "close"},  # one download per connection: none lingers
                stream=True,
                allow_redirects=False,
                timeout=self.options.timeout,
            )

        redirect_hosts = [*self._api_hosts(), *self.options.media_redirect_hosts]
        with follow_redirects(get, url, redirect_hosts) as response:
            return _read_media(response, max_bytes)


def _read_media(response: requests.Response, max_bytes: int) -> Media:
    status = response.status_code
    if status in (401, 403, 429) or status >= 500:
        raise RetryableError(f"media download: HTTP {status}")
    if status != 200:
        raise SkippableError(f"media download: HTTP {status}")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise SkippableError(f"media larger than {max_bytes} bytes")
    chunks, total = [], 0
    for chunk in response.iter_content(65536):
        total += len(chunk)
        if total > max_bytes:
            raise SkippableError(f"media larger than {max_bytes} bytes")
        chunks.append(chunk)
    kind = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return Media(b"".join(chunks), kind or None)
