"""Decode one RFC 822 e-mail (bytes as fetched) into an :class:`InboundMessage`.

Pure: bytes in, a message out; no I/O and no clock.  The only error that escapes is
:class:`~omnichannel.errors.DecodeError`, for payloads that are not e-mail at all (or that do not
fit the schema, such as an overlong external id).

Parsing
    ``compat32`` first (about ten times faster), and ``BytesParser(policy=email.policy.default)``
    when it raises (flagged ``parser_fallback``).  Either way headers and parameters are read
    from the raw header text the parser keeps, and attached messages from the raw bytes of their
    MIME part, so both policies give the same result.  The parser runs within the limits of
    :mod:`normalizer.limits` (:mod:`normalizer.mime`): large bodies are decoded straight from the
    payload, and a mail past a limit is read up to it and flagged.

Text
    * a declared ``iso-8859-1`` / ``latin-1`` / ``us-ascii`` is read as windows-1252 (0x80-0x9F
      are smart quotes and the euro sign in real mail); ``gb2312``, ``big5``, ``shift_jis`` ...
      as their common supersets;
    * no charset, or one Python does not know: UTF-8 when valid, else windows-1252;
    * a known charset with invalid bytes: U+FFFD; NUL bytes and lone surrogates never survive.

    RFC 2047 words are decoded anywhere (adjacent words of one charset together, so a character
    split across two words survives; also inside quoted filenames), RFC 2231 parameters with
    continuations, and raw 8-bit header bytes (UTF-8 when valid, else windows-1252).

Bodies and attachments
    ``text/plain`` is preferred in ``multipart/alternative``; HTML is converted only when there
    is no plain text, and kept in ``html`` as data.  Inline text parts of a ``multipart/mixed``
    are joined with a blank line; ``multipart/signed`` and ``multipart/report`` use their first
    part, ``multipart/related`` its root.  Every other part with a filename, an ``attachment``
    disposition or a type other than ``text/plain``/``text/html`` is an attachment (signatures,
    inline images, calendar invites, delivery reports); an attached ``message/rfc822`` is one
    ``<subject>.eml`` attachment holding the inner message's bytes.  Attachment types are checked
    against magic bytes (:func:`sniff_content_type`) and names made safe (:func:`safe_filename`).

Flags
    ``auto_reply`` (with ``auto_reply_reason``), ``list``, ``bounce`` and, for delivery-status
    reports, ``bounced_message_id`` (also ``in_reply_to``), ``dsn_action`` and ``dsn_recipient``;
    ``date_unparsed`` and ``parser_fallback``; past a limit, ``mime_truncated`` (``parts``,
    ``depth`` or ``checks``), ``attachments_omitted`` (how many beyond ``MAX_ATTACHMENTS``) and
    ``html_truncated`` (HTML beyond ``MAX_HTML_TO_TEXT`` characters not converted to text).

The idempotency key, :func:`email_external_id`, is ``<Message-ID>|sha256:<hex>`` over the raw
bytes with line endings normalized, so a Message-ID reused for different content does not
collide and a mail saved with CRLF or LF gets the same key.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email.policy
import hashlib
import itertools
import re
import unicodedata
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.message import Message
from email.policy import Compat32, Policy, compat32
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any, NamedTuple

from pydantic import ValidationError

from normalizer.address import normalize_email
from normalizer.filenames import EXTENSION_TYPES as _EXTENSION_TYPES
from normalizer.filenames import safe_filename
from normalizer.jsondoc import describe_validation_error
from normalizer.limits import MAX_ATTACHMENTS, MAX_HTML_TO_TEXT, MAX_MIME_DEPTH
from normalizer.mime import parse, payload_bytes, restored, transfer_decoded
from normalizer.text import html_to_text
from omnichannel.errors import DecodeError
from omnichannel.schema import Attachment, InboundMessage, Sender

__all__ = [
    "HEADERS_OF_INTEREST",
    "decode_email",
    "decode_header_text",
    "decode_text",
    "email_external_id",
    "safe_filename",
    "sniff_content_type",
    "strip_reply_prefixes",
]

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

MAX_EXTERNAL_ID = 512
_HASH_PART = len("|sha256:") + 64
_MAX_HEADER_BLOCK = 256 * 1024
_MAX_MIME_DEPTH = MAX_MIME_DEPTH  # (the parser stops there too, flagging ``mime_truncated``)
_MAX_REFERENCES = 100
_MAX_ID_LENGTH = 998

# A header field line: printable ASCII name (no colon, no space) then a colon, as in feedparser.
_HEADER_LINE = re.compile(rb"^([\x21-\x39\x3b-\x7e]+):(.*)$", re.DOTALL)
_MSG_ID = re.compile(r"<[^<>\s]+>")
_ID_TOKEN = re.compile(r"<([^<>]*)>|([^\s<>,;\"()]+)")
"""A bracketed id, or a bare word (an id when it holds an ``@``): words never overlap, so a
header of 100,000 characters is read in one pass (``[^…]+@[^…]+`` tried it from every
position: quadratic)."""
_COMMENT = re.compile(r"\([^()<>]*\)")
_ESCAPED_8BIT = re.compile(r"[\udc80-\udcff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_FOLDING = re.compile(r"\r?\n(?=[ \t])|\r(?=[ \t])")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*?)\?=")
_ANGLE_ADDRESS = re.compile(r"<\s*([^<>\s]*@[^<>\s]*)\s*>")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_CONTENT_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")
_UTF8_BOM = b"\xef\xbb\xbf"
_MAIL_HEADERS = frozenset(
    {
        b"from",
        b"to",
        b"cc",
        b"subject",
        b"date",
        b"message-id",
        b"mime-version",
        b"received",
        b"return-path",
        b"reply-to",
        b"sender",
        b"content-type",
        b"delivered-to",
    }
)


# --- the idempotency key ---------------------------------------------------------------------


def email_external_id(payload: bytes) -> str:
    """``<Message-ID>|sha256:<hex>`` (or ``sha256:<hex>`` without one); never raises."""
    data = bytes(payload)
    digest = _normalized_digest(data)
    try:
        message_id = _raw_message_id(data)
    except Exception:  # the key must exist whatever the bytes are
        message_id = None
    if not message_id:
        return f"sha256:{digest}"
    return f"{message_id[: MAX_EXTERNAL_ID - _HASH_PART]}|sha256:{digest}"


def _normalize_line_endings(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


_DIGEST_CHUNK = 1024 * 1024


def _normalized_digest(data: bytes) -> str:
    """sha256 of ``data`` with line endings normalized, a chunk at a time (a large mail is not
    copied whole; a chunk never ends between the CR and LF of one line ending)."""
    digest = hashlib.sha256()
    start = 0
    while start < len(data):
        end = start + _DIGEST_CHUNK
        if data[end - 1 : end] == b"\r":
            end += 1
        digest.update(_normalize_line_endings(data[start:end]))
        start = end
    return digest.hexdigest()


def _raw_message_id(data: bytes) -> str | None:
    for name, value in _raw_headers(data):
        if name.lower() == b"message-id":
            return _clean_message_id(value.decode("ascii", "replace"))
    return None


def _clean_message_id(value: str) -> str | None:
    """The ``<...>`` token of a Message-ID value, else the value without spaces or controls."""
    found = _MSG_ID.search(value)
    if found:
        return _strip_controls(found.group(0))
    cleaned = "".join(_strip_controls(value).split())
    return cleaned or None


def _raw_headers(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Yield ``(name, unfolded value)`` from the header block; stop at the first non-header."""
    block = _normalize_line_endings(_trim_preamble(data)[:_MAX_HEADER_BLOCK])
    lines = block.split(b"\n\n", 1)[0].split(b"\n")
    if lines and lines[0].startswith(b"From "):
        lines = lines[1:]
    name: bytes | None = None
    value = b""
    for line in lines:
        if name is not None and line[:1] in (b" ", b"\t"):
            value += line
            continue
        match = _HEADER_LINE.match(line)
        if name is not None:
            yield name, value.strip()
        if match is None:
            return
        name, value = match.group(1), match.group(2)
    if name is not None:
        yield name, value.strip()


