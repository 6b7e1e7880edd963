"""Header fields: read from the raw header block, decoded to clean text, looked up per part.

The raw block is read without a parser (for the idempotency key, the payload check and the
headers of attached messages and delivery reports).  Values are unfolded, raw 8-bit bytes read
as UTF-8 when valid (else windows-1252) and RFC 2047 words decoded; the headers of interest are
copied into ``InboundMessage.headers``.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Iterator
from email.message import Message

from normalizer.email._charsets import decode_text, without_surrogates

HEADERS_OF_INTEREST = (
    "message-id",
    "in-reply-to",
    "references",
    "auto-submitted",
    "precedence",
    "x-autoreply",
    "x-autorespond",
    "x-auto-response-suppress",
    "list-id",
    "list-unsubscribe",
    "return-path",
    "content-type",
    "x-mailer",
)
"""Headers copied (lower-cased, decoded) into ``InboundMessage.headers``."""

MAX_HEADER_BLOCK = 256 * 1024
# A header field line: printable ASCII name (no colon, no space) then a colon, as in feedparser.
HEADER_LINE = re.compile(rb"^([\x21-\x39\x3b-\x7e]+):(.*)$", re.DOTALL)
MESSAGE_ID = re.compile(r"<[^<>\s]+>")
_ESCAPED_8BIT = re.compile(r"[\udc80-\udcff]")
_FOLDING = re.compile(r"\r?\n(?=[ \t])|\r(?=[ \t])")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*?)\?=")
_UTF8_BOM = b"\xef\xbb\xbf"


# --- the raw header block ---------------------------------------------------------------------


def trim_preamble(data: bytes) -> bytes:
    """Drop a UTF-8 byte order mark and blank lines some tools write before the headers."""
    return data.removeprefix(_UTF8_BOM).lstrip(b"\r\n")


def normalize_line_endings(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def raw_headers(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Yield ``(name, unfolded value)`` from the header block; stop at the first non-header."""
    block = normalize_line_endings(trim_preamble(data)[:MAX_HEADER_BLOCK])
    lines = block.split(b"\n\n", 1)[0].split(b"\n")
    if lines and lines[0].startswith(b"From "):
        lines = lines[1:]
    name: bytes | None = None
    value = b""
    for line in lines:
        if name is not None and line[:1] in (b" ", b"\t"):
            value += line
            continue
        match = HEADER_LINE.match(line)
        if name is not None:
            yield name, value.strip()
        if match is None:
            return
        name, value = match.group(1), match.group(2)
    if name is not None:
        yield name, value.strip()


def raw_header_map(data: bytes) -> dict[str, str]:
    """Lower-cased name to decoded value (first occurrence) of a raw header block."""
    found: dict[str, str] = {}
    for name, value in raw_headers(data):
        key = name.decode("ascii").lower()
        if key not in found:
            found[key] = decode_header_text(value.decode("ascii", "surrogateescape"))
    return found


# --- header text ------------------------------------------------------------------------------


def decode_header_text(value: str) -> str:
    """A raw header value as one clean line: unfolded, raw 8-bit bytes and RFC 2047 decoded.

    ``value`` is header text as the ``email`` parser keeps it (8-bit bytes surrogate-escaped).
    """
    return clean_line(decode_words(fix_8bit(unfold(value))))


def unfold(value: str) -> str:
    return _FOLDING.sub("", value)


def clean_line(value: str) -> str:
    return " ".join(strip_controls(value).split())


def strip_controls(value: str) -> str:
    if value.isprintable():  # no control characters at all: the common case
        return value
    return "".join(ch for ch in value if ch in "\t\n" or unicodedata.category(ch) != "Cc")


def fix_8bit(value: str) -> str:
    """Decode surrogate-escaped raw header bytes: UTF-8 when valid, else windows-1252."""
    if not _ESCAPED_8BIT.search(value):
        return without_surrogates(value)
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return without_surrogates(value)
    return decode_text(raw, None)


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words; adjacent words of one charset are decoded together.

    So a character split across two words survives, whitespace between two encoded words is
    dropped (RFC 2047, section 6.2) and a word that does not decode stays as written.
    (``email.header.decode_header`` joins adjacent words too, but reads ``iso-8859-1`` as Latin-1
    and hands plain text back as ``raw-unicode-escape`` bytes, which mangles backslashes.)
    """
    if "=?" not in value:
        return value
    merged: list[str | tuple[str, bytes]] = []
    for token in _word_tokens(value):
        if isinstance(token, tuple):
            if len(merged) >= 2 and isinstance(merged[-2], tuple) and not str(merged[-1]).strip():
                merged.pop()
            last = merged[-1] if merged else None
            if isinstance(last, tuple) and last[0] == token[0]:
                merged[-1] = (token[0], last[1] + token[1])
                continue
        merged.append(token)
    return "".join(t if isinstance(t, str) else decode_text(t[1], t[0]) for t in merged)


def _word_tokens(value: str) -> list[str | tuple[str, bytes]]:
    """Plain text and ``(charset, bytes)`` of each decodable encoded word, in order."""
    tokens: list[str | tuple[str, bytes]] = []
    position = 0
    for word in _ENCODED_WORD.finditer(value):
        tokens.append(value[position : word.start()])
        data = _word_bytes(word.group(2), word.group(3))
        charset = word.group(1).split("*", 1)[0].lower()
        tokens.append(word.group(0) if data is None else (charset, data))
        position = word.end()
    tokens.append(value[position:])
    return tokens


def _word_bytes(encoding: str, text: str) -> bytes | None:
    data = text.encode("utf-8", "surrogateescape")
    if encoding in "qQ":
        return binascii.a2b_qp(data, header=True)
    data = b"".join(data.split())
    try:
        return base64.b64decode(data + b"=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        return None


# --- headers of a parsed part -----------------------------------------------------------------


def raw_header(msg: Message, name: str) -> str | None:
    """The first ``name`` header exactly as parsed (may hold surrogate-escaped 8-bit bytes)."""
    return _first_headers(msg).get(name)


def _first_headers(msg: Message) -> dict[str, str]:
    """Lower-case name -> first raw value, built once per parsed part (looked up ~40 times)."""
    cached: dict[str, str] | None = getattr(msg, "_omni_first_headers", None)
    if cached is None:
        cached = {}
        for key, value in msg.raw_items():
            cached.setdefault(key.lower(), str(value))
        msg._omni_first_headers = cached  # type: ignore[attr-defined]
    return cached


def header_text(msg: Message, name: str) -> str | None:
    raw = raw_header(msg, name)
    return None if raw is None else decode_header_text(raw)


def headers_of_interest(msg: Message) -> dict[str, str]:
    """:data:`HEADERS_OF_INTEREST` present in ``msg``, decoded; the Message-ID cleaned."""
    headers: dict[str, str] = {}
    for name in HEADERS_OF_INTEREST:
        value = header_text(msg, name)
        if value is not None:
            headers[name] = value
    message_id = clean_message_id(headers.get("message-id", ""))
    if message_id:
        headers["message-id"] = message_id
    return headers


def clean_message_id(value: str) -> str | None:
    """The ``<...>`` token of a Message-ID value, else the value without spaces or controls."""
    found = MESSAGE_ID.search(value)
    if found:
        return strip_controls(found.group(0))
    cleaned = "".join(strip_controls(value).split())
    return cleaned or None
