"""Bounded work per request: hostile sizes and shapes cost counted work and bounded memory.

Tens of thousands of MIME parts or form fields, multiparts nested hundreds deep, floods of
boundary-like lines, megabytes of HTML, batches of thousands of WhatsApp messages, large
attachments and compressed bodies: each is refused with a clear 4xx, or filed with what fits
and flagged with what was left out (the raw payload kept whole) — never a 500, a crash or
minutes of CPU. Work is measured in counts (parts parsed, boundary checks, attachments kept,
bytes stored) and memory as a ratio to the input in a child process, never in seconds.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import threading
import time
import tracemalloc
import zipfile
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import compat32
from email.policy import default as default_policy
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.twilio import TwilioConnector
from connectors.web import WebConnector
from normalizer import email as email_decoder
from normalizer import mime
from normalizer.email import decode_email
from normalizer.limits import (
    MAX_ATTACHMENTS,
    MAX_BOUNDARY_CHECKS,
    MAX_HTML_TO_TEXT,
    MAX_MIME_DEPTH,
    MAX_MIME_PARTS,
)
from normalizer.web import parse_body
from omnichannel import Inbox
from omnichannel.config import parse_config
from omnichannel.connector import ConnectorContext
from omnichannel.errors import SkippableError
from omnichannel.http import create_app
from omnichannel.schema import InboundMessage, RawMessage
from omnichannel.store.tables import attachments, messages, raw_messages
from omnichannel.testing import (
    meta_signature,
    post_webhook,
    standard_webhooks_headers,
    twilio_signature,
)
from omnichannel.testing.http import serve_wsgi
from omnichannel.webhook import WebhookRequest
from tests.helpers import T0, count

ROOT = Path(__file__).resolve().parent.parent
KEY = b"kunci-portal-untuk-uji-ukuran!!!"
WEB_SECRET = "whsec_" + base64.b64encode(KEY).decode()
ACCOUNT = "AC" + "7a" * 16
TWILIO_TOKEN = "token-uji-ukuran-0123456789"
APP_SECRET = "rahasia-aplikasi-uji-ukuran"
PNID = "106540352242922"
HOST = "http://omni.test"
FORM = "application/x-www-form-urlencoded"
TEXT = "Jalan di depan kantor desa rusak parah, mohon segera diperbaiki."
OTHER = "Lampu jalan di Jl. Melati mati sejak minggu lalu."  # another complaint of the sender


# -- builders ----------------------------------------------------------------------------------


def mail(parts: list[bytes], *, boundary: bytes = b"BB") -> bytes:
    """A multipart/mixed mail whose subparts are ``parts`` (each: headers, blank line, body)."""
    head = (
        b"From: Warga <warga@example.id>\r\nTo: pengaduan@example.go.id\r\n"
        b"Subject: Lapor\r\nMessage-ID: <uji@example.id>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=" + boundary + b"\r\n\r\n"
    )
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    return head + body + b"--" + boundary + b"--\r\n"


def text_part(text: str = TEXT) -> bytes:
    return b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + text.encode()


def file_part(n: int, content: bytes = b"xx", kind: bytes = b"application/octet-stream") -> bytes:
    headers = (
        b"Content-Type: " + kind + b"\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=f%d.bin\r\n\r\n" % n
    )
    return headers + base64.encodebytes(content).replace(b"\n", b"\r\n").rstrip(b"\r\n")


def nested(depth: int, inner: bytes) -> bytes:
    """A mail of ``depth`` nested multiparts: a text part first, ``inner`` at the bottom."""
    opening = [
        b"--B%d\r\nContent-Type: multipart/mixed; boundary=B%d\r\n\r\n" % (level - 1, level)
        for level in range(1, depth)
    ]
    closing = [b"--B%d--\r\n" % level for level in reversed(range(depth))]
    innermost = b"--B%d\r\nContent-Type: text/plain\r\n\r\n" % (depth - 1) + inner
    top = mail([text_part()], boundary=b"B0")[: -len(b"--B0--\r\n")]
    return top + b"".join(opening) + innermost + b"".join(closing)


def decode(payload: bytes) -> InboundMessage:
    return decode_email(payload, connector="files", external_id="uji", received_at=T0)


# -- e-mail: parts, nesting, boundary floods, HTML ---------------------------------------------


def test_tens_of_thousands_of_parts_parse_only_up_to_the_limit() -> None:
    """20,000 attachments: the parser begins at most MAX_MIME_PARTS + 1 parts; the mail is
    decoded with its text, MAX_ATTACHMENTS attachments, and flags saying what was left out."""
    payload = mail([text_part()] + [file_part(n) for n in range(20_000)])
    parsed = mime.parse(payload, compat32)
    assert parsed.truncated == "parts" and parsed.parts <= MAX_MIME_PARTS + 1
    message = decode(payload)
    assert message.text == TEXT
    assert len(message.attachments) == MAX_ATTACHMENTS
    assert message.flags["mime_truncated"] == "parts"
    assert message.flags["attachments_omitted"] == MAX_MIME_PARTS - 1 - MAX_ATTACHMENTS


def test_deep_nesting_is_cut_at_the_depth_limit_and_the_text_above_it_kept() -> None:
    """500 nested multiparts over 100,000 lines: parsing stops at MAX_MIME_DEPTH without
    reading the lines below it; the text part at the top is decoded, the cut flagged."""
    payload = nested(500, b"baris teks\r\n" * 100_000)
    parsed = mime.parse(payload, compat32)
    assert parsed.truncated == "depth"
    assert parsed.parts <= MAX_MIME_DEPTH + 2 and parsed.checks < 10_000
    message = decode(payload)
    assert message.text == TEXT and message.flags["mime_truncated"] == "depth"


def test_lines_inside_nesting_cost_no_boundary_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """200,000 text lines inside 30 nested multiparts (within the limit), all shown to the
    parser, are decoded whole, and only the lines that could be a boundary (``--...`` or
    blank) are checked against the boundaries open around them."""
    payload = nested(30, b"baris teks\r\n" * 200_000)
    monkeypatch.setattr(mime, "LARGE_BODY", len(payload))  # no body kept out of the parser
    parsed = mime.parse(payload, compat32)
    assert parsed.truncated is None and parsed.hidden == 0
    assert parsed.checks < 10_000  # the standard library checks every line: 6,000,000
    message = decode(payload)
    assert message.text is not None and message.text.count("baris teks") == 200_000


def test_a_flood_of_boundary_like_lines_stops_at_the_check_budget() -> None:
    """200,000 ``--x`` lines inside 30 nested multiparts would cost 6,000,000 checks: parsing
    stops at MAX_BOUNDARY_CHECKS, the mail is decoded with its first text and flagged."""
    payload = nested(30, b"--x\r\n" * 200_000)
    parsed = mime.parse(payload, compat32)
    assert parsed.truncated == "checks"
    assert parsed.checks <= MAX_BOUNDARY_CHECKS + MAX_MIME_DEPTH
    message = decode(payload)
    assert message.text is not None and message.text.startswith(TEXT)
    assert message.flags["mime_truncated"] == "checks"


@pytest.mark.parametrize("name", ["In-Reply-To", "References"])
def test_a_thread_header_of_a_hundred_thousand_characters_is_read_in_one_pass(name: str) -> None:
    """A thread header of 100,000 characters without a usable id (which took minutes when
    the bare ``a@b`` form was searched from every position) gives its real ids and nothing
    made of the junk."""
    junk = "A" * 100_000
    value = f"{junk} <real@example.id> {junk}@ {junk}"
    head = mail([text_part()]).replace(b"MIME-Version", f"{name}: {value}\r\nMIME-Version".encode())
    message = decode_email(head, connector="mail", external_id="long-thread", received_at=T0)
    found = message.in_reply_to if name == "In-Reply-To" else message.references
    assert found in ("<real@example.id>", ["<real@example.id>"])


def test_html_converted_to_text_is_bounded_and_the_html_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three HTML parts of 1 MB each: at most MAX_HTML_TO_TEXT characters go through the HTML
    converter in all; the message is flagged ``html_truncated`` and keeps the whole HTML."""
    converted: list[int] = []
    real = email_decoder.html_to_text

    def counting(html: str) -> str:
        converted.append(len(html))
        return real(html)

    monkeypatch.setattr(email_decoder, "html_to_text", counting)
    html = "<p>" + "Jalan rusak di desa kami. " * 40_000 + "</p>"
    part = b"Content-Type: text/html; charset=utf-8\r\n\r\n" + html.encode()
    message = decode(mail([part, part, part]))
    assert 0 < sum(converted) <= MAX_HTML_TO_TEXT
    assert message.flags["html_truncated"] is True
    assert message.html is not None and len(message.html) > 3 * len(html)
    assert message.text is not None and message.text.startswith("Jalan rusak")


