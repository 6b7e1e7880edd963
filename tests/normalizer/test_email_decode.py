"""E-mail decoding: recorded fixtures in ``tests/testdata/email/`` in, InboundMessage out."""

from __future__ import annotations

import contextlib
import email.policy
import hashlib
from datetime import UTC, datetime
from email.policy import compat32
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from normalizer.email import (
    _checked_payload,
    _decode_with,
    decode_email,
    decode_text,
    email_external_id,
    safe_filename,
)
from omnichannel.errors import DecodeError
from omnichannel.schema import InboundMessage

FIXTURES = Path(__file__).resolve().parent.parent / "testdata" / "email"
RECEIVED = datetime(2026, 11, 30, 2, 15, tzinfo=UTC)
CONNECTOR = "imap-pengaduan"


def _raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _decode(name: str) -> InboundMessage:
    payload = _raw(name)
    return decode_email(
        payload, connector=CONNECTOR, external_id=email_external_id(payload), received_at=RECEIVED
    )


def _mail(headers: str, body: str = "Isi pengaduan.\n") -> bytes:
    """A small message: the given header lines after a From, then the body."""
    return f"From: Warga <warga@example.id>\n{headers}\n\n{body}".encode()


def _decode_bytes(payload: bytes) -> InboundMessage:
    return decode_email(payload, connector=CONNECTOR, external_id="test-1")


# --- fixtures, field by field -----------------------------------------------------------------


def test_plain_utf8_fields() -> None:
    """A plain UTF-8 mail yields sender, subject, UTC sent_at, text and headers of interest."""
    message = _decode("plain-utf8.eml")
    assert message.channel == "email"
    assert message.connector == CONNECTOR
    assert message.received_at == RECEIVED
    assert message.external_id.startswith("<CAB7x9PBG0001@mail.example.com>|sha256:")
    assert message.sender.name == "Budi Santoso"
    assert message.sender.email == "budi.santoso@example.com"
    assert message.subject == "Permohonan PBG sudah 3 bulan belum selesai"
    assert message.sent_at == datetime(2026, 11, 2, 0, 14, 22, tzinfo=UTC)
    assert message.text is not None
    assert message.text.startswith("Selamat pagi Bapak/Ibu,\n\nSaya mengajukan")
    assert '"verifikasi dokumen" \u2014 sudah' in message.text
    assert message.html is None
    assert message.attachments == []
    assert message.flags == {}
    assert message.in_reply_to is None
    assert message.references == []
    assert message.headers == {
        "message-id": "<CAB7x9PBG0001@mail.example.com>",
        "return-path": "<budi.santoso@example.com>",
        "content-type": 'text/plain; charset="UTF-8"',
        "x-mailer": "Thunderbird 128.4",
    }


def test_quoted_printable_latin1_is_read_as_windows_1252() -> None:
    """A body declared iso-8859-1 keeps its euro sign and smart quotes (windows-1252 bytes)."""
    message = _decode("qp-latin1-smart-quotes.eml")
    assert message.text is not None
    assert "\u201cfacilitation fee\u201d of \u20ac500" in message.text
    assert "wasn\u2019t possible" in message.text
    assert message.sender.email == "m.weber@example.com"
    assert message.sent_at == datetime(2026, 11, 4, 9, 2, 11, tzinfo=UTC)
    assert message.headers["x-mailer"] == "Microsoft Outlook 16.0"


def test_base64_utf8_with_crlf_line_endings() -> None:
    """A base64 UTF-8 body sent with CRLF decodes to text with LF line endings."""
    message = _decode("base64-utf8.eml")
    assert message.text is not None
    assert "\r" not in message.text
    assert "klik \u201cTerbitkan NIB\u201d muncul pesan" in message.text
    assert message.text.endswith("Ratna Dewi \u2013 Warung Makan Sop Saudara Bu Ratna\n")
    assert message.subject == "NIB tidak bisa terbit di OSS"
    assert message.sent_at == datetime(2026, 11, 5, 5, 45, tzinfo=UTC)


def test_multipart_alternative_prefers_plain_and_keeps_html() -> None:
    """The text/plain alternative is the text; the HTML alternative is kept as data."""
    message = _decode("multipart-alternative.eml")
    assert message.text is not None
    assert message.text.startswith("Selamat siang,\n\nSaya datang ke loket DPMPTSP")
    assert "<b>" not in message.text
    assert message.html is not None
    assert "<b>B-027</b>" in message.html
    assert message.attachments == []
    assert message.headers["message-id"] == "<CAF=alt0006@mail.example.com>"


