"""Telegram: the chats of a bot, through the Telegram Bot API.

- **Channel**: ``telegram``.
- **Mode**: both, one at a time (Telegram refuses ``getUpdates`` while a webhook is set).
  Poll (``mode = "polling"``, the default): ``getUpdates``, long-polled between polls.
  Webhook (``mode = "webhook"``): ``POST /webhooks/<name>``, once the operator has called
  ``setWebhook`` with our URL and ``secret_token``.
- **Configuration**: ``token`` (**secret**; the bot token from @BotFather), ``webhook_secret``
  (**secret**; the ``secret_token`` given to ``setWebhook``; required for webhooks), ``mode``,
  ``api_url`` (``https://api.telegram.org``), ``timeout`` (10 s per request), ``long_poll``
  (10 s), ``batch_size`` (100, Telegram's most), ``poll_interval`` (30 s).
- **Cursor**: the next ``update_id`` to ask for (an ``int``). Sending it as ``offset`` confirms
  every update below it to Telegram, which then forgets them; ``ack`` confirms them as soon as
  they are committed.
- **Dedupe key**: ``<chat id>:<message id>`` (message ids count per chat); an edit
  ``<chat id>:<message id>:edit:<edit_date>``; an update that holds no message
  ``update:<update_id>``; an unreadable webhook body ``sha256:`` of its bytes.
- **Webhook verification**: ``X-Telegram-Bot-Api-Secret-Token`` equal to ``webhook_secret``,
  compared in constant time. A shared token, not a signature: it does not cover the body.
- **Media**: a photo (its largest size), document, video, voice or audio is an attachment
  ``telegram-file:<file_id>``, downloaded in the background (``getFile``, then the file).
- **Sending** (``send``): ``sendMessage`` to the chat id in ``Outbound.to``, as a reply to the
  citizen's message when ``in_reply_to`` is one of that chat's. 429 and 5xx are retryable (with
  Telegram's ``retry_after``), 401 fatal, any other refusal (blocked by the user, chat not
  found) undeliverable.
- **Provider docs**: core.telegram.org/bots/api (Update, Message, getUpdates, setWebhook,
  getFile, sendMessage).

The token is part of every Bot API URL (``/bot<token>/getUpdates``): no URL is ever logged or
put in an error, and the errors of ``requests`` (which quote the URL) are replaced, not chained.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, ClassVar, Literal

import requests
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from omnichannel import (
    Batch,
    ConnectorError,
    FatalError,
    InboundMessage,
    Media,
    PollingConnector,
    RawMessage,
    ReceiveResult,
    RetryableError,
    SkippableError,
    Undeliverable,
    WebhookConnector,
    WebhookRejected,
    WebhookRequest,
    WebhookResponse,
)
from omnichannel.outbound import Outbound
from omnichannel.webhook import http_url, same_secret

from .decode import FILE_ID, FILE_SCHEME, decode_update, is_int, parse_json, update_key

__all__ = ["FILE_SCHEME", "TelegramConnector", "TelegramOptions", "decode_update", "update_key"]

log = logging.getLogger(__name__)
CONTENT_TYPE = "application/json"
SECRET_HEADER = "x-telegram-bot-api-secret-token"
MAX_TEXT = 4096
"""The longest text ``sendMessage`` takes."""

_TOKEN = re.compile(r"[A-Za-z0-9:_-]{1,256}")
_WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
_FILE_PATH = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*")
_CHAT_ID = re.compile(r"-?[0-9]{1,20}")


Refusal = type[ConnectorError]
"""The error a call's refusal is (a 4xx other than 401, 409 and 429): what it means there."""


class TelegramOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: SecretStr
    webhook_secret: SecretStr | None = None
    mode: Literal["polling", "webhook"] = "polling"
    api_url: str = "https://api.telegram.org"
    timeout: float = Field(default=10, gt=0)
    long_poll: int = Field(default=10, ge=0, le=50)
    batch_size: int = Field(default=100, ge=1, le=100)
    poll_interval: float = Field(default=30, gt=0)

    @field_validator("token")
    @classmethod
    def _token_fits_a_url(cls, value: SecretStr) -> SecretStr:
        if not _TOKEN.fullmatch(value.get_secret_value()):
            raise ValueError("must be a bot token: letters, digits, ':', '_' and '-' only")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _secret_as_telegram_takes_it(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _WEBHOOK_SECRET.fullmatch(value.get_secret_value()):
            raise ValueError("must be 1 to 256 letters, digits, '_' or '-' (setWebhook's rule)")
        return value

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        return http_url(value)

    @model_validator(mode="after")
    def _webhook_needs_its_secret(self) -> TelegramOptions:
        if self.mode == "webhook" and self.webhook_secret is None:
            raise ValueError('mode = "webhook" needs webhook_secret (setWebhook\'s secret_token)')
        return self


class TelegramConnector(PollingConnector[TelegramOptions], WebhookConnector[TelegramOptions]):
    """A Telegram bot's updates: long-polled with getUpdates, or posted to our webhook."""

    type = "telegram"
    channel = "telegram"
    Options = TelegramOptions
    content_types: ClassVar[tuple[str, ...]] = (CONTENT_TYPE,)

    _cursor: int | None = None
    """The offset of the last fetch (what ``wait`` long-polls from)."""
    _confirmed: int | None = None
    """The offset ``ack`` last confirmed to Telegram."""

    def polls(self) -> bool:
        return self.options.mode == "polling"

    def check(self) -> None:
        me = self._call("getMe", {})
        if not isinstance(me, dict) or me.get("is_bot") is not True:
            raise FatalError("Telegram getMe: the token is not a bot's")

    # -- polling -------------------------------------------------------------------------------

    def fetch(self, cursor: Any, *, since: date | None = None) -> Iterator[Batch]:
        # Telegram keeps no history: a backfill (``since``) gets what it still holds
        offset = cursor if is_int(cursor) and since is None else None
        while True:
            self._cursor = offset
            updates = self._updates(self._offset(offset), self.options.batch_size, timeout=0)
            if not updates:
                return
            offset = max(update["update_id"] for update in updates) + 1
            yield Batch([self._raw(update) for update in updates], cursor=offset)
            self._cursor = offset
            if len(updates) < self.options.batch_size:
                return  # the rest is confirmed by ack, or by the next fetch from the cursor

    def ack(self, messages: Sequence[RawMessage]) -> None:
        ids = [m.meta["update_id"] for m in messages if is_int(m.meta.get("update_id"))]
        if not ids:
            return
        offset = max(ids) + 1
        try:
            self._updates(offset, 1, timeout=0)  # an offset confirms every update below it
        except ConnectorError as exc:  # the next fetch, from the stored cursor, confirms them
            log.warning("telegram %s: updates not confirmed yet (%s)", self.name, exc)
            return
        self._confirmed = offset

    def wait(self, timeout: float, stop: threading.Event) -> None:
        """Long-poll ``getUpdates`` until an update waits (left unconfirmed for the next fetch),
        ``timeout`` passes or ``stop`` is set (seen at least every ``long_poll`` seconds)."""
        deadline = time.monotonic() + timeout
        while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            if not self.options.long_poll:
                stop.wait(left)
                return
            started = time.monotonic()
            seconds = max(1, min(self.options.long_poll, int(left)))
            try:
                if self._updates(self._offset(self._cursor), 1, timeout=seconds):
                    return
            except ConnectorError:
                return  # the next fetch raises it again, and the core backs off
            if time.monotonic() - started < 1:  # a server that does not hold the request
                stop.wait(min(left, 1))

    def _offset(self, cursor: int | None) -> int | None:
        """The ``offset`` to ask from. Telegram forgets every update below the offset it is
        sent, and numbers the first update after a quiet week at random (maybe below our
        cursor): so once ``ack`` has confirmed everything below the cursor, no offset is sent
        and Telegram gives its earliest unconfirmed update, whatever its number."""
        return None if cursor is None or cursor == self._confirmed else cursor

    def _updates(self, offset: int | None, limit: int, *, timeout: int) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit, "timeout": timeout}
        if offset is not None:
            params["offset"] = offset
        result = self._call("getUpdates", params, wait=timeout)
        if not isinstance(result, list) or not all(_is_update(u) for u in result):
            raise RetryableError("Telegram getUpdates: the answer is not a list of updates")
        return result

    def _raw(self, update: dict[str, Any]) -> RawMessage:
        return RawMessage(
            connector=self.name,
            external_id=update_key(update) or f"update:{update['update_id']}",
            received_at=datetime.now(UTC),
            content_type=CONTENT_TYPE,
            payload=_payload(update),
            meta={"update_id": update["update_id"]},
        )

    # -- webhook -------------------------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        expected = self.options.webhook_secret
        given = request.headers.get(SECRET_HEADER)
        if expected is None:
            raise WebhookRejected(403, "no webhook_secret configured: webhooks are refused")
        if given is None or not same_secret(expected.get_secret_value(), given):
            raise WebhookRejected(403, "missing or wrong X-Telegram-Bot-Api-Secret-Token")

    def parse(self, request: WebhookRequest) -> list[RawMessage]:
        update = parse_json(request.body)
        key = update_key(update) if isinstance(update, dict) else None
        if key is None:  # Telegram sent it, yet it cannot be read: stored, then quarantined
            log.warning(
                "telegram %s: a verified body that is not an update is quarantined", self.name
            )
        meta = {"update_id": update["update_id"]} if key is not None else {}
        return [
            RawMessage(
                connector=self.name,
                external_id=key or "sha256:" + hashlib.sha256(request.body).hexdigest(),
                received_at=datetime.now(UTC),
                content_type=CONTENT_TYPE,
                payload=request.body,
                meta=meta,
            )
        ]

    def respond(self, request: WebhookRequest, results: list[ReceiveResult]) -> WebhookResponse:
        return WebhookResponse(200)  # a body would be read as a Bot API call to make

    # -- decoding (pure) -----------------------------------------------------------------------

    def decode(self, raw: RawMessage) -> InboundMessage:
        return decode_update(raw.payload, connector=self.name, received_at=raw.received_at)

    # -- sending and media ---------------------------------------------------------------------

    def send(self, outbound: Outbound) -> str:
        """Send ``outbound.text`` to the chat ``outbound.to``; the sent message's key."""
        if not _CHAT_ID.fullmatch(outbound.to):
            raise Undeliverable("the recipient is not a Telegram chat id")
        if len(outbound.text) > MAX_TEXT:
            raise Undeliverable(f"longer than Telegram's {MAX_TEXT} characters")
        params: dict[str, Any] = {"chat_id": int(outbound.to), "text": outbound.text}
        chat, _, message_id = (outbound.in_reply_to or "").partition(":")
        if chat == outbound.to and message_id.isdigit():
            params["reply_parameters"] = {
                "message_id": int(message_id),
                "allow_sending_without_reply": True,
            }
        sent = self._call("sendMessage", params, refused=Undeliverable)
        sent_id = sent.get("message_id") if isinstance(sent, dict) else None
        if not is_int(sent_id):
            raise RetryableError("Telegram sendMessage: the answer holds no message id")
        return f"{outbound.to}:{sent_id}"

    def fetch_media(self, url: str, *, max_bytes: int) -> Media:
        file_id = url.removeprefix(FILE_SCHEME)
        if not url.startswith(FILE_SCHEME) or not FILE_ID.fullmatch(file_id):
            raise SkippableError("not a Telegram file reference")
        found = self._call("getFile", {"file_id": file_id}, refused=SkippableError)
        path = found.get("file_path") if isinstance(found, dict) else None
        size = found.get("file_size") if isinstance(found, dict) else None
        if not isinstance(path, str) or not _FILE_PATH.fullmatch(path) or ".." in path:
            raise SkippableError("Telegram getFile gave no usable file_path")
        if is_int(size) and size > max_bytes:
            raise SkippableError(f"the file is larger than {max_bytes} bytes")
        token = self.options.token.get_secret_value()
        response = self._request("GET", f"{self.options.api_url}/file/bot{token}/{path}", 0)
        with response:
            if response.status_code != 200:
                raise _api_error("file download", response.status_code, {}, SkippableError)
            return Media(_read_capped(response, max_bytes), _content_type_of(path))

    # -- the Bot API, and its errors mapped in one place ---------------------------------------

    def _call(
        self,
        method: str,
        params: Mapping[str, Any],
        *,
        wait: int = 0,
        refused: Refusal = FatalError,
    ) -> Any:
        """The ``result`` of one Bot API call; a refusal is ``refused`` (for 4xx other than
        401, 409 and 429), RetryableError or FatalError."""
        token = self.options.token.get_secret_value()
        url = f"{self.options.api_url}/bot{token}/{method}"
        with self._request("POST", url, wait, json=params) as response:
            try:
                body = response.json()
            except ValueError:  # a proxy's error page, an empty body
                body = None
            status = response.status_code
        if isinstance(body, dict) and body.get("ok") is True and status == 200:
            return body.get("result")
        raise _api_error(method, status, body if isinstance(body, dict) else {}, refused)

    def _request(self, verb: str, url: str, wait: int, **kwargs: Any) -> requests.Response:
        try:
            return requests.request(
                verb,
                url,
                timeout=self.options.timeout + wait,
                allow_redirects=False,
                stream=verb == "GET",
                **kwargs,
            )
        except requests.RequestException as exc:  # its message quotes the URL, and the token
            raise RetryableError(f"Telegram Bot API unreachable ({type(exc).__name__})") from None


