"""Decoding Telegram updates: pure functions of the stored bytes (no I/O, no clock).

What a citizen writes to the bot becomes one InboundMessage: text or caption, the largest size
of a photo and any document, video, voice note or audio as attachments (``telegram-file:`` +
``file_id``, downloaded later by the connector), a location or venue, the reply it answers and
the message an edit replaces (``in_reply_to``). What is not a citizen's message is kept and
flagged ``ignore``: a channel post, a bot's message, a service message (members joining, a
pinned message), a bare command (``/start``), an update that holds no message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeGuard

from omnichannel import Attachment, DecodeError, InboundMessage, Location, Sender

__all__ = ["FILE_ID", "FILE_SCHEME", "decode_update", "is_int", "parse_json", "update_key"]

FILE_SCHEME = "telegram-file:"
"""An attachment's URL: ``telegram-file:<file_id>`` (fetched with the bot's token)."""
FILE_ID = re.compile(r"[A-Za-z0-9_-]{1,256}")
_MESSAGE_KINDS = ("message", "edited_message", "channel_post", "edited_channel_post")
_MEDIA_KINDS = ("document", "video", "voice", "audio")
_SERVICE_FIELDS = frozenset(
    {
        "new_chat_members",
        "left_chat_member",
        "new_chat_title",
        "new_chat_photo",
        "delete_chat_photo",
        "group_chat_created",
        "supergroup_chat_created",
        "channel_chat_created",
        "message_auto_delete_timer_changed",
        "migrate_to_chat_id",
        "migrate_from_chat_id",
        "pinned_message",
        "forum_topic_created",
        "video_chat_started",
        "video_chat_ended",
    }
)


def update_key(update: Mapping[str, Any]) -> str | None:
    """The dedupe key of an update: ``<chat id>:<message id>`` (``:edit:<edit_date>`` added
    for an edit), else ``update:<update_id>``; None when it has no ``update_id``. The same
    whether the update came by ``getUpdates`` or by the webhook."""
    if not is_int(update.get("update_id")):
        return None
    kind, message = _message_of(update)
    chat_id, message_id = _ids(message)
    if chat_id is None or message_id is None:
        return f"update:{update['update_id']}"
    key = f"{chat_id}:{message_id}"
    if kind.startswith("edited_"):
        edit = message.get("edit_date")
        key += f":edit:{edit if is_int(edit) else 'u' + str(update['update_id'])}"
    return key


def decode_update(payload: bytes, *, connector: str, received_at: datetime) -> InboundMessage:
    """One stored update as an InboundMessage; DecodeError when it is not an update. What is
    not a citizen's message (a channel post, a bot's, a service message, a bare command, an
    update without a message) is flagged ``ignore``: stored, never a complaint."""
    update = parse_json(payload)
    key = update_key(update) if isinstance(update, dict) else None
    if key is None:
        raise DecodeError("not a Telegram update (JSON with an integer update_id)")
    kind, message = _message_of(update)
    inbound = InboundMessage(
        channel="telegram",
        connector=connector,
        external_id=key,
        received_at=received_at,
        flags={"telegram_update": kind},
    )
    if not message:
        inbound.flags.update(ignore=True, no_message=True)
        return inbound
    try:
        _fill(inbound, kind, message)
    except ValueError:  # pydantic's ValidationError too: a value out of range
        raise DecodeError(f"Telegram {kind} with an invalid field") from None
    return inbound


def _message_of(update: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    for kind in _MESSAGE_KINDS:
        if isinstance(update.get(kind), dict):
            return kind, update[kind]
    other = next((k for k in update if k != "update_id"), "unknown")
    return str(other), {}


def _ids(message: Mapping[str, Any]) -> tuple[int | None, int | None]:
    chat = message.get("chat")
    chat_id = chat.get("id") if isinstance(chat, dict) else None
    message_id = message.get("message_id")
    return (
        chat_id if is_int(chat_id) else None,
        message_id if is_int(message_id) else None,
    )


def _fill(inbound: InboundMessage, kind: str, message: dict[str, Any]) -> None:
    chat_id, message_id = _ids(message)
    if chat_id is None or message_id is None:
        raise DecodeError(f"Telegram {kind} without chat.id or message_id")
    user = _dict(message.get("from"))
    chat = message["chat"]
    inbound.sender = _sender(user)
    inbound.sent_at = _time(message.get("edit_date") or message.get("date"))
    inbound.headers = {"message-id": f"{chat_id}:{message_id}", "chat-id": str(chat_id)}
    if isinstance(chat.get("type"), str):
        inbound.headers["chat-type"] = chat["type"]
    reply = message.get("reply_to_message")
    if isinstance(reply, dict) and is_int(reply.get("message_id")):
        inbound.in_reply_to = f"{chat_id}:{reply['message_id']}"
    if kind.startswith("edited_"):  # a new version threads onto the message it replaces
        inbound.flags["edited"] = True
        inbound.in_reply_to = f"{chat_id}:{message_id}"
    has_content = _content(inbound, message)
    reason = _ignored_because(kind, user, message, inbound, has_content)
    if reason:
        inbound.flags.update({"ignore": True, reason: True})


def _ignored_because(
    kind: str,
    user: Mapping[str, Any],
    message: Mapping[str, Any],
    inbound: InboundMessage,
    has_content: bool,
) -> str | None:
    if kind.endswith("channel_post"):
        return "channel_post"  # the office's own channel, not a citizen
    if user.get("is_bot") is True:
        return "from_bot"
    if inbound.flags.get("command") and not has_content:
        return "command"  # /start, /help: talking to the bot
    if not has_content:
        return "service" if _SERVICE_FIELDS & message.keys() else "unsupported"
    return None


def _content(inbound: InboundMessage, message: Mapping[str, Any]) -> bool:
    """Text, attachments and location into ``inbound``; whether there is any."""
    inbound.text = _without_command(inbound, message)
    attachments = [_photo(message.get("photo"))]
    attachments += [_media(kind, message.get(kind)) for kind in _MEDIA_KINDS]
    inbound.attachments = [a for a in attachments if a is not None]
    inbound.location = _location(message.get("location"), message.get("venue"))
    return bool(inbound.text or inbound.attachments or inbound.location)


def _without_command(inbound: InboundMessage, message: Mapping[str, Any]) -> str | None:
    """The text or caption; a leading bot command (``/lapor``) is taken off and flagged."""
    text = message.get("text") if "text" in message else message.get("caption")
    if not isinstance(text, str):
        return None
    entities = message.get("entities") or message.get("caption_entities") or []
    first = entities[0] if isinstance(entities, list) and entities else None
    if isinstance(first, dict) and first.get("type") == "bot_command" and first.get("offset") == 0:
        length = first.get("length") if is_int(first.get("length")) else 0
        inbound.flags["command"] = text[:length].split("@", 1)[0]
        text = text[length:]
    return text.strip() or None


def _photo(sizes: Any) -> Attachment | None:
    """A photo comes in several sizes: the largest is kept."""
    usable = [s for s in sizes if isinstance(s, dict)] if isinstance(sizes, list) else []
    if not usable:
        return None
    largest = max(usable, key=lambda s: (_area(s), _number(s.get("file_size"))))
    return _attachment("photo", largest, "image/jpeg")


def _media(kind: str, body: Any) -> Attachment | None:
    if not isinstance(body, dict):
        return None
    content_type = body.get("mime_type") if isinstance(body.get("mime_type"), str) else None
    attachment = _attachment(kind, body, content_type or "application/octet-stream")
    name = body.get("file_name")
    attachment.filename = name if isinstance(name, str) and name.strip() else None
    return attachment


def _attachment(kind: str, body: Mapping[str, Any], content_type: str) -> Attachment:
    file_id = body.get("file_id")
    if not isinstance(file_id, str) or not FILE_ID.fullmatch(file_id):
        raise DecodeError(f"Telegram {kind} without a usable file_id")
    size = body.get("file_size")
    return Attachment(
        content_type=content_type,
        size=size if is_int(size) and size >= 0 else None,
        url=FILE_SCHEME + file_id,
    )


def _location(location: Any, venue: Any) -> Location | None:
    if isinstance(venue, dict):
        parts = [venue.get("title"), venue.get("address")]
        address = ", ".join(p for p in parts if isinstance(p, str) and p.strip()) or None
        place = venue.get("location")
        if isinstance(place, dict):
            return Location(lat=place.get("latitude"), lon=place.get("longitude"), address=address)
    if isinstance(location, dict):
        return Location(lat=location.get("latitude"), lon=location.get("longitude"))
    return None


def _sender(user: Mapping[str, Any]) -> Sender:
    """Who wrote: the name the user gave, and ``tg:<user id>`` (a username can change)."""
    names = [user.get("first_name"), user.get("last_name")]
    name = " ".join(n for n in names if isinstance(n, str) and n.strip())
    user_id = user.get("id")
    return Sender(name=name or None, handle=f"tg:{user_id}" if is_int(user_id) else None)


def _time(value: Any) -> datetime | None:
    if not is_int(value):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _number(value: Any) -> int:
    return value if is_int(value) else 0


def _area(size: Mapping[str, Any]) -> int:
    return _number(size.get("width")) * _number(size.get("height"))


def is_int(value: Any) -> TypeGuard[int]:
    """An integer as Telegram sends them: 64-bit at most (``true`` is not one), so that no
    key built from ids outgrows its column."""
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def parse_json(body: bytes) -> Any:
    """``body`` as JSON, or None when it is not."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # not UTF-8 JSON, or nested beyond reason
        return None