def test_html_only_is_converted_without_scripts_or_styles() -> None:
    """HTML-only mail becomes text without script or style content; the HTML is kept as data."""
    message = _decode("html-only-script.eml")
    assert message.text is not None
    assert "\u201cUkuran berkas melebihi batas\u201d" in message.text
    assert "Waktu: 7 November 2026 pukul 08.30 WITA" in message.text
    for hidden in ("trackingPixel", "font-family", "jangan tampil", "<p>"):
        assert hidden not in message.text
    assert message.html is not None
    assert "<script>" in message.html
    assert message.sender.name == "CV Maju Bersama"


def test_encoded_words_in_subject_and_from_name() -> None:
    """RFC 2047 words in Subject and in a From name with a comma are decoded intact."""
    message = _decode("encoded-words.eml")
    assert message.subject == "Pungutan liar \u2013 izin usaha mikro di Kecamatan Bantimurung"
    assert message.sender.name == "Hj. Sitti Rahmah, S.E."
    assert message.sender.email == "sitti.rahmah@example.com"


def test_attachments_with_rfc2231_path_and_encoded_filenames() -> None:
    """Attachments carry decoded, path-free filenames, type, size, sha256 and content."""
    message = _decode("attachment-rfc2231.eml")
    assert message.text is not None
    assert message.text.startswith("Bersama ini saya lampirkan")
    names = [(a.filename, a.content_type) for a in message.attachments]
    assert names == [
        ("Surat Permohonan PBG \u2013 Revisi.pdf", "application/pdf"),
        ("kwitansi pembayaran.jpg", "image/jpeg"),
        ("Denah lokasi \u2013 Bantimurung.png", "image/png"),
    ]
    for attachment in message.attachments:
        assert attachment.content is not None
        assert attachment.size == len(attachment.content)
        assert attachment.sha256 == hashlib.sha256(attachment.content).hexdigest()
    assert message.attachments[0].content is not None
    assert message.attachments[0].content.startswith(b"%PDF-1.4")
    assert message.attachments[1].content == bytes.fromhex(
        "ffd8ffe000104a46494600010100000100010000ffd9"
    )


def test_reply_to_is_the_sender() -> None:
    """When Reply-To is present the sender is the Reply-To mailbox, not the relaying From."""
    message = _decode("reply-to.eml")
    assert message.sender.name == "Nurul Hidayah"
    assert message.sender.email == "nurul.hidayah@example.com"


def test_no_message_id() -> None:
    """Without a Message-ID the key is the content hash and no message-id header is stored."""
    message = _decode("no-message-id.eml")
    assert message.external_id.startswith("sha256:")
    assert "message-id" not in message.headers
    assert message.sender.email == "warga.turikale@example.id"
    assert message.sender.name is None


def test_no_date() -> None:
    """A mail without Date has no sent_at and is not flagged."""
    message = _decode("no-date.eml")
    assert message.sent_at is None
    assert "date_unparsed" not in message.flags


def test_date_without_zone_and_unknown_charset() -> None:
    """A "-0000" Date is flagged, not guessed; an unknown charset decodes as UTF-8 with U+FFFD."""
    message = _decode("date-unknown-zone.eml")
    assert message.sent_at is None
    assert message.flags == {"date_unparsed": True}
    assert message.text is not None
    assert message.text.endswith("berbeda-beda.\ufffd\n")


def test_auto_reply_in_indonesian() -> None:
    """An out-of-office "Balasan otomatis" is flagged as auto-reply and keeps its thread ids."""
    message = _decode("auto-reply-balasan.eml")
    assert message.flags == {"auto_reply": True}
    assert message.in_reply_to == "<ack-ADU-2026-000123@dpmptsp.example.go.id>"
    assert message.references == ["<ack-ADU-2026-000123@dpmptsp.example.go.id>"]
    assert message.headers["auto-submitted"] == "auto-replied"
    assert message.headers["x-auto-response-suppress"] == "All"


def test_delivery_status_report_is_a_bounce() -> None:
    """A multipart/report DSN is flagged as bounce; its human-readable part is the text."""
    message = _decode("dsn-report.eml")
    assert message.flags["bounce"] is True
    assert message.sender.email == "mailer-daemon@mx.dpmptsp.example.go.id"
    assert message.text is not None
    assert "550 5.1.1 User unknown" in message.text
    assert message.attachments == []
    assert message.headers["return-path"] == "<>"
    assert message.headers["content-type"].startswith("multipart/report")