def _raw_header_map(data: bytes) -> dict[str, str]:
    """Lower-cased name to decoded value (first occurrence) of a raw header block."""
    found: dict[str, str] = {}
    for name, value in _raw_headers(data):
        key = name.decode("ascii").lower()
        if key not in found:
            found[key] = decode_header_text(value.decode("ascii", "surrogateescape"))
    return found


def _trim_preamble(data: bytes) -> bytes:
    """Drop a UTF-8 byte order mark and blank lines some tools write before the headers."""
    return data.removeprefix(_UTF8_BOM).lstrip(b"\r\n")


# --- decoding ---------------------------------------------------------------------------------


def decode_email(
    payload: bytes,
    *,
    connector: str,
    external_id: str,
    received_at: datetime | None = None,
) -> InboundMessage:
    """Decode raw RFC 822 bytes; raise DecodeError when they are not an e-mail at all."""
    data = _checked_payload(payload)
    try:  # compat32 parses ~10x faster; headers and parameters are read from the raw text
        return _decode_with(data, compat32, connector, external_id, received_at)
    except Exception:  # the standard library's parser bugs differ between policies
        pass
    try:
        return _decode_with(data, email.policy.default, connector, external_id, received_at)
    except ValidationError as exc:
        detail = describe_validation_error(exc)
        raise DecodeError(f"e-mail does not fit the schema: {detail}") from None
    except Exception as exc:
        raise DecodeError(f"e-mail could not be decoded ({type(exc).__name__})") from exc


def _checked_payload(payload: bytes) -> bytes:
    """The payload without preamble, or DecodeError when it has no header structure."""
    data = _trim_preamble(bytes(payload))
    if not data or data.isspace():  # (not strip(): it would copy a large mail)
        raise DecodeError("empty e-mail payload")
    names = [name.lower() for name, _ in _raw_headers(data)]
    newline = data.find(b"\n", 0, _MAX_HEADER_BLOCK)
    first_line = data[:newline] if newline >= 0 else data[:_MAX_HEADER_BLOCK]
    if not names or not (first_line.startswith(b"From ") or _HEADER_LINE.match(first_line)):
        raise DecodeError("payload does not start with e-mail headers")
    if not _MAIL_HEADERS.intersection(names):
        raise DecodeError("payload has no e-mail headers (From, Subject, Date, ...)")
    return data


def _decode_with(
    data: bytes,
    policy: Policy,
    connector: str,
    external_id: str,
    received_at: datetime | None,
) -> InboundMessage:
    parsed = parse(data, policy)
    msg = parsed.message
    leaves = list(_leaves(msg, memoryview(data)))
    report = _delivery_report(msg, leaves)
    subject = _header_text(msg, "subject")
    sender, from_email = _sender(msg, is_dsn=report is not None and report.is_dsn)
    sent_at, date_unparsed = _sent_at(msg)
    flags = _flags(msg, subject, (from_email, sender.email), report)
    if date_unparsed:
        flags["date_unparsed"] = True
    if policy is not compat32:
        flags["parser_fallback"] = True
    if parsed.truncated:
        flags["mime_truncated"] = parsed.truncated  # the limit reached: parts, depth, checks
    headers = _headers_of_interest(msg)
    text, html = _bodies(msg, flags)
    return InboundMessage(
        channel="email",
        connector=connector,
        external_id=external_id,
        received_at=received_at,
        sent_at=sent_at,
        sender=sender,
        subject=subject or None,
        text=text,
        html=html,
        attachments=_attachments(leaves, flags),
        in_reply_to=flags.get("bounced_message_id") or _first_id(headers.get("in-reply-to")),
        references=_references(headers.get("references", "")),
        headers=headers,
        flags=flags,
    )


