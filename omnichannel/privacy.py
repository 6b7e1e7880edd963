"""Masking of personal data: phone numbers, e-mail addresses, names, and the NIK and NPWP
numbers found in free text (UU PDP 27/2022: personal data must not leak through logs,
errors, exports or forwards).

``mask_phone``, ``mask_email`` and ``mask_name`` mask a value known to be one; ``mask_text``
finds values in text and masks them; a :class:`Masker` applies what ``[privacy]`` configures.
Pure (no I/O, no store); each pass over a text is linear, and only the first
:data:`MAX_SCAN` characters are searched value by value (past them, every run of 7 or more
digits is masked whole).

What ``mask_text`` looks for, and why (precision first: a ticket ``ADU-2026-000123``, an
amount ``Rp 1.500.000``, a date or a permit number ``PBG-2026-000123`` must stay readable):

- e-mail addresses, of any form (``Budi <budi@example.id>`` too);
- phones: what phonenumbers' matcher finds (E.164, ``0812-3456-7890``, ``(021) 5551234``,
  ``62812…``) when written as phones are (starting with ``+``, ``0`` or ``62``), and any
  unbroken ``+`` and 8 to 15 digits or Indonesian mobile shape (``08…``, ``628…``) that its
  metadata does not know yet;
- NIK: 16 digits (unbroken, in fours, or ``PP.KK.CC.DDMMYY.SSSS``) with the NIK's structure:
  a province code, non-zero regency and district, a birth date (day 01 to 31, or 41 to 71
  for a woman; month 01 to 12) and a non-zero serial. Every well-formed NIK passes and about 2.5% of
  other 16-digit numbers (accounts, transaction ids) do, so those are left alone; after the
  words NIK, KTP or NPWP any 15 or 16 digits are masked. The 16-digit NPWP of a person (since
  2024) is their NIK;
- NPWP: the written form ``12.345.678.9-012.345``; bare 15 digits only after the word NPWP
  (bare 15-digit numbers are also bank accounts, IMEIs and WhatsApp ``phone_number_id``\\ s).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import phonenumbers

from normalizer.phone import normalize_phone

__all__ = [
    "DEFAULT_TEXT_KINDS",
    "KINDS",
    "LOG_MASKER",
    "MAX_SCAN",
    "Masker",
    "looks_like_nik",
    "mask_email",
    "mask_name",
    "mask_phone",
    "mask_text",
]

KINDS = ("phones", "emails", "nik", "npwp")
"""What ``mask_text`` can mask (the names ``[privacy] mask_in_text`` takes)."""
DEFAULT_TEXT_KINDS = ("nik", "npwp")
"""What is masked in a complaint's text in exports and forwards unless configured."""
MAX_SCAN = 1 << 20
"""Characters of a text searched value by value (1 MiB)."""
HIDDEN = "****"

_SCHEME = re.compile(r"(?:whatsapp|tel|sms)\s*:\s*", re.IGNORECASE)
_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}")
_ID_NUMBER = re.compile(r"(?<![\w.,/-])[0-9](?:[ .-]?[0-9]){14,15}(?![\w/-]|[.,][0-9])")
_ID_KEYWORD = re.compile(r"\b(NIK|KTP|NPWP)\b", re.IGNORECASE)
_KEYWORD_REACH = 32
"""Characters before a number searched for NIK, KTP or NPWP."""
_PHONE_HINT = re.compile(r"[0-9](?:[^0-9]{0,3}[0-9]){6}")
_PHONE_SHAPE = re.compile(r"(?<![\w*+])(?:\+[1-9][0-9]{7,14}|(?:62|0)8[0-9]{7,11})(?![\w*])")
_PHONE_START = ("+", "0", "62")
_DIGIT_RUN = re.compile(r"[0-9](?:[ .()-]?[0-9]){6,}")
_PROVINCES = frozenset(
    {*range(11, 20), 21, *range(31, 37), *range(51, 54), *range(61, 66), *range(71, 77)}
    | {81, 82, *range(91, 97)}
)
"""Province codes of the NIK (Aceh 11 … Papua Barat Daya 96)."""
_NIK_LAYOUTS = frozenset(
    {(), ((2, "."), (4, "."), (6, "."), (12, "."))} | {((4, s), (8, s), (12, s)) for s in " .-"}
)
"""Where a NIK may be broken: unbroken, in fours, or ``PP.KK.CC.DDMMYY.SSSS``."""
_NPWP_LAYOUTS = frozenset(((2, "."), (5, "."), (8, "."), (9, s), (12, ".")) for s in ".-")
"""The written NPWP: ``12.345.678.9-012.345``."""


