"""Is this the same complaint again, or another complaint about the same matter? Pure.

``signature`` reduces a message to what identifies its complaint:

- **words**: the content words, in order — case folded (NFKC), punctuation, greetings,
  politeness, signatures' closing words and Indonesian and English stop words gone, common SMS
  abbreviations written out (``yg`` → ``yang``, ``tdk``/``gak`` → ``tidak``, ``jl`` →
  ``jalan``…), reduplication folded (``anak2``, ``anak-anak`` → ``anak``), ``-nya`` dropped;
- **numbers**: every number as a value, whatever its formatting — a phone (``0812-3456-7890``
  and ``+62 812 3456 7890`` are one), an amount (``Rp 1.500.000`` is ``1500000``), a date
  (``05/12/2026`` and ``5 Desember 2026`` are the same three numbers), a permit number
  (``640/0123/DPMPTSP/2026`` is 640, 123, 2026); URLs and e-mail addresses in the text, scheme
  and ``www.`` aside;
- **names**: the words that follow a naming marker (``atas nama``, ``a.n.``, ``desa``,
  ``kelurahan``, ``kecamatan``, ``dusun``, ``CV``, ``PT``, ``UD``, ``toko``…; and ``jalan``,
  ``gang``, ``Pak``, ``Bu``… when the next word is capitalized): people, firms and places.

``compare`` matches two signatures' words, exactly and then allowing a typo (one edit in a
word of four letters or more, two in a word of eight or more, with ``rapidfuzz``), and scores
the match by the Dice coefficient. It reports what keeps the two apart whatever the score:
numbers each has that the other does not (a different permit, plot, house number or date), or
names each has that the other does not (a different client, village or street). One side
saying more than the other (a phone in a signature, "sudah 3 hari") is not a conflict.

``bands`` is the sketch of a signature stored in SQL and looked up to find candidates without
reading the archive: the 16 smallest hashes of its telling items (a bottom-k MinHash sketch).
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein

__all__ = [
    "MERGE_THRESHOLD",
    "RELATED_THRESHOLD",
    "Comparison",
    "Signature",
    "apart",
    "bands",
    "compare",
    "conflicting",
    "label",
    "related",
    "same_complaint",
    "signature",
]

MERGE_THRESHOLD = 0.75
"""Dice over content words from which a message is the same complaint as another of the same
sender (with no conflicting numbers or names); justified by ``tests/dedupe_eval``."""
MIN_WORDS = 3
"""Content words a text needs before it is matched allowing differences."""
RELATED_THRESHOLD = 0.34
"""Dice over content words from which two complaints are about the same matter."""


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_ABBREVIATIONS = {
    "yg": "yang", "tdk": "tidak", "gak": "tidak", "ga": "tidak", "gk": "tidak", "nggak": "tidak",
    "ngga": "tidak", "enggak": "tidak", "tak": "tidak", "g": "tidak", "sdh": "sudah",
    "udh": "sudah", "udah": "sudah", "dah": "sudah", "sdah": "sudah", "dgn": "dengan",
    "dg": "dengan", "utk": "untuk", "untk": "untuk", "krn": "karena", "karna": "karena",
    "krna": "karena", "blm": "belum", "blum": "belum", "lom": "belum", "bgmn": "bagaimana",
    "gmn": "bagaimana", "gimana": "bagaimana", "tlg": "tolong", "tolongin": "tolong",
    "jln": "jalan", "jl": "jalan", "jaln": "jalan", "sy": "saya", "aq": "saya", "aku": "saya",
    "gw": "saya", "mgg": "minggu", "sjk": "sejak", "ha": "hektar", "klp": "kelompok",
    "org": "orang", "dr": "dari", "kpd": "kepada", "skrg": "sekarang",
    "skg": "sekarang", "skrng": "sekarang", "hr": "hari", "bln": "bulan", "thn": "tahun",
    "th": "tahun", "trs": "terus", "bs": "bisa", "hrs": "harus", "sm": "sama", "jg": "juga",
    "lg": "lagi", "sj": "saja", "aja": "saja", "tp": "tapi", "dlm": "dalam", "pd": "pada",
    "kl": "kalau", "klo": "kalau", "kalo": "kalau", "mhn": "mohon", "bpk": "bapak",
    "pdhl": "padahal", "dpt": "dapat", "msh": "masih", "sampe": "sampai", "smp": "sampai",
    "bnyk": "banyak", "byk": "banyak", "kmrn": "kemarin", "kmarin": "kemarin", "bsk": "besok",
    "sdg": "sedang", "spt": "seperti", "ttg": "tentang", "kel": "kelurahan", "kec": "kecamatan",
    "ds": "desa", "dsn": "dusun", "kab": "kabupaten", "perum": "perumahan", "gg": "gang",
    "rmh": "rumah", "jd": "jadi", "jdi": "jadi", "pls": "please", "plz": "please",
    "u": "you", "ur": "your", "govt": "government", "rd": "road", "dket": "dekat",
    "dkt": "dekat", "sblm": "sebelum", "stlh": "setelah", "sbg": "sebagai", "ttp": "tetap",
    "mslh": "masalah", "tsb": "tersebut", "dst": "dan", "dll": "dan", "bbrp": "beberapa",
    "sgr": "segera", "cpt": "cepat", "lbh": "lebih", "krg": "kurang", "kpn": "kapan",
    "knp": "kenapa", "gara2": "karena", "trims": "terima", "makasih": "terima",
    "mks": "terima", "tks": "terima", "thx": "thanks", "tq": "thanks", "ty": "thanks",
    "wrwb": "wr", "ass": "assalamualaikum", "askum": "assalamualaikum",
    "assalamu": "assalamualaikum", "alaikum": "assalamualaikum",
}  # fmt: skip
"""SMS spellings and abbreviations, written out."""

_STOP = _words(
    """
    yang dan di ke dari untuk dengan pada ini itu ada adalah akan telah sudah masih juga
    lagi saja sih dong ya yah nih deh kok lah pun kah agar supaya karena jadi oleh sejak
    sampai hingga atau tetapi tapi namun bahwa sebagai para kepada terhadap tersebut dalam
    atas bagi hal mengenai tentang perihal saya kami kita aku anda mereka dia ia beliau
    kalau jika apa bagaimana kapan kenapa mengapa sebab seperti sangat sekali banget amat
    lebih kurang cukup pernah bisa dapat harus mau ingin perlu mohon tolong segera cepat
    bantu dibantu bantuan bantuannya ditindaklanjuti tindak lanjut tindaklanjuti
    diperhatikan perhatian perhatiannya respon respons direspon terima kasih banyak thanks
    thank you regards best hormat salam assalamualaikum wr wb warahmatullahi wabarakatuh
    waalaikumsalam selamat pagi siang sore malam yth terhormat bapak ibu pak bu kak mas mbak
    min admin halo hallo hai hi hello dear sir madam mr mrs ms team tim petugas sincerely
    kindly please urgent urgently laporan lapor melapor melaporkan pengaduan aduan mengadu
    keluhan mengeluh complaint report reporting info informasi the a an is are was were be
    been being of to in on at for and or it its this that these those my our we i me us your
    he she they them has have had not no do does did with by from as but so also there here
    will would can could should about into very just still already again any some all
    sekarang kemarin tadi nanti hari besok lalu baru saat waktu hub hubungi kontak contact
    telp tel tlp telepon hp wa whatsapp nomor nomer number phone email mail tgl tanggal date
    rp rupiah idr nama name re fw fwd balas tr aw sv wg antw vs semua setiap sendiri tiap
    sama lain begitu
    gitu kayak
    """
)
"""Words that say nothing of which complaint it is (greetings, politeness, function words)."""

_STRONG_MARKERS = _words(
    """
    nama desa kelurahan kecamatan dusun kampung kp cv pt ud toko perumahan komplek kompleks
    village district subdistrict
    """
)
"""Words after which come the name of a person, a firm or a place, whatever their case."""
_WEAK_MARKERS = _words(
    """
    jalan gang gg bapak ibu pak bu sdr saudara saudari mr mrs ms pasar masjid sekolah street
    road avenue blok
    """
)
"""Words after which a capitalized word is a name (``jalan Merdeka``, not ``jalan rusak``)."""

_MONTHS = {
    **dict.fromkeys(("jan", "januari", "january"), 1),
    **dict.fromkeys(("feb", "februari", "pebruari", "february"), 2),
    **dict.fromkeys(("mar", "maret", "march"), 3),
    **dict.fromkeys(("apr", "april"), 4),
    **dict.fromkeys(("mei", "may"), 5),
    **dict.fromkeys(("jun", "juni", "june"), 6),
    **dict.fromkeys(("jul", "juli", "july"), 7),
    **dict.fromkeys(("agu", "agt", "agus", "agustus", "aug", "august"), 8),
    **dict.fromkeys(("sep", "sept", "september"), 9),
    **dict.fromkeys(("okt", "oktober", "oct", "october"), 10),
    **dict.fromkeys(("nov", "november", "nop", "nopember"), 11),
    **dict.fromkeys(("des", "desember", "dec", "december"), 12),
}
_URL = re.compile(
    r"(?:https?://|www\.)[^\s<>\"']{1,300}|(?<![\w.-])[\w-]{1,63}(?:\.[\w-]{1,63}){0,6}"
    r"\.(?:go\.id|co\.id|ac\.id|or\.id|id|com|net|org|info)\b(?:/[^\s<>\"']{0,300})?",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,6}")
_PHONE = re.compile(r"(?<![\d\w])(?:\+?62|0)[\s.-]?8[1-9](?:[\s.-]?\d){6,10}(?!\d)")
"""An Indonesian mobile number (``08xx``, ``+62 8xx``; ``0809…`` is a NIB, not a phone)."""
_DATE = re.compile(r"\b(\d{1,2})[\s.-]{0,3}([^\W\d_]{3,9})\b(?:[\s.,-]{0,3}(?:19|20)\d\d\b)?")
_NUMERIC_DATE = re.compile(r"(?<![\d/.-])\d{1,2}([/.-])\d{1,2}\1(?:(?:19|20)?\d\d|0)(?![\d/.-])")
_AMOUNT = re.compile(
    r"\b(?:rp|idr)\.?\s?(\d{1,3}(?:[.,]\d{3})+|\d+(?:[.,]\d{1,2})?)(?:\s?(rb|ribu|k|jt|juta))?\b"
    r"|\b(\d+(?:[.,]\d{1,3})?)\s?(rb|ribu|jt|juta)\b",
    re.IGNORECASE,
)
_CODE = re.compile(r"(?<![\w/-])(?=[\w/-]{0,200}\d)[^\W_]{1,30}(?:[/-][^\W_]{1,30}){1,6}\b")
"""A code of parts joined by ``/`` or ``-`` with a digit in it: a permit or plot number."""
_THOUSANDS = re.compile(r"(?<![\d.,])\d{1,3}(?:[.,]\d{3})+(?![\d]|[.,]\d)")
_SCALED = re.compile(r"(?<![\d.,])(\d+(?:[.,]\d{1,3})?)\s?(rb|ribu|k|jt|juta)\b", re.IGNORECASE)
_SCALE = {"rb": 1_000, "ribu": 1_000, "k": 1_000, "jt": 1_000_000, "juta": 1_000_000}
_REDUPLICATED = re.compile(r"\b([^\W\d_]{2,})(?:2|-\1)\b")
_AN = re.compile(r"\ba\s?\.\s?n\s?\.", re.IGNORECASE)
_TOKEN = re.compile(r"[^\W\d_]+|\d+|[.,;:!?()\n]")
"""Words, digit runs (``isdecimal`` decides: other digits are symbols), punctuation."""
_CLOSING = re.compile(
    r"^\W*(?:--|hormat\s+(?:saya|kami)|salam|wassalam\w*|(?:best\s+|kind\s+|warm\s+)?regards"
    r"|sincerely|yours\s+(?:sincerely|faithfully)|terima\s*kasih|trims|makasih|thanks?\b"
    r"|tabik|ttd\b)(?:[^\n]{0,40})$",
    re.IGNORECASE,
)
_CLOSING_LINES = 8
_SALUTATION = re.compile(
    r"^\W*(?:yth\b|kepada\b|dear\b|to\b|selamat\s+(?:pagi|siang|sore|malam)\b|assalamu|salam\b"
    r"|om\s+swastiastu|halo\b|hallo\b|hi\b|hello\b|good\s+(?:morning|afternoon|evening)\b)"
    r"[^\n]{0,60}$",
    re.IGNORECASE,
)
_NAME_LINE = re.compile(r"^(?:[A-Z][\w.'-]*\.?\s*){1,4}$")
"""A line that is only a name (``Hj. Nurhayati``, ``Budi Santoso``): a signature."""
_MAX_CHARS = 20_000
"""Only the beginning of a very long text is compared (an e-mail with a pasted document)."""
_MAX_WORDS = 300
"""Distinct content words kept of a text (the comparison of two texts grows with them)."""


@dataclass(frozen=True)
class Signature:
    """What identifies a complaint in a message's text (see the module's doc)."""

    words: tuple[str, ...]
    numbers: frozenset[str]
    names: frozenset[str]
    ids: frozenset[str] = frozenset()
    """The numbers that name one thing: codes (``640/123/DPMPTSP/2026``, ``B-12``), numbers of
    five digits or more (a NIB, a NIK) and numbers after ``No.``, ``Dusun``, ``RT``, ``Blok``…
    (a house, a hamlet, a plot) — not amounts, counts or phones."""
    amounts: frozenset[str] = frozenset()
    """Amounts of money, as numbers (``Rp 1.500.000``, ``1,5 jt`` → ``1500000``)."""
    forms: tuple[str, ...] = ()
    """Each word as first written, before stemming (``jembatan`` for ``jembat``): labels."""

    @property
    def marks(self) -> frozenset[str]:
        """What tells one complaint of a sender from another: codes, house and plot numbers,
        long numbers, amounts, dates, phones, addresses — not a count (``sudah 3 hari``)."""
        return self.ids | self.amounts | {n for n in self.numbers if ":" in n}

    @property
    def empty(self) -> bool:
        return not self.words and not self.numbers


@dataclass(frozen=True)
class Comparison:
    """How alike two signatures are, and what keeps them apart."""

    score: float
    """Dice coefficient of the content words (typos forgiven), 0 to 1."""
    overlap: float
    """Content words matched over those of the shorter side (a short report of a long one)."""
    specific: int
    """Words matched that are not the common words of every complaint (``rusak``, ``warga``)."""
    substitutions: int
    """Words each side has that the other does not (pairs of them): a different wording."""
    conflict: str | None
    """Why they cannot be one complaint, whatever the score: different numbers or names."""
    shared_names: bool
    """Both name someone or somewhere, and one of the names is the same."""
    apart: str | None
    """Why they cannot be about one matter: different codes or house numbers, or names of
    different people or places and none in common."""
    length: int
    """Content words of the shorter side."""


_GENERIC = _words(
    """
    rusak tidak belum sudah warga desa kelurahan lurah camat kecamatan dusun kampung masuk
    jalan izin lewat luar bisa minta parah hari
    minggu bulan tahun anak rumah kantor dinas urus bayar biaya uang air mati lama sekolah motor
    mobil orang masyarakat kami lapor tolong mohon segera baik layan daftar ajuk proses pakai
    kasih info kabar terus sampai dekat depan belakang pagi malam siang sore jam banyak besar
    kecil baru lagi masalah kondisi akibat sebab waktu month1 month2 month3 month4 month5 month6
    month7 month8 month9 month10 month11 month12 please help still not yet road village people
    km meter kata tunggu tanya terima jatuh sering selalu ada
    """
)
"""Words most complaints share: a match on them says little about the matter."""

_PLACES = _words(
    """
    depan belakang samping sebelah atas bawah dalam luar sekitar dekat
    """
)
"""Words that ``di`` is often written onto (``didepan`` for ``di depan``)."""


def _folded(word: str) -> str:
    if word in _MONTHS:
        return f"month{_MONTHS[word]}"
    word = _ABBREVIATIONS.get(word, word)
    if word.startswith("di") and word[2:] in _PLACES:
        return word[2:]
    return word


_SUFFIXES = ("lah", "kah", "nya", "kan", "an", "i")
_PREFIXES = (
    (re.compile(r"^(?:ber|ter|per)(?=.)"), ""),  # berlubang -> lubang, perbaikan -> baik
    (re.compile(r"^(?:di|ke|se)(?=.)"), ""),  # diminta -> minta, keluar -> luar
    (re.compile(r"^(?:meny|peny)([aiueo])"), r"s\1"),  # menyapu -> sapu
    (re.compile(r"^(?:mem|pem)([bpf])"), r"\1"),  # membayar -> bayar
    (re.compile(r"^(?:me|pe)([lmrwy])"), r"\1"),  # meminta -> minta, pelapor -> lapor
    (re.compile(r"^(?:men|pen)([cdjtzs])"), r"\1"),  # mencari -> cari, pendaftaran
    (re.compile(r"^(?:men|pen)([aiueo])"), r"t\1"),  # menulis -> tulis
    (re.compile(r"^(?:meng|peng)([aiueoghk])"), r"\1"),  # mengurus -> urus
    (re.compile(r"^(?:mem|pem)([aiueo])"), r"p\1"),  # memakai -> pakai
)
_SECOND = re.compile(r"^(?:ber|per|ter)(?=.)")
"""A second prefix under the first (``diperbaiki``, ``memperbaiki``)."""


@functools.lru_cache(maxsize=1 << 16)
def _stem(word: str) -> str:
    """A light Indonesian stem, without a dictionary: particles and possessives, one
    derivational suffix (``-kan``, ``-an``, ``-i``) and up to two prefixes (``me-`` with its
    sound changes, ``pe-``, ``ber-``, ``ter-``, ``per-``, ``di-``, ``ke-``, ``se-``) come off
    while four letters or more remain. Over-stemming is the same for every message, so it
    only ever makes two forms of one word meet (``membayar``/``bayar``, ``diminta``/``meminta``,
    ``pendaftaran``/``daftar``)."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            word = word[: -len(suffix)]
            if suffix in ("lah", "kah", "nya"):
                continue
            break
    for pattern, replacement in _PREFIXES:
        stemmed = pattern.sub(replacement, word, count=1)
        if stemmed != word:
            word = stemmed if len(stemmed) >= 4 else word
            break
    second = _SECOND.sub("", word, count=1)
    return second if len(second) >= 4 else word