def test_reply_in_thread_keeps_ids_and_quoted_text() -> None:
    """In-Reply-To and References are parsed; quoted text is left for the normalizer to trim."""
    message = _decode("reply-thread.eml")
    assert message.in_reply_to == "<ack-ADU-2026-000101@dpmptsp.example.go.id>"
    assert message.references == [
        "<CAB7x9PBG0001@mail.example.com>",
        "<ack-ADU-2026-000101@dpmptsp.example.go.id>",
    ]
    assert message.text is not None
    assert "menulis:\n> Yth. Bapak Budi Santoso," in message.text
    assert message.flags == {}


def test_raw_8bit_headers_and_body_without_charset() -> None:
    """Raw windows-1252 header bytes and a body with no charset are read as windows-1252."""
    message = _decode("raw-8bit-no-charset.eml")
    assert message.subject == "Caf\u00e9 permit \u2013 still waiting"
    assert message.sender.name == "Jos\u00e9 Pereira"
    assert message.text is not None
    assert "my caf\u00e9 in Maros" in message.text
    assert "\u201ca few days\u201d" in message.text


def test_broken_reply_to_falls_back_to_compat32() -> None:
    """A Reply-To the modern policy cannot parse is read with compat32 and the fallback flagged."""
    message = _decode("broken-reply-to.eml")
    assert message.flags == {"parser_fallback": True}
    assert message.sender.name == "Darwis Tahir"
    assert message.sender.email == "darwis.tahir@example.id"
    assert message.subject == "Izin usaha penggilingan padi"


_MODERN_POLICY_FIXTURES = sorted(
    path.name for path in FIXTURES.glob("*.eml") if path.name != "broken-reply-to.eml"
)


@pytest.mark.parametrize("name", _MODERN_POLICY_FIXTURES)
def test_compat32_fallback_agrees_with_default_policy(name: str) -> None:
    """Both parser policies decode every fixture to the same message (apart from the flag)."""
    data = _checked_payload(_raw(name))
    modern = _decode_with(data, email.policy.default, CONNECTOR, "x", RECEIVED)
    legacy = _decode_with(data, compat32, CONNECTOR, "x", RECEIVED)
    assert legacy.flags.pop("parser_fallback") is True
    assert legacy == modern


# --- flags ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    [
        "Auto: Permohonan PBG",
        "Automatic reply: NIB",
        "Out of Office: back on Monday",
        "BALASAN OTOMATIS: pengaduan",
        "Pesan otomatis - cuti",
        "Saya sedang di luar kantor",
    ],
)
def test_auto_reply_subjects(subject: str) -> None:
    """Out-of-office subjects in English and Indonesian flag an auto-reply."""
    message = _decode_bytes(_mail(f"Subject: {subject}"))
    assert message.flags.get("auto_reply") is True


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ("Auto-Submitted: auto-replied", True),
        ("Auto-Submitted: auto-generated; owner-email=x@example.id", True),
        ("Auto-Submitted: no", False),
        ("Auto-Submitted: No ", False),
        ("X-Autoreply: yes", True),
        ("X-Autorespond: 1", True),
        ("Precedence: bulk", True),
        ("Precedence: JUNK", True),
        ("Precedence: list", True),
        ("Precedence: auto_reply", True),
        ("Precedence: first-class", False),
        ("Subject: Automatisch antwoord? no, a real question about PBG", False),
    ],
)
def test_auto_reply_headers(headers: str, expected: bool) -> None:
    """Auto-Submitted (unless "no"), X-Autoreply/X-Autorespond and bulk Precedence flag it."""
    message = _decode_bytes(_mail(headers))
    assert bool(message.flags.get("auto_reply")) is expected


@pytest.mark.parametrize(
    "sender",
    [
        "MAILER-DAEMON@mx.example.com",
        "postmaster@example.go.id",
        "Mailer-Daemon <mailer-daemon@x.example.id>",
    ],
)
def test_bounce_by_sender(sender: str) -> None:
    """Mail from mailer-daemon@ or postmaster@ is flagged as a bounce."""
    payload = f"From: {sender}\nSubject: Delivery failure\n\nUndeliverable.\n".encode()
    assert _decode_bytes(payload).flags.get("bounce") is True