# --- charsets ---------------------------------------------------------------------------------

_CHARSET_ALIASES = {
    "x-gbk": "gbk",
    "x-sjis": "shift_jis",
    "windows-874": "cp874",
    "iso-8859-8-i": "iso-8859-8",
    "utf8mb4": "utf-8",
}
# What real mail means by a declared charset (the WHATWG encoding standard does the same).
_CHARSET_SUPERSETS = {
    "iso8859-1": "cp1252",
    "ascii": "cp1252",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc_kr": "cp949",
    "shift_jis": "cp932",
    "big5": "big5hkscs",
    "tis-620": "cp874",
    "iso8859-11": "cp874",
    "iso8859-9": "cp1254",
}
# Python codecs that are not character sets a mail could mean.
_NOT_CHARSETS = frozenset(
    {"unicode-escape", "raw-unicode-escape", "undefined", "idna", "punycode", "charmap"}
)


def decode_text(raw: bytes, charset: str | None) -> str:
    """Bytes to text with the mail rules: latin-1/ascii read as windows-1252, UTF-8 first.

    A missing or unknown charset means UTF-8 when the bytes are valid UTF-8, else windows-1252.
    Never raises; the result holds no lone surrogates.
    """
    codec = _codec(charset)
    if codec is None:
        return _utf8_or_windows_1252(raw)
    try:
        text = raw.decode(codec, "replace")
    except (LookupError, UnicodeError, ValueError, TypeError):
        return _utf8_or_windows_1252(raw)
    return _SURROGATE.sub("\ufffd", text)


def _codec(charset: str | None) -> str | None:
    """The Python codec for a declared charset, or None when none was declared or it is unknown."""
    name = (charset or "").strip().strip("\"'").lower()
    if not name:
        return None
    try:
        codec = codecs.lookup(_CHARSET_ALIASES.get(name, name)).name
    except (LookupError, ValueError, TypeError):
        return None
    if codec in _NOT_CHARSETS:  # (bytes-to-bytes codecs such as base64 fail in decode_text)
        return None
    return _CHARSET_SUPERSETS.get(codec, codec)


