"""What the kit does not cover: Telegram's offsets, long polling, sending, files, errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from botapi import BotAPI
from omnichannel_telegram import TelegramConnector, TelegramOptions
from pydantic import ValidationError
from test_contract import TOKEN, WEBHOOK_SECRET, message

from omnichannel import (
    FatalError,
    Inbox,
    Outcome,
    RetryableError,
    SkippableError,
    Undeliverable,
)
from omnichannel.outbound import Outbound
from omnichannel.testing import watch_secrets

CHAT = 81234567


@pytest.fixture
def api() -> Iterator[BotAPI]:
    with BotAPI(TOKEN) as running:
        yield running


def bot(api: BotAPI, **options: Any) -> TelegramConnector:
    return TelegramConnector.from_options("tg", {"token": TOKEN, "api_url": api.url, **options})


def texts(count: int) -> list[dict[str, Any]]:
    return [{"message": message(100 + n, text=f"Keluhan nomor {n}.")} for n in range(count)]


def outbound(to: str = str(CHAT), text: str = "Nomor pengaduan Anda ADU-2026-000001.") -> Outbound:
    return Outbound("d-1", "acknowledgement", to, text, "ADU-2026-000001", in_reply_to=f"{to}:10")


def test_poll_confirms_updates_once_they_are_committed(
    api: BotAPI, omnichannel_inbox: Inbox
) -> None:
    """A poll files every waiting update, then ack confirms them to Telegram (which forgets
    them); the next poll asks from there and gets only what came since."""
    for item in texts(3):
        api.push(item)
    omnichannel_inbox.add_connector(bot(api))
    first = omnichannel_inbox.poll("tg")
    assert [r.outcome for r in first] == [Outcome.NEW] * 3
    assert api.pending() == []
    api.push({"message": message(200, text="Satu lagi.")})
    assert [r.outcome for r in omnichannel_inbox.poll("tg")] == [Outcome.NEW]


def test_fetch_pages_with_offsets_and_leaves_the_last_page_to_ack(api: BotAPI) -> None:
    """Past a full batch, the next getUpdates sends the offset after it (confirming what was
    committed); the last page stays unconfirmed until ack or the next fetch."""
    ids = [api.push(item) for item in texts(5)]
    batches = list(bot(api, batch_size=2).fetch(None))
    assert [len(b.messages) for b in batches] == [2, 2, 1]
    assert [b.cursor for b in batches] == [ids[1] + 1, ids[3] + 1, ids[4] + 1]
    offsets = [params.get("offset") for method, params in api.calls if method == "getUpdates"]
    assert offsets == [None, ids[1] + 1, ids[3] + 1]
    assert api.pending() == [ids[4]]


def test_after_ack_the_earliest_unconfirmed_update_is_asked_for(api: BotAPI) -> None:
    """Once ack has confirmed up to the cursor, a fetch sends no offset: an update Telegram
    numbered below the cursor (after a quiet week) is still fetched, not dropped."""
    connector = bot(api)
    api.push(texts(1)[0])
    (batch,) = list(connector.fetch(None))
    connector.ack(batch.messages)
    api.next_update_id = 5  # renumbered at random, below the stored cursor
    api.push({"message": message(300, text="Setelah seminggu sepi.")})
    (again,) = list(connector.fetch(batch.cursor))
    assert [m.external_id for m in again.messages] == [f"{CHAT}:300"]


def test_wait_long_polls_and_leaves_the_update_for_fetch(api: BotAPI) -> None:
    """``wait`` holds a getUpdates (limit 1, a timeout) open and returns once an update
    arrives, without confirming it."""
    connector, stop, done = bot(api, long_poll=20), threading.Event(), threading.Event()

    def wait() -> None:
        connector.wait(60, stop)
        done.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    api.push(texts(1)[0])
    waiter.join(30)
    stop.set()
    assert done.is_set(), "wait did not return when an update arrived"
    method, params = api.calls[0]
    assert (method, params["limit"], params["timeout"]) == ("getUpdates", 1, 20)
    assert len(api.pending()) == 1


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        (429, RetryableError, "retry after 7"),
        (500, RetryableError, "500"),
        (401, FatalError, "the bot token is refused"),
        (409, FatalError, 'use mode = "webhook"'),
    ],
)
def test_refusals_say_what_they_mean(
    api: BotAPI, status: int, error: type[Exception], words: str
) -> None:
    """Each refusal is the error the daemon acts on, says why, and holds no token."""
    connector = bot(api)
    api.fail_next(status, retry_after=7 if status == 429 else None)
    with pytest.raises(error, match=words) as raised, watch_secrets(connector):
        list(connector.fetch(None))
    if status == 429:
        assert isinstance(raised.value, RetryableError) and raised.value.retry_after == 7


def test_unreachable_api_error_holds_no_url(api: BotAPI) -> None:
    """A refused connection is retryable, and the error chain (whose requests message quotes
    the URL, token and all) is cut."""
    connector = bot(api)
    api.stop()
    with pytest.raises(RetryableError) as raised, watch_secrets(connector):
        list(connector.fetch(None))
    assert raised.value.__suppress_context__ and raised.value.__cause__ is None
    assert "/bot" not in str(raised.value)


def test_send_replies_in_the_citizens_chat(api: BotAPI) -> None:
    """``send`` posts sendMessage to the chat, as a reply to the citizen's message, and
    returns the sent message's key."""
    connector = bot(api)
    with watch_secrets(connector):
        sent = connector.send(outbound())
    assert sent == f"{CHAT}:9000"
    (params,) = api.sent
    assert params["chat_id"] == CHAT
    assert params["reply_parameters"] == {"message_id": 10, "allow_sending_without_reply": True}