def _date(match: re.Match[str]) -> str:
    month = _MONTHS.get(match.group(2).casefold())
    if month is None:
        return match.group(0)
    return f" {int(match.group(1))}/{month}/0 "


def _date_key(text: str) -> str:
    """A day and month (the year rarely tells two complaints apart, and is often left out)."""
    day, month, _ = (int(part) for part in re.split(r"[/.-]", text))
    return f"date:{day}/{month}"


def _take(pattern: re.Pattern[str], text: str, found: set[str], key: object) -> str:
    def keep(match: re.Match[str]) -> str:
        found.add(str(key(match.group(0))))  # type: ignore[operator]
        return " "

    return pattern.sub(keep, text)


def _amount_key(text: str) -> str:
    """An amount of money (``Rp 1.500.000``, ``Rp1,5 jt``, ``300rb``) as a number."""
    match = _AMOUNT.fullmatch(text)
    assert match is not None
    digits, scale = (match.group(1), match.group(2)) if match.group(1) else match.group(3, 4)
    factor = _SCALE[scale.casefold()] if scale else 1
    if re.fullmatch(r"\d{1,3}(?:[.,]\d{3})+", digits):
        return _scale(re.sub(r"[.,]", "", digits), factor)
    return _scale(digits.replace(",", "."), factor)