def _utf8_or_windows_1252(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


# --- headers ----------------------------------------------------------------------------------


def decode_header_text(value: str) -> str:
    """A raw header value as one clean line: unfolded, raw 8-bit bytes and RFC 2047 decoded.

    ``value`` is header text as the ``email`` parser keeps it (8-bit bytes surrogate-escaped).
    """
    return _clean_line(_decode_words(_fix_8bit(_unfold(value))))


def _raw_header(msg: Message, name: str) -> str | None:
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


def _header_text(msg: Message, name: str) -> str | None:
    raw = _raw_header(msg, name)
    return None if raw is None else decode_header_text(raw)


def _unfold(value: str) -> str:
    return _FOLDING.sub("", value)


def _clean_line(value: str) -> str:
    return " ".join(_strip_controls(value).split())


def _strip_controls(value: str) -> str:
    if value.isprintable():  # no control characters at all: the common case
        return value
    return "".join(ch for ch in value if ch in "\t\n" or unicodedata.category(ch) != "Cc")


def _fix_8bit(value: str) -> str:
    """Decode surrogate-escaped raw header bytes: UTF-8 when valid, else windows-1252."""
    if not _ESCAPED_8BIT.search(value):
        return _SURROGATE.sub("\ufffd", value)
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", value)
    return decode_text(raw, None)


def _decode_words(value: str) -> str:
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


# --- sender and date --------------------------------------------------------------------------


def _sender(msg: Message, *, is_dsn: bool) -> tuple[Sender, str | None]:
    """Reply-To when it names an address (replies go there), else From; and From's address.

    The sender of a delivery-status report is always its From (the mailer daemon).
    """
    from_name, from_email = _mailbox(msg, "from")
    if not is_dsn:
        reply_name, reply_email = _mailbox(msg, "reply-to")
        if reply_email:
            return Sender(name=reply_name, email=reply_email), from_email
    return Sender(name=from_name, email=from_email), from_email


def _mailbox(msg: Message, name: str) -> tuple[str | None, str | None]:
    """(display name, normalized address) of the first mailbox in an address header."""
    raw = _raw_header(msg, name)
    if raw is None:
        return None, None
    value = _strip_controls(_fix_8bit(_unfold(raw)))
    display, address = _split_mailbox(value)
    email_address = normalize_email(address) if address else None
    return _display_name(display, email_address), email_address


def _split_mailbox(value: str) -> tuple[str, str | None]:
    """``Name <addr>`` split at the first angle address, else as ``getaddresses`` reads it."""
    angle = _ANGLE_ADDRESS.search(value)
    if angle:
        return value[: angle.start()], angle.group(1)
    pairs = getaddresses([value])
    for display, address in pairs:
        if "@" in address:
            return display, address
    return (pairs[0][0] if pairs else value), None


def _display_name(display: str, address: str | None) -> str | None:
    """The display name unquoted and decoded; None when empty or just the address again."""
    name = " ".join(display.split()).strip(" ,;")
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = re.sub(r"\\(.)", r"\1", name[1:-1])
    name = _clean_line(_decode_words(name)).strip("\"' ")
    if not name or (address is not None and name.lower() == address):
        return None
    return name


_INDONESIAN_ZONES = {"WIB": 7, "WITA": 8, "WIT": 9}
_ZONE_NAME = re.compile(r"\s(WIB|WITA|WIT)\s*$", re.IGNORECASE)


def _sent_at(msg: Message) -> tuple[datetime | None, bool]:
    """The Date header as an aware datetime, and whether a Date was present but unusable."""
    value = _header_text(msg, "date")
    if not value:
        return None, False
    try:
        parsed = parsedate_to_datetime(value)
    except (ValueError, TypeError, IndexError, OverflowError):
        return None, True
    if parsed.tzinfo is None:  # "-0000" (zone unknown), or a zone name Python does not know
        zone = _ZONE_NAME.search(value)
        if zone is None:
            return None, True
        hours = _INDONESIAN_ZONES[zone.group(1).upper()]
        return parsed.replace(tzinfo=timezone(timedelta(hours=hours))), False
    return parsed, False


# --- threading --------------------------------------------------------------------------------


def _headers_of_interest(msg: Message) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name in HEADERS_OF_INTEREST:
        value = _header_text(msg, name)
        if value is not None:
            headers[name] = value
    message_id = _clean_message_id(headers.get("message-id", ""))
    if message_id:
        headers["message-id"] = message_id
    return headers


def _message_ids(value: str) -> list[str]:
    """``<id>`` tokens in order, brackets added where missing, repeats and comments dropped."""
    found: list[str] = []
    for match in _ID_TOKEN.finditer(_COMMENT.sub(" ", value)):
        word = match.group(2)
        if word is not None and "@" not in word[1:-1]:
            continue
        inner = "".join((match.group(1) or word or "").split())
        token = f"<{inner}>"
        if inner and len(token) <= _MAX_ID_LENGTH and token not in found:
            found.append(token)
    return found


def _first_id(value: str | None) -> str | None:
    """The first bracketed id of In-Reply-To, else the first bare ``local@domain``."""
    bracketed = _MSG_ID.search(value or "")
    if bracketed:
        return bracketed.group(0)
    ids = _message_ids(value or "")
    return ids[0] if ids else None


def _references(value: str) -> list[str]:
    """Every id of References in order; a very long chain keeps its first and last ids."""
    ids = _message_ids(value)
    if len(ids) > _MAX_REFERENCES:
        ids = ids[:1] + ids[-(_MAX_REFERENCES - 1) :]
    return ids


# --- MIME structure ---------------------------------------------------------------------------


class _Info(NamedTuple):
    """What the raw headers of one MIME part say."""

    content_type: str
    disposition: str | None
    filename: str | None
    charset: str | None
    boundary: str | None
    transfer_encoding: str

    @property
    def maintype(self) -> str:
        return self.content_type.split("/", 1)[0]

    @property
    def is_body(self) -> bool:
        """An inline text/plain or text/html part without a filename."""
        inline = self.disposition != "attachment" and self.filename is None
        return inline and self.content_type in ("text/plain", "text/html")


class _RawHeaderPolicy(Compat32):
    """``compat32`` that hands header values back exactly as stored (8-bit bytes included)."""

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


_RAW_HEADER_POLICY = _RawHeaderPolicy()


def _header_view(part: Message) -> Message:
    """A message holding the part's raw MIME headers, to read parameters from.

    The modern policy hands parameters back already decoded (Latin-1 as Latin-1, unknown
    charsets and raw 8-bit bytes garbled); the raw text, read the same way under both policies,
    keeps our rules.
    """
    view = Message(policy=_RAW_HEADER_POLICY)
    for name in ("content-type", "content-disposition", "content-transfer-encoding"):
        raw = _raw_header(part, name)
        if raw is not None:
            view[name] = _unfold(raw)
    view.set_default_type(part.get_default_type())
    return view


def _info(part: Message) -> _Info:
    """Content type and parameters from the part's raw headers (worked out once per part)."""
    cached: _Info | None = getattr(part, "_omni_info", None)
    if cached is None:
        cached = _read_info(part)
        part._omni_info = cached  # type: ignore[attr-defined]
    return cached


def _read_info(part: Message) -> _Info:
    view = _header_view(part)
    content_type = view.get_content_type()
    if not _CONTENT_TYPE.fullmatch(content_type):
        content_type = "text/plain"  # what RFC 2045 says an unreadable Content-Type means
    if content_type.startswith("multipart/") and not part.is_multipart():
        content_type = "text/plain"  # no usable boundary: the parser kept the body as text
    return _Info(
        content_type=content_type,
        disposition=view.get_content_disposition(),
        filename=_filename_param(view),
        charset=(_param_text(view.get_param("charset")) or "").strip().lower() or None,
        boundary=view.get_boundary(),
        transfer_encoding=str(view.get("content-transfer-encoding", "")).strip().lower(),
    )


def _filename_param(view: Message) -> str | None:
    """``filename`` of Content-Disposition (RFC 2231 form preferred), else ``name``."""
    for header, param in (("content-disposition", "filename"), ("content-type", "name")):
        values = [v for k, v in (view.get_params(header=header) or [])[1:] if k == param]
        values.sort(key=lambda v: not isinstance(v, tuple))
        if values:
            return _param_text(values[0])
    return None


def _param_text(value: str | tuple[str | None, str | None, str] | None) -> str | None:
    """A parameter value decoded: RFC 2231 with the mail charset rules, 8-bit, RFC 2047."""
    if value is None:
        return None
    if isinstance(value, tuple):
        return _decode_words(_rfc2231_text(value[2], value[0]))
    return _decode_words(_fix_8bit(value))


def _rfc2231_text(text: str, charset: str | None) -> str:
    """An RFC 2231 value (percent escapes already read as Latin-1) in its declared charset."""
    try:
        raw = text.encode("latin-1", "surrogateescape")
    except UnicodeEncodeError:
        return _fix_8bit(text)
    return decode_text(raw, charset or None)


def _subparts(part: Message, info: _Info) -> list[Message] | None:
    """The parts of a multipart, or None for a leaf (attached messages are leaves)."""
    if info.maintype != "multipart" or not part.is_multipart():
        return None
    return [sub for sub in part.get_payload() if isinstance(sub, Message)]


# --- bodies -----------------------------------------------------------------------------------


class _Body(NamedTuple):
    """Text segments in order (``(is_html, text)``) and the HTML kept as data."""

    segments: tuple[tuple[bool, str], ...] = ()
    html: tuple[str, ...] = ()

    @property
    def has_plain(self) -> bool:
        return any(not is_html and text.strip() for is_html, text in self.segments)

    @property
    def has_text(self) -> bool:
        return any(text.strip() for _, text in self.segments)


def _bodies(msg: Message, flags: dict[str, Any]) -> tuple[str | None, str | None]:
    """(text, html): inline text segments joined by a blank line; HTML converted if no plain."""
    body = _body(msg, 0)
    texts = [text for text in _converted(body.segments, flags) if text.strip()]
    if len(texts) > 1:
        texts = ["\n\n".join(text.strip("\n") for text in texts) + "\n"]
    html = "\n".join(body.html)
    return (texts[0] if texts else None), (html or None)


def _converted(segments: tuple[tuple[bool, str], ...], flags: dict[str, Any]) -> list[str]:
    """The segments as text; at most ``MAX_HTML_TO_TEXT`` characters of HTML in all are
    converted (flagged ``html_truncated`` when there was more: it stays in ``html``)."""
    budget, texts = MAX_HTML_TO_TEXT, []
    for is_html, text in segments:
        if is_html:
            if len(text) > budget:
                flags["html_truncated"] = True
            texts.append(html_to_text(text[:budget]) if budget > 0 else "")
            budget -= len(text)
        else:
            texts.append(text)
    return texts


def _body(part: Message, depth: int) -> _Body:
    info = _info(part)
    subparts = _subparts(part, info)
    if subparts is None:
        return _leaf_body(part, info)
    if depth >= _MAX_MIME_DEPTH or not subparts:
        return _Body()
    subtype = info.content_type.split("/", 1)[1]
    if subtype == "alternative":
        return _alternative([_body(sub, depth + 1) for sub in subparts])
    if subtype in ("signed", "report"):
        return _body(subparts[0], depth + 1)
    if subtype == "related":
        return _body(_related_root(part, subparts), depth + 1)
    if subtype == "encrypted":
        return _Body()
    bodies = [_body(sub, depth + 1) for sub in subparts]
    return _Body(
        segments=tuple(s for b in bodies for s in b.segments),
        html=tuple(h for b in bodies for h in b.html),
    )


def _leaf_body(part: Message, info: _Info) -> _Body:
    if not info.is_body:
        return _Body()
    text = _clean_body(decode_text(_payload_bytes(part), info.charset))
    if info.content_type == "text/html":
        return _Body(segments=((True, text),), html=(text,))
    return _Body(segments=((False, text),))


def _alternative(bodies: list[_Body]) -> _Body:
    """The last alternative with plain text (else the last with any text); the last HTML."""
    with_plain = [body for body in bodies if body.has_plain]
    with_text = with_plain or [body for body in bodies if body.has_text] or bodies
    with_html = [body for body in bodies if body.html]
    html = with_html[-1].html if with_html else ()
    return _Body(segments=with_text[-1].segments, html=html)


def _related_root(part: Message, subparts: list[Message]) -> Message:
    """The part named by ``start``, else the first part of a multipart/related."""
    start = _param_text(_header_view(part).get_param("start"))
    if start:
        for sub in subparts:
            if (_raw_header(sub, "content-id") or "").strip() == start.strip():
                return sub
    return subparts[0]


def _clean_body(text: str) -> str:
    text = text.removeprefix("\ufeff").replace("\x00", "")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _payload_bytes(part: Message) -> bytes:
    """The part's content after transfer decoding (large bodies read from the raw payload)."""
    payload = payload_bytes(part)
    if payload is not None:
        return payload
    return _generated_bytes(part)


def _generated_bytes(part: Message) -> bytes:
    """An attached message regenerated from its parsed parts (when its raw bytes are not found)."""
    chunks: list[bytes] = []
    for sub in part.get_payload() if part.is_multipart() else []:
        if not isinstance(sub, Message):
            continue
        try:
            chunks.append(restored(sub, sub.as_bytes(policy=compat32)))
        except Exception:  # the generator cannot write some broken parts
            continue
    return b"\n".join(chunks)


# --- leaves with their raw bytes --------------------------------------------------------------


class _Leaf(NamedTuple):
    part: Message
    info: _Info
    raw: memoryview | None
    """The part's raw entity (headers and body) as found in the payload, when located (a view
    of the payload: large parts are not copied)."""

    @property
    def content(self) -> bytes:
        """Transfer-decoded content; an attached message as its original bytes."""
        if self.info.maintype == "message" and self.raw is not None:
            return transfer_decoded(_entity_body(self.raw), self.info.transfer_encoding)
        return _payload_bytes(self.part)


def _leaves(part: Message, raw: memoryview | None, depth: int = 0) -> Iterator[_Leaf]:
    """Every leaf part, depth first, with its raw bytes when the MIME split agrees."""
    info = _info(part)
    subparts = _subparts(part, info)
    if subparts is None:
        yield _Leaf(part, info, raw)
        return
    if depth >= _MAX_MIME_DEPTH:
        return
    pieces = None
    if raw is not None and info.boundary:
        pieces = _split_multipart(raw, info.boundary, len(subparts))
    if pieces is None or len(pieces) != len(subparts):
        pieces = [None] * len(subparts)
    for sub, piece in zip(subparts, pieces, strict=True):
        yield from _leaves(sub, piece, depth + 1)


def _entity_body(entity: memoryview) -> memoryview:
    """What follows the header block of a raw MIME entity."""
    if bytes(entity[:1]) == b"\n":
        return entity[1:]
    if bytes(entity[:2]) == b"\r\n":
        return entity[2:]
    found = _HEADER_END.search(entity)
    return entity[found.end() :] if found else entity[:0]


def _split_multipart(
    entity: memoryview, boundary: str, expected: int
) -> list[memoryview | None] | None:
    """The raw parts of a multipart entity, as the ``email`` feed parser delimits them (more
    than the ``expected`` parts the parser found are not looked for: they cannot match)."""
    try:
        marker = re.escape(boundary.encode("ascii"))
    except UnicodeEncodeError:
        return None
    body = _entity_body(entity)
    # "^--boundary" with the literal first (the regex engine skips ahead fast), at a line start
    found = re.finditer(rb"--" + marker + rb"(--)?[ \t]*\r?$", body, re.MULTILINE)
    at_line_start = (m for m in found if m.start() == 0 or body[m.start() - 1] == 0x0A)
    delimiters = list(itertools.islice(at_line_start, expected + 2))
    pieces: list[memoryview | None] = []
    for index, current in enumerate(delimiters):
        if current.group(1):  # the closing delimiter
            break
        following = delimiters[index + 1] if index + 1 < len(delimiters) else None
        start = current.end()
        if bytes(body[start : start + 1]) == b"\n":
            start += 1
        end = following.start() if following else len(body)
        if following:  # the line ending before a delimiter belongs to the delimiter
            end = _before_line_end(body, start, end)
        pieces.append(body[start:end])
    return pieces


def _before_line_end(data: memoryview, start: int, end: int) -> int:
    """``end`` moved back over one final LF, then one CR (not before ``start``)."""
    if end > start and data[end - 1] == 0x0A:  # LF
        end -= 1
    if end > start and data[end - 1] == 0x0D:  # CR
        end -= 1
    return end


# --- attachments ------------------------------------------------------------------------------


def _attachments(leaves: list[_Leaf], flags: dict[str, Any]) -> list[Attachment]:
    """Every leaf that is not an inline text/plain or text/html body part, the first
    ``MAX_ATTACHMENTS`` of them (how many more there were is flagged ``attachments_omitted``)."""
    found: list[Attachment] = []
    omitted = 0
    for leaf in leaves:
        if leaf.info.is_body:
            continue
        if len(found) < MAX_ATTACHMENTS:
            found.append(_attachment(leaf, len(found) + 1))
        else:
            omitted += 1
    if omitted:
        flags["attachments_omitted"] = omitted
    return found


def _attachment(leaf: _Leaf, index: int) -> Attachment:
    content = leaf.content
    if leaf.info.maintype == "message":
        content_type = leaf.info.content_type
        name = leaf.info.filename or _message_filename(content)
    else:
        name = leaf.info.filename
        content_type = sniff_content_type(content, declared=leaf.info.content_type, filename=name)
    return Attachment(
        filename=safe_filename(name, content_type=content_type, index=index),
        content_type=content_type,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        content=content,
    )


def _message_filename(content: bytes) -> str | None:
    """``<subject>.eml`` for an attached message (slashes kept out of the name)."""
    subject = _raw_header_map(content).get("subject", "")
    subject = re.sub(r"[/\\]+", "-", subject).strip()
    return f"{subject}.eml" if subject else None


_GENERIC_TYPES = frozenset(
    {
        "application/octet-stream",
        "application/x-octet-stream",
        "application/binary",
        "application/x-binary",
        "application/download",
        "application/x-download",
        "application/force-download",
        "application/unknown",
        "application/x-unknown",
        "binary/octet-stream",
        "unknown/unknown",
    }
)
_TYPE_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "application/x-pdf": "application/pdf",
}
_ZIP_FAMILY = (
    "application/zip",
    "application/x-zip",
    "application/vnd.openxmlformats-",
    "application/vnd.oasis.opendocument.",
    "application/vnd.ms-",
    "application/epub+zip",
    "application/java-archive",
    "application/vnd.android.",
    "application/vnd.google-earth.kmz",
    "multipart/x-zip",
)
_OLE_FAMILY = (
    "application/msword",
    "application/vnd.ms-",
    "application/vnd.visio",
    "application/x-msi",
    "application/x-ole-storage",
)
_ISO_MEDIA = (
    "video/",
    "audio/mp4",
    "audio/x-m4a",
    "audio/3gpp",
    "audio/aac",
    "image/hei",
    "image/avif",
)


