from __future__ import annotations

import dataclasses

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from normalizer.phone import PhoneNumber, normalize_phone

TELKOMSEL_MOBILE = "+6281234567890"

MOBILE_SPELLINGS = [
    "0812-3456-7890",
    "0812 3456 7890",
    "081234567890",
    "+62 812 3456 7890",
    "+62-812-3456-7890",
    "62 812 3456 7890",
    "+62 (0) 812 3456 7890",
    "whatsapp:+6281234567890",
    "WhatsApp:+6281234567890",
    "tel:+62-812-3456-7890",
    "sms:081234567890",
    "  +6281234567890  ",
    "6281234567890",
    "0062 812 3456 7890",
    "006281234567890",
    "001 62 812 3456 7890",
    "00162 812 3456 7890",
    "007 62 812 3456 7890",
    "008-62-812-3456-7890",
    "009 62 812 3456 7890",
    "01017 62 812 3456 7890",
    "01017-62-812-3456-7890",
    "\uff10\uff18\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19\uff10",
    "\uff0b\uff16\uff12\uff18\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19\uff10",
    "whatsapp:\uff0b\uff16\uff12 812 3456 7890",
]


def test_fixture_numbers_are_valid_for_phonenumbers() -> None:
    """The numbers used below are valid for phonenumbers itself, so the tests mean something."""
    for number in (TELKOMSEL_MOBILE, "+62411123456", "+622129345678", "+14158675309"):
        assert phonenumbers.is_valid_number(phonenumbers.parse(number, None)), number


@pytest.mark.parametrize("raw", MOBILE_SPELLINGS)
def test_indonesian_mobile_spellings(raw: str) -> None:
    """Every usual spelling of one Telkomsel number normalizes to the same E.164 number."""
    phone = normalize_phone(raw)
    assert phone == PhoneNumber(raw=raw.strip(), e164=TELKOMSEL_MOBILE, kind="number")
    assert phone.is_personal
    assert phone.handle == TELKOMSEL_MOBILE


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("0411 123456", "+62411123456"),  # Makassar landline
        ("(0411) 123456", "+62411123456"),
        ("021 2934 5678", "+622129345678"),  # Jakarta landline
        ("+62 21 2934 5678", "+622129345678"),
        ("0857 1234 5678", "+6285712345678"),  # Indosat
        ("0899 1234 5678", "+6289912345678"),  # Tri
        ("+1 415 867 5309", "+14158675309"),  # US
        ("tel:+1-415-867-5309", "+14158675309"),
        ("+44 20 7946 0958", "+442079460958"),  # UK
        ("+65 6123 4567", "+6561234567"),  # Singapore
    ],
)
def test_other_valid_numbers(raw: str, e164: str) -> None:
    """Landlines, other operators and foreign numbers in international form are valid numbers."""
    phone = normalize_phone(raw)
    assert (phone.e164, phone.kind) == (e164, "number")


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("(415) 867-5309", "US", "+14158675309"),
        ("0812 3456 7890", "US", None),
        ("020 7946 0958", "GB", "+442079460958"),
    ],
)
def test_region_decides_national_numbers(raw: str, region: str, e164: str | None) -> None:
    """National numbers are read in the given region."""
    assert normalize_phone(raw, region).e164 == e164


@pytest.mark.parametrize("raw", ["TELKOMSEL", "INFO-PLN", "BPJS Kes", "Tokopedia", "AXIS", "M-BCA"])
def test_alphanumeric_senders(raw: str) -> None:
    """Sender names are kept as they are, not personal, with no E.164 form."""
    phone = normalize_phone(raw)
    assert phone == PhoneNumber(raw=raw, e164=None, kind="alphanumeric")
    assert not phone.is_personal
    assert phone.handle == raw


@pytest.mark.parametrize("raw", ["3636", "123", "888", "94500", "123456", "sms:3636"])
def test_shortcodes(raw: str) -> None:
    """Numeric senders of 3 to 6 digits are short codes, not personal numbers."""
    phone = normalize_phone(raw)
    assert phone == PhoneNumber(raw=raw, e164=None, kind="shortcode")
    assert not phone.is_personal


@pytest.mark.parametrize(
    "raw",
    [
        "12345678901234567890",
        "",
        "   ",
        "+",
        "-",
        "12",
        "1234567",
        "081234567",  # too short for a mobile number
        "0812345678901234",  # too long
        "+62 000 0000 0000",
        "0062 12",
        "001 62",
        "+999 123 456 789",
        "whatsapp:",
    ],
)
def test_invalid_numbers_keep_raw(raw: str) -> None:
    """Numbers phonenumbers rejects keep their raw text as the handle, kind "invalid"."""
    phone = normalize_phone(raw)
    assert phone == PhoneNumber(raw=raw.strip(), e164=None, kind="invalid")
    assert phone.handle == raw.strip()
    assert not phone.is_personal


def test_international_rewrite_falls_back_to_the_original() -> None:
    """Digits that only look like 62… without a plus are still tried as a national number."""
    # As +62 21 234567 it is too short for Jakarta; nationally it is 0622 1234567 (Siantar).
    assert normalize_phone("6221234567").e164 == "+626221234567"


def test_phone_number_is_frozen() -> None:
    """PhoneNumber values are immutable and hashable, usable as dict keys."""
    phone = normalize_phone("0812-3456-7890")
    with pytest.raises(dataclasses.FrozenInstanceError):
        phone.kind = "invalid"  # type: ignore[misc]
    assert hash(phone) == hash(normalize_phone("0812-3456-7890"))
    assert phone.handle == normalize_phone("+6281234567890").handle


@settings(max_examples=500)
@given(st.text())
def test_never_raises(raw: str) -> None:
    """Any text gives a PhoneNumber of a known kind, with e164 set exactly for numbers."""
    phone = normalize_phone(raw)
    assert phone.kind in ("number", "alphanumeric", "shortcode", "invalid")
    assert (phone.e164 is not None) == (phone.kind == "number")
    assert phone.raw == raw.strip()


@settings(max_examples=300)
@given(st.from_regex(r"(\+|00|001 |0)?[0-9 ()\-.]{0,25}", fullmatch=True))
def test_never_raises_on_number_like_text(raw: str) -> None:
    """Number-like text never raises and valid results are E.164 strings."""
    phone = normalize_phone(raw)
    if phone.e164 is not None:
        assert phone.e164.startswith("+")
        assert phone.e164[1:].isdigit()