@pytest.mark.parametrize(
    ("setup", "error"),
    [
        ("blocked", Undeliverable),
        ("throttled", RetryableError),
        ("bad_token", FatalError),
        ("not_a_chat", Undeliverable),
        ("too_long", Undeliverable),
    ],
)
def test_send_failures_are_mapped(api: BotAPI, setup: str, error: type[Exception]) -> None:
    """A user who blocked the bot or a wrong chat is undeliverable (for this delivery only),
    a 429 retryable, a refused token fatal."""
    connector, item = bot(api), outbound()
    if setup == "blocked":
        api.blocked.add(CHAT)
    elif setup == "throttled":
        api.fail_next(429, retry_after=3)
    elif setup == "bad_token":
        api.fail_next(401)
    elif setup == "not_a_chat":
        item = outbound(to="+6281234567890")
    else:
        item = outbound(text="x" * 4097)
    with pytest.raises(error), watch_secrets(connector):
        connector.send(item)


def test_fetch_media_downloads_a_file_by_its_id(api: BotAPI) -> None:
    """An attachment's ``telegram-file:`` reference is resolved with getFile and downloaded;
    one over ``max_bytes`` or an id that is not Telegram's is refused, the latter before
    any request."""
    connector = bot(api)
    api.add_file("AgAD-large", "photos/file_7.jpg", b"\xff\xd8jpeg bytes")
    with watch_secrets(connector):
        media = connector.fetch_media("telegram-file:AgAD-large", max_bytes=1000)
        assert (media.content, media.content_type) == (b"\xff\xd8jpeg bytes", "image/jpeg")
        with pytest.raises(SkippableError, match="larger"):
            connector.fetch_media("telegram-file:AgAD-large", max_bytes=4)
        calls = len(api.calls)
        with pytest.raises(SkippableError):
            connector.fetch_media("telegram-file:../../getMe", max_bytes=1000)
    assert len(api.calls) == calls


def test_check_asks_for_the_bot(api: BotAPI) -> None:
    """``omnichannel check --connect`` calls getMe: a good token passes, a refused one is a
    FatalError without the token."""
    bot(api).check()
    wrong = bot(api, token="123:not-the-token")
    with pytest.raises(FatalError, match="401"), watch_secrets(wrong):
        wrong.check()


def test_options_are_checked() -> None:
    """Webhook mode needs its secret; a token that cannot be part of a URL is refused (the
    message names the rule, not the value); webhook mode is not polled."""
    with pytest.raises(ValidationError, match="webhook_secret"):
        TelegramOptions.model_validate({"token": TOKEN, "mode": "webhook"})
    with pytest.raises(ValidationError) as raised:
        TelegramOptions.model_validate({"token": "123:abc/../../x"})
    (error,) = raised.value.errors(include_input=False)
    assert error["loc"] == ("token",) and "abc" not in error["msg"]
    webhook = {"token": TOKEN, "mode": "webhook", "webhook_secret": WEBHOOK_SECRET}
    assert not TelegramConnector.from_options("tg", webhook).polls()