class _Magic(NamedTuple):
    content_type: str
    compatible: tuple[str, ...]
    """Declared type prefixes that agree with these magic bytes."""


_SIGNATURES: tuple[tuple[bytes, _Magic], ...] = (
    (b"%PDF-", _Magic("application/pdf", ("application/pdf",))),
    (b"\x89PNG\r\n\x1a\n", _Magic("image/png", ("image/png", "image/apng"))),
    (b"\xff\xd8\xff", _Magic("image/jpeg", ("image/jpeg",))),
    (b"GIF87a", _Magic("image/gif", ("image/gif",))),
    (b"GIF89a", _Magic("image/gif", ("image/gif",))),
    (b"PK\x03\x04", _Magic("application/zip", _ZIP_FAMILY)),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", _Magic("application/x-ole-storage", _OLE_FAMILY)),
    (b"OggS", _Magic("audio/ogg", ("audio/", "video/ogg", "application/ogg"))),
    (b"ID3", _Magic("audio/mpeg", ("audio/",))),
    (b"#!AMR", _Magic("audio/amr", ("audio/",))),
    (b"{\\rtf", _Magic("application/rtf", ("application/rtf", "text/rtf", "application/msword"))),
    (b"\x1f\x8b", _Magic("application/gzip", ("application/gzip", "application/x-gzip"))),
    (b"Rar!\x1a\x07", _Magic("application/vnd.rar", ("application/vnd.rar", "application/x-rar"))),
    (b"7z\xbc\xaf\x27\x1c", _Magic("application/x-7z-compressed", ("application/x-7z",))),
    (b"II*\x00", _Magic("image/tiff", ("image/tiff",))),
    (b"MM\x00*", _Magic("image/tiff", ("image/tiff",))),
)
_RIFF_TYPES = {
    b"WEBP": _Magic("image/webp", ("image/webp",)),
    b"WAVE": _Magic("audio/wav", ("audio/",)),
    b"AVI ": _Magic("video/x-msvideo", ("video/",)),
}
_FTYP_BRANDS = (
    (("heic", "heix", "heim", "heis", "hevc", "hevx"), "image/heic"),
    (("mif1", "msf1"), "image/heif"),
    (("avif", "avis"), "image/avif"),
    (("3gp", "3g2"), "video/3gpp"),
    (("M4A ",), "audio/mp4"),
    (("qt  ",), "video/quicktime"),
)


