"""Web and foreign-system payloads: body parsing and the declarative field mapping (pure).

A payload (JSON, ``application/x-www-form-urlencoded`` or ``multipart/form-data``) becomes a
plain ``dict``; a *mapping* from schema fields to dotted paths in it (``"sender.phone":
"data.msisdn"``) or constants (``"channel": "=sms"``) turns that into an InboundMessage. Errors
are :class:`FieldError` s naming the field, never echoing values.

The portal's own form has a default mapping (:data:`PORTAL_MAPPING`): ``name, email, phone,
subject, message, attachments, location (lat, lon, address) | location_lat/location_lon/
location_address | "lat,lon", anonymous, contact_ok (an anonymous citizen who still wants
answers at the e-mail or phone given), confidential, category, agency, id``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from normalizer.timeutil import parse_timestamp
from omnichannel.errors import DecodeError
from omnichannel.schema import Attachment, InboundMessage, Location, Sender

__all__ = ["FIELDS", "PORTAL_MAPPING", "FieldError", "map_payload", "parse_body", "resolve"]

FIELDS = (
    "external_id",
    "channel",
    "text",
    "subject",
    "sender.name",
    "sender.email",
    "sender.phone",
    "sender.handle",
    "sent_at",
    "location.lat",
    "location.lon",
    "location.address",
    "anonymous",
    "contact_ok",
    "confidential",
    "category",
    "agency",
    "attachments",
)
PORTAL_MAPPING: dict[str, str] = {
    "external_id": "id",
    "text": "message",
    "subject": "subject",
    "sender.name": "name",
    "sender.email": "email",
    "sender.phone": "phone",
    "location.lat": "location.lat",
    "location.lon": "location.lon",
    "location.address": "location.address",
    "anonymous": "anonymous",
    "contact_ok": "contact_ok",
    "confidential": "confidential",
    "category": "category",
    "agency": "agency",
    "attachments": "attachments",
}
_TRUE = {"1", "true", "yes", "on", "ya", "y"}
_FALSE = {"0", "false", "no", "off", "tidak", "n", ""}


class FieldError(DecodeError):
    """A payload problem tied to one field (the HTTP answer names it)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


# -- bodies ------------------------------------------------------------------------------------


def parse_body(content_type: str, body: bytes) -> dict[str, Any]:
    """The body as a dict; multipart files become ``{filename, content_type, content}``."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/json":
        return _json_object(body)
    if kind == "application/x-www-form-urlencoded":
        return _form(body)
    if kind == "multipart/form-data":
        return _multipart(content_type, body)
    raise FieldError("content-type", "unsupported")


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise FieldError("body", "not valid JSON") from None
    if not isinstance(data, dict):
        raise FieldError("body", "must be a JSON object")
    return data


def _form(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FieldError("body", "form is not UTF-8") from None
    return _nest(parse_qsl(text, keep_blank_values=True))


def _nest(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``location[lat]=1`` / ``location.lat=1`` become nested keys; repeated keys become lists."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        parts = key.replace("]", "").replace("[", ".").split(".")
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            node = child if isinstance(child, dict) else node
        last = parts[-1]
        if last in node:
            existing = node[last]
            node[last] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            node[last] = value
    return out


def _multipart(content_type: str, body: bytes) -> dict[str, Any]:
    if "boundary=" not in content_type:
        raise FieldError("content-type", "multipart without a boundary")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise FieldError("body", "not a multipart body")
    pairs: list[tuple[str, Any]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        content = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            pairs.append(
                (
                    name,
                    {
                        "filename": filename,
                        "content": content,
                        "content_type": part.get_content_type(),
                    },
                )
            )
        else:
            pairs.append((name, _decode_field(content, part.get_content_charset())))
    return _nest(pairs)


def _decode_field(content: bytes, charset: str | None) -> str:
    try:
        return content.decode(charset or "utf-8", errors="replace")
    except LookupError:  # an unknown charset name
        return content.decode("utf-8", errors="replace")


# -- mapping -----------------------------------------------------------------------------------


def resolve(data: Any, path: str) -> Any:
    """The value at dotted ``path`` (``a.b.0.c``), a constant for ``=value``, or None."""
    if path.startswith("="):
        return path[1:]
    node = data
    for part in path.split("."):
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _text(value: Any, field: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise FieldError(field, "must be text")
    return str(value)


def _flag(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str | int) and str(value).strip().lower() in _TRUE | _FALSE:
        return str(value).strip().lower() in _TRUE
    raise FieldError(field, "must be true or false")


def _number(value: Any, field: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise FieldError(field, "must be a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise FieldError(field, "must be a number") from None


def _location(data: Any, mapping: Mapping[str, str], portal: bool) -> Location | None:
    def get(field: str) -> Any:
        return resolve(data, mapping[field]) if field in mapping else None

    lat = _number(get("location.lat"), _src(mapping, "location.lat"))
    lon = _number(get("location.lon"), _src(mapping, "location.lon"))
    address = _text(get("location.address"), _src(mapping, "location.address"))
    if portal and lat is None and lon is None:
        lat, lon, address = _portal_location(data, address)
    if lat is None and lon is None and address is None:
        return None
    try:
        return Location(lat=lat, lon=lon, address=address)
    except ValidationError:
        raise FieldError("location", "needs lat and lon within range, or an address") from None


def _portal_location(
    data: Any, address: str | None
) -> tuple[float | None, float | None, str | None]:
    """The portal form's other spellings: ``location=lat,lon`` and ``location_lat`` fields."""
    pair = resolve(data, "location")
    if isinstance(pair, str) and "," in pair:
        lat_text, lon_text = pair.split(",", 1)
        return _number(lat_text.strip(), "location"), _number(lon_text.strip(), "location"), address
    lat = _number(resolve(data, "location_lat"), "location_lat")
    lon = _number(resolve(data, "location_lon"), "location_lon")
    return lat, lon, address or _text(resolve(data, "location_address"), "location_address")


