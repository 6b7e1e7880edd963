"""Decode one RFC 822 e-mail (bytes as fetched) into an :class:`InboundMessage`.

Pure: bytes in, a message out; no I/O and no clock.  Every failure is a
:class:`~omnichannel.errors.DecodeError`.

Parsing uses ``email.policy.default`` and falls back to ``compat32`` when the modern policy
chokes on a header.  Text is decoded from the part's bytes, not trusted to the library:

* a declared ``iso-8859-1`` / ``latin-1`` / ``us-ascii`` is read as windows-1252 (0x80-0x9F are
  smart quotes and the euro sign in real mail);
* no charset: UTF-8 when the bytes are valid UTF-8, else windows-1252;
* an unknown charset name: UTF-8 with replacement characters.

Raw 8-bit header bytes get the same treatment as a body without a charset.

The idempotency key, :func:`email_external_id`, is ``<Message-ID>|sha256:<hex>`` over the raw
bytes with line endings normalized, so a Message-ID reused for different content does not
collide and a mail saved with CRLF or LF gets the same key.
"""

from __future__ import annotations

import codecs
import email.policy
import hashlib
import re
import unicodedata
from collections.abc import Iterator
from datetime import datetime
from email.header import decode_header
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.policy import Policy, compat32
from email.utils import collapse_rfc2231_value, parsedate_to_datetime
from typing import Any, NamedTuple

from pydantic import ValidationError

from normalizer.address import parse_mailbox
from normalizer.jsondoc import describe_validation_error
from normalizer.text import html_to_text
from omnichannel.errors import DecodeError
from omnichannel.schema import Attachment, InboundMessage, Sender

