"""Values the store can hold: the one place where a decoded message is made storable, or
refused, before it reaches a column.

What a citizen, a provider or a file sends may hold things no column takes: NUL characters
(PostgreSQL text cannot store them), lone surrogates (not Unicode: neither SQLite's nor
PostgreSQL's driver can encode them, nor can an export), strings longer than their column, and
numbers beyond a column's or JSON's range (``NaN``, ``Infinity``, ``1e999``, integers past 64
bits or past Python's 4,300-digit conversion limit). Left alone they fail inside the filing
transaction, on one backend and not the other, or answer a 500.

Every decoded message goes through :func:`storable_inbound` (the filing path's
``pipeline.prepare``, and the web connector before it answers), and its normalized form through
:func:`storable_normalized`. Per field:

- **free text** (subject, text, html, sender name, location address, attachment filename,
  header values): NUL characters are removed — nothing a citizen meant is lost, and the raw
  payload keeps the bytes;
- **identifiers and bounded fields** (external id, thread ids, channel, connector, e-mail,
  phone, handle, category, agency, attachment type and URL): a NUL character refuses the
  message — an id changed would be another id;
- **anywhere**: a lone surrogate refuses the message; a value longer than its column refuses it
  (lengths are read from the table definitions), except external and thread ids, which are
  stored whole or as their sha256 (:func:`storable_id`), never cut into a collision; numbers a
  column or JSON cannot hold (an attachment size past BIGINT, a non-finite float or an integer
  past 64 bits in ``flags``) refuse it.

A refusal is an :class:`UnstorableValue` naming the field and never quoting the value: a
:class:`~omnichannel.errors.DecodeError`, so a stored payload is quarantined with it, and a web
request is answered ``400 {"error", "field"}``.

:func:`loads_json` reads JSON the way the store needs it: ``NaN``, ``Infinity``, numbers that
overflow to infinity and integers Python cannot convert are refused (or, for a body whose
fields are checked one by one, kept as :class:`OutOfRange` markers so that the field can be
named).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from omnichannel.errors import DecodeError
from omnichannel.schema import InboundMessage, NormalizedMessage, Sender
from omnichannel.store.tables import attachments, complaints, messages, raw_messages

__all__ = [
    "MAX_ID_LENGTH",
    "OutOfRange",
    "UnstorableValue",
    "loads_json",
    "storable_external_id",
    "storable_id",
    "storable_inbound",
    "storable_normalized",
]


def _length(column: sa.Column[Any]) -> int:
    length = getattr(column.type, "length", None)
    assert isinstance(length, int), f"{column} has no length"
    return length


MAX_ID_LENGTH = _length(raw_messages.c.external_id)
"""External and message ids longer than this (512) are stored as their sha256."""
_SENDER_KEY_PREFIX = "mailto:"
LIMITS: dict[str, int] = {
    "channel": min(_length(messages.c.channel), _length(complaints.c.channel)),
    "connector": min(_length(messages.c.connector), _length(complaints.c.connector)),
    # the same-sender key is "mailto:" + the address, in a column of its own
    "sender.email": min(
        _length(messages.c.sender_email),
        _length(messages.c.sender_key) - len(_SENDER_KEY_PREFIX),
    ),
    "sender.phone": _length(messages.c.sender_phone),
    "sender.handle": _length(messages.c.sender_handle),
    "category": _length(complaints.c.category),
    "agency": _length(complaints.c.agency),
    "language": _length(messages.c.language),
    "content_type": _length(attachments.c.content_type),
}
"""The longest value each bounded field may have, from the columns that hold it."""
_BIGINT = 2**63
_ID_FIELDS = frozenset({"message-id"})
"""Header values that are identifiers (refused with a NUL, not cleaned)."""


class UnstorableValue(DecodeError):
    """A field holds a value the store cannot hold; ``field`` names it (``sender.email``,
    ``attachments[0].url``), ``problem`` says what is wrong — never the value."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


# -- ids ---------------------------------------------------------------------------------------


def storable_id(external_id: str) -> str:
    """An id as stored: kept whole when the column holds it as it is, else ``sha256:<hex>`` of
    the whole id (never cut short, which could make two ids one; the full id stays in the raw
    payload)."""
    if len(external_id) <= MAX_ID_LENGTH and external_id.isprintable():
        return external_id
    clean = external_id.encode("utf-8", "surrogatepass")
    return "sha256:" + hashlib.sha256(clean).hexdigest()


def storable_external_id(value: str, field: str = "external_id") -> str:
    """An external id taken from a payload, as an InboundMessage holds it: refused with a NUL
    or a lone surrogate (UnstorableValue); when longer than its column, its sha256 — the id
    the raw row is stored under."""
    return storable_id(_ident(value, field) or value)


# -- JSON --------------------------------------------------------------------------------------


