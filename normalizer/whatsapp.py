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
import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeGuard

from normalizer.filenames import safe_filename_or_none
from normalizer.timeutil import parse_timestamp
from omnichannel.errors import DecodeError
from omnichannel.schema import Attachment, InboundMessage, Location, Sender
from omnichannel.values import MAX_ID_LENGTH, loads_json

__all__ = [
    "MEDIA_SCHEME",
    "MEDIA_TYPES",
    "content_key",
    "decode_whatsapp_message",
    "split_webhook",
    "usable_id",
]

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
            messages = _list(value.get("messages"))
            if number not in phone_number_ids:
                if messages and number not in foreign:
                    foreign.append(number)  # (once: a batch of many is one event)
                continue
            contacts = _Contacts(value.get("contacts"))
            metadata = _metadata_of(value.get("metadata"))
            for message in messages:
                # a message without a usable id is kept too (under its content's hash, so that
                # Meta's redelivery is a duplicate), to be quarantined when decoded
                wamid = _dict(message).get("id")
                key = wamid if usable_id(wamid) else content_key(message)
                if key not in found:
                    found[key] = {
                        "message": message,
                        "contacts": contacts.of(message),
                        "metadata": metadata,
                    }
    return list(found.items()), foreign


def usable_id(value: Any) -> TypeGuard[str]:
    """A wamid that can be the message's key: text of 1 to ``MAX_ID_LENGTH`` printable
    characters (no NUL, no lone surrogate, no line breaks)."""
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH and value.isprintable()


def content_key(message: Any) -> str:
    """``sha256:<hex>`` of a message's canonical JSON: the key of one without a usable id."""
    canonical = json.dumps(message, sort_keys=True, ensure_ascii=True, default=repr)
    return "sha256:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()


class _Contacts:
    """The contacts of one change, for picking each message's own.

    Each message is stored with the contacts its decoding uses (its sender's, else the only
    one, as ``_sender`` picks): copying all of them into every message would store a batch of
    n messages and m contacts n times m over, and looking each sender up in the list would
    cost as much."""

    def __init__(self, contacts: Any) -> None:
        self.items = _list(contacts)
        self.by_wa_id: dict[Any, Any] = {}
        for contact in self.items:
            wa_id = _dict(contact).get("wa_id")
            if isinstance(wa_id, str):
                self.by_wa_id.setdefault(wa_id, contact)

    def of(self, message: Any) -> list[Any]:
        sender = _text(_dict(message).get("from"))
        if sender and sender in self.by_wa_id:
            return [self.by_wa_id[sender]]
        return self.items if len(self.items) == 1 else []


def _metadata_of(metadata: Any) -> dict[str, Any]:
    """The metadata fields a message's decoding uses (each message is stored with them)."""
    fields = ("phone_number_id", "display_phone_number")
    return {key: value for key, value in _dict(metadata).items() if key in fields}


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
    try:  # NaN, Infinity and numbers out of range are refused here (stored as Meta sent them)
        data = loads_json(payload)
    except ValueError:
        raise DecodeError("not a JSON WhatsApp message (or a number out of range)") from None
    message = _dict(_dict(data).get("message"))
    wamid = message.get("id")
    if not usable_id(wamid):
        raise DecodeError(
            f"WhatsApp message without a usable id (text of 1 to {MAX_ID_LENGTH} characters)"
        )
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
    content_type = _text(body.get("mime_type")) or "application/octet-stream"
    return Attachment(
        filename=safe_filename_or_none(_text(body.get("filename")), content_type=content_type),
        content_type=content_type,
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