def _api_error(
    method: str, status: int, body: Mapping[str, Any], refused: Refusal
) -> ConnectorError:
    """What a Bot API refusal means to the core, as the error to raise."""
    code = body["error_code"] if is_int(body.get("error_code")) else status
    description = body.get("description")
    what = f"Telegram {method}: {code}"
    if isinstance(description, str) and description.isprintable():
        what += f" {description[:200]}"
    parameters = body.get("parameters")
    retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
    if code == 429 or code >= 500:
        seconds = float(retry_after) if isinstance(retry_after, int | float) else None
        return RetryableError(what, retry_after=seconds)
    if code == 401:
        return FatalError(f"{what} (the bot token is refused)")
    if code == 409 and "webhook" in what.lower():
        return FatalError(f'{what} (a webhook is set: use mode = "webhook", or deleteWebhook)')
    if code == 409:
        return RetryableError(f"{what} (another process polls this bot)")
    return refused(what)


def _read_capped(response: requests.Response, max_bytes: int) -> bytes:
    data = bytearray()
    try:
        for chunk in response.iter_content(64 * 1024):
            data += chunk
            if len(data) > max_bytes:
                raise SkippableError(f"the file is larger than {max_bytes} bytes")
    except requests.RequestException as exc:
        raise RetryableError(f"Telegram file download failed ({type(exc).__name__})") from None
    return bytes(data)


def _content_type_of(path: str) -> str | None:
    return mimetypes.guess_type(path)[0]


def _is_update(value: Any) -> bool:
    return isinstance(value, dict) and is_int(value.get("update_id"))


def _payload(update: dict[str, Any]) -> bytes:
    """One update as stored: UTF-8 JSON, with ``\\u`` escapes when it holds a lone surrogate."""
    try:
        return json.dumps(update, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(update, ensure_ascii=True).encode("ascii")