def _scale(number: str, factor: int) -> str:
    """``number`` (digits, perhaps a decimal point) times ``factor``, as digits; a number too
    long to be an amount is kept as written."""
    if len(number) > 18:
        return _plain(number)
    return str(round(float(number) * factor))


def _plain(digits: str) -> str:
    """A run of digits without its leading zeros (as text: no length limit)."""
    return digits.lstrip("0") or "0"


def _code(match: re.Match[str], ids: set[str]) -> str:
    """Keep a code whole among the identifiers (leading zeros aside), and its numbers as
    numbers."""
    parts = re.split(r"[/-]", match.group(0).casefold())
    ids.add("/".join(_plain(p) if p.isdecimal() else p for p in parts))
    return " " + " ".join(parts) + " "


def _scaled(match: re.Match[str]) -> str:
    """``300rb``, ``1,5 jt``, ``50k`` as plain numbers."""
    return f" {_scale(match.group(1).replace(',', '.'), _SCALE[match.group(2).casefold()])} "


def _url_key(url: str) -> str:
    url = re.sub(r"^(?:https?://)?(?:www\.)?", "", url.casefold())
    return "url:" + url.rstrip("/.,;:!?)")


def _phone_key(phone: str) -> str:
    digits = re.sub(r"\D", "", phone)
    return "tel:62" + digits[1:] if digits.startswith("0") else "tel:" + digits


