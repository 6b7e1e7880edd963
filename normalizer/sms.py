"""SMS from a Gammu SMSD ``inbox`` table: UDH, UTF-16BE text, multipart grouping and reassembly.

Pure: rows (as read from the database, made JSON-safe by :func:`jsonable_row`) in; parts, groups,
text and an :class:`~omnichannel.schema.InboundMessage` out. No I/O and no clock.

- **UDH** (3GPP TS 23.040 §9.2.3.24): ``UDHL``, then ``IEI IEDL data`` repeated. The
  concatenation elements are ``00 03 RR TT SS`` (8-bit reference) and ``08 04 RRRR TT SS``
  (16-bit); any other element is kept and ignored. A header that does not parse (not hex, a length
  that does not match, an element running past the end) counts as no concatenation, and so does
  a concatenation element with a total of 0 or a sequence outside ``1..total`` (the standard says
  to ignore those); when two are present the last one wins.
- **Text**: ``Text`` is hex of UTF-16BE for the ``Default`` (GSM 7-bit, converted by Gammu) and
  ``Unicode`` codings, hex of the raw bytes for ``8bit``. The parts' bytes are joined in order and
  decoded ONCE, so a character split across parts (an emoji's surrogate pair) survives. 8-bit
  bytes are UTF-8 when valid, else windows-1252 when that gives printable text, else a
  placeholder (binary data). A missing part is marked ``[…]``; a code unit left unpaired at such a
  gap becomes U+FFFD.
- **Fallback**: when any part has no usable ``Text`` (empty, not hex, an odd number of UTF-16
  bytes, or a ``*_Compression`` coding), the parts' ``TextDecoded`` are joined instead. Since
  Gammu 1.40 the first part's ``TextDecoded`` holds the whole text and later parts are empty, so
  the join gives the whole text with old and new Gammu alike.
- **Grouping**: schema v18 rows with a ``MessageID`` belong to that message
  (``SequencePosition`` of ``PartCount``). Otherwise the UDH decides: parts of one message share
  sender, receiving modem (``RecipientID``), reference kind and value, and total, and lie within
  ``window`` of the group's first part (``ReceivingDateTime``, the SMSC time stamp: the parts of
  one message carry nearly the same one). A sequence already held with other content starts a
  new group (a reused reference); with the same content it is a repeated delivery, kept for the
  acknowledgement but not shown twice. Everything else stands alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from normalizer.phone import normalize_phone
from normalizer.timeutil import DEFAULT_TZ, to_utc
from omnichannel.errors import DecodeError
from omnichannel.schema import InboundMessage, Sender

__all__ = [
    "GAMMU_INBOX_TYPE",
    "MISSING_MARK",
    "Assembler",
    "Concat",
    "Group",
    "Part",
    "Reassembled",
    "Udh",
    "decode_8bit",
    "decode_gammu_inbox",
    "decode_utf16be",
    "group_external_id",
    "hex_to_bytes",
    "inbox_payload",
    "is_operator_sender",
    "jsonable_row",
    "local_time",
    "parse_udh",
    "part_of",
    "reassemble",
]

GAMMU_INBOX_TYPE = "application/vnd.gammu.inbox+json"
MISSING_MARK = "[…]"
UTF16_CODINGS = frozenset({"Default_No_Compression", "Unicode_No_Compression"})
EIGHT_BIT = "8bit"
USSD_CLASS = 127
_PAYLOAD_FORMAT = "gammu-inbox/1"
_FINGERPRINT_CHARS = 24
MAX_PARTS = 255
"""The most parts one SMS can have (the UDH's one-byte total); a v18 ``PartCount`` beyond it is
not a message's (a row that says 10**18 would have the decoder count every missing part)."""
_CONTROL_OK = frozenset("\t\n\r")


# -- UDH ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Concat:
    """A concatenation information element: part ``sequence`` of ``total``, ``reference``."""

    reference: int
    total: int
    sequence: int
    bits: int


@dataclass(frozen=True, slots=True)
class Udh:
    """A parsed User Data Header: its information elements and the concatenation, if any."""

    elements: tuple[tuple[int, bytes], ...] = ()
    concat: Concat | None = None
    malformed: bool = False


def hex_to_bytes(value: object) -> bytes | None:
    """The bytes of a hex string (whitespace allowed); ``b""`` for empty, None when not hex."""
    text = _text(value).strip()
    if not text:
        return b""
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def _elements(header: bytes) -> list[tuple[int, bytes]] | None:
    """``IEI IEDL data`` repeated; None when an element runs past the end."""
    found, position = [], 0
    while position < len(header):
        if position + 2 > len(header):
            return None
        iei, length = header[position], header[position + 1]
        end = position + 2 + length
        if end > len(header):
            return None
        found.append((iei, header[position + 2 : end]))
        position = end
    return found


def _concat(iei: int, data: bytes) -> Concat | None:
    if iei == 0x00 and len(data) == 3:
        concat = Concat(data[0], data[1], data[2], 8)
    elif iei == 0x08 and len(data) == 4:
        concat = Concat((data[0] << 8) | data[1], data[2], data[3], 16)
    else:
        return None
    if concat.total < 1 or not 1 <= concat.sequence <= concat.total:
        return None  # 23.040: such an element is ignored
    return concat


def parse_udh(value: object) -> Udh:
    """Parse a UDH given as hex (the ``UDH`` column), length byte included."""
    data = hex_to_bytes(value)
    if data is None:
        return Udh(malformed=True)
    if not data:
        return Udh()
    if data[0] != len(data) - 1:
        return Udh(malformed=True)
    elements = _elements(data[1:])
    if elements is None:
        return Udh(malformed=True)
    concat = None
    for iei, element in elements:
        concat = _concat(iei, element) or concat
    return Udh(tuple(elements), concat)


# -- text --------------------------------------------------------------------------------------


def decode_utf16be(data: bytes) -> str:
    """UTF-16BE text; unpaired surrogates and a trailing odd byte become U+FFFD."""
    try:
        return data.decode("utf-16-be")
    except UnicodeDecodeError:
        return data.decode("utf-16-be", errors="replace")


def _printable(text: str) -> bool:
    return all(ch.isprintable() or ch in _CONTROL_OK for ch in text)


def decode_8bit(data: bytes) -> tuple[str, bool]:
    """8-bit user data as text: UTF-8, else windows-1252; ``(placeholder, True)`` for binary."""
    for encoding in ("utf-8", "cp1252"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if _printable(text):
            return text, False
    return f"[data biner 8-bit, {len(data)} byte]", True


@dataclass(frozen=True, slots=True)
class Reassembled:
    """A message's text, the sequences that did not arrive, and where the text came from."""

    text: str
    missing: tuple[int, ...] = ()
    source: str = "Text"
    binary: bool = False


def _encoded(row: Mapping[str, Any]) -> tuple[str, bytes] | None:
    """``(kind, bytes)`` of a part's ``Text``; None when it cannot be used."""
    data = hex_to_bytes(row.get("Text"))
    if not data:
        return None
    coding = _text(row.get("Coding")) or "Default_No_Compression"
    if coding == EIGHT_BIT:
        return EIGHT_BIT, data
    if coding in UTF16_CODINGS and len(data) % 2 == 0:
        return "utf16", data
    return None


def _decode_run(kind: str, data: bytes) -> tuple[str, bool]:
    return decode_8bit(data) if kind == EIGHT_BIT else (decode_utf16be(data), False)


def _join_encoded(encoded: Mapping[int, tuple[str, bytes]], total: int) -> tuple[str, bool]:
    """Consecutive parts of one kind are joined as bytes and decoded once; gaps are marked."""
    pieces: list[str] = []
    binary = False
    run_kind, run = "", bytearray()

    def flush() -> None:
        nonlocal run_kind, run, binary
        if run:
            text, is_binary = _decode_run(run_kind, bytes(run))
            pieces.append(text)
            binary = binary or is_binary
        run_kind, run = "", bytearray()

    for sequence in range(1, total + 1):
        if sequence not in encoded:
            flush()
            if not pieces or pieces[-1] != MISSING_MARK:
                pieces.append(MISSING_MARK)
            continue
        kind, data = encoded[sequence]
        if kind != run_kind:
            flush()
            run_kind = kind
        run += data
    flush()
    return "".join(pieces), binary


def _join_decoded(rows: Mapping[int, Mapping[str, Any]], total: int) -> str:
    pieces: list[str] = []
    for sequence in range(1, total + 1):
        if sequence in rows:
            pieces.append(_text(rows[sequence].get("TextDecoded")))
        elif not pieces or pieces[-1] != MISSING_MARK:
            pieces.append(MISSING_MARK)
    return "".join(pieces)


def reassemble(rows: Mapping[int, Mapping[str, Any]], total: int) -> Reassembled:
    """The text of a message from its rows by sequence (``1..total``; some may be missing)."""
    total = max([total, *rows]) if rows else total
    missing = tuple(s for s in range(1, total + 1) if s not in rows)
    encoded = {sequence: _encoded(row) for sequence, row in rows.items()}
    usable = {s: e for s, e in encoded.items() if e is not None}
    if rows and len(usable) == len(encoded):
        text, binary = _join_encoded(usable, total)
        return Reassembled(text, missing, "Text", binary)
    return Reassembled(_join_decoded(rows, total), missing, "TextDecoded")


# -- rows and parts ----------------------------------------------------------------------------


def _text(value: object) -> str:
    """A JSON row value as text (``{"hex": …}`` is bytes the driver gave us)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("hex"), str):
        try:
            return bytes.fromhex(value["hex"]).decode("utf-8", errors="replace")
        except ValueError:
            return ""
    return str(value)


def _int(value: object, default: int = 0) -> int:
    try:
        return int(_text(value).strip() or default)
    except ValueError:
        return default


def _jsonable(value: object) -> object:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return {"hex": bytes(value).hex()}
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    return str(value)


def jsonable_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A database row with JSON-safe values: times as text, bytes as ``{"hex": …}``."""
    return {str(key): _jsonable(value) for key, value in row.items()}


def local_time(value: object) -> datetime | None:
    """A row's timestamp as naive local time of the gateway; None when there is none."""
    if isinstance(value, datetime):
        return value
    text = _text(value).strip()
    if not text or text.startswith("0000"):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Part:
    """One ``inbox`` row: which message it belongs to (``key``) and where in it."""

    id: int
    key: tuple[object, ...]
    sequence: int
    total: int
    time: datetime | None
    row: Mapping[str, Any] = field(repr=False, compare=False)

    def content(self) -> tuple[str, ...]:
        """What identifies this part's content (for repeats and fingerprints)."""
        columns = ("SenderNumber", "Coding", "UDH", "Text", "TextDecoded")
        when = self.time.isoformat() if self.time else _text(self.row.get("ReceivingDateTime"))
        return (*(_text(self.row.get(column)) for column in columns), when)


def part_of(row: Mapping[str, Any], schema: int) -> Part:
    """Where a row belongs: v18 ``MessageID``, else the UDH concatenation, else alone."""
    row_id = _int(row.get("ID"))
    when = local_time(row.get("ReceivingDateTime"))
    if schema >= 18 and (message := _int(row.get("MessageID"))) > 0:
        total = _int(row.get("PartCount"), 1)
        sequence = _int(row.get("SequencePosition"), 1)
        if 1 <= total <= MAX_PARTS and 1 <= sequence <= total:
            return Part(row_id, ("message", message), sequence, total, when, row)
    concat = parse_udh(row.get("UDH")).concat
    if concat is not None:
        key = (
            "concat",
            _text(row.get("SenderNumber")).strip(),
            _text(row.get("RecipientID")),
            concat.bits,
            concat.reference,
            concat.total,
        )
        return Part(row_id, key, concat.sequence, concat.total, when, row)
    return Part(row_id, ("single", row_id), 1, 1, when, row)


# -- groups ------------------------------------------------------------------------------------


@dataclass
class Group:
    """The parts of one message seen so far; ``repeats`` are parts delivered twice."""

    key: tuple[object, ...]
    total: int
    parts: dict[int, Part] = field(default_factory=dict)
    repeats: list[Part] = field(default_factory=list)

    @property
    def first_id(self) -> int:
        return min(p.id for p in self.parts.values())

    @property
    def ids(self) -> list[int]:
        return sorted({p.id for p in [*self.parts.values(), *self.repeats]})

    @property
    def complete(self) -> bool:
        return len(self.parts) >= self.total

    @property
    def start(self) -> datetime | None:
        times = [p.time for p in self.parts.values() if p.time is not None]
        return min(times) if times else None

    @property
    def newest(self) -> datetime | None:
        """The newest part's time (None when no part has one)."""
        times = [p.time for p in self.parts.values() if p.time is not None]
        return max(times) if times else None

    def rows(self) -> list[Mapping[str, Any]]:
        """Rows in part order, repeated deliveries last."""
        ordered = [self.parts[s] for s in sorted(self.parts)]
        return [p.row for p in [*ordered, *sorted(self.repeats, key=lambda p: p.id)]]

    def accepts(self, part: Part, window: timedelta) -> bool:
        """Whether ``part`` belongs here (see the module docstring)."""
        held = self.parts.get(part.sequence)
        if held is not None and held.content() != part.content():
            return False
        if self.key[0] != "concat":
            return True
        start = self.start
        return start is None or part.time is None or abs(part.time - start) <= window

    def add(self, part: Part) -> None:
        if part.sequence in self.parts:
            self.repeats.append(part)
        else:
            self.parts[part.sequence] = part


class Assembler:
    """Collects parts (in ``ID`` order) into messages; complete ones are popped as they close."""

    def __init__(self, window: timedelta) -> None:
        self.window = window
        self._open: dict[tuple[object, ...], list[Group]] = {}

    def add(self, part: Part) -> None:
        groups = self._open.setdefault(part.key, [])
        for group in groups:
            if group.accepts(part, self.window):
                group.add(part)
                return
        group = Group(part.key, part.total)
        group.add(part)
        groups.append(group)

    def extend(self, parts: Iterable[Part]) -> None:
        for part in parts:
            self.add(part)

    def pop_complete(self) -> list[Group]:
        """Groups that have all their parts, removed from the assembler, oldest first."""
        done = [g for groups in self._open.values() for g in groups if g.complete]
        for group in done:
            self._open[group.key].remove(group)
        self._open = {k: v for k, v in self._open.items() if v}
        return sorted(done, key=lambda g: g.first_id)

    def pending(self) -> list[Group]:
        """Groups still waiting for parts, oldest first."""
        return sorted((g for gs in self._open.values() for g in gs), key=lambda g: g.first_id)


# -- payload and external id -------------------------------------------------------------------


def inbox_payload(
    rows: Sequence[Mapping[str, Any]], *, gateway: str, schema: int, timezone: str
) -> bytes:
    """The raw payload of one message: its rows as read, and how to read them."""
    document = {
        "format": _PAYLOAD_FORMAT,
        "gateway": gateway,
        "schema": schema,
        "timezone": timezone,
        "rows": [jsonable_row(row) for row in rows],
    }
    return json.dumps(document, ensure_ascii=False, sort_keys=True).encode("utf-8")


def group_external_id(gateway: str, group: Group) -> str:
    """``<gateway>:<lowest row ID>:<content hash>`` — stable when the same rows are read again."""
    contents = [group.parts[s].content() for s in sorted(group.parts)]
    canonical = json.dumps([group.total, sorted(group.parts), contents], ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:_FINGERPRINT_CHARS]
    return f"{gateway}:{group.first_id}:{digest}"  # (an id too long is stored as its sha256)


# -- decoding ----------------------------------------------------------------------------------


def is_operator_sender(sender: str) -> bool:
    """Alphanumeric sender names (``TELKOMSEL``) and short codes (``3636``): not a citizen."""
    return bool(sender.strip()) and normalize_phone(sender).kind in ("alphanumeric", "shortcode")


def _load(payload: bytes) -> tuple[int, str | None, list[dict[str, Any]]]:
    try:
        document = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError):  # not UTF-8, not JSON, an integer out of range
        raise DecodeError("not a Gammu inbox document (invalid JSON)") from None
    if not isinstance(document, dict) or document.get("format") != _PAYLOAD_FORMAT:
        raise DecodeError("not a Gammu inbox document (format missing)")
    rows = document.get("rows")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise DecodeError("Gammu inbox document has no rows")
    if not all(_int(row.get("ID")) > 0 for row in rows):
        raise DecodeError("Gammu inbox row without an ID")
    schema = document.get("schema")
    timezone = document.get("timezone")
    return (
        schema if isinstance(schema, int) else 17,
        timezone if isinstance(timezone, str) else None,
        rows,
    )


def _zone(name: str | None, default: str | ZoneInfo) -> str | ZoneInfo:
    if name:
        try:
            return ZoneInfo(name)
        except (ValueError, KeyError):
            pass
    return default


def _flags(group: Group, result: Reassembled, *, operator: bool, ignore: bool) -> dict[str, Any]:
    flags: dict[str, Any] = {}
    if group.total > 1:
        flags["sms_parts"] = group.total
    if result.missing:
        flags.update(incomplete=True, missing_parts=list(result.missing))
    if result.source != "Text":
        flags["text_source"] = result.source
    if result.binary:
        flags["binary"] = True
    if group.repeats:
        flags["repeated_parts"] = len(group.repeats)
    if any(parse_udh(p.row.get("UDH")).malformed for p in group.parts.values()):
        flags["udh_malformed"] = True
    if operator:
        flags["operator_message"] = True
        if ignore:
            flags["ignore"] = True  # stored, never a complaint (omnichannel.schema.IGNORED_FLAGS)
    return flags


def _headers(row: Mapping[str, Any]) -> dict[str, str]:
    headers = {
        "smsc": _text(row.get("SMSCNumber")),
        "gammu-recipient": _text(row.get("RecipientID")),
    }
    return {k: v for k, v in headers.items() if v}


def decode_gammu_inbox(
    payload: bytes,
    *,
    connector: str,
    external_id: str,
    timezone: str | ZoneInfo = DEFAULT_TZ,
    ignore_operator_messages: bool = True,
) -> InboundMessage:
    """Decode one message's rows (see :func:`inbox_payload`) into an InboundMessage.

    ``received_at`` is the newest part's ``ReceivingDateTime``, ``sent_at`` the oldest part's,
    both read as local time of the gateway (the payload's ``timezone``, else ``timezone``).
    """
    schema, zone_name, rows = _load(payload)
    zone = _zone(zone_name, timezone)
    group = Group(("decode",), 1)
    for part in (part_of(row, schema) for row in rows):
        group.total = max(group.total, part.total)
        group.add(part)
    first = group.parts[min(group.parts)].row
    result = reassemble({s: p.row for s, p in group.parts.items()}, group.total)
    sender = _text(first.get("SenderNumber")).strip()
    operator = is_operator_sender(sender) or _int(first.get("Class"), -1) == USSD_CLASS
    newest, oldest = group.newest, group.start
    try:
        return InboundMessage(
            channel="sms",
            connector=connector,
            external_id=external_id,
            received_at=to_utc(newest, zone) if newest else None,
            sent_at=to_utc(oldest, zone) if oldest else None,
            sender=Sender(phone=sender or None),
            text=result.text,
            headers=_headers(first),
            flags=_flags(group, result, operator=operator, ignore=ignore_operator_messages),
        )
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise DecodeError(f"Gammu inbox row cannot be read: {type(exc).__name__}") from None