__all__ = [
    "HEADERS_OF_INTEREST",
    "decode_email",
    "decode_text",
    "email_external_id",
    "safe_filename",
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
_MAX_MIME_DEPTH = 32
_MAX_FILENAME = 255

# A header field line: printable ASCII name (no colon, no space) then a colon, as in feedparser.
_HEADER_LINE = re.compile(rb"^([\x21-\x39\x3b-\x7e]+):(.*)$", re.DOTALL)
_MSG_ID = re.compile(r"<[^<>\s]+>")
_SURROGATES = re.compile(r"[\udc80-\udcff]")
_FOLDING = re.compile(r"\r?\n(?=[ \t])|\r(?=[ \t])")
_WINDOWS_1252_ALIASES = frozenset({"iso8859-1", "latin-1", "ascii"})
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
_AUTO_SUBJECT_PREFIXES = (
    "auto:",
    "automatic reply",
    "out of office",
    "balasan otomatis",
    "pesan otomatis",
)
_AUTO_SUBJECT_PHRASES = ("di luar kantor",)
_BULK_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply"})
_DAEMON_LOCAL_PARTS = frozenset({"mailer-daemon", "postmaster"})


# --- the idempotency key ---------------------------------------------------------------------


def email_external_id(payload: bytes) -> str:
    """``<Message-ID>|sha256:<hex>`` (or ``sha256:<hex>`` without one); never raises."""
    data = bytes(payload)
    digest = hashlib.sha256(_normalize_line_endings(data)).hexdigest()
    try:
        message_id = _raw_message_id(data)
    except Exception:  # the key must exist whatever the bytes are
        message_id = None
    if not message_id:
        return f"sha256:{digest}"
    return f"{message_id[: MAX_EXTERNAL_ID - _HASH_PART]}|sha256:{digest}"


def _normalize_line_endings(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


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


def _trim_preamble(data: bytes) -> bytes:
    """Drop a UTF-8 byte order mark and blank lines some tools write before the headers."""
    return data.removeprefix(b"\xef\xbb\xbf").lstrip(b"\r\n")


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
    try:
        return _decode_with(data, email.policy.default, connector, external_id, received_at)
    except Exception:  # the modern policy trips over some broken headers: try the old one
        pass
    try:
        return _decode_with(data, compat32, connector, external_id, received_at)
    except ValidationError as exc:
        detail = describe_validation_error(exc)
        raise DecodeError(f"e-mail does not fit the schema: {detail}") from None
    except Exception as exc:
        raise DecodeError(f"e-mail could not be decoded ({type(exc).__name__})") from exc


def _checked_payload(payload: bytes) -> bytes:
    """The payload without preamble, or DecodeError when it has no header structure."""
    data = _trim_preamble(bytes(payload))
    if not data.strip():
        raise DecodeError("empty e-mail payload")
    names = [name.lower() for name, _ in _raw_headers(data)]
    first_line = data.split(b"\n", 1)[0]
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
    msg = BytesParser(policy=policy).parsebytes(data)
    subject = _header_text(msg, "subject")
    from_name, from_email = _mailbox(msg, "from")
    sender = _sender(msg, from_name, from_email)
    sent_at, date_unparsed = _sent_at(msg)
    body = _find_bodies(msg)
    flags = _flags(msg, subject, (from_email, sender.email))
    if date_unparsed:
        flags["date_unparsed"] = True
    if policy is compat32:
        flags["parser_fallback"] = True
    headers = _headers_of_interest(msg)
    return InboundMessage(
        channel="email",
        connector=connector,
        external_id=external_id,
        received_at=received_at,
        sent_at=sent_at,
        sender=sender,
        subject=subject or None,
        text=body.text,
        html=body.html,
        attachments=_attachments(msg, body.parts),
        in_reply_to=_first_id(headers.get("in-reply-to")),
        references=_MSG_ID.findall(headers.get("references", "")),
        headers=headers,
        flags=flags,
    )


# --- headers ----------------------------------------------------------------------------------


def _is_compat(msg: Message) -> bool:
    return msg.policy is compat32


def _raw_header(msg: Message, name: str) -> str | None:
    """The first ``name`` header exactly as parsed (may hold surrogate-escaped 8-bit bytes)."""
    for key, value in msg.raw_items():
        if key.lower() == name:
            return str(value)
    return None


def _header_text(msg: Message, name: str) -> str | None:
    """An unstructured header decoded: unfolded, RFC 2047 words and raw 8-bit bytes decoded."""
    raw = _raw_header(msg, name)
    if raw is None:
        return None
    return _clean_line(_decode_words(_fix_8bit(_unfold(raw))))


def _address_text(msg: Message, name: str) -> str | None:
    """An address header as text for :func:`parse_mailbox`.

    The modern policy decodes display names and keeps those with commas quoted.  Otherwise the
    encoded words stay as written (``parse_mailbox`` decodes them after splitting), so a decoded
    comma cannot split the name.
    """
    raw = _raw_header(msg, name)
    if raw is None:
        return None
    if _is_compat(msg) or _SURROGATES.search(raw):
        return _clean_line(_fix_8bit(_unfold(raw)))
    return _clean_line(str(msg[name]))


def _unfold(value: str) -> str:
    return _FOLDING.sub("", value)


def _clean_line(value: str) -> str:
    return " ".join(_strip_controls(value).split())


def _strip_controls(value: str) -> str:
    return "".join(ch for ch in value if ch in "\t\n" or unicodedata.category(ch) != "Cc")


def _fix_8bit(value: str) -> str:
    """Decode surrogate-escaped raw header bytes: UTF-8 when valid, else windows-1252."""
    if not _SURROGATES.search(value):
        return value
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", value)
    return decode_text(raw, None)


def _decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words, with the same charset rules as bodies."""
    if "=?" not in value:
        return value
    try:
        chunks = decode_header(value)
    except Exception:  # a malformed encoded word: keep the text as written
        return value
    return "".join(_chunk_text(chunk, charset) for chunk, charset in chunks)


def _chunk_text(chunk: bytes | str, charset: str | None) -> str:
    if isinstance(chunk, str):
        return chunk
    if charset is None:
        return chunk.decode("raw-unicode-escape", "replace")
    return decode_text(chunk, charset.split("*", 1)[0])


def _mailbox(msg: Message, name: str) -> tuple[str | None, str | None]:
    value = _address_text(msg, name)
    if not value:
        return None, None
    return parse_mailbox(value)


def _sender(msg: Message, from_name: str | None, from_email: str | None) -> Sender:
    """Reply-To when it names an address (replies go there), else From."""
    reply_name, reply_email = _mailbox(msg, "reply-to")
    if reply_email:
        return Sender(name=reply_name, email=reply_email)
    return Sender(name=from_name, email=from_email)


def _sent_at(msg: Message) -> tuple[datetime | None, bool]:
    """The Date header as an aware datetime, and whether a Date was present but unusable."""
    value = _header_text(msg, "date")
    if not value:
        return None, False
    try:
        parsed = parsedate_to_datetime(value)
    except (ValueError, TypeError, IndexError, OverflowError):
        return None, True
    if parsed.tzinfo is None:  # "-0000": local time, zone unknown
        return None, True
    return parsed, False


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


def _first_id(value: str | None) -> str | None:
    found = _MSG_ID.search(value or "")
    return found.group(0) if found else None


# --- flags ------------------------------------------------------------------------------------


def _flags(msg: Message, subject: str | None, addresses: tuple[str | None, ...]) -> dict[str, Any]:
    flags: dict[str, Any] = {}
    if _is_auto_reply(msg, subject):
        flags["auto_reply"] = True
    if _is_bounce(msg, addresses):
        flags["bounce"] = True
    return flags


def _is_auto_reply(msg: Message, subject: str | None) -> bool:
    """Auto-Submitted, X-Autoreply/X-Autorespond, bulk Precedence or a telltale subject."""
    auto_submitted = _header_text(msg, "auto-submitted")
    if auto_submitted is not None and auto_submitted.split(";")[0].strip().lower() != "no":
        return True
    if any(_raw_header(msg, name) is not None for name in ("x-autoreply", "x-autorespond")):
        return True
    if (_header_text(msg, "precedence") or "").strip().lower() in _BULK_PRECEDENCE:
        return True
    return _is_auto_subject(subject or "")


def _is_auto_subject(subject: str) -> bool:
    lowered = subject.strip().lower()
    return lowered.startswith(_AUTO_SUBJECT_PREFIXES) or any(
        phrase in lowered for phrase in _AUTO_SUBJECT_PHRASES
    )


def _is_bounce(msg: Message, addresses: tuple[str | None, ...]) -> bool:
    """A delivery-status report, or mail from mailer-daemon@ / postmaster@."""
    if msg.get_content_type() == "multipart/report":
        report_type = msg.get_param("report-type")
        if report_type and collapse_rfc2231_value(report_type).lower() == "delivery-status":
            return True
    return any(
        address and address.rsplit("@", 1)[0].lower() in _DAEMON_LOCAL_PARTS
        for address in addresses
    )


# --- bodies -----------------------------------------------------------------------------------


class _Bodies(NamedTuple):
    text: str | None
    html: str | None
    parts: tuple[Message, ...]
    """The parts used as bodies (never reported as attachments)."""


def _find_bodies(msg: Message) -> _Bodies:
    """text/plain preferred; HTML-only mail is converted, and the HTML kept as data."""
    plain = _body_part(msg, ("plain",))
    html_part = _body_part(msg, ("html",))
    html = _clean_body(_part_text(html_part)) if html_part is not None else None
    if plain is not None:
        text: str | None = _clean_body(_part_text(plain))
    else:
        text = _clean_body(html_to_text(html)) if html else None
    parts = tuple(part for part in (plain, html_part) if part is not None)
    return _Bodies(text=text, html=html, parts=parts)


def _body_part(msg: Message, preference: tuple[str, ...]) -> Message | None:
    if isinstance(msg, EmailMessage) and not _is_compat(msg):
        return msg.get_body(preferencelist=preference)
    for part in _leaf_parts(msg):
        is_text = part.get_content_maintype() == "text"
        if is_text and part.get_content_subtype() in preference and not _is_attachment(part):
            return part
    return None


def _leaf_parts(part: Message, depth: int = 0) -> Iterator[Message]:
    """Every non-multipart part, depth first; attached messages are leaves, not opened."""
    if part.get_content_maintype() != "multipart":
        yield part
        return
    if depth >= _MAX_MIME_DEPTH:
        return
    subparts = part.get_payload()
    if isinstance(subparts, list):
        for subpart in subparts:
            if isinstance(subpart, Message):
                yield from _leaf_parts(subpart, depth + 1)


def _is_attachment(part: Message) -> bool:
    return part.get_content_disposition() == "attachment"


def _part_bytes(part: Message) -> bytes:
    """The part's content after transfer decoding (an attached message as its bytes)."""
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload
    inner = part.get_payload()
    if isinstance(inner, list) and inner and isinstance(inner[0], Message):
        return inner[0].as_bytes()
    return b""


def _part_text(part: Message) -> str:
    return decode_text(_part_bytes(part), part.get_content_charset())


def decode_text(raw: bytes, charset: str | None) -> str:
    """Bytes to text with the mail rules: latin-1/ascii read as windows-1252, UTF-8 first."""
    if not charset:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("windows-1252", "replace")
    try:
        codec = codecs.lookup(charset.strip().strip("\"'")).name
        if codec in _WINDOWS_1252_ALIASES:
            codec = "windows-1252"
        return raw.decode(codec, "replace")
    except (LookupError, UnicodeError, ValueError, TypeError):
        return raw.decode("utf-8", "replace")


def _clean_body(text: str) -> str:
    return text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")


# --- attachments ------------------------------------------------------------------------------


def _attachments(msg: Message, bodies: tuple[Message, ...]) -> list[Attachment]:
    found: list[Attachment] = []
    for part in _leaf_parts(msg):
        if any(part is body for body in bodies):
            continue
        filename = _filename(part)
        if filename is None and not _is_attachment(part):
            continue
        found.append(_attachment(part, filename))
    return found


def _attachment(part: Message, filename: str | None) -> Attachment:
    content = _part_bytes(part)
    return Attachment(
        filename=filename,
        content_type=part.get_content_type(),
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        content=content,
    )


def _filename(part: Message) -> str | None:
    """The declared filename (RFC 2231 and RFC 2047 decoded), made safe by :func:`safe_filename`."""
    raw = part.get_filename()
    if raw is None:
        return None
    return safe_filename(_decode_words(_fix_8bit(str(raw))))


def safe_filename(name: str) -> str | None:
    """The last path component without control or format characters; None when nothing is left."""
    base = re.split(r"[/\\]", name)[-1]
    cleaned = "".join(ch for ch in base if unicodedata.category(ch) not in ("Cc", "Cf")).strip()
    if cleaned in ("", ".", ".."):
        return None
    if len(cleaned) > _MAX_FILENAME:
        stem, dot, ext = cleaned.rpartition(".")
        keep = ext if dot and 0 < len(ext) <= 16 else ""
        cut = _MAX_FILENAME - len(keep) - (1 if keep else 0)
        cleaned = (stem if keep else cleaned)[:cut] + (f".{keep}" if keep else "")
    return cleaned