_ROMAN = re.compile(r"(?=[IVX])X{0,3}(?:IX|IV|V?I{0,3})")
_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10}
_PLACE_MARKERS = _words(
    """
    desa kelurahan dusun kampung perumahan jalan gang pasar village
    """
)
_NUMBERED = _words(
    """
    dusun rt rw blok block tahap phase lantai floor kelas lorong gang jalur sektor zona kavling
    kav unit lot no nomor nomer number nr laporan report kode code tiket ticket permohonan
    application surat ref referensi registrasi registration nik nib npwp id
    """
)
"""Words after which a number names one thing (``No. 12``, ``RT 03``, ``Laporan 21``, ``NIB …``)
and a Roman numeral is a number (``Dusun II``, ``RT IV``)."""


def _roman(numeral: str) -> int:
    values = [_ROMAN_VALUES[ch] for ch in numeral]
    return sum(-v if i + 1 < len(values) and v < values[i + 1] else v for i, v in enumerate(values))


def _names_next(marker: str, token: str, taken: int, stop: bool) -> bool:
    """Whether ``token`` is (part of) the name after ``marker``: the first word after a strong
    marker, any capitalized word after a marker (a stop word only after a place: ``Pasar
    Baru``), three words at most."""
    if taken >= 3:
        return False
    if stop:
        return taken == 0 and marker in _PLACE_MARKERS and token[:1].isupper()
    return (taken == 0 and marker in _STRONG_MARKERS) or token[:1].isupper()


