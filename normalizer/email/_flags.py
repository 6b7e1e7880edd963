"""Flags: mailing lists, bounces and automatic replies (with the rule that fired).

``auto_reply`` (with ``auto_reply_reason``: ``header:<name>``, ``sender:<daemon>``, ``subject``
or ``report:<type>``), ``auto_reply_suspect`` (an out-of-office phrase in a fresh message),
``list``, ``bounce`` and, for delivery-status reports, ``bounced_message_id``, ``dsn_action``
and ``dsn_recipient``.
"""

from __future__ import annotations

import re
from email.message import Message
from typing import Any

from normalizer.email._headers import header_text, raw_header
from normalizer.email._reports import Report
from normalizer.email._subjects import strip_reply_prefixes

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


def mail_flags(
    msg: Message,
    subject: str | None,
    addresses: tuple[str | None, ...],
    report: Report | None,
) -> dict[str, Any]:
    """The flags the headers, the subject, the sender's addresses and a report call for."""
    flags: dict[str, Any] = {}
    if raw_header(msg, "list-id") is not None or raw_header(msg, "list-unsubscribe") is not None:
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


def _dsn_flags(report: Report) -> dict[str, Any]:
    found = {
        "bounced_message_id": report.bounced_message_id,
        "dsn_action": report.action,
        "dsn_recipient": report.recipient,
    }
    return {name: value for name, value in found.items() if value}


def _auto_reply_reason(
    msg: Message, subject: str | None, daemon: str | None, report: Report | None
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
    auto_submitted = header_text(msg, "auto-submitted")
    if auto_submitted is not None and re.split(r"[;(\s]", auto_submitted)[0].lower() != "no":
        return "auto-submitted"
    for name in ("x-autoreply", "x-autorespond"):
        if raw_header(msg, name) is not None:
            return name
    if (header_text(msg, "precedence") or "").strip().lower() in _BULK_PRECEDENCE:
        return "precedence"
    suppress = re.split(r"[,;\s]+", (header_text(msg, "x-auto-response-suppress") or "").lower())
    if _SUPPRESS_TOKENS.intersection(suppress):
        return "x-auto-response-suppress"
    for name in ("list-id", "list-unsubscribe"):
        if raw_header(msg, name) is not None:
            return name
    if "".join((header_text(msg, "return-path") or "x").split()) == "<>":
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
    return any(raw_header(msg, h) is not None for h in headers) or (
        strip_reply_prefixes(subject) != subject.strip()
    )