def test_ordinary_mail_is_not_a_bounce() -> None:
    """A citizen's mail carries no bounce or auto-reply flag."""
    assert _decode_bytes(_mail("Subject: Izin usaha")).flags == {}


# --- edge cases -------------------------------------------------------------------------------


def test_nul_bytes_are_removed_from_text() -> None:
    """NUL bytes in a body do not reach the text."""
    message = _decode_bytes(_mail("Subject: NUL", "Izin\x00 usaha\x00\n"))
    assert message.text == "Izin usaha\n"


def test_message_without_body_or_attachments_still_decodes() -> None:
    """Headers only: decoded, with no content (the pipeline decides it is empty)."""
    message = _decode_bytes(b"From: warga@example.id\nSubject: (kosong)\n\n")
    assert not message.has_content()
    assert message.subject == "(kosong)"


def test_leading_blank_lines_and_mbox_from_line_are_tolerated() -> None:
    """A stored mail with blank lines or an mbox "From " line before the headers still decodes."""
    message = _decode_bytes(
        b"\r\n\nFrom warga@example.id Mon Nov  2 08:00:00 2026\n" + _mail("Subject: x")
    )
    assert message.sender.email == "warga@example.id"
    assert message.text == "Isi pengaduan.\n"


def test_attachment_disposition_without_filename() -> None:
    """A part marked as attachment without a filename is kept, with filename None."""
    payload = (
        b"From: warga@example.id\nSubject: Lampiran\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="b"\n\n'
        b"--b\nContent-Type: text/plain\n\nLihat lampiran.\n"
        b"--b\nContent-Type: application/octet-stream\nContent-Disposition: attachment\n\n"
        b"data\n--b--\n"
    )
    message = _decode_bytes(payload)
    assert message.text == "Lihat lampiran."
    assert [(a.filename, a.content_type) for a in message.attachments] == [
        (None, "application/octet-stream")
    ]


def test_too_long_external_id_is_a_decode_error() -> None:
    """A schema violation is reported as DecodeError naming the field, not a pydantic error."""
    with pytest.raises(DecodeError, match="external_id"):
        decode_email(_mail("Subject: x"), connector=CONNECTOR, external_id="x" * 513)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b" \r\n\r\n",
        bytes.fromhex("89504e470d0a1a0a0000000d49484452"),
        bytes(range(256)),
        b"Dear sir, this is not an e-mail at all.\n",
        b"Dear sir: please help with my PBG.\n",
        b"X-Unknown: 1\nX-Other: 2\n\nno mail headers\n",
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
    ],
)
def test_garbage_is_a_decode_error(payload: bytes) -> None:
    """Empty payloads, binary files and text without mail headers raise DecodeError."""
    with pytest.raises(DecodeError):
        _decode_bytes(payload)


@settings(max_examples=300, deadline=None)
@given(st.binary())
def test_decode_email_raises_only_decode_error(payload: bytes) -> None:
    """Whatever the bytes, decode_email returns a message or raises DecodeError."""
    with contextlib.suppress(DecodeError):
        _decode_bytes(payload)


_HEADER_NAMES = st.sampled_from(
    [
        "From",
        "Reply-To",
        "Subject",
        "Date",
        "Message-ID",
        "In-Reply-To",
        "References",
        "Content-Type",
        "Content-Disposition",
        "Content-Transfer-Encoding",
        "Auto-Submitted",
    ]
)
_HEADER_VALUES = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=40).map(
    lambda value: value.encode("utf-8", "surrogateescape")
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_HEADER_NAMES, _HEADER_VALUES), max_size=8),
    st.binary(max_size=200),
)
def test_decode_email_survives_hostile_headers(
    headers: list[tuple[str, bytes]], body: bytes
) -> None:
    """Mail-shaped payloads with arbitrary header values never raise anything but DecodeError."""
    lines = [b"From: warga@example.id"] + [name.encode() + b": " + value for name, value in headers]
    payload = b"\n".join(lines) + b"\n\n" + body
    try:
        message = _decode_bytes(payload)
    except DecodeError:
        return
    assert "\x00" not in (message.text or "")


# --- the external id --------------------------------------------------------------------------


def test_external_id_is_message_id_and_hash_of_normalized_bytes() -> None:
    """The key is the Message-ID plus the sha256 of the payload with LF line endings."""
    payload = _raw("plain-utf8.eml")
    digest = hashlib.sha256(payload.replace(b"\r\n", b"\n")).hexdigest()
    assert email_external_id(payload) == f"<CAB7x9PBG0001@mail.example.com>|sha256:{digest}"