def _without_closing(text: str) -> str:
    """``text`` less its salutation line (``Yth. Kepala Dinas``, ``Dear Sir/Madam,``), its
    closing and what follows it (``Hormat saya,`` / ``Regards,``, then a name, a title, a
    phone) when that starts a line among the last few, and a last line that is only a name."""
    lines = [line.strip() for line in text.split("\n")]
    lines = [line for line in lines if line]
    if len(lines) > 1 and len(lines[0]) <= 80 and _SALUTATION.match(lines[0]):
        lines = lines[1:]
    for i in range(max(1, len(lines) - _CLOSING_LINES), len(lines)):
        if _CLOSING.match(lines[i]):
            lines = lines[:i]
            break
    if len(lines) > 1 and len(lines[-1]) <= 60 and _NAME_LINE.match(lines[-1]):
        lines = lines[:-1]
    return "\n".join(lines)


def signature(text: str, subject: str | None = None) -> Signature:
    """The signature of a message's text (and subject, which counts as text)."""
    text = _without_closing(text[:_MAX_CHARS])
    raw = unicodedata.normalize("NFKC", f"{(subject or '')[:500]}\n{text}")[:_MAX_CHARS]
    numbers: set[str] = set()
    raw = _take(_EMAIL, raw, numbers, lambda s: "mail:" + s.casefold())
    raw = _take(_URL, raw, numbers, _url_key)
    raw = _take(_PHONE, raw, numbers, _phone_key)
    raw = _DATE.sub(_date, raw)
    raw = _take(_NUMERIC_DATE, raw, numbers, _date_key)
    amounts: set[str] = set()
    raw = _take(_AMOUNT, raw, amounts, _amount_key)
    raw = _THOUSANDS.sub(lambda m: re.sub(r"[.,]", "", m.group(0)), raw)
    raw = _SCALED.sub(_scaled, raw)
    ids: set[str] = set()
    raw = _CODE.sub(lambda m: _code(m, ids), raw)
    raw = _REDUPLICATED.sub(r"\1", _AN.sub(" nama ", raw))
    words: list[str] = []
    names: set[str] = set()
    forms: dict[str, str] = {}  # each stem's first written form (for labels)
    marker, taken, previous = "", 0, ""
    for token in _TOKEN.findall(raw):
        if not token.isalnum():  # a name ends at a stop or a comma (``Jl.`` goes on)
            marker = marker if not taken else ""
            continue
        if token.isdecimal():
            number = _plain(token)
            numbers.add(number)
            if len(token) >= 5 or previous in _NUMBERED:
                ids.add(number)
            marker = previous = ""
            continue
        if previous in _NUMBERED and _ROMAN.fullmatch(token):
            numbers.add(str(_roman(token)))  # Dusun II, RT IV, Tahap III
            ids.add(str(_roman(token)))
            marker = previous = ""
            continue
        word = previous = _folded(token.casefold())
        if word in _STRONG_MARKERS or word in _WEAK_MARKERS:
            marker, taken = word, 0
        elif marker and _names_next(marker, token, taken, word in _STOP):
            names.add(_stem(word))
            taken += 1
        else:
            marker = ""
        if word not in _STOP and len(word) > 1:
            words.append(_stem(word))
            forms.setdefault(words[-1], word)
    if not words and not numbers and not amounts:
        # only greetings, politeness or symbols ("Halo min", "🙏🙏"): the same only when the
        # same text again
        kept = (ch for ch in raw.casefold() if not unicodedata.category(ch).startswith("P"))
        folded = " ".join("".join(kept).split())
        if folded:
            words = ["~" + hashlib.blake2b(folded.encode(), digest_size=8).hexdigest()]
    return Signature(
        tuple(dict.fromkeys(words))[:_MAX_WORDS],
        frozenset(numbers | amounts),
        frozenset(names),
        frozenset(ids),
        frozenset(amounts),
        tuple(forms.get(w, w) for w in tuple(dict.fromkeys(words))[:_MAX_WORDS]),
    )


