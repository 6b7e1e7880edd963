"""E-mail decoding: recorded fixtures in ``tests/testdata/email/`` in, InboundMessage out."""

from __future__ import annotations

import base64
import contextlib
import email.policy
import hashlib
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.policy import compat32
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from normalizer.email import (
    _checked_payload,
    _decode_with,
    decode_email,
    decode_header_text,
    decode_text,
    email_external_id,
    safe_filename,
    sniff_content_type,
    strip_reply_prefixes,
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
    """A "-0000" Date is flagged, not guessed; an unknown charset that is not UTF-8 is cp1252."""
    message = _decode("date-unknown-zone.eml")
    assert message.sent_at is None
    assert message.flags == {"date_unparsed": True}
    assert message.text is not None
    assert message.text.endswith("berbeda-beda.\u00ff\n")


def test_auto_reply_in_indonesian() -> None:
    """An out-of-office "Balasan otomatis" is flagged as auto-reply and keeps its thread ids."""
    message = _decode("auto-reply-balasan.eml")
    assert message.flags == {"auto_reply": True, "auto_reply_reason": "header:auto-submitted"}
    assert message.in_reply_to == "<ack-ADU-2026-000123@dpmptsp.example.go.id>"
    assert message.references == ["<ack-ADU-2026-000123@dpmptsp.example.go.id>"]
    assert message.headers["auto-submitted"] == "auto-replied"
    assert message.headers["x-auto-response-suppress"] == "All"


def test_delivery_status_report_is_a_bounce() -> None:
    """A DSN is a bounce threaded to the bounced message; its report parts are attachments."""
    message = _decode("dsn-rfc822-headers.eml")
    assert message.flags == {
        "auto_reply": True,
        "auto_reply_reason": "header:auto-submitted",
        "bounce": True,
        "bounced_message_id": "<ack-ADU-2026-000140@dpmptsp.example.go.id>",
        "dsn_action": "failed",
        "dsn_recipient": "salah.ketik@example.com",
    }
    assert message.in_reply_to == "<ack-ADU-2026-000140@dpmptsp.example.go.id>"
    assert message.sender.email == "mailer-daemon@mx.dpmptsp.example.go.id"
    assert message.text is not None
    assert "550 5.1.1 User unknown" in message.text
    assert [(a.filename, a.content_type) for a in message.attachments] == [
        ("attachment-1.txt", "message/delivery-status"),
        ("attachment-2.txt", "text/rfc822-headers"),
    ]
    assert message.headers["return-path"] == "<>"
    assert message.headers["content-type"].startswith("multipart/report")


def test_dsn_returning_the_whole_message() -> None:
    """The returned message is one .eml attachment holding its exact bytes; its text stays out."""
    payload = _raw("dsn-message-rfc822.eml")
    message = _decode("dsn-message-rfc822.eml")
    assert message.in_reply_to == "<ack-ADU-2026-000152@dpmptsp.example.go.id>"
    returned = message.attachments[1]
    assert returned.content_type == "message/rfc822"
    assert returned.filename == "[ADU-2026-000152] Pengaduan Anda telah kami terima.eml"
    assert returned.content is not None
    assert returned.content.startswith(b"Return-Path: <pengaduan@dpmptsp.example.go.id>\n")
    assert returned.content in payload
    assert "ADU-2026-000152." not in (message.text or "")


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


def test_broken_reply_to_is_read_from_the_raw_header() -> None:
    """A Reply-To the modern policy cannot parse is split from the raw text, no fallback needed."""
    message = _decode("broken-reply-to.eml")
    assert message.flags == {}
    assert message.sender.name == "Darwis Tahir"
    assert message.sender.email == "darwis.tahir@example.id"
    assert message.subject == "Izin usaha penggilingan padi"


def test_parameter_the_modern_policy_chokes_on_is_read() -> None:
    """A NUL in an RFC 2231 charset (which trips the modern policy) decodes with compat32."""
    payload = _mail("Subject: Izin\nContent-Type: text/plain; charset*=x\x00y''utf-8", "Isi.\n")
    message = _decode_bytes(payload)
    assert message.flags == {}
    assert message.text == "Isi.\n"


def test_compat32_failure_falls_back_to_the_modern_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the fast compat32 parse fails, the modern policy decodes it and says so."""
    import normalizer.email as module

    real = module._decode_with

    def flaky(data: bytes, policy: Any, *args: Any) -> InboundMessage:
        if policy is compat32:
            raise ValueError("compat32 bug")
        return real(data, policy, *args)

    monkeypatch.setattr(module, "_decode_with", flaky)
    message = _decode_bytes(_mail("Subject: Izin"))
    assert message.flags == {"parser_fallback": True} and message.subject == "Izin"


_ALL_FIXTURES = sorted(path.name for path in FIXTURES.glob("*.eml"))


@pytest.mark.parametrize("name", _ALL_FIXTURES)
def test_compat32_fallback_agrees_with_default_policy(name: str) -> None:
    """Both parser policies decode every fixture to the same message (apart from the flag)."""
    data = _checked_payload(_raw(name))
    modern = _decode_with(data, email.policy.default, CONNECTOR, "x", RECEIVED)
    legacy = _decode_with(data, compat32, CONNECTOR, "x", RECEIVED)
    assert modern.flags.pop("parser_fallback") is True
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
        "Re: Saya sedang di luar kantor",
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
        ("attachment-1.bin", "application/octet-stream")
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


_MIME_FRAGMENTS = st.sampled_from(
    [
        b"--b\n",
        b"--b--\n",
        b"\n",
        b"Content-Type: text/plain; charset=utf-7\n",
        b"Content-Type: text/html\n",
        b"Content-Type: message/rfc822\n",
        b"Content-Type: message/delivery-status\n",
        b'Content-Type: multipart/alternative; boundary="c"\n',
        b"--c\n",
        b"--c--\n",
        b"Subject: =?utf-8?b?w6k=?=\n",
        b"Message-ID: <a@b>\n",
        b"Content-Transfer-Encoding: base64\n",
        b"Content-Transfer-Encoding: quoted-printable\n",
        b"AAAA=\n",
        b"%PDF-\n",
        b"\xff\xfe\x00\n",
        b"Action: failed\nFinal-Recipient: rfc822; x@y.id\n",
        b"Content-Disposition: attachment; filename*0*=utf-8''%E2%80; filename*1*=%93.pdf\n",
        b'Content-Disposition: inline; filename="=?utf-8?q?a=E2?= =?utf-8?q?=80=93?="\n',
    ]
)
_TOP_TYPES = st.sampled_from(
    [
        b"multipart/mixed",
        b"multipart/alternative",
        b"multipart/related",
        b"multipart/signed",
        b"multipart/report; report-type=delivery-status",
        b"message/rfc822",
        b"text/plain",
        b"\xffmultipart/mixed",
    ]
)


@settings(max_examples=300, deadline=None)
@given(_TOP_TYPES, st.lists(_MIME_FRAGMENTS, max_size=24).map(b"".join))
def test_decode_email_survives_hostile_mime(top_type: bytes, body: bytes) -> None:
    """Mail-shaped MIME of any structure decodes (no error at all) to JSON-safe values."""
    payload = b"From: a@example.id\nContent-Type: " + top_type + b'; boundary="b"\n\n' + body
    message = _decode_bytes(payload)
    message.model_dump_json()  # no lone surrogates anywhere
    assert "\x00" not in (message.text or "")
    assert all(a.filename and "\x00" not in a.filename for a in message.attachments)


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
        (b"caf\xe9", "x-does-not-exist", "caf\u00e9"),
        (b"caf\xc3\xa9", "x-does-not-exist", "caf\u00e9"),
        (b"caf\xe9", "utf-8", "caf\ufffd"),
        (b"abc", "base64", "abc"),
        (b"\\u0041", "unicode_escape", "\\u0041"),
        (b"\x81\x40", "gb2312", "\u4e02"),
        (b"\x87\x40", "shift_jis", "\u2460"),
        (b"\x93hi\x94", '"ISO-8859-1"', "\u201chi\u201d"),
        (b"+2D3-", "utf-7", "\ufffd"),
        (b"\xef\xbb\xbfhai", "utf-8", "\ufeffhai"),
        (b"\xe6\x97\xa5", "utf-8", "\u65e5"),
        (b"\xa4", "iso-8859-15", "\u20ac"),
    ],
)
def test_decode_text_charset_rules(raw: bytes, charset: str | None, expected: str) -> None:
    """Latin-1/ASCII read as cp1252; none or unknown: UTF-8 else cp1252; supersets for CJK."""
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
        (".htaccess", "htaccess"),
        ("../.../...bukti.jpg", "bukti.jpg"),
        ("Surat\n izin.pdf", "Surat izin.pdf"),
        ("Kwitansi e\u0301.pdf", "Kwitansi \u00e9.pdf"),
        ("..", "attachment-1.bin"),
        ("dir/", "attachment-1.bin"),
        ("\x01\x02", "attachment-1.bin"),
        ("", "attachment-1.bin"),
        (None, "attachment-1.bin"),
    ],
)
def test_safe_filename(name: str | None, expected: str) -> None:
    """Filenames lose directories, controls, bidi marks and leading dots; never empty."""
    assert safe_filename(name) == expected


@pytest.mark.parametrize(
    ("content_type", "index", "expected"),
    [
        ("image/jpeg", 3, "attachment-3.jpg"),
        ("message/rfc822", 1, "attachment-1.eml"),
        ("text/calendar", 2, "attachment-2.ics"),
        ("application/pgp-signature", 1, "attachment-1.asc"),
        ("application/x-nobody-knows", 4, "attachment-4.bin"),
        ("IMAGE/PNG", 1, "attachment-1.png"),
    ],
)
def test_safe_filename_fallback_takes_its_extension_from_the_type(
    content_type: str, index: int, expected: str
) -> None:
    """Without a usable name: ``attachment-<n>`` and an extension for the content type."""
    assert safe_filename(None, content_type=content_type, index=index) == expected


def test_safe_filename_keeps_extension_when_truncating() -> None:
    """An overlong filename is cut to 200 characters keeping its extension."""
    result = safe_filename("a" * 400 + ".pdf")
    assert len(result) == 200
    assert result.endswith("a.pdf")
    assert len(safe_filename("b" * 400)) == 200


# --- RFC 2047 encoded words -------------------------------------------------------------------


def _split_words(text: str, charset: str = "UTF-8") -> str:
    """``text`` as two B-encoded words, cut inside its first multibyte character."""
    raw = text.encode("utf-8")
    cut = next(i for i, byte in enumerate(raw) if byte >= 0x80) + 1
    first, second = (base64.b64encode(chunk).decode() for chunk in (raw[:cut], raw[cut:]))
    return f"=?{charset}?B?{first}?=\n =?{charset}?B?{second}?="


def test_stdlib_joins_adjacent_words_before_decoding() -> None:
    """``decode_header`` + ``make_header`` keep a character split across two words (checked)."""
    value = _split_words("Izin \u2013 KKPR")
    assert str(make_header(decode_header(value.replace("\n", "")))) == "Izin \u2013 KKPR"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (_split_words("Izin \u2013 KKPR"), "Izin \u2013 KKPR"),
        (_split_words("\U0001f600 senyum", "utf-8"), "\U0001f600 senyum"),
        ("=?utf-8?q?Zo=C3?= =?utf-8?q?=AB_M=C3=BCller?=", "Zo\u00eb M\u00fcller"),
        ("=?utf-8?B?SXppbg==?= =?iso-8859-1?q?_caf=E9?=", "Izin caf\u00e9"),
        ("=?iso-8859-1?q?=93Biaya_percepatan=94?=", "\u201cBiaya percepatan\u201d"),
        ("Re: =?utf-8?q?Izin?= usaha", "Re: Izin usaha"),
        ("a=?utf-8?q?b?=c", "abc"),
        ("=?utf-8*id?q?Surat_izin?=", "Surat izin"),
        ("=?utf-8?b?SXppbg?=", "Izin"),
        ("=?utf-8?b?S?= tetap", "=?utf-8?b?S?= tetap"),
        ("=?x-unknown?q?caf=E9?=", "caf\u00e9"),
        ("C:\\u0041 =?utf-8?q?x?=", "C:\\u0041 x"),
        ("=?utf-8?q?a=00b=0D=0Ac?=", "ab c"),
        ("caf\udce9 =?utf-8?q?x?=", "caf\u00e9 x"),
    ],
)
def test_decode_header_text(raw: str, expected: str) -> None:
    """Encoded words joined per charset, Latin-1 as cp1252, bad words kept, 8-bit recovered."""
    assert decode_header_text(raw) == expected


def test_split_character_in_subject_and_names() -> None:
    """Subject, From and Reply-To names with a UTF-8 character split across two words."""
    message = _decode("encoded-words-split-utf8.eml")
    assert message.subject == "Keluhan KKPR \u2013 lahan wakaf di Mandai"
    assert message.sender.name == "Zo\u00eb Hartmann (PT Andalas Surya)"


def test_raw_8bit_headers_latin1_subject_and_utf8_name() -> None:
    """Raw bytes in headers: windows-1252 in the Subject, UTF-8 in the From name."""
    message = _decode("raw-8bit-headers.eml")
    assert message.subject == "Izin caf\u00e9 \u201cKopi Daeng\u201d \u2013 sudah 6 minggu"
    assert message.sender.name == "Zo\u00eb M\u00fcller"


# --- RFC 2231 parameters and filenames ----------------------------------------------------------


def _with_attachment(disposition: str, content: bytes = b"%PDF-1.4\n") -> bytes:
    encoded = base64.b64encode(content)
    return (
        b"From: warga@example.id\nSubject: Lampiran\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="b"\n\n'
        b"--b\nContent-Type: text/plain\n\nLihat lampiran.\n"
        b"--b\n"
        + (
            "" if "Content-Type" in disposition else "Content-Type: application/octet-stream\n"
        ).encode()
        + disposition.encode("utf-8", "surrogateescape")
        + b"\nContent-Transfer-Encoding: base64\n\n"
        + encoded
        + b"\n--b--\n"
    )


@pytest.mark.parametrize(
    ("disposition", "expected"),
    [
        (
            "Content-Disposition: attachment; filename*=UTF-8''Izin%20KKPR%20%E2%80%93.pdf",
            "Izin KKPR \u2013.pdf",
        ),
        (
            "Content-Disposition: attachment;\n filename*0*=utf-8'id'Surat%20Per;\n"
            ' filename*1*=mohonan%20PBG;\n filename*2=" final.pdf"',
            "Surat Permohonan PBG final.pdf",
        ),
        (
            "Content-Disposition: attachment; filename*=iso-8859-1'en'%93Bukti%94.pdf",
            "\u201cBukti\u201d.pdf",
        ),
        (
            'Content-Disposition: attachment; filename="fallback.pdf";'
            " filename*=UTF-8''Kwitansi%20%E2%84%96%201.pdf",
            "Kwitansi \u2116 1.pdf",
        ),
        (
            'Content-Disposition: attachment; filename="=?UTF-8?B?S1RQIOKAkyBCdWRpLnBkZg==?="',
            "KTP \u2013 Budi.pdf",
        ),
        (
            'Content-Disposition: attachment;\n filename="=?UTF-8?Q?Surat_=E2=80=93_?=\n'
            ' =?UTF-8?Q?izin.pdf?="',
            "Surat \u2013 izin.pdf",
        ),
        ('Content-Disposition: attachment; filename="caf\udce9.pdf"', "caf\u00e9.pdf"),
        (
            'Content-Disposition: attachment\nContent-Type: application/pdf; name="nama.pdf"',
            "nama.pdf",
        ),
        ("Content-Disposition: attachment; filename*=x-bogus''caf%E9.pdf", "caf\u00e9.pdf"),
    ],
)
def test_attachment_filename_parameters(disposition: str, expected: str) -> None:
    """RFC 2231 (continuations, language tags, charsets) and RFC 2047 words in filenames."""
    message = _decode_bytes(_with_attachment(disposition))
    assert [a.filename for a in message.attachments] == [expected]


# --- content types ------------------------------------------------------------------------------

_FTYP = b"\x00\x00\x00\x18ftyp"


@pytest.mark.parametrize(
    ("content", "declared", "filename", "expected"),
    [
        (b"%PDF-1.7\n", "application/octet-stream", "x", "application/pdf"),
        (b"\xff\xd8\xff\xe0", "application/pdf", "bukti.pdf", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n", "image/jpeg", "denah.jpg", "image/png"),
        (b"GIF89a", "application/octet-stream", None, "image/gif"),
        (
            b"PK\x03\x04",
            "application/octet-stream",
            "surat.docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        (
            b"PK\x03\x04",
            "application/octet-stream",
            "rekap.XLSX",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
        (b"PK\x03\x04", "application/octet-stream", "berkas.zip", "application/zip"),
        (
            b"PK\x03\x04",
            "application/x-zip-compressed",
            "berkas.zip",
            "application/x-zip-compressed",
        ),
        (
            b"PK\x03\x04",
            "application/pdf",
            "surat.docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        (
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
            "application/octet-stream",
            "surat.doc",
            "application/msword",
        ),
        (
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
            "application/vnd.ms-excel",
            "rekap.xls",
            "application/vnd.ms-excel",
        ),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "image/jpeg", "x.bin", "application/x-ole-storage"),
        (_FTYP + b"isom", "application/octet-stream", "video.mp4", "video/mp4"),
        (_FTYP + b"3gp4", "application/octet-stream", None, "video/3gpp"),
        (_FTYP + b"heic", "application/octet-stream", "IMG_0001.HEIC", "image/heic"),
        (_FTYP + b"mif1", "image/jpeg", "foto.jpg", "image/heif"),
        (_FTYP + b"isom", "video/quicktime", "x.mov", "video/quicktime"),
        (b"OggS\x00\x02", "application/octet-stream", "PTT-20261130.opus", "audio/ogg"),
        (b"OggS\x00\x02", "audio/opus", None, "audio/opus"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/png", "stiker.png", "image/webp"),
        (b"ID3\x03", "application/octet-stream", None, "audio/mpeg"),
        (b"plain words", "application/octet-stream", "catatan.txt", "text/plain"),
        (b"plain words", "application/octet-stream", "no-extension", "application/octet-stream"),
        (b"plain words", "text/csv", "data.pdf", "text/csv"),
        (b"\xff\xd8\xff\xe0", "image/jpg", None, "image/jpeg"),
        (b"", "IMAGE/PJPEG", None, "image/jpeg"),
        (b"%PDF-1.4", "text/plain", "surat.txt", "application/pdf"),
    ],
)
def test_sniff_content_type(
    content: bytes, declared: str, filename: str | None, expected: str
) -> None:
    """Magic bytes win over a generic or contradicting declared type; containers by extension."""
    assert sniff_content_type(content, declared=declared, filename=filename) == expected


def test_attachments_with_wrong_declared_types() -> None:
    """JPEG bytes named .pdf are image/jpeg; octet-stream DOCX and PNG are sniffed."""
    message = _decode("attachment-wrong-type.eml")
    assert [(a.filename, a.content_type) for a in message.attachments] == [
        ("Bukti transfer.pdf", "image/jpeg"),
        (
            "Surat kuasa.docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        ("denah", "image/png"),
    ]


# --- MIME structures ------------------------------------------------------------------------------


def _multipart(content_type: str, *parts: str, headers: str = "") -> bytes:
    body = "".join(f"--b\n{part}\n" for part in parts) + "--b--\n"
    return (
        f"From: warga@example.id\nSubject: x\nMIME-Version: 1.0\n{headers}"
        f'Content-Type: {content_type}; boundary="b"\n\n{body}'
    ).encode()


def test_empty_plain_alternative_falls_back_to_html() -> None:
    """An empty text/plain alternative does not hide the HTML one."""
    message = _decode_bytes(
        _multipart(
            "multipart/alternative",
            "Content-Type: text/plain\n\n",
            "Content-Type: text/html\n\n<p>Loket <b>tutup</b> jam 10.</p>",
        )
    )
    assert message.text == "Loket tutup jam 10."
    assert message.html == "<p>Loket <b>tutup</b> jam 10.</p>"


def test_several_inline_text_parts_are_joined() -> None:
    """Inline text/plain parts of a multipart/mixed are joined with a blank line."""
    message = _decode("multipart-mixed-inline-texts.eml")
    assert message.text is not None
    assert message.text.endswith(
        "brosurnya:\n\nDia biasa mangkal di warung depan kantor DPMPTSP setiap pagi.\n"
    )
    assert [a.filename for a in message.attachments] == ["brosur.jpg"]


def test_html_part_and_plain_footer_in_mixed() -> None:
    """An HTML-only body followed by a plain footer keeps both, in order."""
    message = _decode_bytes(
        _multipart(
            "multipart/mixed",
            "Content-Type: text/html\n\n<p>Ada <i>calo</i> di loket.</p>",
            "Content-Type: text/plain\n\n-- \nDikirim lewat milis warga",
        )
    )
    assert message.text == "Ada calo di loket.\n\n-- \nDikirim lewat milis warga\n"


def test_related_root_named_by_start() -> None:
    """multipart/related uses the part its ``start`` parameter names; the image is attached."""
    message = _decode_bytes(
        _multipart(
            'multipart/related; start="<root@x>"',
            "Content-Type: image/png\nContent-ID: <logo@x>\n\n\x89PNG\r\n\x1a\n",
            "Content-Type: text/html\nContent-ID: <root@x>\n\n<p>Isi <img src=cid:logo@x></p>",
        )
    )
    assert message.text == "Isi"
    assert [(a.filename, a.content_type) for a in message.attachments] == [
        ("attachment-1.png", "image/png")
    ]


def test_signed_mail_body_and_signature() -> None:
    """multipart/signed: the signed content is the body, the signature an attachment."""
    smime = _decode("smime-signed.eml")
    assert smime.text is not None and smime.text.startswith("Selaku kuasa hukum PT Bumi Karsa")
    assert [(a.filename, a.content_type) for a in smime.attachments] == [
        ("smime.p7s", "application/pkcs7-signature")
    ]
    pgp = _decode("pgp-signed.eml")
    assert [(a.filename, a.content_type) for a in pgp.attachments] == [
        ("attachment-1.asc", "application/pgp-signature")
    ]


def test_encrypted_mail_has_no_text() -> None:
    """multipart/encrypted: no text, both parts kept as attachments."""
    message = _decode_bytes(
        _multipart(
            'multipart/encrypted; protocol="application/pgp-encrypted"',
            "Content-Type: application/pgp-encrypted\n\nVersion: 1",
            'Content-Type: application/octet-stream; name="encrypted.asc"\n\n'
            "-----BEGIN PGP MESSAGE-----\nhQEMA\n-----END PGP MESSAGE-----",
        )
    )
    assert message.text is None
    assert [a.filename for a in message.attachments] == ["attachment-1.bin", "encrypted.asc"]


def test_nested_forward_is_one_attachment_with_the_inner_bytes() -> None:
    """A forwarded message is one ``<subject>.eml`` attachment; nothing of it joins the text."""
    payload = _raw("forward-nested.eml")
    message = _decode("forward-nested.eml")
    assert [(a.filename, a.content_type) for a in message.attachments] == [
        ("Fwd: Calo di loket PBG.eml", "message/rfc822")
    ]
    inner = message.attachments[0].content
    assert inner is not None
    assert inner.startswith(b"From: Ilham Saputra") and inner in payload
    assert b"Content-Type: message/rfc822" in inner  # the innermost forward stays inside
    assert "orang dalam" not in (message.text or "")


@pytest.mark.parametrize(
    ("inner_headers", "transfer_encoding", "expected_name"),
    [
        ("Subject: Re: PBG 1/2 \\ revisi\n", "", "Re: PBG 1-2 - revisi.eml"),
        ("", "", "attachment-1.eml"),
        ("Subject: =?utf-8?q?Izin_=E2=80=93_ulang?=\n", "base64", "Izin \u2013 ulang.eml"),
    ],
)
def test_attached_message_names_and_encodings(
    inner_headers: str, transfer_encoding: str, expected_name: str
) -> None:
    """Attached messages are named from their subject (no slashes), base64 ones decoded."""
    inner = f"From: a@example.id\n{inner_headers}\nIsi terusan.\n".encode()
    body = base64.b64encode(inner).decode() if transfer_encoding else inner.decode()
    cte = f"Content-Transfer-Encoding: {transfer_encoding}\n" if transfer_encoding else ""
    message = _decode_bytes(
        _multipart("multipart/mixed", f"Content-Type: message/rfc822\n{cte}\n{body}")
    )
    assert [a.filename for a in message.attachments] == [expected_name]
    assert message.attachments[0].content == inner


def test_broken_mime_still_decodes() -> None:
    """A missing closing boundary or a missing boundary parameter loses nothing."""
    unclosed = _decode("broken-mime-no-close-boundary.eml")
    assert unclosed.text is not None and unclosed.text.startswith("Berkas fisik PBG saya")
    assert [a.filename for a in unclosed.attachments] == ["tanda terima.jpg"]
    no_boundary = _decode("broken-mime-no-boundary.eml")
    assert no_boundary.text == "Berkas fisik PBG saya (map biru) hilang di loket sejak Jumat.\n"


def test_single_part_mail_that_is_a_file() -> None:
    """A mail whose only part is a named file has that file and no text."""
    payload = _mail(
        'MIME-Version: 1.0\nContent-Type: application/pdf; name="surat.pdf"\n'
        "Content-Transfer-Encoding: base64",
        base64.b64encode(b"%PDF-1.4\n").decode() + "\n",
    )
    message = _decode_bytes(payload)
    assert message.text is None
    assert [(a.filename, a.content, a.size) for a in message.attachments] == [
        ("surat.pdf", b"%PDF-1.4\n", 9)
    ]


def test_calendar_invite_parts_are_attachments() -> None:
    """A text/calendar alternative and an .ics file are attachments, not text."""
    message = _decode("calendar-invite.eml")
    assert [(a.filename, a.content_type) for a in message.attachments] == [
        ("attachment-1.ics", "text/calendar"),
        ("invite.ics", "application/ics"),
    ]
    assert "BEGIN:VCALENDAR" not in (message.text or "")


def test_outlook_related_mail_without_tnef() -> None:
    """Outlook mail (related + alternative, cid image, no winmail.dat) decodes normally."""
    message = _decode("outlook-related-cid.eml")
    assert message.text is not None
    assert "\u201cverifikasi teknis\u201d" in message.text
    assert message.html is not None and "cid:image001.png" in message.html
    assert [(a.filename, a.content_type) for a in message.attachments] == [
        ("image001.png", "image/png")
    ]


# --- threading ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "in_reply_to", "references"),
    [
        (
            "In-Reply-To: <a@x.id>\nReferences: <b@x.id> <a@x.id>",
            "<a@x.id>",
            ["<b@x.id>", "<a@x.id>"],
        ),
        ("In-Reply-To: a@x.id", "<a@x.id>", []),
        ("In-Reply-To: <a@x.id> (Budi's message of 2 Nov)", "<a@x.id>", []),
        ('In-Reply-To: "message from budi@x.id" <a@x.id>', "<a@x.id>", []),
        ("References: <b@x.id>\n\t<a@x.id>\n <c@x.id>", None, ["<b@x.id>", "<a@x.id>", "<c@x.id>"]),
        ("References: b@x.id,a@x.id <a@x.id> <> junk", None, ["<b@x.id>", "<a@x.id>"]),
        ("References: <b@x.id\n @y>", None, ["<b@x.id@y>"]),
        ("References: garbage only", None, []),
    ],
)
def test_thread_ids(headers: str, in_reply_to: str | None, references: list[str]) -> None:
    """Ids with or without brackets, folded, repeated or among garbage."""
    message = _decode_bytes(_mail(headers))
    assert message.in_reply_to == in_reply_to
    assert message.references == references


def test_very_long_references_keep_first_and_last() -> None:
    """At most 100 references: the thread root and the 99 most recent."""
    ids = " ".join(f"<id{n}@x.id>" for n in range(300))
    message = _decode_bytes(_mail(f"References: {ids}"))
    assert len(message.references) == 100
    assert message.references[0] == "<id0@x.id>"
    assert message.references[1] == "<id201@x.id>"
    assert message.references[-1] == "<id299@x.id>"


# --- dates ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("Mon, 2 Nov 2026 08:14:22 WIB", datetime(2026, 11, 2, 1, 14, 22, tzinfo=UTC)),
        ("Mon, 2 Nov 2026 08:14:22 WITA", datetime(2026, 11, 2, 0, 14, 22, tzinfo=UTC)),
        ("Mon, 2 Nov 2026 08:14:22 wit", datetime(2026, 11, 1, 23, 14, 22, tzinfo=UTC)),
        ("Mon, 2 Nov 2026 08:14:22 +0800 (WITA)", datetime(2026, 11, 2, 0, 14, 22, tzinfo=UTC)),
    ],
)
def test_indonesian_zone_names(date: str, expected: datetime) -> None:
    """WIB, WITA and WIT are read as +07, +08 and +09."""
    message = _decode_bytes(_mail(f"Date: {date}"))
    assert message.sent_at == expected
    assert "date_unparsed" not in message.flags


# --- auto-replies, lists, bounces -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "reason", "extra"),
    [
        ("X-Auto-Response-Suppress: All", "header:x-auto-response-suppress", {}),
        ("X-Auto-Response-Suppress: DR", "header:x-auto-response-suppress", {}),
        ("X-Auto-Response-Suppress: RN, NRN, AutoReply", "header:x-auto-response-suppress", {}),
        ("X-Auto-Response-Suppress: oof", "header:x-auto-response-suppress", {}),
        ("List-Id: <warga.lists.example.id>", "header:list-id", {"list": True}),
        ("List-Unsubscribe: <mailto:u@example.id>", "header:list-unsubscribe", {"list": True}),
        ("Return-Path: <>", "header:return-path", {}),
        ("Return-Path: < >", "header:return-path", {}),
        ("Auto-Submitted: auto-replied\nPrecedence: bulk", "header:auto-submitted", {}),
        ("Subject: Re: Automatic reply: Izin", "subject", {}),
        ("Subject: Fwd: Out of Office", "subject", {}),
        ("Subject: Sedang cuti\nIn-Reply-To: <ack-1@x.id>", "subject", {}),
        ("Subject: I am OUT OF THE OFFICE\nReferences: <ack-1@x.id>", "subject", {}),
        ("Subject: Autoreply", "subject", {}),
    ],
)
def test_auto_reply_reasons(headers: str, reason: str, extra: dict[str, bool]) -> None:
    """Every rule flags auto_reply and records which one fired first."""
    message = _decode_bytes(_mail(headers))
    assert message.flags == {"auto_reply": True, "auto_reply_reason": reason, **extra}


@pytest.mark.parametrize(
    "headers",
    [
        "X-Auto-Response-Suppress: RN, NRN",
        "Return-Path: <warga@example.id>",
        "Subject: Re: Permohonan otomatisasi layanan",
        "Subject: Auto rental business permit",
    ],
)
def test_not_auto_replies(headers: str) -> None:
    """Headers and subjects close to the rules but not matching them flag nothing."""
    assert _decode_bytes(_mail(headers)).flags == {}


@pytest.mark.parametrize(
    "subject",
    [
        "Sedang cuti",
        "Pungli oleh calo di luar kantor DPMPTSP",
        "Staff were out of the office all day",
    ],
)
def test_phrases_in_a_fresh_message_only_mark_it_suspect(subject: str) -> None:
    """An auto-reply phrase in a message that replies to nothing may be a real complaint: it is
    marked auto_reply_suspect (no acknowledgement) but not hidden as an auto-reply."""
    assert _decode_bytes(_mail(f"Subject: {subject}")).flags == {"auto_reply_suspect": True}


def test_read_receipt_report_is_automatic_but_no_bounce() -> None:
    """A disposition-notification report is an auto-reply, not a bounce."""
    message = _decode_bytes(
        _multipart(
            "multipart/report; report-type=disposition-notification",
            "Content-Type: text/plain\n\nPesan Anda telah dibaca.",
            "Content-Type: message/disposition-notification\n\n"
            "Disposition: manual-action/MDN-sent-manually; displayed",
        )
    )
    assert message.flags == {
        "auto_reply": True,
        "auto_reply_reason": "report:disposition-notification",
    }


def test_dsn_sender_is_the_daemon_even_with_reply_to() -> None:
    """The sender of a delivery report is its From, whatever Reply-To says."""
    payload = _multipart(
        "multipart/report; report-type=delivery-status",
        "Content-Type: text/plain\n\nGagal terkirim.",
        "Content-Type: message/delivery-status\n\nFinal-Recipient: rfc822;x@y.id\nAction: failed",
        headers="Reply-To: helpdesk@example.id\n",
    ).replace(b"From: warga@example.id", b"From: MAILER-DAEMON@mx.example.id")
    message = _decode_bytes(payload)
    assert message.sender.email == "mailer-daemon@mx.example.id"
    assert message.flags["dsn_recipient"] == "x@y.id"
    assert "bounced_message_id" not in message.flags


# --- subjects -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Re: Izin usaha", "Izin usaha"),
        ("RE: re: Fwd: FW: Fw: Izin", "Izin"),
        ("Balas: Bls: [ADU-2026-000123] Pengaduan", "[ADU-2026-000123] Pengaduan"),
        ("Tr: Trs: AW: WG: Antw: Permohonan", "Permohonan"),
        ("Re[2]: Re(3): Izin", "Izin"),
        ("Re :Re:Izin", "Izin"),
        ("Re\uff1a Izin", "Izin"),
        ("  Re:   [ADU-2026-000123]  Re: x  ", "[ADU-2026-000123]  Re: x"),
        ("[EXTERNAL] Re: Izin", "[EXTERNAL] Re: Izin"),
        ("Retribusi PBG", "Retribusi PBG"),
        ("Trotoar: rusak", "Trotoar: rusak"),
        ("Awas: calo", "Awas: calo"),
        ("Re:", ""),
        ("", ""),
    ],
)
def test_strip_reply_prefixes(subject: str, expected: str) -> None:
    """Leading reply/forward prefixes go, in any language, case, spacing or count; tags stay."""
    assert strip_reply_prefixes(subject) == expected
