"""Canonical phone numbers for SMS and WhatsApp senders.

``normalize_phone`` turns whatever a gateway calls a sender (``0812-3456-7890``,
``whatsapp:+6281234567890``, a WhatsApp ``WaId`` without ``+``, ``0062 …``/``001 62 …`` dialled with
an Indonesian IDD prefix, full-width digits, ``TELKOMSEL``, ``3636``) into a ``PhoneNumber``. It
never raises and never drops the input: numbers it cannot validate keep their raw text and the
kind ``"invalid"``, so the complaint is still stored under a stable handle.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

import phonenumbers

__all__ = ["PhoneKind", "PhoneNumber", "normalize_phone"]

PhoneKind = Literal["number", "alphanumeric", "shortcode", "invalid"]

_URI_PREFIX = re.compile(r"(?:whatsapp|tel|sms)\s*:\s*", re.IGNORECASE)
# Indonesian IDD prefixes (and the common "00") before the country code 62: phonenumbers only
# knows 008/009 as IDD for region ID.
_IDD_62 = re.compile(r"(?:00|001|007|008|009|01017)[\s.\-]*62(?=[\s.\-()\d])")
_SHORTCODE = re.compile(r"[0-9]{3,6}")
_WAID = re.compile(r"62[0-9]{8,}")


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    """A sender address from a phone channel.

    ``raw`` is the input with surrounding whitespace removed; ``e164`` is set only for
    ``kind == "number"``.
    """

    raw: str
    e164: str | None
    kind: PhoneKind

    @property
    def is_personal(self) -> bool:
        """Whether this is a real subscriber number (not a sender name, short code or garbage)."""
        return self.kind == "number"

    @property
    def handle(self) -> str:
        """Stable sender key: the E.164 form when known, else the raw text."""
        return self.e164 if self.e164 is not None else self.raw


def _strip_uri_prefix(value: str) -> str:
    """Remove ``whatsapp:``, ``tel:`` and ``sms:`` prefixes (repeated ones too)."""
    while match := _URI_PREFIX.match(value):
        value = value[match.end() :]
    return value.strip()


def _international_variants(value: str) -> list[str]:
    """``value`` rewritten to ``+62…`` where it uses an IDD prefix or lacks the ``+``."""
    variants = []
    idd = _IDD_62.match(value)
    if idd:
        variants.append("+62" + value[idd.end() :])
    if _WAID.fullmatch(value):
        variants.append("+" + value)
    return variants


def _valid_e164(candidate: str, region: str) -> str | None:
    """E.164 form of ``candidate`` when phonenumbers accepts it as a valid number."""
    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_phone(raw: str, region: str = "ID") -> PhoneNumber:
    """Classify and canonicalize a phone-channel sender; never raises."""
    stripped = raw.strip()
    value = _strip_uri_prefix(unicodedata.normalize("NFKC", stripped))
    if any(ch.isalpha() for ch in value):
        return PhoneNumber(stripped, None, "alphanumeric")
    if _SHORTCODE.fullmatch(value):
        return PhoneNumber(stripped, None, "shortcode")
    for candidate in [*_international_variants(value), value]:
        e164 = _valid_e164(candidate, region)
        if e164 is not None:
            return PhoneNumber(stripped, e164, "number")
    return PhoneNumber(stripped, None, "invalid")
