"""A citizen's answer to a satisfaction survey, read from plain text — pure.

:func:`parse_rating` reads a score of 1 to 5 and a comment from what a citizen typed on any
channel: a digit (``5``, ``5/5``, ``nilai 4``, ``4 bintang``, ``⭐⭐⭐``) or words, Indonesian
or English, the longest phrase first so that a negation is never read as its opposite
(``tidak puas`` is 2, never the 4 of ``puas``; ``sangat tidak puas`` is 1). The scale is the
usual Indonesian five points: *sangat tidak puas* 1, *tidak puas* 2, *cukup puas* 3, *puas*
4, *sangat puas* 5 (:data:`LABELS`, also the rows of WhatsApp's list).

Only what a reply to a rating question looks like counts: a phrase within the first
``HEAD_WORDS`` words or the last ``TAIL_WORDS`` words, and a bare digit only as the first or
the last word (``5 hari`` or ``RT 5`` is no rating). A text naming two different scores
(``5, tidak puas``) is a rating whose score is ``None``: it answers, but it cannot be told
what — never guessed. Whatever is not a rating expression at the start or the end is the
comment, kept as written.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from itertools import islice

__all__ = ["HEAD_WORDS", "LABELS", "TAIL_WORDS", "Rating", "choices", "parse_rating"]

HEAD_WORDS = 6
"""A phrase counts when it starts within this many words from the start…"""
TAIL_WORDS = 4
"""…or within this many words from the end."""
_WINDOW = 400
"""Characters looked at from each end of a long text (its middle is a comment)."""

LABELS: dict[str, dict[int, str]] = {
    "id": {5: "Sangat puas", 4: "Puas", 3: "Cukup puas", 2: "Tidak puas", 1: "Sangat tidak puas"},
    "en": {
        5: "Very satisfied",
        4: "Satisfied",
        3: "Neutral",
        2: "Dissatisfied",
        1: "Very dissatisfied",
    },
}
"""The scale's names per language, each read back by :func:`parse_rating` as its score."""


@dataclass(frozen=True)
class Rating:
    """What a text says as a survey answer."""

    score: int | None
    """1 to 5; None when the text names different scores (it cannot be told which)."""
    comment: str = ""
    """The rest of the text, as written (empty when there is none)."""


def choices(language: str | None) -> list[tuple[int, str]]:
    """The scale, best first, in ``language`` (Indonesian when it has none of its own)."""
    labels = LABELS.get(language or "", LABELS["id"])
    return sorted(labels.items(), reverse=True)


# -- the phrases -----------------------------------------------------------------------------