# -- large bodies: kept out of the parser, decoded exactly -------------------------------------


def assert_same_as_stdlib(payload: bytes, policy: Any = compat32) -> None:
    """The bounded parse gives the standard library's tree and decoded bytes for ``payload``."""
    ours = mime.parse(payload, policy).message
    theirs = BytesParser(policy=policy).parsebytes(payload)
    for mine, stdlib in zip(ours.walk(), theirs.walk(), strict=True):
        assert mine.get_content_type() == stdlib.get_content_type()
        if not stdlib.is_multipart():
            assert mime.payload_bytes(mine) == stdlib.get_payload(decode=True)


def test_large_bodies_are_decoded_from_the_payload_exactly_as_the_stdlib_does() -> None:
    """Large base64, quoted-printable and 8-bit bodies, raw binary, lone-CR line endings,
    ``--`` lines inside a body, a part without headers: what the parser was not shown is read
    back byte for byte as ``email`` decodes it."""
    blob = os.urandom(300_000)
    qp = ("Jalan rusak=3D parah " * 5000 + "\r\n-- \r\nsalam\r\n").encode()
    eight_bit = "Jalan rusak — parah\n".encode() * 5000
    binary = b"\xff\xd8" * 5000 + b"\n--x\n" + b"\xe9" * 9000  # split by a "--" line
    payload = mail(
        [
            text_part(),
            file_part(1, blob, b"image/jpeg"),
            b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + qp,
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            + eight_bit,
            b"Content-Type: text/plain\r\n\r\n" + b"baris\r" * 20_000,
            b"Content-Type: image/jpeg\r\n\r\n" + binary,
            b"\r\n" + b"tanpa kepala\r\n" * 1000,
        ]
    )
    assert mime.parse(payload, compat32).hidden > len(blob)
    assert_same_as_stdlib(payload)
    assert_same_as_stdlib(payload.replace(b"\r\n", b"\n"))
    assert_same_as_stdlib(payload, default_policy)
    assert [a.content for a in decode(payload).attachments] == [blob, binary]


