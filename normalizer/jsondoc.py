"""Decode a ``.json`` document: one :class:`InboundMessage` written as JSON.

Pure: bytes in, a message out; no I/O and no clock (the caller passes ``received_at``).

Only ``channel``, ``external_id`` and one of ``text`` / ``attachments`` / ``location`` are
required; ``connector`` and ``received_at`` are filled in when the document leaves them out.
Timestamps must carry ``Z`` or an offset.  Attachment ``content`` is base64; attachment
filenames are made safe (:func:`normalizer.filenames.safe_filename`).

Every failure is a :class:`~omnichannel.errors.DecodeError` that names the offending fields and
never repeats their values: a document may hold personal data or secrets, and error messages end
up in logs.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from normalizer.filenames import safe_attachments
from normalizer.timeutil import DEFAULT_TZ, parse_timestamp
from omnichannel.errors import DecodeError
from omnichannel.schema import InboundMessage
from omnichannel.values import loads_json

__all__ = ["decode_json_document", "describe_validation_error", "json_external_id"]

MAX_EXTERNAL_ID = 512
_MAX_REPORTED_ERRORS = 10
_MAX_LOC_PART = 64
_MAX_ERROR_TEXT = 160


def json_external_id(payload: bytes) -> str:
    """The document's own ``external_id`` when it has a usable one, else ``sha256:<hex>``."""
    try:
        document = _load_object(payload)
    except Exception:  # the key must exist whatever the bytes are
        document = None
    if document is not None:
        value = document.get("external_id")
        if isinstance(value, str) and value.strip() and len(value) <= MAX_EXTERNAL_ID:
            return value
    return "sha256:" + hashlib.sha256(bytes(payload)).hexdigest()


def decode_json_document(
    payload: bytes,
    *,
    connector: str,
    received_at: datetime,
    timezone: str | ZoneInfo = DEFAULT_TZ,
) -> InboundMessage:
    """Validate a JSON document as an InboundMessage; DecodeError names what is wrong.

    Times without a zone (``2026-11-30T10:00:00``) are local times in ``timezone``.
    """
    document = _load_object(payload)
    for key in ("received_at", "sent_at"):
        document[key] = _aware(document.get(key), key, timezone)
    if document.get("connector") is None:
        document["connector"] = connector
    if document.get("received_at") is None:
        document["received_at"] = received_at
    try:
        message = InboundMessage.model_validate(document)
    except ValidationError as exc:
        raise DecodeError(f"invalid document: {describe_validation_error(exc)}") from None
    if not message.has_content():
        raise DecodeError("document has no text, attachments or location")
    message.attachments = safe_attachments(message.attachments)
    return message


def _aware(value: Any, key: str, timezone: str | ZoneInfo) -> Any:
    """A naive ISO time string read in ``timezone``; anything else is left to validation."""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return value
    try:
        return parse_timestamp(value, timezone)
    except ValueError:
        raise DecodeError(f"invalid document: {key}: not a valid timestamp") from None


def _load_object(payload: bytes) -> dict[str, Any]:
    """The payload as a JSON object (UTF-8, byte order mark tolerated)."""
    try:
        text = bytes(payload).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DecodeError("document is not UTF-8 text") from None
    try:
        document = loads_json(text)
    except json.JSONDecodeError as exc:
        raise DecodeError(
            f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except ValueError as exc:  # NaN, Infinity, a number out of range, nested too deeply
        raise DecodeError(f"invalid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise DecodeError(f"document must be a JSON object, not {_json_kind(document)}")
    return document


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def describe_validation_error(exc: ValidationError) -> str:
    """``field.path: problem`` for each error, joined with ``; ``; input values never appear."""
    errors = exc.errors(include_url=False, include_context=False, include_input=True)
    parts = [_describe_one(error) for error in errors[:_MAX_REPORTED_ERRORS]]
    if len(errors) > _MAX_REPORTED_ERRORS:
        parts.append(f"and {len(errors) - _MAX_REPORTED_ERRORS} more")
    return "; ".join(parts)


def _describe_one(error: Any) -> str:
    location = ".".join(str(part)[:_MAX_LOC_PART] for part in error["loc"]) or "document"
    message = str(error["msg"])[:_MAX_ERROR_TEXT]
    if _echoes_input(message, error.get("input")):
        message = str(error["type"])
    return f"{location}: {message}"


def _echoes_input(message: str, value: Any) -> bool:
    """True when the error text quotes the (scalar) input it complains about."""
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return False
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return len(text) >= 3 and text in message
