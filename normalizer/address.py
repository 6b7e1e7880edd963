"""Canonical e-mail addresses and mailbox headers.

``normalize_email`` reduces ``Name <Addr@Example.COM>``, ``mailto:addr@example.com`` or a bare
address to a lower-cased ``local@domain``, or None when the text is not a plausible address.
``parse_mailbox`` splits a ``From:``-style header value into (display name, address). Pure
functions: no DNS, no I/O.
"""

from __future__ import annotations

import re
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.utils import parseaddr

__all__ = ["normalize_email", "parse_mailbox"]

_ANGLE_ADDR = re.compile(r"<([^<>]*)>")
_MAILTO = re.compile(r"mailto:", re.IGNORECASE)
_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f<>,;\"()\[\]\\]")
_ENCODED_WORD = "=?"


def _plausible(address: str) -> bool:
    """Whether ``address`` has one ``@``, a local part and a dotted domain with no empty labels."""
    if _FORBIDDEN.search(address) or address.count("@") != 1:
        return False
    local, domain = address.split("@")
    return bool(local) and "." in domain and all(domain.split("."))


def normalize_email(raw: str) -> str | None:
    """Return ``local@domain`` lower-cased, or None when ``raw`` is not a plausible address."""
    value = raw.strip()
    angle = _ANGLE_ADDR.search(value)
    if angle:
        value = angle.group(1).strip()
    if _MAILTO.match(value):
        value = value[len("mailto:") :].split("?", 1)[0]
    address = value.strip().lower().removesuffix(".")
    return address if _plausible(address) else None


def _decode_words(name: str) -> str:
    """Decode RFC 2047 encoded words (``=?UTF-8?B?…?=``) left in a display name."""
    if _ENCODED_WORD not in name:
        return name
    try:
        return str(make_header(decode_header(name)))
    except (HeaderParseError, LookupError, UnicodeError, ValueError):
        return name


def _clean_name(name: str, address: str | None) -> str | None:
    """Display name without quotes and extra spaces; None if empty or just the address."""
    name = " ".join(_decode_words(name).split()).strip("\"' ")
    if not name or (address is not None and name.lower() == address):
        return None
    return name


def parse_mailbox(value: str) -> tuple[str | None, str | None]:
    """Split a header value such as ``"Budi" <budi@example.id>`` into (name, normalized email)."""
    name, addr = parseaddr(value)
    address = normalize_email(addr) if addr else None
    return _clean_name(name, address), address
