from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from normalizer.text import clean_text, html_to_text, trim_quoted

# --------------------------------------------------------------------------- clean_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", ""),
        ("Halo", "Halo"),
        ("baris satu\r\nbaris dua\rbaris tiga", "baris satu\nbaris dua\nbaris tiga"),
        ("a\x00b\x07c\x1bd\x7fe\x9ff", "abcdef"),
        ("a\tb", "a b"),
        ("kolom\t\tkolom", "kolom kolom"),
        ("zero\u200bwidth\u200cnon\ufeffjoiner", "zerowidthnonjoiner"),
        ("\ufeffBOM di awal", "BOM di awal"),
        ("soft\u00adhyphen word\u2060joiner", "softhyphen wordjoiner"),
        ("bidi \u202eevil\u202c \u2066iso\u2069 \u200emark\u200f", "bidi evil iso mark"),
        ("Rp\u00a0150.000", "Rp 150.000"),
        (
            "narrow\u202fnbsp thin\u2009space ideo\u3000graphic",
            "narrow nbsp thin space ideo graphic",
        ),
        ("too    many     spaces", "too many spaces"),
        ("trailing   \nspaces\t\n", "trailing\nspaces"),
        ("a\n\n\n\nb", "a\n\nb"),
        ("a\n \n\t\n\u00a0\nb", "a\n\nb"),
        ("\n\n  \nisi\n\n\n", "isi"),
        ("  indented first line", "indented first line"),
        ("a\n   b", "a\n b"),
        ("line\u2028separator\u2029paragraph", "line\nseparator\nparagraph"),
        ("form\x0cfeed vertical\x0btab next\x85line", "form\nfeed vertical\ntab next\nline"),
        ("e\u0301", "\u00e9"),
        ("e\u200b\u0301", "\u00e9"),
        ("lone \ud800 surrogate", "lone \ufffd surrogate"),
    ],
)
def test_clean_text_examples(raw: str, expected: str) -> None:
    """clean_text canonicalizes line ends, controls, invisible chars, spaces and blank lines."""
    assert clean_text(raw) == expected


@pytest.mark.parametrize(
    "emoji",
    [
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # family
        "\u2764\ufe0f\u200d\U0001f525",  # heart on fire
        "\U0001f469\U0001f3fd\u200d\U0001f692",  # firefighter, medium skin tone
        "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",  # England flag
    ],
)
def test_clean_text_keeps_emoji_sequences(emoji: str) -> None:
    """Zero-width joiners and tag characters inside emoji sequences survive."""
    assert clean_text(f"Terima kasih {emoji}") == f"Terima kasih {emoji}"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a\u200db", "ab"),
        ("\u200d\U0001f468", "\U0001f468"),
        ("\U0001f468\u200d", "\U0001f468"),
        ("\U0001f468\u200d\u200d\U0001f469", "\U0001f468\u200d\U0001f469"),
        ("\U0001f468\u200d \U0001f469", "\U0001f468 \U0001f469"),
    ],
)
def test_clean_text_drops_stray_joiners(raw: str, expected: str) -> None:
    """Zero-width joiners outside emoji sequences are removed."""
    assert clean_text(raw) == expected


@settings(max_examples=500)
@given(st.text())
def test_clean_text_is_idempotent(text: str) -> None:
    """Cleaning a cleaned text changes nothing."""
    once = clean_text(text)
    assert clean_text(once) == once


@settings(max_examples=300)
@given(
    st.text(
        alphabet=st.sampled_from(
            ["a", "e", " ", "\n", "\r", "\t", "\u00a0", "\u200b", "\u200d", "\u0301", "\U0001f468"]
        )
    )
)
def test_clean_text_is_idempotent_on_tricky_alphabet(text: str) -> None:
    """Idempotence holds when spaces, joiners and combining marks are densely mixed."""
    once = clean_text(text)
    assert clean_text(once) == once


@settings(max_examples=300)
@given(st.text())
def test_clean_text_output_invariants(text: str) -> None:
    """Cleaned text is NFC, has no CR, tab, NUL, double space or trailing space, no 3 newlines."""
    out = clean_text(text)
    assert unicodedata.is_normalized("NFC", out)
    for bad in ("\r", "\t", "\x00", "\u200b", "\ufeff", "\u00a0", "  ", " \n", "\n\n\n"):
        assert bad not in out
    assert out == out.strip(" \n")


# --------------------------------------------------------------------------- html_to_text