def test_external_id_ignores_line_endings() -> None:
    """The same mail saved with LF, CRLF or CR line endings gets the same key."""
    lf = _raw("plain-utf8.eml").replace(b"\r\n", b"\n")
    crlf = lf.replace(b"\n", b"\r\n")
    cr = lf.replace(b"\n", b"\r")
    assert email_external_id(lf) == email_external_id(crlf) == email_external_id(cr)
    assert email_external_id(_raw("base64-utf8.eml")).startswith("<a1b2c3d4-oss-0005@example.id>|")


def test_reused_message_id_with_other_content_gets_another_key() -> None:
    """A sender reusing a Message-ID for a different mail does not collide."""
    first = _mail("Message-ID: <same@example.id>", "Pengaduan pertama.\n")
    second = _mail("Message-ID: <same@example.id>", "Pengaduan kedua.\n")
    assert email_external_id(first) != email_external_id(second)
    assert email_external_id(first).startswith("<same@example.id>|sha256:")


def test_external_id_without_message_id_is_the_hash() -> None:
    """Without a Message-ID the key is ``sha256:<hex>`` of the normalized payload."""
    payload = _raw("no-message-id.eml")
    normalized = payload.replace(b"\r\n", b"\n")
    assert email_external_id(payload) == "sha256:" + hashlib.sha256(normalized).hexdigest()


def test_external_id_truncates_an_absurd_message_id() -> None:
    """An enormous Message-ID is cut so that the key stays within 512 characters."""
    key = email_external_id(_mail("Message-ID: <" + "a" * 5000 + "@example.id>"))
    assert len(key) <= 512
    assert key.startswith("<aaaa")
    assert "|sha256:" in key


def test_external_id_reads_a_folded_message_id() -> None:
    """A Message-ID folded onto the next line is still found."""
    key = email_external_id(_mail("Message-ID:\n <folded-1@example.id>"))
    assert key.startswith("<folded-1@example.id>|sha256:")


@settings(max_examples=500, deadline=None)
@given(st.binary())
def test_external_id_never_raises(payload: bytes) -> None:
    """Any bytes at all get a non-empty key of at most 512 characters."""
    key = email_external_id(payload)
    assert 0 < len(key) <= 512
    assert "sha256:" in key


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_external_id_never_raises_for_message_id_headers(value: bytes) -> None:
    """Arbitrary bytes inside a Message-ID header still give a valid key."""
    key = email_external_id(b"Message-ID: " + value + b"\nFrom: a@example.id\n\nx")
    assert 0 < len(key) <= 512


# --- helpers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "charset", "expected"),
    [
        (b"\x80 \x93kutip\x94", "iso-8859-1", "\u20ac \u201ckutip\u201d"),
        (b"\x93hi\x94", "us-ascii", "\u201chi\u201d"),
        (b"caf\xe9", "latin1", "caf\u00e9"),
        (b"caf\xc3\xa9", None, "caf\u00e9"),
        (b"caf\xe9", None, "caf\u00e9"),
        (b"caf\xe9", "x-does-not-exist", "caf\ufffd"),
        (b"abc", "base64", "abc"),
        (b"\xe6\x97\xa5", "utf-8", "\u65e5"),
        (b"\xa4", "iso-8859-15", "\u20ac"),
    ],
)
def test_decode_text_charset_rules(raw: bytes, charset: str | None, expected: str) -> None:
    """Latin-1 and ASCII read as windows-1252, no charset tries UTF-8, unknown uses UTF-8."""
    assert decode_text(raw, charset) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("surat.pdf", "surat.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\Budi\\foto ktp.jpg", "foto ktp.jpg"),
        ("kwi\x00tan\x07si.pdf", "kwitansi.pdf"),
        ("invoice\u202egpj.exe", "invoicegpj.exe"),
        ("  spasi.txt  ", "spasi.txt"),
        ("..", None),
        ("dir/", None),
        ("\x01\x02", None),
    ],
)
def test_safe_filename(name: str, expected: str | None) -> None:
    """Filenames lose directories, control and bidi characters; nothing left means None."""
    assert safe_filename(name) == expected


def test_safe_filename_keeps_extension_when_truncating() -> None:
    """An overlong filename is cut to 255 characters keeping its extension."""
    result = safe_filename("a" * 400 + ".pdf")
    assert result is not None
    assert len(result) == 255
    assert result.endswith(".pdf")