_VOWELS = str.maketrans("", "", "aeiou")


def _close(a: str, b: str) -> bool:
    """The same word, allowing a typo (one edit from four letters, two from eight, the first
    letter right) or written without its vowels (``prh`` for ``parah``)."""
    if a[0] != b[0]:
        return False
    shorter = min(len(a), len(b))
    if shorter >= 3 and (a.translate(_VOWELS) == b or b.translate(_VOWELS) == a):
        return True
    allowed = 2 if shorter >= 8 else 1 if shorter >= 4 else 0
    return allowed > 0 and Levenshtein.distance(a, b, score_cutoff=allowed) <= allowed


def _match(a: list[str], b: list[str]) -> tuple[list[str], list[str], list[str]]:
    """The words of ``a`` matched in ``b`` (exactly, then with a typo), and what is left of
    each side."""
    rest = Counter(b)
    left_a: list[str] = []
    matched: list[str] = []
    for word in a:
        if rest[word] > 0:
            rest[word] -= 1
            matched.append(word)
        else:
            left_a.append(word)
    left_b = list(rest.elements())
    if not left_a or not left_b:
        return matched, left_a, left_b
    # a typo keeps the first letter and the length within two: only those are compared
    buckets: dict[tuple[str, int], list[str]] = {}
    for word in left_b:
        buckets.setdefault((word[0], len(word)), []).append(word)
    unmatched: list[str] = []
    for word in left_a:
        found = None
        for size in range(max(1, len(word) - 2), len(word) + 3):
            bucket = buckets.get((word[0], size), [])
            found = next((other for other in bucket if _close(word, other)), None)
            if found is not None:
                bucket.remove(found)
                break
        if found is None:
            unmatched.append(word)
        else:
            matched.append(word)
    left_b = [w for bucket in buckets.values() for w in bucket]
    return matched, unmatched, left_b