_NEG = "(?:tidak|tdk|tak|gak|ga|gk|nggak|ngga|enggak|engga|kurang|belum)"
_VERY = "(?:sangat|amat|sungguh)"
_PHRASES: list[tuple[str, int]] = [
    # Indonesian: the longest first, each negation before the word it negates
    (f"{_VERY} {_NEG} (?:puas|memuaskan)", 1),
    (f"{_NEG} (?:puas|memuaskan) sama sekali", 1),
    (f"{_VERY} (?:kecewa|mengecewakan|buruk|jelek)", 1),
    ("(?:kecewa|buruk|jelek) (?:sekali|banget|berat)", 1),
    (f"{_NEG} (?:kecewa|mengecewakan)", 4),
    (f"{_NEG} terlalu (?:puas|memuaskan|bagus|baik)", 2),
    (f"{_NEG} (?:puas|memuaskan|bagus|baik)", 2),
    (f"{_VERY} (?:puas|memuaskan|bagus|baik|membantu)", 5),
    ("(?:puas|memuaskan|bagus|baik) (?:sekali|banget)", 5),
    ("cukup (?:puas|memuaskan|baik|bagus)", 3),
    ("biasa (?:saja|aja)", 3),
    ("(?:kecewa|mengecewakan)", 1),
    ("(?:buruk|jelek)", 2),
    ("(?:luar biasa|mantap|mantab|mantul|sempurna|terbaik)", 5),
    ("(?:puas|memuaskan|bagus)", 4),
    ("(?:lumayan|netral)", 3),
    (r"(?:cukup|biasa)(?=\s*(?:$|[.,;:!?]))", 3),  # alone: "cukup lama" is no rating
    # English
    ("(?:very|extremely|completely) (?:dissatisfied|unsatisfied|disappointed|bad|poor)", 1),
    ("not (?:at all )?satisfied at all", 1),
    ("not at all satisfied", 1),
    ("(?:terrible|awful|disappointed)", 1),
    ("not (?:very |really )?(?:satisfied|happy|good)", 2),
    ("(?:dissatisfied|unsatisfied|unhappy|poor|bad)", 2),
    ("(?:very|extremely|completely) (?:satisfied|good|happy)", 5),
    ("(?:excellent|outstanding|perfect)", 5),
    ("satisfied", 4),
    ("(?:neutral|average|so-so|so so)", 3),
]
_LOCATOR = re.compile(
    r"(?:rt|rw|no|nomor|nomer|nmr|jalan|jl|jln|blok|gang|gg|lantai|km|ke|tahap|kelas|tingkat|"
    r"pukul|jam|hari|tanggal|tgl|minggu|bulan|tahun|kamar|pintu|loket|lorong|dusun|lingkungan|"
    r"kav|kavling|unit|pos|pasal|ayat|number|room|floor|day|week|month|year)\.?",
    re.IGNORECASE,
)
"""Words after which a last digit names a place or a time, not a score (``RT 5``)."""
_WORD = r"(?<![\w-])(?:{})(?![\w-])"
_PATTERNS = [
    (re.compile(_WORD.format(text.replace(" ", r"\s+")), re.IGNORECASE), score)
    for text, score in _PHRASES
]
_ANY_PHRASE = re.compile(
    "|".join(f"(?:{pattern.pattern})" for pattern, _ in _PATTERNS), re.IGNORECASE
)
_NUMBERS = [
    # 5/5, 4 dari 5, 3 of 5, 3 out of 5
    re.compile(r"(?<![\w.,/])([1-5])\s*(?:/|dari|of|out\s+of)\s*5(?![\w.,]*\d)", re.IGNORECASE),
    # nilai 4, skor: 5, rating=3, bintang 4
    re.compile(
        r"(?<![\w-])(?:nilai(?:nya)?|skor|score|rating|rate|bintang|angka|poin)\s*[:=]?\s*"
        r"([1-5])(?![\w]|[.,]\d|\s*(?:/|dari|of)\s*\d)",
        re.IGNORECASE,
    ),
    # 4 bintang, 5 stars
    re.compile(r"(?<![\w.,/])([1-5])\s*(?:bintang|stars?)(?!\w)", re.IGNORECASE),
]
_STARS = re.compile(r"(?<![⭐★])((?:⭐\ufe0f?|★){1,5})(?![⭐★])")
_FIRST_DIGIT = re.compile(r"\A[\s\"'(\[]*([1-5])(?![\w]|[.,]\d)")
_LAST_DIGIT = re.compile(r"(?:\A|(?<=[\s,.:;=(\[-]))(?<!\d[.,])([1-5])[\s.!)\]\"']*\Z")
_AFTER_FIRST = re.compile(
    r"\s*(?:\Z|[.,;:!)\]\-\u2013\u2014]|\n|(?:terima\s*kasih|makasih|trims|thanks|thank\s+you|"
    r"pak|bu|mas|mbak|kak|min|ya|deh|sir|ma'am)(?!\w))",
    re.IGNORECASE,
)
"""What may follow a lone digit that opens a text (``5.``, ``5 terima kasih``): not a
noun (``5 hari``, ``1 lagi``), which makes it a number of something."""
_TOKEN = re.compile(r"\S+")
_EDGES = " \t\r\n-\u2013\u2014:;,.!?=()[]\"'"
_NOTHING = re.compile(
    r"(?:terima\s*kasih|makasih|trims|thanks|thank\s+you|ok|oke|saya|kami|nilai(?:nya)?|"
    r"(?:jawaban|penilaian)\s+saya|rating|skor)?",
    re.IGNORECASE,
)
"""A whole comment that says nothing (dropped)."""
_FILLERS = re.compile(
    r"(?:(?:halo|hai|hallo|selamat\s+(?:pagi|siang|sore|malam)|assalamu'?alaikum|pak|bu|"
    r"bapak|ibu|min|admin|kak|terima\s*kasih|makasih|trims|thanks|thank\s+you|saya|kami|aku|"
    r"jawaban(?:\s+saya)?|penilaian(?:\s+saya)?|i\s+am|i'm|we\s+are)(?!\w)[\s,.:;!-]*)+",
    re.IGNORECASE,
)
"""Words a reply may open with before its rating."""


@dataclass(frozen=True)
class _Found:
    start: int
    end: int
    score: int


def parse_rating(text: str, *, strict: bool = False) -> Rating | None:
    """The survey answer ``text`` gives, or None when it is no rating at all.

    The rating is what the text starts with (after a greeting or thanks), else what it ends
    with, else whatever rating expression its first and last words hold. ``strict`` (how
    filing reads a citizen's message) takes only an answer that is plainly one: the rating
    leads the text, or ends a short one (at most ``STRICT_WORDS`` words before it, and a bare
    digit only alone) — "Pelayanan puskesmas sangat buruk, dokter tidak datang" or "Mohon
    bantuan 2" is a new complaint, not a rating."""
    text = unicodedata.normalize("NFKC", text or "").strip()
    if not text:
        return None
    head, tail = _bounds(text)
    found = [f for f in _expressions(text, head, tail) if f.start < head or f.start >= tail]
    if not found:
        return None
    opening = _FILLERS.match(text)
    begin = opening.end() if opening else 0
    leading = _run(text, begin, found)
    trailing = [] if leading else _run(text, len(text), found[::-1], backwards=True)
    group = leading or trailing or found
    scores = {f.score for f in group}
    score = scores.pop() if len(scores) == 1 else None
    if leading:
        comment = text[leading[-1].end :]
    elif trailing:
        comment = text[: trailing[-1].start]
    else:
        comment = text
    comment = comment.strip(_EDGES)
    if _NOTHING.fullmatch(comment):
        comment = ""
    if strict and not leading and not _plain_ending(text, trailing, comment):
        return None
    return Rating(score, comment)


