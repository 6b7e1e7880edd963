"""Indonesian or English? A small stopword-frequency guess for complaint texts.

``detect_language`` counts function words (and the SMS abbreviations Indonesians write for them)
of each language. It answers ``"id"`` or ``"en"`` only with at least two hits and a clear
majority, else None: short, mixed or other-language texts are left for a human.
"""

from __future__ import annotations

import re

__all__ = ["ENGLISH_STOPWORDS", "INDONESIAN_STOPWORDS", "detect_language"]

# Function words, courtesy words and their SMS abbreviations (yg, dgn, tdk, ...).
_INDONESIAN_WORDS = """
    yang dan di tidak saya ini itu dengan untuk ke dari sudah belum mohon tolong izin kami ada
    pak bu bapak ibu terima kasih karena akan bisa juga atau pada oleh agar supaya masih sejak
    sampai kenapa mengapa bagaimana apa kapan kok sangat hanya lagi tetapi tapi namun jika
    kalau kita mereka anda dia para adalah sebagai setiap sering selalu harus perlu segera
    mau ingin telah sedang bahwa hingga tersebut mana siapa dimana tadi kemarin
    yg dgn tdk sdh blm utk sy krn tlg mhn gak nggak ga udah aja dong jg
"""

_ENGLISH_WORDS = """
    the and is are was were to of in on my not please for with this that have has had been it
    you we our be at from but they there their an about because when what why how which who
    would could should will can do does did since still yet again your me him her his its than
    then very being into over after before until any some nothing
"""

INDONESIAN_STOPWORDS = frozenset(_INDONESIAN_WORDS.split())
ENGLISH_STOPWORDS = frozenset(_ENGLISH_WORDS.split())

_WORD = re.compile(r"[^\W\d_]+")
_MIN_HITS = 2
_MAJORITY = 2  # the winner needs at least this many times the loser's hits


def _hits(words: list[str], stopwords: frozenset[str]) -> int:
    """Number of ``words`` that are in ``stopwords``."""
    return sum(word in stopwords for word in words)


def _wins(hits: int, other: int) -> bool:
    """Whether ``hits`` are enough and a clear majority over the ``other`` language's."""
    return hits >= _MIN_HITS and hits >= _MAJORITY * other


def detect_language(text: str) -> str | None:
    """Return ``"id"``, ``"en"`` or None when the text is too short or the evidence is unclear."""
    words = _WORD.findall(text.lower())
    indonesian = _hits(words, INDONESIAN_STOPWORDS)
    english = _hits(words, ENGLISH_STOPWORDS)
    if _wins(indonesian, english):
        return "id"
    if _wins(english, indonesian):
        return "en"
    return None