_LINES = st.sampled_from(
    [b"", b"--", b"--B", b"--B--", b"--C", b"teks", b"Content-Type: x", b" ", b"=3D", b"\xe9\xff"]
)
_ENDINGS = st.sampled_from([b"\r\n", b"\n", b"\r"])
_BODIES = st.lists(st.tuples(_LINES, _ENDINGS), max_size=30).map(
    lambda lines: b"".join(line + ending for line, ending in lines)
)
_ENCODINGS = st.sampled_from([b"7bit", b"base64", b"quoted-printable"])


@settings(max_examples=300, deadline=None)
@given(bodies=st.lists(st.tuples(_BODIES, _ENCODINGS), max_size=6), ending=_ENDINGS)
def test_hidden_bodies_never_change_what_is_parsed(
    bodies: list[tuple[bytes, bytes]], ending: bytes
) -> None:
    """With every body over 8 bytes kept out of the parser, any mix of boundary-like lines,
    blank lines, raw 8-bit bytes and line endings parses to the same tree and the same bytes as
    the standard library gives, under both policies."""
    parts = [
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: " + cte + b"\r\n\r\n" + body
        for body, cte in bodies
    ]
    payload = mail(parts, boundary=b"B").replace(b"\r\n", ending)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mime, "LARGE_BODY", 8)
        assert_same_as_stdlib(payload)
        assert_same_as_stdlib(payload, default_policy)


# -- memory: a ratio to the input, measured in a child process ---------------------------------