STRICT_WORDS = 4
"""Words a strict reading allows before a rating that ends the text ("Pelayanannya cepat,
saya puas")."""


def _plain_ending(text: str, trailing: list[_Found], comment: str) -> bool:
    """Whether a rating that ends the text ends a short answer (a digit only when alone)."""
    if not trailing:
        return False
    words = len(comment.split())
    digits = all(text[f.start : f.end].strip(_EDGES).isdigit() for f in trailing)
    return words == 0 if digits else words <= STRICT_WORDS


def _run(text: str, at: int, found: list[_Found], *, backwards: bool = False) -> list[_Found]:
    """The expressions that follow one another from ``at`` (or precede it, ``backwards``)
    with nothing but separators between them."""
    run: list[_Found] = []
    for item in found:
        gap = text[item.end : at] if backwards else text[at : item.start]
        if (item.end > at if backwards else item.start < at) or gap.strip(_EDGES):
            break
        run.append(item)
        at = item.start if backwards else item.end
    return run


def _bounds(text: str) -> tuple[int, int]:
    """Where the first ``HEAD_WORDS`` words end, and where the last ``TAIL_WORDS`` begin."""
    starts = [m.start() for m in islice(_TOKEN.finditer(text), HEAD_WORDS + 1)]
    head = starts[HEAD_WORDS] if len(starts) > HEAD_WORDS else len(text)
    last = [m.start() for m in _TOKEN.finditer(text, max(0, len(text) - _WINDOW))]
    tail = last[-TAIL_WORDS] if len(last) >= TAIL_WORDS else 0
    if len(text) > _WINDOW and tail < len(text) - _WINDOW:
        tail = len(text) - _WINDOW
    return head, tail


def _expressions(text: str, head: int, tail: int) -> list[_Found]:
    """Every rating expression near the start and the end, without overlaps (the longest at
    each place)."""
    if len(text) <= 2 * _WINDOW:
        ranges = [(0, len(text))]
    else:  # the first words (a phrase may run past them) and the last
        ranges = [(0, min(head + 80, _WINDOW)), (max(tail, _WINDOW), len(text))]
    found: list[_Found] = []
    for begin, end in ranges:
        found += _phrases(text, begin, end) + _numbers(text, begin, end)
    found += _bare_digits(text)
    kept: list[_Found] = []
    for item in sorted(set(found), key=lambda f: (f.start, -(f.end - f.start))):
        if not kept or item.start >= kept[-1].end:
            kept.append(item)
    return kept


def _phrases(text: str, begin: int, end: int) -> list[_Found]:
    found = []
    for match in _ANY_PHRASE.finditer(text, begin, end):
        words = match.group(0)
        score = next(s for pattern, s in _PATTERNS if pattern.fullmatch(words))
        found.append(_Found(match.start(), match.end(), score))
    return found


def _numbers(text: str, begin: int, end: int) -> list[_Found]:
    found = [
        _Found(m.start(), m.end(), int(m.group(1)))
        for pattern in _NUMBERS
        for m in pattern.finditer(text, begin, end)
    ]
    found += [
        _Found(m.start(), m.end(), len(m.group(1).replace("\ufe0f", "")))
        for m in _STARS.finditer(text, begin, end)
    ]
    return found


def _bare_digits(text: str) -> list[_Found]:
    """A lone digit as the first word (followed by a separator, thanks or nothing), or as
    the last word — after a separator, or a word that locates nothing (``RT 5``, ``nomor
    5`` and ``bulan 5`` are no ratings)."""
    found = []
    first = _FIRST_DIGIT.match(text)
    if first is not None and _AFTER_FIRST.match(text, first.end()):
        found.append(_Found(first.start(1), first.end(1), int(first.group(1))))
    last = _LAST_DIGIT.search(text, max(0, len(text) - 40))
    if last is not None:
        before = text[max(0, last.start(1) - 80) : last.start(1)].rstrip().rsplit(None, 1)
        word = before[-1].lower() if before else ""
        if not _LOCATOR.fullmatch(word) and not word[-1:].isdigit():
            found.append(_Found(last.start(1), last.end(1), int(last.group(1))))
    return found