# -- one value ---------------------------------------------------------------------------------


def mask_phone(value: str, region: str = "ID") -> str:
    """``+62812****7890``: the country code, the operator or area code (at most 3 digits of
    the national number) and the last 4 digits, never more than half of the digits after
    the code; any written form (``0812-3456-7890``, ``whatsapp:+62…``, ``62812…``). A sender
    name (``TELKOMSEL``) or a short code (``3636``) is a service, not a person: as it is."""
    text = _SCHEME.sub("", value.strip()[:256], count=1).strip()
    found = normalize_phone(text, region)
    if found.kind in ("alphanumeric", "shortcode"):
        return value
    if found.e164 is not None:
        return _masked_number(phonenumbers.parse(found.e164, None), valid=True)
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return _masked_digits(text) or value
    return _masked_number(number, valid=False)


def _masked_number(number: phonenumbers.PhoneNumber, *, valid: bool) -> str:
    national = phonenumbers.national_significant_number(number)
    code = phonenumbers.length_of_national_destination_code(number) if valid else 0
    head = min(code, 3) if code else min(3, len(national) // 4)
    tail = min(4, (len(national) - head) // 2)
    return f"+{number.country_code}{national[:head]}{HIDDEN}{national[len(national) - tail :]}"


def _masked_digits(text: str) -> str | None:
    """A number that is no phone number: at most a quarter of its digits at each end (None
    without digits)."""
    digits = [c for c in text if "0" <= c <= "9"]
    if not digits:
        return None
    keep = len(digits) // 4
    head, tail = digits[: min(3, keep)], digits[len(digits) - min(4, keep) :]
    return ("+" if text.startswith("+") else "") + "".join(head) + HIDDEN + "".join(tail)


def mask_email(value: str) -> str:
    """``bu***@example.id``: the first 2 characters of the local part (at most half of it)
    and the domain, which tells the office or provider, not the person."""
    address = value.strip()
    address = address[7:] if address[:7].lower() == "mailto:" else address
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    keep = min(2, len(local) // 2)
    return f"{local[:keep]}***{at}{domain}"


def mask_name(value: str) -> str:
    """``B*** S***``: the initial of each word."""
    return " ".join(f"{word[0]}***" for word in value.split())


def looks_like_nik(digits: str) -> bool:
    """Whether 16 digits have the structure of a NIK: province, regency, district, birth
    date (day + 40 for a woman), serial."""
    if len(digits) != 16 or not digits.isascii() or not digits.isdigit():
        return False
    province, regency, district = int(digits[:2]), int(digits[2:4]), int(digits[4:6])
    day, month, serial = int(digits[6:8]), int(digits[8:10]), int(digits[12:])
    born = (1 <= day <= 31 or 41 <= day <= 71) and 1 <= month <= 12
    return province in _PROVINCES and regency > 0 and district > 0 and born and serial > 0


# -- text --------------------------------------------------------------------------------------


def mask_text(
    text: str,
    *,
    nik: bool = True,
    npwp: bool = True,
    phones: bool = True,
    emails: bool = True,
    region: str = "ID",
) -> str:
    """``text`` with the e-mail addresses, NIK and NPWP numbers and phone numbers it holds
    masked (those asked for); the rest as it is. Masking twice changes nothing more."""
    if len(text) > MAX_SCAN:
        cut = text.rfind(" ", MAX_SCAN - 256, MAX_SCAN)
        cut = cut if cut > 0 else MAX_SCAN
        kinds = {"nik": nik, "npwp": npwp, "phones": phones, "emails": emails}
        head = mask_text(text[:cut], **kinds, region=region)
        return head + _blunt(text[cut:], numbers=nik or npwp or phones, emails=emails)
    if emails and "@" in text:
        text = _EMAIL.sub(lambda m: mask_email(m.group()), text)
    if nik or npwp:
        text = _ID_NUMBER.sub(lambda m: _id_number(m, nik=nik, npwp=npwp), text)
    if phones and _PHONE_HINT.search(text):
        text = _phones(text, region)
    return text


def _blunt(text: str, *, numbers: bool, emails: bool) -> str:
    """Past :data:`MAX_SCAN`: e-mail addresses, and every run of 7 or more digits whole."""
    if emails:
        text = _EMAIL.sub(lambda m: mask_email(m.group()), text)
    if numbers:
        text = _DIGIT_RUN.sub(lambda m: re.sub("[0-9]", "*", m.group()), text)
    return text


def _id_number(match: re.Match[str], *, nik: bool, npwp: bool) -> str:
    """The masked form of a NIK or NPWP candidate when it is one of the kinds asked for."""
    token = match.group()
    digits = "".join(c for c in token if c.isdigit())
    layout = tuple((i, c) for i, c in enumerate(_separators(token)) if c)
    if len(digits) == 16 and layout in _NIK_LAYOUTS and looks_like_nik(digits):
        wanted = nik or npwp
    elif len(digits) == 15 and layout in _NPWP_LAYOUTS:
        wanted = npwp
    else:
        keyword = _keyword_before(match.string, match.start())
        if keyword is None:
            return token
        # 16 digits are a NIK or the NPWP that is one; 15 after "NIK" a NIK mistyped
        wanted = nik or npwp if len(digits) == 16 else npwp if keyword == "NPWP" else nik
    return _star_digits(token, keep=2) if wanted else token


def _separators(token: str) -> list[str]:
    """The character before each digit of ``token`` (``""`` when none)."""
    found, pending = [], ""
    for char in token:
        if char.isdigit():
            found.append(pending)
            pending = ""
        else:
            pending = char
    return found


def _keyword_before(text: str, start: int) -> str | None:
    words = _ID_KEYWORD.findall(text, max(0, start - _KEYWORD_REACH), start)
    return str(words[-1]).upper() if words else None


def _star_digits(token: str, *, keep: int) -> str:
    """``token`` with every digit after the first ``keep`` written ``*``."""
    out, seen = [], 0
    for char in token:
        if char.isdigit():
            out.append(char if seen < keep else "*")
            seen += 1
        else:
            out.append(char)
    return "".join(out)


def _phones(text: str, region: str) -> str:
    out, done = [], 0
    for match in phonenumbers.PhoneNumberMatcher(text, region):
        if not match.raw_string.lstrip("( ").startswith(_PHONE_START):
            continue  # Rp 1.500.000, a service number: not written as a phone is
        raw = match.raw_string  # "(+62813…)": the opening bracket is the text's, not the number's
        lead = "(" if raw.startswith("(") and raw.count("(") > raw.count(")") else ""
        out += [text[done : match.start], lead, _masked_number(match.number, valid=True)]
        done = match.end
    text = "".join([*out, text[done:]])
    return _PHONE_SHAPE.sub(lambda m: mask_phone(m.group(), region), text)


# -- configured --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Masker:
    """``mask_text`` for the kinds configured (``[privacy] mask_in_text``)."""

    kinds: frozenset[str] = frozenset(DEFAULT_TEXT_KINDS)
    region: str = "ID"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.kinds) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown kinds {unknown}; known: {list(KINDS)}")

    @classmethod
    def of(cls, kinds: Iterable[str], region: str = "ID") -> Masker:
        return cls(frozenset(kinds), region)

    @classmethod
    def from_config(cls, config: Any) -> Masker:
        """The masker of a :class:`~omnichannel.config.Config`'s ``[privacy] mask_in_text``."""
        return cls.of(config.privacy.mask_in_text, config.region)

    def text(self, value: str) -> str:
        if not self.kinds or not value:
            return value
        return mask_text(
            value,
            nik="nik" in self.kinds,
            npwp="npwp" in self.kinds,
            phones="phones" in self.kinds,
            emails="emails" in self.kinds,
            region=self.region,
        )

    def optional(self, value: str | None) -> str | None:
        return None if value is None else self.text(value)


LOG_MASKER = Masker(frozenset(KINDS))
"""Every kind: what log lines and error texts get."""