_CHILD = r"""
import base64, gc, json, sys, tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from normalizer.email import decode_email
from omnichannel.config import default_config
from omnichannel.inbox import Inbox
from omnichannel.schema import RawMessage

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

mode, url = sys.argv[1], sys.argv[2]
content = bytes(range(256)) * (15 * 4096)  # 15 MiB: about 20 MiB of mail in base64
payload = (
    b"From: warga@example.id\r\nSubject: Foto\r\nMessage-ID: <besar@example.id>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=BB\r\n\r\n"
    b"--BB\r\nContent-Type: text/plain\r\n\r\nLihat lampiran.\r\n"
    b"--BB\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
    b"Content-Disposition: attachment; filename=a.pdf\r\n\r\n"
    + base64.encodebytes(content).replace(b"\n", b"\r\n") + b"--BB--\r\n"
)
inbox = Inbox(default_config(url=url)) if mode == "receive" else None
gc.collect()
if mode == "decode":
    tracemalloc.start()
    message = decode_email(payload, connector="files", external_id="x")
    peak = tracemalloc.get_traced_memory()[1]
    assert message.attachments[0].content == content
else:
    raw = RawMessage(connector="files", external_id="besar", received_at=datetime.now(UTC),
                     content_type="message/rfc822", payload=payload)
    before = status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here
    result = inbox.receive(raw)
    peak = status("VmHWM") - before
    assert result.outcome.value == "new", result
print(json.dumps({"input": len(payload), "peak": peak}))
"""


def _peak_ratio(mode: str, url: str) -> float:
    """The peak memory of decoding (``decode``) or receiving (``receive``) a 20 MiB mail in a
    child process, as a multiple of the mail's size."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, mode, url],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return float(figures["peak"]) / float(figures["input"])


def test_decoding_a_large_attachment_allocates_less_than_its_size_again() -> None:
    """Decoding a 20 MiB mail with one base64 attachment allocates (tracemalloc, in a child
    process) less than 1.5 times the mail: the content once, not the text, lines and copies of
    the standard library's parser (about 8 times the mail)."""
    assert _peak_ratio("decode", "sqlite://") < 1.5


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_storing_decoding_and_filing_a_large_mail_stays_within_six_times_its_size(
    database_url: str,
) -> None:
    """Storing, decoding and filing a 20 MiB mail raises the child process's peak resident
    memory by less than 6 times the mail, the database driver's own copies included."""
    assert _peak_ratio("receive", database_url) < 6


def test_a_zip_attachment_is_stored_as_sent_never_inflated() -> None:
    """Nothing decompresses attachments: a zip of 20 MiB of zeros is kept as its few KB."""
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("nol.bin", bytes(20 * 1024 * 1024))
    zipped = packed.getvalue()
    message = decode(mail([text_part(), file_part(1, zipped, b"application/zip")]))
    assert [a.content for a in message.attachments] == [zipped]
    assert message.attachments[0].size == len(zipped) < 100_000


# -- the web connector: fields, parts, names, lists --------------------------------------------


@pytest.fixture
def inbox(database_url: str) -> Iterator[Inbox]:
    config = parse_config(
        {
            "database": {"url": database_url},
            "connectors": [
                {
                    "name": "portal",
                    "type": "web",
                    "secret": WEB_SECRET,
                    "max_attachment_bytes": 2_000_000,
                },
                {
                    "name": "sms",
                    "type": "twilio",
                    "account_sid": ACCOUNT,
                    "auth_token": TWILIO_TOKEN,
                },
                {
                    "name": "wa",
                    "type": "whatsapp-cloud",
                    "app_secret": APP_SECRET,
                    "verify_token": "verifikasi",
                    "access_token": "EAAG-uji",
                    "phone_number_ids": [PNID],
                },
            ],
        }
    )
    with Inbox(config) as built:
        yield built


def post_web(inbox: Inbox, body: bytes, content_type: str, webhook_id: str = "msg_1") -> Any:
    signed = standard_webhooks_headers(WEB_SECRET, body, webhook_id=webhook_id)
    headers = {"content-type": content_type, **signed}
    request = WebhookRequest.build("POST", f"{HOST}/webhooks/portal", headers, body)
    return post_webhook(inbox, "portal", request)


