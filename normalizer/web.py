"""Web and foreign-system payloads: body parsing and the declarative field mapping (pure).

A payload (JSON, ``application/x-www-form-urlencoded`` or ``multipart/form-data``) becomes a
plain ``dict``; a *mapping* from schema fields to dotted paths in it (``"sender.phone":
"data.msisdn"``) or constants (``"channel": "=sms"``) turns that into an InboundMessage. Errors
are :class:`FieldError` s naming the field, never echoing values. Work is bounded
(:mod:`normalizer.limits`): more than ``MAX_FORM_FIELDS`` fields (counted before splitting) or
MIME parts, a field name nested deeper than ``MAX_FIELD_DEPTH``, or a list of more than
``MAX_FORM_FIELDS`` attachments is a FieldError; uploaded files are read straight from the body.

The portal's own form has a default mapping (:data:`PORTAL_MAPPING`): ``name, email, phone,
subject, message, attachments, location (lat, lon, address) | location_lat/location_lon/
location_address | "lat,lon", anonymous, contact_ok (an anonymous citizen who still wants
answers at the e-mail or phone given), confidential, category, agency, id``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
from collections.abc import Callable, Mapping
from datetime import datetime
from email.message import EmailMessage
from email.policy import HTTP
from typing import Any, cast
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from normalizer.filenames import safe_filename_or_none
from normalizer.limits import MAX_FIELD_DEPTH, MAX_FORM_FIELDS, MAX_MIME_PARTS
from normalizer.mime import parse, payload_bytes
from normalizer.timeutil import parse_timestamp
from omnichannel.errors import DecodeError
from omnichannel.schema import Attachment, InboundMessage, Location, Sender
from omnichannel.values import (
    OutOfRange,
    UnstorableValue,
    loads_json,
    storable_external_id,
    storable_inbound,
)

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
    try:  # a number no field can hold is kept as a marker: the field that holds it is named
        data = loads_json(body.decode("utf-8-sig"), strict=False)
    except ValueError:  # (UnicodeDecodeError and JSONDecodeError are ValueErrors)
        raise FieldError("body", "not valid JSON") from None
    if not isinstance(data, dict):
        raise FieldError("body", "must be a JSON object")
    return data


def _form(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FieldError("body", "form is not UTF-8") from None
    try:  # (counted from the separators before anything is split)
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:
        raise FieldError("body", f"more than {MAX_FORM_FIELDS} form fields") from None
    return _nest(pairs)


def _nest(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``location[lat]=1`` / ``location.lat=1`` become nested keys (at most ``MAX_FIELD_DEPTH``
    levels); repeated keys become lists."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        parts = key.replace("]", "").replace("[", ".").split(".", MAX_FIELD_DEPTH)
        if len(parts) > MAX_FIELD_DEPTH:
            raise FieldError("body", f"a field name nested more than {MAX_FIELD_DEPTH} levels")
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            node = child if isinstance(child, dict) else node
        last = parts[-1]
        if last in node:
            existing = node[last]  # (values are text or files: a list is one made here)
            if isinstance(existing, list):
                existing.append(value)  # in place: a key repeated n times costs n, not n²
            else:
                node[last] = [existing, value]
        else:
            node[last] = value
    return out


def _multipart(content_type: str, body: bytes) -> dict[str, Any]:
    if "boundary=" not in content_type:
        raise FieldError("content-type", "multipart without a boundary")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    parsed = parse(body, HTTP, head=head)  # bounded: parts, nesting, large files kept out
    if parsed.truncated:
        raise FieldError("body", _TRUNCATED[parsed.truncated])
    message = cast(EmailMessage, parsed.message)  # (the HTTP policy makes EmailMessages)
    if not message.is_multipart():
        raise FieldError("body", "not a multipart body")
    pairs: list[tuple[str, Any]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        content = payload_bytes(part) or b""
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


_TRUNCATED = {
    "parts": f"more than {MAX_MIME_PARTS} parts",
    "depth": "multipart nested too deeply",
    "checks": "too many boundary lines",
}


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
    if isinstance(value, OutOfRange):
        raise FieldError(field, "is a number out of range")
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
    if isinstance(value, bool | OutOfRange):
        raise FieldError(field, "must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # float(10**400) overflows
        raise FieldError(field, "must be a number") from None
    if not math.isfinite(number):  # "nan" and "inf" from a form
        raise FieldError(field, "must be a number")
    return number


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
    if len(items) > MAX_FORM_FIELDS:  # (the connector's own, lower limit is checked after)
        raise FieldError(field, f"more than {MAX_FORM_FIELDS} items")
    return [_attachment(item, f"{field}[{i}]", i + 1) for i, item in enumerate(items)]


def _attachment(item: Any, field: str, index: int) -> Attachment:
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
    content_type = _text(item.get("content_type"), field) or "application/octet-stream"
    name = _text(item.get("filename"), field)
    try:
        return Attachment(
            filename=safe_filename_or_none(name, content_type=content_type, index=index),
            content_type=content_type,
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
    try:
        message = _message(data, mapping, get, channel, external_id, received_at, sent_at, portal)
        storable_inbound(message)  # NUL out of free text; what no column can hold refused
    except ValidationError as exc:
        raise FieldError(_payload_field(mapping, _loc(exc)), "is not valid") from None
    except UnstorableValue as exc:
        raise FieldError(_payload_field(mapping, exc.field), exc.problem) from None
    if not message.has_content():
        raise FieldError(_src(mapping, "text"), "is required (or an attachment, or a location)")
    if _flag(get("contact_ok"), _src(mapping, "contact_ok")):
        # an anonymous citizen who still asks to be answered at the contact given
        message.flags["contact_ok"] = True
    return message


def _message(
    data: dict[str, Any],
    mapping: Mapping[str, str],
    get: Callable[[str], Any],
    channel: str,
    external_id: str,
    received_at: datetime,
    sent_at: datetime | None,
    portal: bool,
) -> InboundMessage:
    return InboundMessage(
        channel=_text(get("channel"), "channel") or channel,
        external_id=storable_external_id(
            _text(get("external_id"), _src(mapping, "external_id")) or external_id
        ),
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


def _loc(error: ValidationError) -> str:
    """The schema field of a validation error's first problem (``sender.email``)."""
    first = error.errors(include_url=False, include_input=False)[0]["loc"]
    return ".".join(str(p) for p in first if isinstance(p, str)) or "body"


def _payload_field(mapping: Mapping[str, str], field: str) -> str:
    """The payload's own name for a schema field: ``sender.email`` is the portal's ``email``;
    ``attachments[0].url`` keeps its index under the mapped name."""
    head, bracket, rest = field.partition("[")
    return _src(mapping, head) + bracket + rest


def content_hash(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()