HTML_MAIL = """<!DOCTYPE html>
<html><head><title>SECRET-TITLE</title>
<style>p { color: red } .SECRET-STYLE {}</style>
<script>var SECRET_SCRIPT = 1;</script>
<meta charset="utf-8"></head>
<body><p>Yth. Bapak&nbsp;/ Ibu,</p>
<div>Jalan di depan rumah saya<br>rusak &amp; berlubang.</div>
<ul><li>Lokasi: Jl. Sudirman</li><li>Sejak: November</li></ul>
<p>Foto: <a href="https://example.com/foto.jpg">lihat di sini</a></p>
<script type="text/javascript">alert("SECRET_SCRIPT_2")</script>
<noscript><style>.SECRET-NOSCRIPT-STYLE{}</style></noscript>
</body></html>"""


def test_html_to_text_structure() -> None:
    """Paragraphs, <br>, <div> and <li> become lines, entities are decoded, indentation dropped."""
    assert html_to_text(HTML_MAIL) == (
        "Yth. Bapak / Ibu,\n\n"
        "Jalan di depan rumah saya\n"
        "rusak & berlubang.\n"
        "* Lokasi: Jl. Sudirman\n"
        "* Sejak: November\n\n"
        "Foto: lihat di sini"
    )


@pytest.mark.parametrize(
    "html",
    [
        HTML_MAIL,
        "<style>SECRET{}</style>halo",
        "<script>SECRET()</script>halo",
        "halo<script>document.write('<p>SECRET</p>')</script>",
        "<head><title>SECRET</title></head>halo",
        "<p>halo<style>SECRET{}",
        "<p>halo<script>SECRET(",
        "<STYLE type='text/css'>SECRET{}</STYLE>halo",
        "<svg><style>SECRET{}</style></svg>halo",
    ],
)
def test_html_to_text_never_leaks_script_style_or_head(html: str) -> None:
    """Script, style and head content never appears in the text, even in broken HTML."""
    text = html_to_text(html)
    assert "SECRET" not in text
    assert "halo" in text.lower() or "Yth." in text


@pytest.mark.parametrize(
    "html",
    ["", "   ", "<!-- only a comment -->", "<html></html>", "<script>x()</script>", "<br><br>"],
)
def test_html_to_text_empty_results(html: str) -> None:
    """Empty, comment-only or content-free HTML gives an empty string."""
    assert html_to_text(html) == ""


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>unclosed <b>bold", "unclosed bold"),
        ("<div><p>a</div></p>b", "a\n\nb"),
        ("plain text & no tags", "plain text & no tags"),
        ("<p>&lt;script&gt; is text</p>", "<script> is text"),
        ("a\x00b<p>c\x01d</p>", "ab\n\ncd"),
        ("lone\ud800<p>surrogate</p>", "lone\ufffd\n\nsurrogate"),
        ("<?xml version='1.0'?><p>x</p>", "x"),
        ("<p>Harga&nbsp;&nbsp;Rp&#160;5.000 &euro;</p>", "Harga Rp 5.000 \u20ac"),
        ("<table><tr><td>Nama</td><td>Budi</td></tr></table>", "Nama Budi"),
    ],
)
def test_html_to_text_odd_input(html: str, expected: str) -> None:
    """Broken, plain or control-laden HTML converts without crashing or truncating."""
    assert html_to_text(html) == expected


@settings(max_examples=200)
@given(st.text())
def test_html_to_text_never_raises_and_is_clean(html: str) -> None:
    """Any string converts without an exception, to text clean_text leaves unchanged."""
    text = html_to_text(html)
    assert clean_text(text) == text


# --------------------------------------------------------------------------- trim_quoted

REPLY = "Jalan di depan rumah saya masih rusak, mohon segera diperbaiki."