def multipart(fields: list[tuple[str, bytes, str | None]]) -> bytes:
    """A multipart/form-data body (boundary ``pisah``): (name, value, filename or None)."""
    out = []
    for name, value, filename in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        kind = "\r\nContent-Type: image/jpeg" if filename else ""
        out.append(f"--pisah\r\nContent-Disposition: {disposition}{kind}\r\n\r\n".encode())
        out.append(value + b"\r\n")
    return b"".join(out) + b"--pisah--\r\n"


MULTIPART = "multipart/form-data; boundary=pisah"


def test_a_form_of_fifty_thousand_fields_is_refused_before_anything_is_stored(
    inbox: Inbox,
) -> None:
    """50,000 urlencoded fields (or one name repeated 50,000 times) get 400 naming the body,
    counted from the separators; nothing is stored."""
    many = urlencode([("message", TEXT)] + [(f"f{n}", "x") for n in range(50_000)]).encode()
    repeated = urlencode([("message", TEXT)] * 50_000).encode()
    for n, body in enumerate((many, repeated)):
        answer = post_web(inbox, body, FORM, f"msg_{n}")
        assert answer.status == 400 and json.loads(answer.body)["field"] == "body"
    assert count(inbox, raw_messages) == 0


def test_a_repeated_field_is_gathered_in_one_list() -> None:
    """A name repeated up to the limit becomes one list of every value, in order."""
    body = urlencode([("lampiran", str(n)) for n in range(1000)]).encode()
    assert parse_body(FORM, body)["lampiran"] == [str(n) for n in range(1000)]


def test_a_field_name_nested_ten_thousand_levels_is_refused(inbox: Inbox) -> None:
    """``a[b][b]...`` ten thousand levels deep would be ten thousand dictionaries: 400."""
    body = urlencode({"message": TEXT, "a" + "[b]" * 10_000: "x"}).encode()
    answer = post_web(inbox, body, FORM)
    assert answer.status == 400 and json.loads(answer.body)["field"] == "body"
    assert count(inbox, raw_messages) == 0


def test_multipart_forms_with_too_many_or_too_deep_parts_are_refused(inbox: Inbox) -> None:
    """A multipart form of 5,000 parts, or one nested 200 deep, gets 400; nothing is stored."""
    many = multipart([("message", TEXT.encode(), None)] + [("f", b"x", None)] * 5000)
    deep = multipart([("message", TEXT.encode(), None)]).removesuffix(b"--pisah--\r\n") + (
        b'--pisah\r\nContent-Disposition: form-data; name="lampiran"\r\n'
        + nested(200, b"x\r\n").split(b"MIME-Version: 1.0\r\n", 1)[1]
        + b"--pisah--\r\n"
    )
    for n, body in enumerate((many, deep)):
        answer = post_web(inbox, body, MULTIPART, f"msg_{n}")
        assert answer.status == 400, answer.body
        assert json.loads(answer.body)["field"] == "body"
    assert count(inbox, raw_messages) == 0


def test_a_large_uploaded_file_is_filed_byte_for_byte(inbox: Inbox) -> None:
    """A 1.5 MB photo in a multipart form is read from the body (the parser is not shown it)
    and filed unchanged."""
    photo = b"\xff\xd8\xff\xe0" + random.Random(1776).randbytes(1_500_000)
    body = multipart([("message", TEXT.encode(), None), ("attachments", photo, "jalan.jpg")])
    head = f"Content-Type: {MULTIPART}\r\n\r\n".encode()
    # (binary data holds a few line breaks and "--" lines of its own: those the parser sees)
    assert mime.parse(body, compat32, head=head).hidden >= 0.9 * len(photo)
    answer = post_web(inbox, body, MULTIPART)
    assert answer.status == 200, answer.body
    with inbox.store.transaction() as conn:
        stored = conn.execute(sa.select(attachments.c.content, attachments.c.sha256)).one()
    assert stored.content == photo and stored.sha256 == hashlib.sha256(photo).hexdigest()


