from __future__ import annotations

import pytest

from normalizer.language import ENGLISH_STOPWORDS, INDONESIAN_STOPWORDS, detect_language

INDONESIAN = [
    "Selamat pagi Pak, jalan di depan rumah saya sudah rusak parah sejak bulan lalu dan belum "
    "diperbaiki. Mohon segera ditindaklanjuti.",
    "Tolong lampu jalan di Jl. Perintis Kemerdekaan mati sudah 2 minggu, warga takut keluar malam.",
    "Saya mau lapor, sampah tidak diangkut ke TPS dari hari Senin. Terima kasih.",
    "Izin bu, air PDAM di kompleks kami tidak mengalir sejak kemarin, bagaimana ini?",
    "pak sy mau tanya kenapa KTP sy blm jadi padahal sdh 3 bulan",
    "TERIMA KASIH ATAS RESPON CEPATNYA, SALURAN SUDAH BERSIH DAN TIDAK BANJIR LAGI",
]

ENGLISH = [
    "The street light in front of my house has not been working for two weeks.",
    "Please fix the road near the market, it is full of potholes and dangerous at night.",
    "I have been waiting for my ID card since October and nobody answers the phone.",
    "This is the third time I report that the garbage was not collected.",
]

UNDECIDED = [
    "",
    "   ",
    "ok",
    "Halo",
    "Thanks!",
    "0812 3456 7890",
    "Selamat pagi",
    "KTP",
    "Saya mau complain about the road yang rusak",
    "Bonjour, la route est cassée depuis une semaine.",
]


@pytest.mark.parametrize("text", INDONESIAN)
def test_indonesian_complaints(text: str) -> None:
    """Indonesian complaints, including SMS abbreviations and capitals, are detected as "id"."""
    assert detect_language(text) == "id"


@pytest.mark.parametrize("text", ENGLISH)
def test_english_complaints(text: str) -> None:
    """English complaints are detected as "en"."""
    assert detect_language(text) == "en"


@pytest.mark.parametrize("text", UNDECIDED)
def test_short_mixed_or_foreign_is_none(text: str) -> None:
    """Too short, mixed or other-language texts give None rather than a guess."""
    assert detect_language(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("saya dan", "id"),
        ("the and", "en"),
        ("saya", None),
        ("the", None),
        ("saya dan the", "id"),
        ("saya dan the and", None),
        ("saya dan kami the", "id"),
        ("the and is saya dan", None),
        ("the and is this saya", "en"),
    ],
)
def test_thresholds(text: str, expected: str | None) -> None:
    """Two hits are needed, and the winner needs twice the other language's hits."""
    assert detect_language(text) == expected


def test_tokens_are_whole_words() -> None:
    """Stopwords only count as whole words, not inside longer words or next to digits."""
    assert detect_language("thereafter andalan dibawa ketan 2the") is None


def test_stopword_lists_are_disjoint() -> None:
    """No word counts for both languages."""
    assert not INDONESIAN_STOPWORDS & ENGLISH_STOPWORDS
