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

Modules (private; this package's ``__all__`` is the interface)
    ``_charsets`` bytes to text; ``_headers`` header fields, raw and decoded; ``_ids`` the
    idempotency key and thread ids; ``_sender`` sender and date; ``_parts`` what a MIME part's
    headers say; ``_leaves`` leaf parts with their raw bytes; ``_bodies`` text and HTML;
    ``_attachments`` and ``_filetypes`` attachments and their types; ``_reports`` delivery
    reports; ``_flags`` list, bounce and auto-reply flags; ``_subjects`` reply prefixes.  This
    module puts them together (:func:`decode_email`).
"""

from __future__ import annotations

import email.policy
from datetime import datetime
from email.policy import Policy, compat32

from pydantic import ValidationError

from normalizer.email._attachments import attachments
from normalizer.email._bodies import bodies
from normalizer.email._charsets import decode_text
from normalizer.email._filetypes import sniff_content_type
from normalizer.email._flags import mail_flags
from normalizer.email._headers import (
    HEADER_LINE,
    HEADERS_OF_INTEREST,
    MAX_HEADER_BLOCK,
    decode_header_text,
    header_text,
    headers_of_interest,
    raw_headers,
    trim_preamble,
)
from normalizer.email._ids import email_external_id, first_id, references
from normalizer.email._leaves import leaves
from normalizer.email._reports import delivery_report
from normalizer.email._sender import mail_date, mail_sender
from normalizer.email._subjects import strip_reply_prefixes
from normalizer.filenames import safe_filename
from normalizer.jsondoc import describe_validation_error
from normalizer.mime import parse
from normalizer.text import html_to_text
from omnichannel.errors import DecodeError
from omnichannel.schema import InboundMessage

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
    data = trim_preamble(bytes(payload))
    if not data or data.isspace():  # (not strip(): it would copy a large mail)
        raise DecodeError("empty e-mail payload")
    names = [name.lower() for name, _ in raw_headers(data)]
    newline = data.find(b"\n", 0, MAX_HEADER_BLOCK)
    first_line = data[:newline] if newline >= 0 else data[:MAX_HEADER_BLOCK]
    if not names or not (first_line.startswith(b"From ") or HEADER_LINE.match(first_line)):
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
    parts = list(leaves(msg, memoryview(data)))
    report = delivery_report(msg, parts)
    subject = header_text(msg, "subject")
    sender, from_email = mail_sender(msg, is_dsn=report is not None and report.is_dsn)
    sent_at, date_unparsed = mail_date(msg)
    flags = mail_flags(msg, subject, (from_email, sender.email), report)
    if date_unparsed:
        flags["date_unparsed"] = True
    if policy is not compat32:
        flags["parser_fallback"] = True
    if parsed.truncated:
        flags["mime_truncated"] = parsed.truncated  # the limit reached: parts, depth, checks
    headers = headers_of_interest(msg)
    text, html = bodies(msg, flags, html_to_text)  # (looked up here: tests count conversions)
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
        attachments=attachments(parts, flags),
        in_reply_to=flags.get("bounced_message_id") or first_id(headers.get("in-reply-to")),
        references=references(headers.get("references", "")),
        headers=headers,
        flags=flags,
    )