def test_a_json_list_of_thousands_of_attachments_is_refused(inbox: Inbox) -> None:
    """5,000 attachment entries in a JSON submission are refused (400) before any is built."""
    items = [{"url": "https://contoh.example/a.jpg"}] * 5000
    body = json.dumps({"message": TEXT, "attachments": items}).encode()
    answer = post_web(inbox, body, "application/json")
    assert answer.status == 400 and json.loads(answer.body)["field"] == "attachments"
    assert count(inbox, raw_messages) == 0


# -- Twilio and WhatsApp ------------------------------------------------------------------------


def post_twilio(inbox: Inbox, fields: list[tuple[str, str]]) -> Any:
    url = f"{HOST}/webhooks/sms"
    headers = {
        "content-type": FORM,
        "x-twilio-signature": twilio_signature(url, fields, TWILIO_TOKEN),
    }
    request = WebhookRequest.build("POST", url, headers, urlencode(fields).encode())
    return post_webhook(inbox, "sms", request)


def sms(sid: int, **extra: str) -> list[tuple[str, str]]:
    fields = {
        "MessageSid": f"SM{sid:032x}",
        "AccountSid": ACCOUNT,
        "From": "+6281234567890",
        "To": "+6281100000001",
        "Body": TEXT,
        "NumMedia": "0",
        "SmsStatus": "received",
    }
    return list((fields | extra).items())


def twilio_media(n: int) -> str:
    return f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Messages/SM1/Media/ME{n}"


def test_a_twilio_form_of_fifty_thousand_fields_is_refused(inbox: Inbox) -> None:
    """50,000 fields are not a Twilio webhook: 400, counted before the form is split or a
    signature computed over it; nothing is stored."""
    assert post_twilio(inbox, sms(1) + [(f"X{n}", "y") for n in range(50_000)]).status == 400
    assert count(inbox, raw_messages) == 0


def test_num_media_of_a_hundred_thousand_costs_nothing(inbox: Inbox) -> None:
    """``NumMedia=100000`` with one media URL: filed with that one attachment; nothing is done
    a hundred thousand times."""
    answer = post_twilio(inbox, sms(2, NumMedia="100000", MediaUrl0=twilio_media(0)))
    assert answer.status == 200
    assert count(inbox, attachments) == 1


def test_hundreds_of_media_keep_the_first_hundred_and_count_the_rest(inbox: Inbox) -> None:
    """500 ``MediaUrlN``: the message is filed with MAX_ATTACHMENTS attachments and flagged
    ``attachments_omitted`` with the other 400 (they stay in the raw payload)."""
    media = {f"MediaUrl{n}": twilio_media(n) for n in range(500)}
    assert post_twilio(inbox, sms(3, NumMedia="500", **media)).status == 200
    assert count(inbox, attachments) == MAX_ATTACHMENTS
    with inbox.store.transaction() as conn:
        flags = conn.execute(sa.select(messages.c.flags)).scalar_one()
    assert flags["attachments_omitted"] == 500 - MAX_ATTACHMENTS


def post_meta(inbox: Inbox, body: bytes) -> Any:
    headers = {
        "content-type": "application/json",
        "x-hub-signature-256": meta_signature(body, APP_SECRET),
    }
    return post_webhook(
        inbox, "wa", WebhookRequest.build("POST", f"{HOST}/webhooks/wa", headers, body)
    )


def test_a_batch_of_thousands_stores_each_message_with_its_own_contact_only(
    inbox: Inbox,
) -> None:
    """1,200 messages and 1,200 contacts in one notification: every message is stored (in
    several transactions), each with its own sender's contact, so that the stored payloads add
    up to about the notification's size, not messages times contacts; each keeps its name."""
    numbers = [f"62812{n:07d}" for n in range(1200)]
    value = {
        "metadata": {"phone_number_id": PNID},
        "contacts": [{"wa_id": wa, "profile": {"name": f"Warga {wa[-4:]}"}} for wa in numbers],
        "messages": [
            {
                "from": wa,
                "id": f"wamid.{wa}",
                "timestamp": "1764468000",
                "type": "text",
                "text": {"body": TEXT},
            }
            for wa in numbers
        ],
    }
    change = {"field": "messages", "value": value}
    envelope = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [change]}]}
    body = json.dumps(envelope).encode()
    answer = post_meta(inbox, body)
    assert answer.status == 200 and json.loads(answer.body) == {"received": 1200}
    with inbox.store.transaction() as conn:
        rows, size = conn.execute(
            sa.select(sa.func.count(), sa.func.sum(raw_messages.c.size))
        ).one()
    assert rows == 1200 and size < 2 * len(body)
    last = inbox.complaints(limit=None)[-1]
    assert last.sender.name == f"Warga {numbers[-1][-4:]}"