QUOTED_REPLIES = {
    "gmail english": (
        f"{REPLY}\n\nOn Mon, 1 Dec 2026 at 10:00, Dinas PU <pu@example.go.id> wrote:\n"
        "> Terima kasih atas laporan Anda.\n> Tiket: ABC-123"
    ),
    "gmail english wrapped": (
        f"{REPLY}\n\nOn Mon, 1 Dec 2026 at 10:00, Budi Santoso <budi@example.com>\nwrote:\n"
        "> earlier text"
    ),
    "apple mail": f"{REPLY}\n\nOn Dec 1, 2026, at 10:00, Budi <budi@example.com> wrote:\n\n> q",
    "gmail without > (html converted)": (
        f"{REPLY}\n\nOn Mon, Dec 1, 2026 at 10:00 AM Dinas PU <pu@example.go.id> wrote:\n\n"
        "Terima kasih atas laporan Anda."
    ),
    "gmail indonesian": (
        f"{REPLY}\n\nPada Sen, 1 Des 2026 pukul 10.00 Dinas PU <pu@example.go.id> menulis:\n"
        "> Terima kasih"
    ),
    "gmail indonesian tanggal": (
        f"{REPLY}\n\nPada tanggal Sen, 1 Des 2026 10.00, Budi <budi@x.id> menulis:\n> halo"
    ),
    "gmail indonesian wrapped": (
        f"{REPLY}\n\nPada Sen, 1 Des 2026 pukul 10.00 Budi Santoso <\nbudi@example.com> menulis:\n"
        "> halo"
    ),
    "gmail indonesian wrapped before menulis": (
        f"{REPLY}\n\nPada Sen, 1 Des 2026 pukul 10.00, Budi Santoso <budi@example.com>\n"
        "menulis:\n\n> halo"
    ),
    "outlook english": (
        f"{REPLY}\n\n________________________________\n"
        "From: Dinas PU <pu@example.go.id>\nSent: Monday, December 1, 2026 10:00 AM\n"
        "To: Budi <budi@example.com>\nSubject: RE: Jalan rusak\n\nTerima kasih."
    ),
    "outlook english without rule": (
        f"{REPLY}\n\nFrom: Dinas PU\nSent: Monday, December 1, 2026 10:00 AM\nTo: Budi\n\nlama"
    ),
    "outlook date with address": (
        f"{REPLY}\n\nFrom: Dinas PU <pu@example.go.id>\nDate: Monday, 1 December 2026\n\nlama"
    ),
    "outlook bold fields": (
        f"{REPLY}\n\n*From:* Dinas PU <pu@example.go.id>\n*Sent:* Monday, 1 December 2026\n\nlama"
    ),
    "outlook indonesian": (
        f"{REPLY}\n\n________________________________\n"
        "Dari: Dinas PU <pu@example.go.id>\nDikirim: Senin, 01 Desember 2026 10.00\n"
        "Kepada: Budi <budi@example.com>\nPerihal: RE: Jalan rusak\n\nTerima kasih."
    ),
    "outlook indonesian tanggal": (
        f"{REPLY}\n\nDari: Dinas PU <pu@example.go.id>\nKepada: Budi\n"
        "Tanggal: Senin, 01 Desember 2026\nSubjek: Jalan\n\nlama"
    ),
    "original message": f"{REPLY}\n\n-----Original Message-----\nFrom: x\n\nlama",
    "pesan asli": f"{REPLY}\n\n----- Pesan Asli -----\nDari: x\n\nlama",
    "forwarded": (
        f"{REPLY}\n\n---------- Forwarded message ---------\nFrom: Warga <w@example.com>\n\nlama"
    ),
    "pesan terusan": f"{REPLY}\n\n---------- Pesan terusan ---------\nDari: Warga\n\nlama",
    "apple forward": f"{REPLY}\n\nBegin forwarded message:\n\nFrom: Warga\n\nlama",
    "trailing quote": f"{REPLY}\n\n> teks lama\n> teks lama lagi",
    "trailing quote with blank lines": f"{REPLY}\n\n> teks lama\n>\n\n> lagi",
    "trailing quote with bare attribution": f"{REPLY}\n\nDinas PU wrote:\n> teks lama",
}


@pytest.mark.parametrize("message", QUOTED_REPLIES.values(), ids=QUOTED_REPLIES.keys())
def test_trim_quoted_cuts_quoted_replies(message: str) -> None:
    """Quoted replies and forwarded originals are cut, leaving only the sender's new text."""
    assert trim_quoted(message) == (REPLY, True)


SIGNED = {
    "sig delimiter": f"{REPLY}\n\n--\nBudi Santoso\nRT 03 / RW 05\n0812-3456-7890",
    "sig delimiter with space": f"{REPLY}\n-- \nBudi",
    "iphone": f"{REPLY}\n\nSent from my iPhone",
    "android": f"{REPLY}\n\nSent from my Android",
    "samsung": f"{REPLY}\n\nSent from my Samsung Galaxy smartphone.",
    "iphone id": f"{REPLY}\n\nDikirim dari iPhone saya",
    "ponsel": f"{REPLY}\n\nDikirim dari ponsel cerdas Samsung Galaxy saya.",
    "perangkat": f"{REPLY}\n\nDikirim dari perangkat Huawei saya",
    "yahoo": f"{REPLY}\n\nSent from Yahoo Mail on Android",
    "outlook android": f"{REPLY}\n\nGet Outlook for Android",
    "outlook ios link": f"{REPLY}\n\nGet Outlook for iOS<https://aka.ms/o0ukef>",
    "outlook id": f"{REPLY}\n\nDapatkan Outlook untuk Android",
    "two footers": f"{REPLY}\n\nSent from my iPhone\n\nGet Outlook for iOS",
    "footer then quote": (
        f"{REPLY}\n\nSent from my iPhone\n\nOn 1 Dec 2026, at 10:00, Dinas PU wrote:\n\n> q"
    ),
    "signature then quote": (
        f"{REPLY}\n\n--\nBudi\n\nOn Mon, 1 Dec 2026 at 10:00, Dinas PU <pu@x.go.id> wrote:\n> q"
    ),
    "footer then signature": f"{REPLY}\n\nDikirim dari iPhone saya\n--\nBudi",
}