def sniff_content_type(
    content: bytes, *, declared: str = "application/octet-stream", filename: str | None = None
) -> str:
    """The content type to record for an attachment, checked against its magic bytes.

    The declared type is kept unless it is generic (``application/octet-stream`` ...) or
    contradicts the magic bytes; then the sniffed type wins (a ``.pdf`` name on JPEG bytes is
    ``image/jpeg``).  ZIP and OLE containers are told apart by the filename's extension (docx,
    xlsx, doc, xls ...).  A generic type with unknown bytes falls back to the extension.
    """
    declared = declared.strip().lower()
    declared = _TYPE_ALIASES.get(declared, declared)
    extension = _extension(filename)
    magic = _magic(content)
    if magic is None:
        if declared in _GENERIC_TYPES:
            return _EXTENSION_TYPES.get(extension, declared)
        return declared
    if declared not in _GENERIC_TYPES and declared.startswith(magic.compatible):
        return declared
    return _refined(magic.content_type, extension)


_CONTAINER_EXTENSIONS = {
    "application/zip": ("docx", "xlsx", "pptx", "odt", "ods", "kmz"),
    "application/x-ole-storage": ("doc", "xls", "ppt", "msg"),
}


def _refined(sniffed: str, extension: str) -> str:
    """A ZIP or OLE container named by its extension when that names an Office format."""
    if extension in _CONTAINER_EXTENSIONS.get(sniffed, ()):
        return _EXTENSION_TYPES[extension]
    return sniffed