def _one_sided(a: frozenset[str], b: frozenset[str]) -> str | None:
    """``"x / y"`` when each set has a member the other lacks."""
    only_a, only_b = a - b, b - a
    return f"{sorted(only_a)[0]} / {sorted(only_b)[0]}" if only_a and only_b else None


def conflicting(a: Signature, b: Signature) -> bool:
    """A quick ``compare(a, b).conflict`` on numbers alone (before the words are matched)."""
    marks_a, marks_b = a.marks, b.marks
    return bool(marks_a - marks_b) and bool(marks_b - marks_a)


def apart(a: Signature, b: Signature) -> bool:
    """A quick ``compare(a, b).apart`` on numbers alone (before the words are matched)."""
    return bool(a.ids - b.ids) and bool(b.ids - a.ids)


def compare(a: Signature, b: Signature) -> Comparison:
    """How alike ``a`` and ``b`` are (see the module's doc)."""
    matched, left_a, left_b = _match(list(a.words), list(b.words))
    total = len(a.words) + len(b.words)
    shorter = min(len(a.words), len(b.words))
    score = 2 * len(matched) / total if total else (1.0 if a.numbers == b.numbers else 0.0)
    _, names_a, names_b = _match(sorted(a.names), sorted(b.names))
    numbers = _one_sided(a.marks, b.marks)
    conflict = f"numbers {numbers}" if numbers else None
    if conflict is None and names_a and names_b:
        conflict = f"names {names_a[0]} / {names_b[0]}"
    shared = bool(a.names and b.names) and len(names_a) < len(a.names)
    ids = _one_sided(a.ids, b.ids)
    apart = f"numbers {ids}" if ids else None
    if apart is None and names_a and names_b:
        apart = f"names {names_a[0]} / {names_b[0]}"
    return Comparison(
        score=round(score, 4),
        overlap=round(len(matched) / shorter, 4) if shorter else 0.0,
        specific=sum(1 for w in matched if w not in _GENERIC),
        substitutions=min(len(left_a), len(left_b)),
        conflict=conflict,
        shared_names=shared,
        apart=apart,
        length=shorter,
    )