@pytest.mark.parametrize("message", SIGNED.values(), ids=SIGNED.keys())
def test_trim_quoted_cuts_signatures_and_footers(message: str) -> None:
    """Signatures after a "--" line and mobile-client footers at the end are cut."""
    assert trim_quoted(message) == (REPLY, True)


UNTOUCHED = {
    "plain": REPLY,
    "interleaved": (
        "Jawaban saya di bawah.\n> Di mana lokasinya?\nJl. Sudirman 5.\n> Sejak kapan?\nMaret"
    ),
    "interleaved after attribution": (
        "Lihat jawaban saya.\n\nOn Mon, 1 Dec 2026 at 10:00, Dinas PU <pu@x.go.id> wrote:\n"
        "> Di mana lokasinya?\nJl. Sudirman 5.\n> Sejak kapan?\nMaret"
    ),
    "letter headings": (
        "Yth. Bapak/Ibu,\nDari: Budi\nTanggal: 1 Desember 2026\nPerihal: Jalan rusak\n\n"
        "Jalan di depan rumah saya rusak."
    ),
    "memo headings": "Kepada: Dinas PU\nDari: Ketua RT 03\nTanggal: 1/12/2026\n\nMohon bantuan.",
    "from without date": "Halo\nFrom: Budi\nTo: Dinas\n\nJalan rusak.",
    "on without date": "Halo.\nOn the form, the officer wrote:\nJalan rusak di depan rumah.",
    "pada without date": "Pada saat itu petugas menulis:\nakan segera diperbaiki.",
    "dashes in text": "Keluhan:\n-- jalan rusak\n-- lampu mati",
    "long text after --": REPLY + "\n--\n" + "\n".join(f"baris {i}" for i in range(11)),
    "footer phrase mid text": "Sent from my iPhone\nJalan rusak di depan rumah.",
    "quote mid text": "Petugas bilang:\n> besok\nTapi tidak datang.",
}


@pytest.mark.parametrize("message", UNTOUCHED.values(), ids=UNTOUCHED.keys())
def test_trim_quoted_leaves_own_words_alone(message: str) -> None:
    """Interleaved replies, letter headings and look-alike phrases are not cut."""
    assert trim_quoted(message) == (message, False)


ONLY_QUOTED = {
    "only attribution and quote": "On Mon, 1 Dec 2026 at 10:00, Budi <b@x.id> wrote:\n> teks",
    "only quote": "> teks lama\n> teks lama lagi",
    "bare forward": "---------- Forwarded message ---------\nFrom: Warga <w@x.id>\n\nJalan rusak.",
    "bare outlook block": "From: Warga <w@x.id>\nSent: Monday\nSubject: Jalan\n\nJalan rusak.",
    "only signature": "--\nBudi Santoso",
    "only footer": "Sent from my iPhone",
    "empty": "",
}


@pytest.mark.parametrize("message", ONLY_QUOTED.values(), ids=ONLY_QUOTED.keys())
def test_trim_quoted_never_returns_an_empty_body(message: str) -> None:
    """A message that is only a quote, a forward or a signature is returned unchanged."""
    assert trim_quoted(message) == (message, False)


def test_trim_quoted_cuts_at_the_first_marker() -> None:
    """With several markers the earliest wins, so nested older quotes go too."""
    message = (
        f"{REPLY}\n\n-----Original Message-----\nFrom: Dinas\n\nteks\n\n"
        "On Mon, 1 Dec 2026 at 10:00, Budi <b@x.id> wrote:\n> lebih lama"
    )
    assert trim_quoted(message) == (REPLY, True)


def test_trim_quoted_keeps_text_before_trailing_quote_of_interleaved_reply() -> None:
    """Only the trailing ">" block of an interleaved reply is cut, the answers above stay."""
    message = "> Di mana?\nJl. Sudirman.\n> Sejak kapan?\nMaret.\n\n> Terima kasih."
    assert trim_quoted(message) == ("> Di mana?\nJl. Sudirman.\n> Sejak kapan?\nMaret.", True)


@settings(max_examples=300)
@given(st.text().map(clean_text))
def test_trim_quoted_returns_a_prefix(text: str) -> None:
    """trim_quoted never raises, returns a non-empty prefix when it cuts, else the input."""
    body, cut = trim_quoted(text)
    if cut:
        assert body.strip()
        assert text.startswith(body)
        assert len(body) < len(text)
    else:
        assert body == text