def test_meta_json_nested_too_deep_or_with_a_hundred_thousand_entries(inbox: Inbox) -> None:
    """Arrays nested 100,000 deep cannot be read: stored whole and quarantined; 100,000
    entries without messages are a 200 with nothing stored; neither is a 500."""
    deep = b'{"object": "whatsapp_business_account", "entry": ' + b"[" * 100_000
    assert post_meta(inbox, deep + b"]" * 100_000 + b"}").status == 200
    assert [q["error"] for q in inbox.quarantined()] == [
        "not a JSON WhatsApp message (or a number out of range)"
    ]
    empty = json.dumps({"object": "whatsapp_business_account", "entry": [{}] * 100_000}).encode()
    answer = post_meta(inbox, empty)
    assert answer.status == 200 and json.loads(answer.body) == {"received": 0}
    assert count(inbox, raw_messages) == 1  # (the deep one)


# -- compressed bodies --------------------------------------------------------------------------


def test_compressed_request_bodies_are_refused_not_inflated(inbox: Inbox) -> None:
    """A gzip bomb (10 MB of zeros in about 10 KB) with ``Content-Encoding: gzip`` gets 415 on
    every webhook connector, before any signature is looked at; nothing is stored."""
    bomb = gzip.compress(bytes(10 * 1024 * 1024))
    signed = standard_webhooks_headers(WEB_SECRET, bomb, webhook_id="msg_gz")
    web = {"content-type": "application/json", "content-encoding": "gzip", **signed}
    twilio = {"content-type": FORM, "content-encoding": "gzip", "x-twilio-signature": "x"}
    meta = {"content-type": "application/json", "content-encoding": "gzip"}
    for name, headers in (("portal", web), ("sms", twilio), ("wa", meta)):
        request = WebhookRequest.build("POST", f"{HOST}/webhooks/{name}", headers, bomb)
        answer = post_webhook(inbox, name, request)
        assert answer.status == 415, (name, answer.body)
    assert count(inbox, raw_messages) == 0


def test_a_compressed_media_download_is_cut_at_its_size_limit() -> None:
    """Media served with ``Content-Encoding: gzip`` (64 MiB of zeros in 64 KiB) are inflated by
    the HTTP client only as far as the download's size limit: refused past 1 MiB, with the peak
    of allocations a few MiB, not 64."""
    bomb = gzip.compress(bytes(64 * 1024 * 1024))

    def media(environ: dict[str, Any], start: Any) -> list[bytes]:
        headers = [("Content-Type", "image/jpeg"), ("Content-Encoding", "gzip")]
        start("200 OK", [*headers, ("Content-Length", str(len(bomb)))])
        return [bomb]

    with serve_wsgi(media) as base:
        options = {"account_sid": ACCOUNT, "auth_token": TWILIO_TOKEN, "api_base_url": base}
        connector = TwilioConnector.from_options("sms", options, ConnectorContext())
        path = f"/2010-04-01/Accounts/{ACCOUNT}/Messages/MM{'1' * 32}/Media/ME{'2' * 32}"
        tracemalloc.start()
        try:
            with pytest.raises(SkippableError, match="larger than"):
                connector.fetch_media(base + path, max_bytes=1024 * 1024)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            connector.close()
    assert peak < 8 * 1024 * 1024


# -- one expensive submission does not hold up another's answer -------------------------------