def _magic(content: bytes) -> _Magic | None:
    for signature, magic in _SIGNATURES:
        if content.startswith(signature):
            return magic
    if content[:4] == b"RIFF" and content[8:12] in _RIFF_TYPES:
        return _RIFF_TYPES[content[8:12]]
    if content[4:8] == b"ftyp":
        return _Magic(_ftyp_type(content[8:12].decode("latin-1")), _ISO_MEDIA)
    return None


def _ftyp_type(brand: str) -> str:
    for prefixes, content_type in _FTYP_BRANDS:
        if brand.startswith(prefixes):
            return content_type
    return "video/mp4"


def _extension(filename: str | None) -> str:
    stem, dot, extension = (filename or "").rpartition(".")
    return extension.lower() if dot and stem.strip(".") else ""


# --- delivery reports -------------------------------------------------------------------------

_STATUS_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_RETURNED_TYPES = frozenset(
    {
        "message/rfc822",
        "message/global",
        "text/rfc822-headers",
        "message/rfc822-headers",
        "message/global-headers",
    }
)


class _Report(NamedTuple):
    """What a ``multipart/report`` says about the message it reports on."""

    report_type: str
    bounced_message_id: str | None
    action: str | None
    recipient: str | None

    @property
    def is_dsn(self) -> bool:
        return self.report_type == "delivery-status"


def _delivery_report(msg: Message, leaves: list[_Leaf]) -> _Report | None:
    """The report when the message is a ``multipart/report``, else None."""
    if _info(msg).content_type != "multipart/report":
        return None
    report_type = _param_text(_header_view(msg).get_param("report-type")) or ""
    status: dict[str, str] = {}
    returned: dict[str, str] = {}
    for leaf in leaves:
        if leaf.info.content_type in _STATUS_TYPES and not status:
            status = _status_fields(leaf.content)
        elif leaf.info.content_type in _RETURNED_TYPES and not returned:
            returned = _raw_header_map(leaf.content)
    original = returned.get("message-id") or status.get("original-message-id")
    original = original or status.get("x-original-message-id")
    recipient = status.get("final-recipient", "").rpartition(";")[2].strip()
    return _Report(
        report_type=report_type.lower(),
        bounced_message_id=_first_id(original),
        action=status.get("action", "").split("(")[0].strip().lower() or None,
        recipient=(normalize_email(recipient) or recipient or None) if recipient else None,
    )


def _status_fields(content: bytes) -> dict[str, str]:
    """Fields of a delivery-status body: per-message, then the first recipient's fields."""
    fields: dict[str, str] = {}
    for block in re.split(rb"\r?\n[ \t]*\r?\n", content):
        for name, value in _raw_header_map(block).items():
            fields.setdefault(name, value)
    return fields