class OutOfRange:
    """A JSON number no field can hold (``NaN``, ``Infinity``, ``1e999``, an integer beyond
    Python's conversion limit), kept in place by ``loads_json(strict=False)`` so that the
    field that holds it is the one refused."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<number out of range>"


OUT_OF_RANGE = OutOfRange()


def _max_digits() -> int:
    limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 0
    return limit or 4300


def loads_json(data: str | bytes, *, strict: bool = True, finite: bool = True) -> Any:
    """``json.loads`` for values that must be storable.

    ``strict``: a number out of range (see :class:`OutOfRange`) raises ValueError; otherwise
    it becomes the ``OUT_OF_RANGE`` marker. ``finite=False`` keeps ``NaN`` and infinities as
    floats (for a payload that is stored as it is and checked when decoded). Malformed JSON,
    nesting too deep or bytes that are not text raise ValueError too.
    """
    digits = _max_digits()

    def out_of_range(what: str) -> Any:
        if strict:
            raise ValueError(f"{what} out of range")
        return OUT_OF_RANGE

    def parse_int(text: str) -> Any:
        if len(text) - text.startswith("-") > digits:
            return out_of_range(f"an integer of more than {digits} digits")
        return int(text)

    def parse_float(text: str) -> Any:
        value = float(text)  # 1e999 is infinite
        return value if math.isfinite(value) or not finite else out_of_range("a number")

    def parse_constant(name: str) -> Any:  # NaN, Infinity, -Infinity
        return float(name) if not finite else out_of_range(name)

    try:
        return json.loads(
            data, parse_int=parse_int, parse_float=parse_float, parse_constant=parse_constant
        )
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


# -- messages ----------------------------------------------------------------------------------


def _unicode(value: str, field: str) -> None:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise UnstorableValue(field, "is not valid Unicode (a lone surrogate)") from None


def _text(value: str | None, field: str) -> str | None:
    """Free text: NUL removed; a lone surrogate refused."""
    if value is None:
        return None
    _unicode(value, field)
    return value.replace("\x00", "") if "\x00" in value else value


def _ident(value: str | None, field: str, limit: int | None = None) -> str | None:
    """An identifier or a bounded field: NUL, a lone surrogate or too long refused."""
    if value is None:
        return None
    if "\x00" in value:
        raise UnstorableValue(field, "contains a NUL character")
    _unicode(value, field)
    if limit is not None and len(value) > limit:
        raise UnstorableValue(field, f"is too long (more than {limit} characters)")
    return value


def _bounded(field: str) -> Callable[[str | None, str], str | None]:
    return lambda value, name: _ident(value, name, LIMITS[field])


def _json_value(value: Any, field: str) -> None:
    """A value of a JSON column (``flags``): text that is Unicode, finite floats, integers
    within 64 bits, lists and objects of those (walked without recursion)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, str):
            _unicode(item, field)
        elif isinstance(item, int):
            if not -_BIGINT <= item < _BIGINT:
                raise UnstorableValue(field, "holds an integer beyond 64 bits")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise UnstorableValue(field, "holds a number that is not finite")
        elif isinstance(item, dict):
            for key in item:
                if not isinstance(key, str):
                    raise UnstorableValue(field, "holds a key that is not text")
                _unicode(key, field)
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
        else:
            raise UnstorableValue(field, "holds a value that is not JSON")


def _sender(sender: Sender) -> None:
    sender.name = _text(sender.name, "sender.name")
    for name in ("email", "phone", "handle"):
        field = f"sender.{name}"
        setattr(sender, name, _bounded(field)(getattr(sender, name), field))


def _headers(headers: dict[str, str]) -> dict[str, str]:
    cleaned: dict[str, str] = {}
    for key, value in headers.items():
        name = _text(key, "headers") or ""
        if name.lower() in _ID_FIELDS:  # (other names are the sender's: never in an error)
            cleaned[name] = _ident(value, f"headers.{name.lower()}") or ""
        else:
            cleaned[name] = _text(value, "headers") or ""
    return cleaned


def storable_inbound(message: InboundMessage) -> InboundMessage:
    """Make ``message`` storable in place (NUL removed from free text) or raise
    :class:`UnstorableValue` naming the first field the store cannot hold; returns it."""
    message.channel = _bounded("channel")(message.channel, "channel") or ""
    message.connector = _bounded("connector")(message.connector, "connector")
    message.external_id = _ident(message.external_id, "external_id") or ""
    message.subject = _text(message.subject, "subject")
    message.text = _text(message.text, "text")
    message.html = _text(message.html, "html")
    _sender(message.sender)
    for index, item in enumerate(message.attachments):
        field = f"attachments[{index}]"
        item.filename = _text(item.filename, field + ".filename")
        kind = _bounded("content_type")(item.content_type, field + ".content_type")
        item.content_type = kind or item.content_type
        item.url = _ident(item.url, field + ".url")
        if item.size is not None and not 0 <= item.size < _BIGINT:
            raise UnstorableValue(field + ".size", "is out of range")
    if message.location is not None:
        location = message.location
        location.address = _text(location.address, "location.address")
        for name in ("lat", "lon"):
            value = getattr(location, name)
            if value is not None and not math.isfinite(value):
                raise UnstorableValue(f"location.{name}", "is not a finite number")
    message.in_reply_to = _ident(message.in_reply_to, "in_reply_to")
    message.references = [
        _ident(r, f"references[{i}]") or "" for i, r in enumerate(message.references)
    ]
    message.headers = _headers(message.headers)
    _json_value(message.flags, "flags")
    message.category = _bounded("category")(message.category, "category")
    message.agency = _bounded("agency")(message.agency, "agency")
    return message


def storable_normalized(message: NormalizedMessage) -> NormalizedMessage:
    """Check that normalizing (an e-mail's domain in punycode, a phone kept raw, a detected
    language) left every bounded field within its column; UnstorableValue names the first
    that is not."""
    for field, value in (
        ("channel", message.channel),
        ("connector", message.connector),
        ("sender.email", message.sender.email),
        ("sender.phone", message.sender.phone),
        ("sender.handle", message.sender.handle),
        ("language", message.language),
        ("category", message.category),
        ("agency", message.agency),
    ):
        _ident(value, field, LIMITS[field])
    _json_value(message.flags, "flags")
    return message