class _HeldWeb(WebConnector):
    """A web connector that holds a submission marked ``LAMBAT`` (slow) until released: in
    ``parse`` (its request's thread) or in ``decode`` by the filing worker (``hold_in``)."""

    hold_in = "parse"
    entered: threading.Event
    release: threading.Event

    def _hold(self, payload: bytes, where: str) -> None:
        if where == self.hold_in and b"LAMBAT" in payload:
            self.entered.set()
            self.release.wait(60)

    def parse(self, request: WebhookRequest) -> list[RawMessage]:
        self._hold(request.body, "parse")
        return super().parse(request)

    def decode(self, raw: RawMessage) -> InboundMessage:
        if threading.current_thread().name == "omnichannel-filing":
            self._hold(raw.payload, "decode")
        return super().decode(raw)


@pytest.fixture
def held(database_url: str, request: pytest.FixtureRequest) -> Iterator[tuple[_HeldWeb, str]]:
    """A served inbox (waitress, 4 threads, the filing worker in a thread: as ``serve``) with a
    holding web connector; a web request waits ``request.param`` seconds for its filing."""
    config = parse_config({"database": {"url": database_url}, "filing": {"wait": request.param}})
    with Inbox(config) as inbox:
        connector = _HeldWeb.from_options("portal", {"secret": WEB_SECRET}, inbox.context)
        assert isinstance(connector, _HeldWeb)
        connector.entered, connector.release = threading.Event(), threading.Event()
        inbox.add_connector(connector)
        inbox.worker.start(interval=0.2)
        try:
            with serve_wsgi(create_app(inbox), threads=4) as url:
                yield connector, url
        finally:
            connector.release.set()


def submit(url: str, text: str, webhook_id: str) -> requests.Response:
    body = json.dumps({"message": text, "phone": "081234567890"}).encode()
    signed = standard_webhooks_headers(WEB_SECRET, body, webhook_id=webhook_id)
    headers = {"Content-Type": "application/json", **signed}
    return requests.post(f"{url}/webhooks/portal", data=body, headers=headers, timeout=60)


def submit_slow(url: str) -> tuple[threading.Thread, list[requests.Response]]:
    """A large submission marked to be held, sent from a thread of its own."""
    answers: list[requests.Response] = []
    text = "LAMBAT " + TEXT * 1000
    thread = threading.Thread(target=lambda: answers.append(submit(url, text, "msg_slow")))
    thread.start()
    return thread, answers


@pytest.mark.parametrize("held", [5.0], indirect=True)  # the default filing wait
def test_a_submission_held_in_its_request_does_not_delay_another(
    held: tuple[_HeldWeb, str],
) -> None:
    """While one submission is held inside its request, a small one sent after it is answered
    200 with its ticket: the server answers on several threads, and its filing worker, which
    gives way to the requests in hand, still files a batch a second (within the filing wait)."""
    connector, url = held
    connector.hold_in = "parse"
    slow, answers = submit_slow(url)
    assert connector.entered.wait(30)
    small = submit(url, OTHER, "msg_small")
    assert not connector.release.is_set() and slow.is_alive()  # answered while the other waits
    assert small.status_code == 200 and small.json()["ticket"].startswith("ADU-")
    connector.release.set()
    slow.join(60)
    assert [answer.status_code for answer in answers] == [200]


@pytest.mark.parametrize("held", [1.0], indirect=True)
def test_a_submission_held_in_filing_delays_another_at_most_by_the_filing_wait(
    held: tuple[_HeldWeb, str],
) -> None:
    """While the filing worker is held on one submission, a small one is answered when its
    filing wait is over, 202 with a receipt; it is filed once the worker is released."""
    connector, url = held
    connector.hold_in = "decode"
    slow, _ = submit_slow(url)
    assert connector.entered.wait(30)
    small = submit(url, OTHER, "msg_small")
    assert not connector.release.is_set()  # answered while the worker was still held
    assert small.status_code == 202, small.text
    connector.release.set()
    slow.join(60)
    receipt = requests.get(small.json()["status_url"], timeout=10)
    for _ in range(300):  # (polled: the worker files it after the held one)
        if receipt.status_code == 200:
            break
        time.sleep(0.1)
        receipt = requests.get(small.json()["status_url"], timeout=10)
    assert receipt.status_code == 200 and receipt.json()["outcome"] == "new"