def same_complaint(c: Comparison, threshold: float = MERGE_THRESHOLD) -> bool:
    """Whether a sender's two messages compared as ``c`` are one complaint: alike enough, no
    conflicting number or name, and no more than one substituted word in eight (a resend is
    the same text again, retyped; a different word in a short text is a different thing). A
    text of fewer than ``MIN_WORDS`` content words (``jalan rusak``) says too little to be
    matched loosely: it is the same complaint only with the same words."""
    if c.conflict is not None or c.score < threshold or c.substitutions > c.length // 8:
        return False
    return c.length >= MIN_WORDS or c.score == 1.0


def related(c: Comparison, threshold: float = RELATED_THRESHOLD) -> bool:
    """Whether two complaints compared as ``c`` are about one matter: nothing keeps them apart
    (different codes or house numbers, different places or people named), they share three
    words or more beyond the common words of every complaint, and they are alike enough —
    by the Dice score, or as a short report that shares half its words with a long one, or
    by five telling words in common (a place of three words and what happened there, told in
    two languages)."""
    if c.apart is not None or c.specific < 3:
        return False
    return c.score >= threshold or c.overlap >= 0.5 or c.specific >= 5


# -- the persisted sketch ----------------------------------------------------------------------

SKETCH = 16
"""How many keys of a text are stored and looked up."""


def _key(item: str) -> int:
    return int.from_bytes(hashlib.blake2b(item.encode(), digest_size=8).digest()) >> 1


def bands(sig: Signature) -> list[int]:
    """The sketch of ``sig`` that candidates are found by: the ``SKETCH`` smallest hashes
    (signed 63-bit integers) of its telling items — its words other than the common words of
    every complaint, its codes and house numbers (a bottom-k MinHash sketch). Two texts share
    a key with a probability that grows with what they share, and a short report shares one
    with a long report it is part of (its few words are all keys). Empty for an empty text."""
    items = {w for w in sig.words if w not in _GENERIC} | {"#" + i for i in sig.ids}
    return sorted(_key(item) for item in items)[:SKETCH]


def label(a: Signature, b: Signature, limit: int = 5) -> str:
    """A short label for what ``a`` and ``b`` share: names first, then their common words."""
    written = dict(zip(a.words, a.forms, strict=False))
    common = [w for w in dict.fromkeys(a.words) if w in set(b.words) and not w.startswith("~")]
    named = [w for w in common if w in a.names]
    chosen = list(dict.fromkeys(named + common))[:limit] or list(a.words[:limit])
    return " ".join(written.get(w, w) for w in chosen)
