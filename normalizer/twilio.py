"""Decode Twilio messages (SMS and WhatsApp via Twilio) into an InboundMessage.

Pure: bytes or a field mapping in, a message out; no I/O and no clock. Two shapes are read:

- the **webhook form** Twilio POSTs (``application/x-www-form-urlencoded``: ``MessageSid``,
  ``From``, ``Body``, ``MediaUrlN``, ``ProfileName``, ``Latitude``, ...), stored as received;
- an **API resource** of the Messages list (``application/json``: ``sid``, ``from``, ``body``,
  ``date_sent`` as an RFC 2822 date, ...), as the reconciliation poll stores it, plus a
  ``media`` list of ``{url, content_type}`` that the poll adds from the message's Media list.

Both are brought to the form's field names and decoded by :func:`decode_form`, so a message
decodes the same whichever way it arrived. Status callbacks (``MessageStatus``, or an
``SmsStatus`` other than ``received``) decode to an empty message flagged ``status_callback``,
which the core stores as ``ignored``.

Errors are :class:`~omnichannel.errors.DecodeError` and never repeat field values (phone
numbers and texts are personal data, and error messages end up in logs).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import mimetypes
import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from normalizer.filenames import safe_filename
from normalizer.phone import normalize_phone
from omnichannel.errors import DecodeError
from omnichannel.schema import Attachment, InboundMessage, Location, Sender

__all__ = [
    "FORM_TYPE",
    "JSON_TYPE",
    "api_fields",
    "decode_base64_body",
    "decode_form",
    "decode_twilio",
    "external_id_of",
    "is_status_callback",
    "message_sid",
    "parse_form",
]

FORM_TYPE = "application/x-www-form-urlencoded"
JSON_TYPE = "application/json"
MAX_FIELDS = 1000
MAX_SID = 64
_SID = re.compile(r"[A-Za-z0-9_-]{2,64}")
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_MIN_BASE64 = 8
_CHANNEL_PREFIX = re.compile(r"^\s*([A-Za-z]+)\s*:")
_API_KEYS = {
    "sid": "MessageSid",
    "account_sid": "AccountSid",
    "messaging_service_sid": "MessagingServiceSid",
    "from": "From",
    "to": "To",
    "body": "Body",
    "num_media": "NumMedia",
    "num_segments": "NumSegments",
    "api_version": "ApiVersion",
}
_HEADER_FIELDS = {
    "To": "to",
    "MessagingServiceSid": "messaging-service-sid",
    "MessageType": "message-type",
    "ButtonPayload": "button-payload",
    "NumSegments": "num-segments",
}


# -- the form ----------------------------------------------------------------------------------


def parse_form(payload: bytes) -> dict[str, list[str]]:
    """Every field of a form body with all its values; DecodeError when it is not a form."""
    fields: dict[str, list[str]] = {}
    for key, value in _form_pairs(bytes(payload)):
        fields.setdefault(key, []).append(value)
    return fields


@functools.lru_cache(maxsize=16)
def _form_pairs(payload: bytes) -> tuple[tuple[str, str], ...]:
    # cached: a webhook's body is read again by the decoder when it files in the same process
    # (the connector's signature check and parser share one parse through request.scratch)
    try:
        return _split_form(payload.decode("utf-8"))
    except ValueError:  # not UTF-8, a field without "=", bad escapes, too many fields
        raise DecodeError("not a form body (application/x-www-form-urlencoded)") from None


def _split_form(text: str) -> tuple[tuple[str, str], ...]:
    """``parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict",
    max_num_fields=MAX_FIELDS)``, with ``unquote`` only for the names and values that need it
    (most of a Twilio form needs none: a third of the cost of a webhook's decoding)."""
    if not text:
        return ()
    if text.count("&") >= MAX_FIELDS:  # counted before splitting: no list of a million fields
        raise ValueError("too many fields")
    fields = text.split("&")
    pairs = []
    for field in fields:
        name, equals, value = field.partition("=")
        if not equals:
            raise ValueError("a field without '='")
        pairs.append((_unquote(name), _unquote(value)))
    return tuple(pairs)


def _unquote(text: str) -> str:
    if "+" in text:
        text = text.replace("+", " ")
    return unquote(text, errors="strict") if "%" in text else text


def _single(fields: Mapping[str, list[str]]) -> dict[str, str]:
    return {key: values[0] for key, values in fields.items()}


def message_sid(fields: Mapping[str, str]) -> str | None:
    """``MessageSid`` (or the deprecated ``SmsMessageSid`` / ``SmsSid``) when well-formed."""
    for key in ("MessageSid", "SmsMessageSid", "SmsSid"):
        value = (fields.get(key) or "").strip()
        if value:
            return value if _SID.fullmatch(value) else None
    return None


def is_status_callback(fields: Mapping[str, str]) -> bool:
    """A delivery/status callback, not an inbound message."""
    if "MessageStatus" in fields:
        return True
    status = fields.get("SmsStatus")
    return status is not None and status.strip().lower() != "received"


def _status(fields: Mapping[str, str]) -> str:
    return (fields.get("MessageStatus") or fields.get("SmsStatus") or "unknown").strip().lower()


def external_id_of(fields: Mapping[str, str]) -> str:
    """The dedupe key: the MessageSid; ``<sid>#<status>`` for a status callback, so that each
    status of one outbound message is kept. DecodeError without a usable sid."""
    sid = message_sid(fields)
    if sid is None:
        raise DecodeError("MessageSid: missing or malformed")
    if is_status_callback(fields):
        return f"{sid}#{_status(fields)}"  # stored as its sha256 when too long, never cut
    return sid


# -- bodies ------------------------------------------------------------------------------------


def decode_base64_body(text: str) -> str | None:
    """The text a base64-encoded SMS body stands for, or None when it is not clearly that.

    Normal text is never guessed at: the body must be canonical base64 (alphabet, length a
    multiple of 4, padding only at the end, no spaces at all, at least 8 characters) that
    decodes to strict UTF-8 which reads as text: printable, mostly letters, and either several
    words or padded (``SGFsbw==``). "Halo", "test" or "Terimakasih" stay as they are.
    """
    if len(text) < _MIN_BASE64 or not _BASE64.fullmatch(text):
        return None
    try:
        raw = base64.b64decode(text, validate=True)
        decoded = raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if base64.b64encode(raw).decode("ascii") != text:  # stray bits: not an encoder's output
        return None
    return decoded if _reads_as_text(decoded, padded=text.endswith("=")) else None


def _reads_as_text(text: str, *, padded: bool) -> bool:
    if not text.strip():
        return False
    for ch in text:
        category = unicodedata.category(ch)
        if (category == "Cc" and ch not in "\t\n\r") or category in ("Cs", "Co", "Cn"):
            return False
    visible = [ch for ch in text if not ch.isspace()]
    letters = sum(ch.isalpha() for ch in visible)
    return letters * 2 >= len(visible) and (len(text.split()) >= 2 or padded)


def _text(fields: Mapping[str, str], channel: str, flags: dict[str, Any]) -> str | None:
    body = fields.get("Body") or ""
    if channel == "sms" and body:
        decoded = decode_base64_body(body)
        if decoded is not None:
            flags["body_base64_decoded"] = True
            body = decoded
    if not body.strip() and (fields.get("ButtonText") or "").strip():
        flags["button_reply"] = True
        body = fields["ButtonText"]
    return body or None


# -- sender, media, location -------------------------------------------------------------------


def _channel(address: str) -> str:
    match = _CHANNEL_PREFIX.match(address)
    return "whatsapp" if match and match.group(1).lower() == "whatsapp" else "sms"


def _without_prefix(address: str) -> str:
    match = _CHANNEL_PREFIX.match(address)
    return address[match.end() :].strip() if match else address.strip()


def _sender(fields: Mapping[str, str]) -> Sender:
    """Phone from ``From``; ``WaId`` (digits, no ``+``) when ``From`` is unusable."""
    phone = _without_prefix(fields.get("From") or "") or None
    wa_id = (fields.get("WaId") or "").strip()
    if wa_id.isdigit() and (phone is None or normalize_phone(phone).kind == "invalid"):
        phone = "+" + wa_id
    name = (fields.get("ProfileName") or "").strip() or None
    return Sender(name=name, phone=phone)


def _media_indexes(fields: Mapping[str, str]) -> list[int]:
    found = (key[len("MediaUrl") :] for key in fields if key.startswith("MediaUrl"))
    return sorted(int(n) for n in found if n.isdigit() and len(n) <= 3)


def _filename(url: str, content_type: str, index: int) -> str | None:
    """``<MediaSid>.<extension>`` when the URL ends in a SID (Twilio gives no filename)."""
    try:
        name = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    except ValueError:  # not a URL at all (the download refuses it later)
        name = ""
    if not _SID.fullmatch(name):
        return None
    extension = mimetypes.guess_extension(content_type, strict=False) or ""
    return safe_filename(name + extension, content_type=content_type, index=index)


def _attachments(fields: Mapping[str, str], flags: dict[str, Any]) -> list[Attachment]:
    attachments: list[Attachment] = []
    for index in _media_indexes(fields):
        url = fields[f"MediaUrl{index}"].strip()
        if not url:
            continue
        content_type = (fields.get(f"MediaContentType{index}") or "").strip().lower()
        content_type = content_type or "application/octet-stream"
        name = _filename(url, content_type, len(attachments) + 1)
        attachments.append(Attachment(url=url, content_type=content_type, filename=name))
    declared = (fields.get("NumMedia") or "").strip()
    # Twilio sends 0-10; a number of thousands of digits is not one int() may convert
    if (
        declared.isascii()
        and declared.isdigit()
        and len(declared) <= 4
        and int(declared) > len(attachments)
    ):
        flags["incomplete"] = True
        flags["media_missing"] = int(declared) - len(attachments)
    return attachments


def _coordinate(value: str | None, limit: float) -> float | None:
    try:
        number = float((value or "").strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and -limit <= number <= limit else None


def _location(fields: Mapping[str, str], flags: dict[str, Any]) -> Location | None:
    lat = _coordinate(fields.get("Latitude"), 90)
    lon = _coordinate(fields.get("Longitude"), 180)
    parts = [(fields.get(key) or "").strip() for key in ("Label", "Address")]
    address = ", ".join(part for part in parts if part) or None
    if lat is None or lon is None:
        if fields.get("Latitude") or fields.get("Longitude"):
            flags["location_invalid"] = True
        lat = lon = None
        if address is None:
            return None
    return Location(lat=lat, lon=lon, address=address)


def _headers(fields: Mapping[str, str], sid: str | None) -> dict[str, str]:
    headers = {"message-id": sid} if sid else {}
    for key, name in _HEADER_FIELDS.items():
        value = (fields.get(key) or "").strip()
        if value:
            headers[name] = value
    return headers


# -- decoding ----------------------------------------------------------------------------------


def decode_form(
    fields: Mapping[str, str],
    *,
    connector: str,
    external_id: str | None = None,
    sent_at: datetime | None = None,
) -> InboundMessage:
    """The InboundMessage a Twilio webhook form (one value per field) stands for."""
    key = external_id or external_id_of(fields)
    channel = _channel(fields.get("From") or "")
    if is_status_callback(fields):
        flags: dict[str, Any] = {"status_callback": True, "message_status": _status(fields)}
        if (fields.get("ErrorCode") or "").strip():
            flags["error_code"] = fields["ErrorCode"].strip()
        return InboundMessage(channel=channel, connector=connector, external_id=key, flags=flags)
    flags = {}
    sid = message_sid(fields)
    replied = (fields.get("OriginalRepliedMessageSid") or "").strip() or None
    return InboundMessage(
        channel=channel,
        connector=connector,
        external_id=key,
        sent_at=sent_at,
        sender=_sender(fields),
        text=_text(fields, channel, flags),
        attachments=_attachments(fields, flags),
        location=_location(fields, flags),
        in_reply_to=replied,
        references=[replied] if replied else [],
        headers=_headers(fields, sid),
        flags=flags,
    )


def _rfc2822(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def api_fields(resource: Mapping[str, Any]) -> tuple[dict[str, str], datetime | None]:
    """A Messages API resource as webhook form fields, and its ``date_sent`` (UTC)."""
    if resource.get("direction") not in (None, "inbound"):
        raise DecodeError("direction: not an inbound message")
    fields = {
        form: str(resource[api])
        for api, form in _API_KEYS.items()
        if resource.get(api) is not None and not isinstance(resource[api], dict | list)
    }
    media = resource.get("media")
    for index, item in enumerate(media if isinstance(media, list) else []):
        if isinstance(item, dict) and isinstance(item.get("url"), str):
            fields[f"MediaUrl{index}"] = item["url"]
            fields[f"MediaContentType{index}"] = str(item.get("content_type") or "")
    sent = _rfc2822(resource.get("date_sent")) or _rfc2822(resource.get("date_created"))
    return fields, sent


def _json_resource(payload: bytes) -> dict[str, Any]:
    try:
        resource = json.loads(bytes(payload).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise DecodeError("not a JSON Messages resource") from None
    if not isinstance(resource, dict) or not isinstance(resource.get("sid"), str):
        raise DecodeError("sid: missing (not a Twilio Messages resource)")
    return resource


def decode_twilio(
    payload: bytes, content_type: str, *, connector: str, external_id: str | None = None
) -> InboundMessage:
    """Decode a stored webhook form or API resource (chosen by ``content_type``)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == FORM_TYPE:
        fields = _single(parse_form(payload))
        return decode_form(fields, connector=connector, external_id=external_id)
    if kind == JSON_TYPE:
        fields, sent_at = api_fields(_json_resource(payload))
        return decode_form(fields, connector=connector, external_id=external_id, sent_at=sent_at)
    raise DecodeError("content type: neither a Twilio webhook form nor a Messages resource")
