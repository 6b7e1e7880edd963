"""Who sent the mail (Reply-To, else From) and when (the Date header, Indonesian zones too)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

from normalizer.address import normalize_email
from normalizer.email._headers import (
    clean_line,
    decode_words,
    fix_8bit,
    header_text,
    raw_header,
    strip_controls,
    unfold,
)
from omnichannel.schema import Sender

_ANGLE_ADDRESS = re.compile(r"<\s*([^<>\s]*@[^<>\s]*)\s*>")
_INDONESIAN_ZONES = {"WIB": 7, "WITA": 8, "WIT": 9}
_ZONE_NAME = re.compile(r"\s(WIB|WITA|WIT)\s*$", re.IGNORECASE)


def mail_sender(msg: Message, *, is_dsn: bool) -> tuple[Sender, str | None]:
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
    raw = raw_header(msg, name)
    if raw is None:
        return None, None
    value = strip_controls(fix_8bit(unfold(raw)))
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
    name = clean_line(decode_words(name)).strip("\"' ")
    if not name or (address is not None and name.lower() == address):
        return None
    return name


def mail_date(msg: Message) -> tuple[datetime | None, bool]:
    """The Date header as an aware datetime, and whether a Date was present but unusable."""
    value = header_text(msg, "date")
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
