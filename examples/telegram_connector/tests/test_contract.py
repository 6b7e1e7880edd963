"""The Telegram connector proves the omnichannel connector contract (the shipped kit)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from botapi import BotAPI

from omnichannel import Outcome, WebhookRequest
from omnichannel.testing import DecodeCase, PollingContract, WebhookCase, WebhookContract

TOKEN = "123456789:AAF-kontrak_Telegram-bot-token_01234"
WEBHOOK_SECRET = "kontrak-rahasia_webhook-0123456789"
CITIZEN = {"id": 81234567, "is_bot": False, "first_name": "Siti", "last_name": "Rahma"}
PRIVATE = {"id": 81234567, "type": "private", "first_name": "Siti"}
GROUP = {"id": -1001234, "type": "supergroup", "title": "Warga Kelurahan"}
CHANNEL = {"id": -1009876, "type": "channel", "title": "Info DPMPTSP"}
DATE = 1_796_000_000


def message(message_id: int, chat: Mapping[str, Any] = PRIVATE, **fields: Any) -> dict[str, Any]:
    """A Bot API Message from the citizen (override ``from`` with ``sender``)."""
    sender = fields.pop("sender", CITIZEN)
    found = {"message_id": message_id, "date": DATE, "chat": dict(chat), **fields}
    return {**found, "from": sender} if sender else found


def update(update_id: int, kind: str = "message", **body: Any) -> bytes:
    """An Update as Telegram sends it (the webhook's body, one item of getUpdates)."""
    return json.dumps({"update_id": update_id, kind: body}, ensure_ascii=False).encode()


def photo_size(file_id: str, width: int, height: int, size: int) -> dict[str, Any]:
    return {"file_id": file_id, "file_unique_id": file_id[-5:], "width": width,
            "height": height, "file_size": size}  # fmt: skip


PHOTO = [  # the PhotoSizes of one photo, in no particular order
    photo_size("AgAD-small", 90, 67, 1411),
    photo_size("AgAD-large", 1280, 960, 98765),
    photo_size("AgAD-medium", 320, 240, 16543),
]
LARGEST_PHOTO = {
    "filename": None,
    "content_type": "image/jpeg",
    "size": 98765,
    "sha256": None,
    "content": None,
    "url": "telegram-file:AgAD-large",
}
"""The photo as decoded: its largest size, downloaded later by file_id."""
SIDEWALK = "Trotoar di depan pasar Sentral rusak dan membahayakan pejalan kaki."
START: dict[str, Any] = {
    "text": "/start",
    "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
}
SERVICE: dict[str, Any] = {
    "new_chat_members": [{"id": 5550001, "is_bot": False, "first_name": "Budi"}]
}


class TestTelegramContract(WebhookContract, PollingContract):
    connector_type = "telegram"
    options: ClassVar[dict[str, Any]] = {"token": TOKEN, "webhook_secret": WEBHOOK_SECRET}
    signs_body = False  # Telegram's secret token is a header that does not cover the body
    cases: ClassVar[list[DecodeCase]] = [
        DecodeCase(
            "text",
            update(1, **message(10, text=SIDEWALK)),
            {
                "channel": "telegram",
                "external_id": "81234567:10",
                "text": SIDEWALK,
                "sender": {
                    "name": "Siti Rahma",
                    "email": None,
                    "phone": None,
                    "handle": "tg:81234567",
                },
                "headers": {
                    "message-id": "81234567:10",
                    "chat-id": "81234567",
                    "chat-type": "private",
                },
            },
        ),
        DecodeCase(
            "photo_with_caption",
            update(2, **message(11, photo=PHOTO, caption="Saluran air tersumbat di RT 03.")),
            {
                "text": "Saluran air tersumbat di RT 03.",
                "attachments": [LARGEST_PHOTO],
            },
        ),
        DecodeCase(
            "location",
            update(3, **message(12, location={"latitude": -8.5069, "longitude": 115.2625})),
            {"location": {"lat": -8.5069, "lon": 115.2625, "address": None}, "text": None},
        ),
        DecodeCase(
            "edited_message",
            update(
                4,
                "edited_message",
                **message(10, edit_date=DATE + 300, text=SIDEWALK + " Mohon segera."),
            ),
            {"external_id": "81234567:10:edit:1796000300", "in_reply_to": "81234567:10"},
            outcome=Outcome.MERGED,  # threads onto the message it edits (case "text")
        ),
        DecodeCase(
            "reply",
            update(
                5,
                **message(
                    13, text="Sudah ada tindak lanjut?", reply_to_message=message(10, text=SIDEWALK)
                ),
            ),
            {"in_reply_to": "81234567:10", "text": "Sudah ada tindak lanjut?"},
            outcome=Outcome.MERGED,
        ),
        DecodeCase(
            "command_with_text",
            update(
                6,
                **message(
                    14,
                    text="/lapor Izin reklame saya belum terbit.",
                    entities=[{"type": "bot_command", "offset": 0, "length": 6}],
                ),
            ),
            {"text": "Izin reklame saya belum terbit."},
        ),
        DecodeCase(
            "channel_post",
            update(7, "channel_post", **message(3, CHANNEL, sender=None, text="Libur Jumat.")),
            {"flags": {"telegram_update": "channel_post", "ignore": True, "channel_post": True}},
            outcome=Outcome.IGNORED,
        ),
        DecodeCase(
            "service_message",
            update(8, **message(40, GROUP, **SERVICE)),
            {"flags": {"telegram_update": "message", "ignore": True, "service": True}},
            outcome=Outcome.IGNORED,
        ),
        DecodeCase("bare_command", update(9, **message(15, **START)), outcome=Outcome.IGNORED),
        DecodeCase(
            "callback_query",
            update(10, "callback_query", id="4382", data="menu", **{"from": CITIZEN}),
            {"external_id": "update:10"},
            outcome=Outcome.IGNORED,
        ),
    ]
    webhook_cases: ClassVar[list[WebhookCase]] = [
        WebhookCase("text", update(20, **message(30, text="Lampu jalan padam sejak Senin."))),
        WebhookCase(
            "photo",
            update(21, **message(31, photo=PHOTO, caption="Sampah menumpuk di pasar.")),
            expect={"attachments": [LARGEST_PHOTO]},
        ),
        WebhookCase(
            "reply",
            update(22, **message(32, text="Masih padam.", reply_to_message=message(30))),
            outcome=Outcome.MERGED,
        ),
        WebhookCase(
            "channel_post",
            update(23, "channel_post", **message(4, CHANNEL, sender=None, text="Info.")),
            outcome=Outcome.IGNORED,
        ),
        WebhookCase("unreadable", b'{"update_id": 24, "message": {', outcome=Outcome.QUARANTINED),
    ]
    poll_items: ClassVar[list[dict[str, Any]]] = [
        {"message": message(50, text="Antrean KTP sangat panjang.")},
        {"message": message(51, {"id": 7000001, "type": "private"}, text="Jembatan retak.")},
        {"message": message(52, text="Air PDAM keruh.", photo=PHOTO)},
    ]

    def sign(
        self, request: WebhookRequest, *, options: Mapping[str, Any], now: float
    ) -> WebhookRequest:
        headers = {**request.headers, "x-telegram-bot-api-secret-token": options["webhook_secret"]}
        return WebhookRequest.build(request.method, request.url, headers, request.body)

    def setup_source(self, tmp_path: Path) -> dict[str, Any]:
        self.stack = contextlib.ExitStack()
        self.api = self.stack.enter_context(BotAPI(TOKEN))
        return {"api_url": self.api.url}

    def deliver(self, item: Any) -> None:
        self.api.push(item)

    def teardown_source(self) -> None:
        self.stack.close()

    def break_source(self, how: str) -> bool:
        if how == "unavailable":
            self.api.stop()
        else:
            status = {"throttled": 429, "server_error": 500, "unauthorized": 401}.get(how, 403)
            self.api.fail_next(status, retry_after=3 if status == 429 else None)
        return True