def _src(mapping: Mapping[str, str], field: str) -> str:
    """The payload path a field comes from, for error messages."""
    return mapping.get(field, field).lstrip("=")


def _attachments(value: Any, field: str) -> list[Attachment]:
    if value is None or value == "":
        return []
    items = value if isinstance(value, list) else [value]
    return [_attachment(item, f"{field}[{i}]") for i, item in enumerate(items)]


def _attachment(item: Any, field: str) -> Attachment:
    if not isinstance(item, Mapping):
        raise FieldError(field, "must be an object with content or url")
    content = item.get("content")
    if isinstance(content, str):
        try:
            content = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise FieldError(field, "content must be base64") from None
    if content is not None and not isinstance(content, bytes):
        raise FieldError(field, "content must be base64")
    url = _text(item.get("url"), field)
    if content is None and url is None:
        raise FieldError(field, "needs content or url")
    try:
        return Attachment(
            filename=_text(item.get("filename"), field),
            content_type=_text(item.get("content_type"), field) or "application/octet-stream",
            content=content,
            url=url,
        )
    except ValidationError:
        raise FieldError(field, "is not a valid attachment") from None


def map_payload(
    data: dict[str, Any],
    mapping: Mapping[str, str],
    *,
    channel: str,
    external_id: str,
    received_at: datetime,
    timezone: str | ZoneInfo,
    required: tuple[str, ...] = (),
    portal: bool = False,
) -> InboundMessage:
    """Build an InboundMessage from ``data`` by ``mapping``; FieldError names what is wrong."""

    def get(field: str) -> Any:
        return resolve(data, mapping[field]) if field in mapping else None

    for field in required:
        if _text(get(field), _src(mapping, field)) is None:
            raise FieldError(_src(mapping, field), "is required")
    sent = get("sent_at")
    try:
        sent_at = parse_timestamp(sent, timezone) if sent not in (None, "") else None
    except (ValueError, TypeError):
        raise FieldError(_src(mapping, "sent_at"), "is not a valid time") from None
    message = InboundMessage(
        channel=_text(get("channel"), "channel") or channel,
        external_id=_text(get("external_id"), _src(mapping, "external_id")) or external_id,
        received_at=received_at,
        sent_at=sent_at,
        sender=Sender(
            **{
                k: _text(get(f"sender.{k}"), _src(mapping, f"sender.{k}"))
                for k in ("name", "email", "phone", "handle")
            }
        ),
        subject=_text(get("subject"), _src(mapping, "subject")),
        text=_text(get("text"), _src(mapping, "text")),
        attachments=_attachments(get("attachments"), _src(mapping, "attachments")),
        location=_location(data, mapping, portal),
        anonymous=_flag(get("anonymous"), _src(mapping, "anonymous")),
        confidential=_flag(get("confidential"), _src(mapping, "confidential")),
        category=_text(get("category"), _src(mapping, "category")),
        agency=_text(get("agency"), _src(mapping, "agency")),
    )
    if not message.has_content():
        raise FieldError(_src(mapping, "text"), "is required (or an attachment, or a location)")
    if _flag(get("contact_ok"), _src(mapping, "contact_ok")):
        # an anonymous citizen who still asks to be answered at the contact given
        message.flags["contact_ok"] = True
    return message


def content_hash(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()