# --- flags ------------------------------------------------------------------------------------

_AUTO_SUBJECT_PREFIXES = (
    "auto:",
    "automatic reply",
    "autoreply",
    "auto-reply",
    "out of office",
    "balasan otomatis",
    "pesan otomatis",
)
_AUTO_SUBJECT_PHRASES = ("di luar kantor", "sedang cuti", "out of the office")
_BULK_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply"})
_SUPPRESS_TOKENS = frozenset({"all", "dr", "autoreply", "oof"})
_DAEMON_LOCAL_PARTS = frozenset({"mailer-daemon", "postmaster"})


def _flags(
    msg: Message,
    subject: str | None,
    addresses: tuple[str | None, ...],
    report: _Report | None,
) -> dict[str, Any]:
    flags: dict[str, Any] = {}
    if _raw_header(msg, "list-id") is not None or _raw_header(msg, "list-unsubscribe") is not None:
        flags["list"] = True
    daemon = _daemon_local_part(addresses)
    if daemon or (report is not None and report.is_dsn):
        flags["bounce"] = True
    reason = _auto_reply_reason(msg, subject, daemon, report)
    if reason:
        flags["auto_reply"] = True
        flags["auto_reply_reason"] = reason
    elif _has_auto_phrase(subject or ""):
        # "di luar kantor" also occurs in real complaints ("pungli di luar kantor"): on a fresh
        # message it only marks the message (no acknowledgement is sent), it does not hide it
        flags["auto_reply_suspect"] = True
    if report is not None and report.is_dsn:
        flags.update(_dsn_flags(report))
    return flags


def _dsn_flags(report: _Report) -> dict[str, Any]:
    found = {
        "bounced_message_id": report.bounced_message_id,
        "dsn_action": report.action,
        "dsn_recipient": report.recipient,
    }
    return {name: value for name, value in found.items() if value}


def _auto_reply_reason(
    msg: Message, subject: str | None, daemon: str | None, report: _Report | None
) -> str | None:
    """The first auto-reply rule that fires (``header:<name>``, ``sender:...``, ``subject``)."""
    header = _auto_reply_header(msg)
    if header:
        return f"header:{header}"
    if daemon:
        return f"sender:{daemon}"
    text = subject or ""
    if _is_auto_subject(text) or (_has_auto_phrase(text) and _is_reply(msg, text)):
        return "subject"
    if report is not None:
        return f"report:{report.report_type or 'unknown'}"
    return None


def _auto_reply_header(msg: Message) -> str | None:
    """The name of the first header saying the mail was sent by a machine, else None."""
    auto_submitted = _header_text(msg, "auto-submitted")
    if auto_submitted is not None and re.split(r"[;(\s]", auto_submitted)[0].lower() != "no":
        return "auto-submitted"
    for name in ("x-autoreply", "x-autorespond"):
        if _raw_header(msg, name) is not None:
            return name
    if (_header_text(msg, "precedence") or "").strip().lower() in _BULK_PRECEDENCE:
        return "precedence"
    suppress = re.split(r"[,;\s]+", (_header_text(msg, "x-auto-response-suppress") or "").lower())
    if _SUPPRESS_TOKENS.intersection(suppress):
        return "x-auto-response-suppress"
    for name in ("list-id", "list-unsubscribe"):
        if _raw_header(msg, name) is not None:
            return name
    if "".join((_header_text(msg, "return-path") or "x").split()) == "<>":
        return "return-path"
    return None


def _daemon_local_part(addresses: tuple[str | None, ...]) -> str | None:
    """``mailer-daemon`` or ``postmaster`` when one of the addresses is such a mailbox."""
    for address in addresses:
        local = (address or "").rsplit("@", 1)[0].lower()
        if address and local in _DAEMON_LOCAL_PARTS:
            return local
    return None


def _folded_subject(subject: str) -> str:
    return " ".join(strip_reply_prefixes(subject).lower().split())


def _is_auto_subject(subject: str) -> bool:
    """A subject that starts like an automatic reply does."""
    return _folded_subject(subject).startswith(_AUTO_SUBJECT_PREFIXES)


def _has_auto_phrase(subject: str) -> bool:
    """ "di luar kantor"-style phrases: telling in a reply, ambiguous in a fresh message."""
    folded = _folded_subject(subject)
    return any(phrase in folded for phrase in _AUTO_SUBJECT_PHRASES)


def _is_reply(msg: Message, subject: str) -> bool:
    """Replies name what they answer (In-Reply-To, References) or say so (``Re:``)."""
    headers = ("in-reply-to", "references")
    return any(_raw_header(msg, h) is not None for h in headers) or (
        strip_reply_prefixes(subject) != subject.strip()
    )


# --- subjects ---------------------------------------------------------------------------------

_REPLY_PREFIXES = re.compile(
    r"^(?:\s*(?:re|fwd?|balas|bls|trs|tr|aw|wg|antw)\s*(?:\[\d+\]|\(\d+\))?\s*[:\uff1a])+\s*",
    re.IGNORECASE,
)


def strip_reply_prefixes(subject: str) -> str:
    """The subject without leading reply/forward prefixes (``Re: Fwd: Balas: Re[2]:`` ...).

    English, Indonesian (``Balas:``, ``Bls:``), French (``Tr:``, ``Trs:``), German (``AW:``,
    ``WG:``) and Dutch (``Antw:``) prefixes, in any case and spacing, repeated or mixed.
    Bracketed tags such as a ticket number ``[ADU-2026-000123]`` are kept.
    """
    return _REPLY_PREFIXES.sub("", subject).strip()
