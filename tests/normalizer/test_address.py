from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from normalizer.address import normalize_email, parse_mailbox


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("budi@example.co.id", "budi@example.co.id"),
        ("Budi.Santoso@Example.CO.ID", "budi.santoso@example.co.id"),
        ("  budi@example.com \n", "budi@example.com"),
        ("<budi@example.com>", "budi@example.com"),
        ("Budi Santoso <Budi@Example.com>", "budi@example.com"),
        ('"Santoso, Budi" <budi@example.com>', "budi@example.com"),
        ("mailto:Budi@Example.com", "budi@example.com"),
        ("MAILTO:budi@example.com?subject=Keluhan", "budi@example.com"),
        ("<mailto:budi@example.com>", "budi@example.com"),
        ("budi+lapor@example.com", "budi+lapor@example.com"),
        ("budi@example.com.", "budi@example.com"),
        ("warga@sub.dinas.makassarkota.go.id", "warga@sub.dinas.makassarkota.go.id"),
        ("budi@bücher.de", "budi@bücher.de"),
    ],
)
def test_normalize_email_accepts(raw: str, expected: str) -> None:
    """Plausible addresses are lower-cased and stripped of names, brackets and mailto:."""
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "budi",
        "budi@",
        "@example.com",
        "budi@localhost",
        "budi@@example.com",
        "budi@example@com.id",
        "budi @example.com",
        "budi@exa mple.com",
        "budi@example..com",
        "budi@.example.com",
        "budi@example.com\x00",
        "budi\t@example.com",
        "a@b.com, c@d.com",
        "Budi Santoso",
        "<>",
        "mailto:",
        "undisclosed-recipients:;",
    ],
)
def test_normalize_email_rejects(raw: str) -> None:
    """Text that is not a plausible single address gives None."""
    assert normalize_email(raw) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"Budi Santoso" <Budi@Example.CO.ID>', ("Budi Santoso", "budi@example.co.id")),
        ("Budi Santoso <budi@example.co.id>", ("Budi Santoso", "budi@example.co.id")),
        ("'Budi'  <budi@example.co.id>", ("Budi", "budi@example.co.id")),
        ('"  Budi   Santoso " <budi@example.co.id>', ("Budi Santoso", "budi@example.co.id")),
        ('"Santoso, Budi" <budi@example.co.id>', ("Santoso, Budi", "budi@example.co.id")),
        ("budi@example.co.id", (None, "budi@example.co.id")),
        ("<budi@example.co.id>", (None, "budi@example.co.id")),
        ("budi@example.co.id (Budi Santoso)", ("Budi Santoso", "budi@example.co.id")),
        ('"budi@example.co.id" <Budi@Example.co.id>', (None, "budi@example.co.id")),
        ('"" <budi@example.co.id>', (None, "budi@example.co.id")),
        (
            "=?UTF-8?B?QnVkaSBTYW50b3Nv?= <budi@example.co.id>",
            ("Budi Santoso", "budi@example.co.id"),
        ),
        ("=?utf-8?q?Ibu_R=C3=A9ni?= <reni@example.co.id>", ("Ibu Réni", "reni@example.co.id")),
        (
            "=?bogus-charset?q?Budi?= <budi@example.co.id>",
            ("=?bogus-charset?q?Budi?=", "budi@example.co.id"),
        ),
        ("Budi <not-an-address>", ("Budi", None)),
        ("", (None, None)),
        ("<>", (None, None)),
    ],
)
def test_parse_mailbox(value: str, expected: tuple[str | None, str | None]) -> None:
    """Header values split into a cleaned display name and a normalized address."""
    assert parse_mailbox(value) == expected


@settings(max_examples=300)
@given(st.text())
def test_normalize_email_is_idempotent_and_never_raises(raw: str) -> None:
    """Any text gives None or an address that normalizes to itself."""
    address = normalize_email(raw)
    if address is not None:
        assert normalize_email(address) == address
        assert address == address.lower()
        assert address.count("@") == 1


@settings(max_examples=300)
@given(st.text())
def test_parse_mailbox_never_raises(value: str) -> None:
    """Any header text parses to a (name, address) pair without raising."""
    name, address = parse_mailbox(value)
    assert name is None or name == name.strip()
    assert address is None or normalize_email(address) == address
