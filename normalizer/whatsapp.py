"""WhatsApp Cloud API messages (Meta Graph webhooks) to InboundMessage — pure.

One stored raw payload is one message, self-contained: ``{"message": {...}, "contacts":
[...], "metadata": {...}}`` as cut out of a webhook's ``entry[].changes[].value``.
Media become attachments whose ``url`` is ``whatsapp-media:<media id>`` (downloaded later
through the Graph API by the connector); Meta's base64 sha256 is turned into hex. The
``phone_number_id`` the citizen wrote to is kept as ``headers["to"]``: a reply goes out from it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from normalizer.timeutil import parse_timestamp
from omnichannel.errors import DecodeError
from omnichannel.schema import Attachment, InboundMessage, Location, Sender

__all__ = ["MEDIA_SCHEME", "MEDIA_TYPES", "decode_whatsapp_message", "split_webhook"]

MEDIA_SCHEME = "whatsapp-media:"
MEDIA_TYPES = ("image", "document", "audio", "video", "sticker")
IGNORED_TYPES = ("reaction", "system", "unsupported", "unknown", "ephemeral", "request_welcome")


def split_webhook(
    envelope: Mapping[str, Any], phone_number_ids: set[str]
) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """``(wamid, one-message payload)`` for each distinct message addressed to our numbers,
    and the phone_number_ids seen that are not ours (a security event to log)."""
    found: dict[str, dict[str, Any]] = {}
    foreign: list[str] = []
    for entry in _list(envelope.get("entry")):
        for change in _list(_dict(entry).get("changes")):
            change = _dict(change)
            value = _dict(change.get("value"))
            if change.get("field") != "messages":
                continue
            number = str(_dict(value.get("metadata")).get("phone_number_id", ""))
            messages = [_dict(m) for m in _list(value.get("messages"))]
            if number not in phone_number_ids:
                if messages:
                    foreign.append(number)
                continue
            for message in messages:
                wamid = message.get("id")
                if isinstance(wamid, str) and wamid and wamid not in found:
                    found[wamid] = {
                        "message": message,
                        "contacts": value.get("contacts") or [],
                        "metadata": value.get("metadata") or {},
                    }
    return list(found.items()), foreign


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def decode_whatsapp_message(
    payload: bytes, *, connector: str, received_at: datetime
) -> InboundMessage:
    """Decode one stored message payload; DecodeError when it is not one."""
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise DecodeError("not a JSON WhatsApp message") from None
    message = _dict(_dict(data).get("message"))
    wamid = _text(message.get("id"))
    if wamid is None:
        raise DecodeError("WhatsApp message without an id")
    kind = str(message.get("type", "unknown"))
    headers = {"message-id": wamid}
    our_number = str(_dict(_dict(data).get("metadata")).get("phone_number_id") or "").strip()
    if our_number:
        headers["to"] = our_number
    inbound = InboundMessage(
        channel="whatsapp",
        connector=connector,
        external_id=wamid,
        received_at=received_at,
        sent_at=_sent_at(message.get("timestamp")),
        sender=_sender(message, _list(_dict(data).get("contacts"))),
        in_reply_to=_text(_dict(message.get("context")).get("id")),
        headers=headers,
        flags={"whatsapp_type": kind},
    )
    _content(inbound, kind, message)
    return inbound


def _sent_at(value: Any) -> datetime | None:
    try:
        return parse_timestamp(value, "UTC") if value not in (None, "") else None
    except (ValueError, TypeError):
        return None


def _sender(message: Mapping[str, Any], contacts: list[Any]) -> Sender:
    sender = _text(message.get("from"))
    contact = next((_dict(c) for c in contacts if sender and _dict(c).get("wa_id") == sender), None)
    contact = contact or (_dict(contacts[0]) if len(contacts) == 1 else {})
    profile = _dict(contact.get("profile"))
    digits = sender if sender and sender.isdigit() else _text(contact.get("wa_id"))
    handle = _text(contact.get("user_id")) or _text(message.get("from_user_id"))
    handle = handle or _text(profile.get("username"))
    return Sender(
        name=_text(profile.get("name")),
        phone=f"+{digits}" if digits and digits.isdigit() else None,
        handle=handle if not digits else None,
    )


def _content(inbound: InboundMessage, kind: str, message: Mapping[str, Any]) -> None:
    body = _dict(message.get(kind))
    if kind == "text":
        inbound.text = _text(body.get("body"))
    elif kind in MEDIA_TYPES:
        inbound.text = _text(body.get("caption"))
        inbound.attachments = [_attachment(kind, body)]
    elif kind == "location":
        inbound.location = _location(body)
    elif kind == "interactive":
        reply = _dict(body.get("button_reply")) or _dict(body.get("list_reply"))
        inbound.text = (
            " — ".join(t for t in (_text(reply.get("title")), _text(reply.get("description"))) if t)
            or None
        )
    elif kind == "button":
        inbound.text = _text(body.get("text"))
    elif kind == "contacts":
        inbound.text = _contacts_text(_list(message.get("contacts")))
    else:
        inbound.flags["ignore"] = True
        inbound.flags["unsupported" if kind not in ("reaction", "system") else kind] = True


def _attachment(kind: str, body: Mapping[str, Any]) -> Attachment:
    media_id = _text(body.get("id"))
    if media_id is None:
        raise DecodeError(f"{kind} without a media id")
    return Attachment(
        filename=_text(body.get("filename")),
        content_type=_text(body.get("mime_type")) or "application/octet-stream",
        sha256=_hex_sha256(body.get("sha256")),
        url=MEDIA_SCHEME + media_id,
    )


def _hex_sha256(value: Any) -> str | None:
    """Meta sends base64; accept hex too; anything else is dropped (the download still works)."""
    if not isinstance(value, str):
        return None
    if len(value) == 64 and all(c in "0123456789abcdefABCDEF" for c in value):
        return value.lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


def _location(body: Mapping[str, Any]) -> Location | None:
    address = ", ".join(t for t in (_text(body.get("name")), _text(body.get("address"))) if t)
    try:
        return Location(
            lat=body.get("latitude"), lon=body.get("longitude"), address=address or None
        )
    except ValueError:
        raise DecodeError("location without valid coordinates") from None


def _contacts_text(cards: list[Any]) -> str | None:
    lines = []
    for card in (_dict(c) for c in cards):
        name = _text(_dict(card.get("name")).get("formatted_name")) or "?"
        phones = [p.get("phone") for p in _list(card.get("phones")) if isinstance(p, dict)]
        lines.append(f"Kontak: {name} {' '.join(str(p) for p in phones if p)}".strip())
    return "\n".join(lines) or None
