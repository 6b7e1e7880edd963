"""Values the store cannot hold, and nothing silently dropped (issue 17).

Every decoder is fed what no column can take — integers past 64 bits or past Python's
4,300-digit conversion limit, ``NaN``/``Infinity``/``1e999``, NUL characters, lone surrogates,
strings longer than their column — and ids longer than their column. A web request is answered
``400 {"error", "field"}`` naming the field, with nothing stored; a payload stored raw first
(provider webhooks, Gammu rows, files) is quarantined with its error while the rest of its
batch is filed; free text loses its NUL characters and is filed. Webhooks go over real HTTP on
loopback, signed as the connectors' own tests sign them; every store case runs on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnichannel import Inbox, Outcome
from omnichannel.config import parse_config
from omnichannel.http import create_app
from omnichannel.schema import InboundMessage, Sender
from omnichannel.store.tables import complaints, messages, quarantine, raw_messages
from omnichannel.testing import (
    hmac_header,
    meta_signature,
    post_webhook,
    standard_webhooks_headers,
)
from omnichannel.testing.http import serve_wsgi
from omnichannel.values import (
    UnstorableValue,
    loads_json,
    storable_id,
    storable_inbound,
)
from omnichannel.webhook import WebhookRequest
from tests.gammu_schema import open_gateway
from tests.helpers import T0, count, raw_json
from tests.test_gammu import Clock, connector, poll
from tests.test_twilio import ACCOUNT, TOKEN, sms_fields
from tests.test_twilio import post as twilio_post
from tests.test_web import GATEWAY_MAPPING, GATEWAY_SECRET, SECRET
from tests.test_whatsapp_cloud import APP_SECRET, PNID

HUGE = "9" * 5000
"""An integer no ``int()``/``str()`` may convert (Python's limit is 4,300 digits)."""
PHONE = "+6281234567890"


@pytest.fixture
def hostile(database_url: str) -> Iterator[Inbox]:
    """Every webhook connector, and the files connector, on the backend under test."""
    config = parse_config(
        {
            "database": {"url": database_url},
            "connectors": [
                {"name": "portal", "type": "web", "secret": SECRET},
                {
                    "name": "gateway",
                    "type": "web",
                    "secret": GATEWAY_SECRET,
                    "signature": "hmac-header",
                    "hmac_header": "X-Gateway-Signature",
                    "mapping": GATEWAY_MAPPING,
                },
                {"name": "sms", "type": "twilio", "account_sid": ACCOUNT, "auth_token": TOKEN},
                {
                    "name": "wa",
                    "type": "whatsapp-cloud",
                    "app_secret": APP_SECRET,
                    "verify_token": "token-verifikasi",
                    "access_token": "EAAG-akses",
                    "phone_number_ids": [PNID],
                },
                {"name": "files", "type": "files", "path": "inbox"},
            ],
        }
    )
    with Inbox(config) as inbox:
        yield inbox


@pytest.fixture
def base_url(hostile: Inbox) -> Iterator[str]:
    with serve_wsgi(create_app(hostile)) as url:
        yield url


def rows(inbox: Inbox, query: Any) -> list[Any]:
    with inbox.store.transaction() as conn:
        return list(conn.execute(query).all())


def statuses(inbox: Inbox) -> list[str]:
    return [s for (s,) in rows(inbox, sa.select(raw_messages.c.status))]


def post_portal(
    base_url: str, body: bytes, webhook_id: str, content_type: str = "application/json"
) -> requests.Response:
    signed = standard_webhooks_headers(SECRET, body, webhook_id=webhook_id)
    headers = {"Content-Type": content_type, **signed}
    return requests.post(f"{base_url}/webhooks/portal", data=body, headers=headers, timeout=10)


def post_gateway(base_url: str, body: bytes) -> requests.Response:
    signed = hmac_header(body, GATEWAY_SECRET)
    headers = {"Content-Type": "application/json", "X-Gateway-Signature": signed}
    return requests.post(f"{base_url}/webhooks/gateway", data=body, headers=headers, timeout=10)


def post_meta(base_url: str, body: bytes) -> requests.Response:
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": meta_signature(body, APP_SECRET),
    }
    return requests.post(f"{base_url}/webhooks/wa", data=body, headers=headers, timeout=10)


MESSAGE = '"message": "Jalan di depan kantor desa rusak parah."'


# -- web: JSON ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("{" + MESSAGE + ', "phone": ' + HUGE + "}", "phone"),
        ('{"message": 1e999}', "message"),
        ("{" + MESSAGE + ', "location": {"lat": NaN, "lon": 119.4}}', "location.lat"),
        ("{" + MESSAGE + ', "location": {"lat": -5.1, "lon": Infinity}}', "location.lon"),
        ("{" + MESSAGE + ', "location": {"lat": 1' + "0" * 400 + ', "lon": 1}}', "location.lat"),
        ("{" + MESSAGE + ', "phone": "0812\\u00003456789"}', "phone"),
        ("{" + MESSAGE + ', "email": "andi\\u0000@example.id"}', "email"),
        ('{"message": "Jalan rusak \\ud800 parah"}', "message"),
        ("{" + MESSAGE + ', "name": "Andi \\udc00"}', "name"),
        ("{" + MESSAGE + ', "subject": "\\udbff"}', "subject"),
        ("{" + MESSAGE + ', "location": {"address": "Jl. \\ud800"}}', "location.address"),
        ("{" + MESSAGE + ', "email": "' + "a" * 400 + '@example.id"}', "email"),
        ("{" + MESSAGE + ', "phone": "' + "8" * 40 + '"}', "phone"),
        ("{" + MESSAGE + ', "category": "' + "k" * 65 + '"}', "category"),
        ("{" + MESSAGE + ', "agency": ' + "7" * 100 + "}", "agency"),
        (
            "{"
            + MESSAGE
            + ', "attachments": [{"content": "aGFsbw==", "content_type": "image/png\\u0000"}]}',
            "attachments[0].content_type",
        ),
    ],
    ids=[
        "huge-int",
        "1e999",
        "nan",
        "infinity",
        "float-overflow",
        "nul-phone",
        "nul-email",
        "surrogate-text",
        "surrogate-name",
        "surrogate-subject",
        "surrogate-address",
        "long-email",
        "long-phone",
        "long-category",
        "long-number-agency",
        "nul-content-type",
    ],
)
def test_portal_json_the_store_cannot_hold_is_400_naming_the_field(
    hostile: Inbox, base_url: str, body: str, field: str
) -> None:
    """A portal JSON body with a number out of range, a NUL in an identifier, a lone
    surrogate or a value longer than its column is answered 400 naming the field; the error
    never quotes the value, and nothing is stored."""
    answer = post_portal(base_url, body.encode(), "msg_hostile_1")
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == field
    assert "\\u0000" not in answer.text and "kkkk" not in answer.text and "aaaa" not in answer.text
    assert count(hostile, raw_messages) == 0


def test_nul_characters_are_removed_from_free_text_on_every_web_body(
    hostile: Inbox, base_url: str
) -> None:
    """A NUL in the text, subject or name of a JSON, form or multipart submission is removed
    (nothing a citizen meant is lost) and the complaint is filed."""
    as_json = json.dumps(
        {"message": "Jalan\x00 rusak parah.", "subject": "Ja\x00lan", "name": "An\x00di"}
    ).encode()
    as_form = urlencode({"message": "Lampu\x00 jalan mati.", "subject": "La\x00mpu"}).encode()
    as_multipart = (
        b'--B\r\nContent-Disposition: form-data; name="message"\r\n\r\n'
        b"Selokan\x00 tersumbat.\r\n--B--\r\n"
    )
    answers = [
        post_portal(base_url, as_json, "msg_nul_1"),
        post_portal(base_url, as_form, "msg_nul_2", "application/x-www-form-urlencoded"),
        post_portal(base_url, as_multipart, "msg_nul_3", "multipart/form-data; boundary=B"),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    stored = rows(
        hostile,
        sa.select(messages.c.body, messages.c.subject, messages.c.sender_name).order_by(
            messages.c.id
        ),
    )
    assert [body for body, _, _ in stored] == [
        "Jalan rusak parah.",
        "Lampu jalan mati.",
        "Selokan tersumbat.",
    ]
    assert stored[0][1:] == ("Jalan", "Andi") and stored[1][1] == "Lampu"


# -- web: form and multipart ---------------------------------------------------------------------


def _multipart(**fields: str) -> bytes:
    parts = [
        f'--B\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    return ("".join(parts) + "--B--\r\n").encode()


@pytest.mark.parametrize(
    ("body", "content_type", "field"),
    [
        (b"message=Jalan+rusak&phone=0812%003456", "application/x-www-form-urlencoded", "phone"),
        (
            b"message=Jalan+rusak&location[lat]=nan&location[lon]=1",
            "application/x-www-form-urlencoded",
            "location.lat",
        ),
        (
            b"message=Jalan+rusak&location_lat=1e999&location_lon=1",
            "application/x-www-form-urlencoded",
            "location_lat",
        ),
        (
            b"message=Jalan+rusak&category=" + b"k" * 65,
            "application/x-www-form-urlencoded",
            "category",
        ),
        (
            _multipart(message="Jalan rusak", email="x" * 400 + "@example.id"),
            "multipart/form-data; boundary=B",
            "email",
        ),
        (
            _multipart(message="Jalan rusak", phone="0812\x003456"),
            "multipart/form-data; boundary=B",
            "phone",
        ),
    ],
    ids=["form-nul", "form-nan", "form-inf", "form-long", "multipart-long", "multipart-nul"],
)
def test_form_and_multipart_the_store_cannot_hold_are_400_naming_the_field(
    hostile: Inbox, base_url: str, body: bytes, content_type: str, field: str
) -> None:
    """Form and multipart fields get the same answer as JSON: 400 naming the field, nothing
    stored."""
    answer = post_portal(base_url, body, "msg_form_1", content_type)
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == field
    assert count(hostile, raw_messages) == 0


# -- ids longer than their column --------------------------------------------------------------


def test_ids_longer_than_the_column_are_hashed_never_cut(hostile: Inbox, base_url: str) -> None:
    """Two 1,000-character ids that share their first 600 characters are two messages, each
    stored under the sha256 of its whole id; a redelivery of each is a duplicate."""
    first, second = "x" * 600 + "a" * 400, "x" * 600 + "b" * 400

    def submit(external_id: str, text: str) -> requests.Response:
        data = {"id": external_id, "from": "081234567890", "message": text}
        return post_gateway(base_url, json.dumps({"data": data}).encode())

    answers = [
        submit(first, "Jalan di Desa Bontoa rusak parah."),
        submit(second, "Lampu penerangan di Jalan Poros mati."),
        submit(first, "Jalan di Desa Bontoa rusak parah."),
        submit(second, "Lampu penerangan di Jalan Poros mati."),
    ]
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert [a.json()["outcome"] for a in answers] == ["new", "new", "duplicate", "duplicate"]
    assert answers[0].json()["ticket"] != answers[1].json()["ticket"]
    stored = {e for (e,) in rows(hostile, sa.select(raw_messages.c.external_id))}
    assert stored == {storable_id(first), storable_id(second)}
    assert all(e.startswith("sha256:") and len(e) <= 512 for e in stored)
    filed = {e for (e,) in rows(hostile, sa.select(messages.c.external_id))}
    assert filed == stored


def test_a_mapped_id_with_a_nul_character_is_refused(hostile: Inbox, base_url: str) -> None:
    """An id is never cleaned into another id: one with a NUL character is a 400 naming the
    payload's field, and nothing is stored."""
    data = {"id": "sms-1\x00", "from": "081234567890", "message": "Jalan rusak."}
    answer = post_gateway(base_url, json.dumps({"data": data}).encode())
    assert answer.status_code == 400
    assert answer.json()["field"] == "data.id"
    assert count(hostile, raw_messages) == 0


@pytest.mark.parametrize("stamp", ["9" * 4300, "9" * 5000, "NaN", "1e999", str(-(2**70))])
def test_a_mapped_time_out_of_range_is_400_naming_its_field(
    hostile: Inbox, base_url: str, stamp: str
) -> None:
    """A foreign system's time that is no time (an integer of thousands of digits, NaN,
    1e999, -2**70) is a 400 naming the payload's field, not a 500."""
    body = (
        '{"data": {"id": "sms-7", "from": "081234567890", "message": "Jalan rusak.", '
        f'"sentStamp": {stamp}}}}}'
    ).encode()
    answer = post_gateway(base_url, body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == "data.sentStamp"
    assert count(hostile, raw_messages) == 0


def test_email_message_ids_longer_than_the_column_still_thread(hostile: Inbox) -> None:
    """Two e-mails whose 10,000-character Message-IDs share their first 600 characters are two
    complaints (their ids are hashed, not cut into one); a reply to each joins its own. A NUL
    in an RFC 2047 subject is removed."""
    files = hostile.connector("files")
    ids = ["<" + "m" * 600 + tail * 9400 + "@warga.example.id>" for tail in ("a", "b")]

    def mail(message_id: str, subject: str, text: str, reply_to: str | None = None) -> Any:
        head = f"From: Warga <warga@example.id>\r\nSubject: {subject}\r\nMessage-ID: {message_id}"
        if reply_to:
            head += f"\r\nIn-Reply-To: {reply_to}"
        payload = f"{head}\r\n\r\n{text}\r\n".encode()
        return files.raw_from_file(Path("pengaduan.eml"), payload, T0)

    results = hostile.receive_many(
        [
            mail(ids[0], "=?utf-8?q?Izin=00usaha?=", "Izin usaha saya belum diproses."),
            mail(ids[1], "Jalan rusak", "Jalan di depan pasar berlubang besar."),
        ]
    )
    replies = hostile.receive_many(
        [
            mail("<r1@warga.example.id>", "Re: izin", "Sudah dua bulan.", ids[0]),
            mail("<r2@warga.example.id>", "Re: jalan", "Makin parah.", ids[1]),
        ]
    )
    assert [r.outcome for r in results] == [Outcome.NEW, Outcome.NEW]
    assert [r.outcome for r in replies] == [Outcome.MERGED, Outcome.MERGED]
    assert [r.complaint_id for r in replies] == [r.complaint_id for r in results]
    complaint = hostile.complaint(results[0].complaint_id or 0)
    assert complaint is not None and complaint.subject == "Izinusaha"


# -- WhatsApp Cloud: nothing silently dropped ----------------------------------------------------


def envelope(*messages: Any) -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "6281100000001", "phone_number_id": PNID},
        "contacts": [{"profile": {"name": "Andi"}, "wa_id": "6281234567890"}],
        "messages": list(messages),
    }
    change = {"field": "messages", "value": value}
    entry = {"id": "102290129340398", "changes": [change]}
    return json.dumps({"object": "whatsapp_business_account", "entry": [entry]}).encode()


def wa_text(text: str = "Jalan di depan pasar rusak.", **fields: Any) -> dict[str, Any]:
    message = {
        "from": "6281234567890",
        "timestamp": "1764468000",
        "type": "text",
        "text": {"body": text},
    }
    message.update(fields)
    return message


def test_meta_messages_without_a_usable_id_are_stored_and_quarantined(
    hostile: Inbox, base_url: str
) -> None:
    """A signed Meta message whose id is missing, empty, a number, a list, 10,000 characters
    or holds a NUL is stored and quarantined, not answered and forgotten; so is one with
    NaN or a lone surrogate. The valid one beside them is filed, and a redelivery of the
    whole webhook stores nothing again."""
    body = envelope(
        wa_text(),  # no id at all
        wa_text("kosong", id=""),
        wa_text("angka", id=12345),
        wa_text("daftar", id=["wamid.x"]),
        wa_text("panjang", id="wamid." + "w" * 10_000),
        wa_text("nul", id="wamid.a\x00b"),
        wa_text("Lampu jalan mati.", id="wamid.ok"),
        wa_text("angka", id="wamid.nan", timestamp=float("nan")),
        wa_text("Jalan \ud800 rusak", id="wamid.surrogate"),
    )
    first, again = post_meta(base_url, body), post_meta(base_url, body)
    assert (first.status_code, again.status_code) == (200, 200), first.text
    stored = rows(hostile, sa.select(raw_messages.c.external_id, raw_messages.c.status))
    assert len(stored) == 9
    by_id = dict(stored)
    assert by_id.pop("wamid.ok") == "processed"
    assert set(by_id.values()) == {"quarantined"}
    errors = [e for (e,) in rows(hostile, sa.select(quarantine.c.error))]
    assert len(errors) == 8
    assert sum("usable id" in e for e in errors) == 6
    assert any("lone surrogate" in e for e in errors)
    assert count(hostile, complaints) == 1


def test_a_signed_meta_body_that_cannot_be_read_is_stored_and_quarantined(
    hostile: Inbox, base_url: str
) -> None:
    """A signed Meta body holding an integer of 5,000 digits cannot be read at all: it is
    stored whole and quarantined (200, never a 500, never a 400 that Meta would give up on);
    a redelivery stores nothing more."""
    body = envelope(wa_text(id="wamid.big")).replace(b'"1764468000"', HUGE.encode())
    assert post_meta(base_url, body).status_code == 200
    assert post_meta(base_url, body).status_code == 200
    assert count(hostile, raw_messages) == 1
    [quarantined] = hostile.quarantined()
    assert "not a JSON WhatsApp message" in str(quarantined["error"])


# -- Twilio --------------------------------------------------------------------------------------


def test_twilio_form_values_are_filed_cleaned_or_quarantined(hostile: Inbox, base_url: str) -> None:
    """Signed Twilio webhooks are stored first, then: a NUL in the Body is removed and the
    message filed; a NUL in From quarantines its message; a NumMedia of 5,000 digits does not
    stop decoding; two status callbacks whose 1,000-character statuses share their first 600
    characters are two stored callbacks. Nothing is left unfiled."""
    callbacks = [
        sms_fields(4, MessageStatus="x" * 600 + tail * 400) for tail in ("a", "b")
    ]  # a status callback's key is "<sid>#<status>"
    cases = [
        sms_fields(1, "Jalan\x00 rusak di Maros."),
        sms_fields(2, "Lampu mati.", sender="+62812\x0034567890"),
        sms_fields(3, "Selokan tersumbat.", NumMedia=HUGE),
        *callbacks,
    ]
    answers = [twilio_post(base_url, fields) for fields in cases]
    assert [a.status_code for a in answers] == [200] * 5, [a.text for a in answers]
    assert sorted(statuses(hostile)) == ["processed"] * 4 + ["quarantined"]
    bodies = {b for (b,) in rows(hostile, sa.select(messages.c.body))}
    assert {"Jalan rusak di Maros.", "Selokan tersumbat."} <= bodies
    errors = [e for (e,) in rows(hostile, sa.select(quarantine.c.error))]
    assert errors == ["sender.phone: contains a NUL character"]
    outcomes = rows(hostile, sa.select(raw_messages.c.outcome).order_by(raw_messages.c.id))
    assert [o for (o,) in outcomes[-2:]] == ["ignored", "ignored"]


# -- .json documents -----------------------------------------------------------------------------


def test_json_documents_the_store_cannot_hold_are_quarantined_alone(hostile: Inbox) -> None:
    """A batch of `.json` documents: each value no column can hold quarantines its own
    document with an error naming the field (never the value), free text loses its NUL and
    is filed, and the rest of the batch is filed."""
    secret = "0812\x009876543"
    batch = [
        raw_json("fine-1", "Jalan rusak di Maros."),
        raw_json("nul-text", "Lampu\x00 jalan mati.", html="<p>Lampu\x00</p>"),
        raw_json("nul-phone", "Selokan tersumbat.", sender={"phone": secret}),
        raw_json("surrogate", "Pohon tumbang.", subject="Pohon \ud800"),
        raw_json("huge-flag", "Banjir.", flags={"angka": 10**30}),
        raw_json("nan-flag", "Banjir lagi.", flags={"angka": float("nan")}),
        raw_json(
            "huge-size",
            "Foto terlampir.",
            attachments=[{"content": "aGFsbw==", "size": 2**63}],
        ),
        raw_json("long-category", "Izin lambat.", category="k" * 65),
        raw_json("nul-message-id", "Pungli.", headers={"message-id": "<a\x00b@x>"}),
        raw_json("long-message-id", "Parkir liar.", headers={"message-id": "<" + "p" * 9000 + ">"}),
        raw_json("fine-2", "Jembatan retak."),
    ]
    results = hostile.receive_many(batch)
    outcome = {r.external_id: r.outcome for r in results}
    filed = ("fine-1", "nul-text", "long-message-id", "fine-2")
    assert all(outcome.pop(e) is Outcome.NEW for e in filed), outcome
    assert set(outcome.values()) == {Outcome.QUARANTINED}
    errors = {r.external_id: r.error or "" for r in results}
    assert errors["nul-phone"] == "sender.phone: contains a NUL character"
    assert errors["surrogate"].startswith("subject: ")
    assert errors["huge-flag"].startswith("flags: ")
    assert errors["nan-flag"].startswith("invalid JSON")
    assert errors["huge-size"].startswith("attachments[0].size")
    assert errors["long-category"] == "category: is too long (more than 64 characters)"
    assert errors["nul-message-id"].startswith("headers.message-id: ")
    assert not any("9876543" in e or "kkkk" in e for e in errors.values())
    assert "received" not in statuses(hostile)
    stored = rows(hostile, sa.select(messages.c.body, messages.c.html, messages.c.message_id))
    assert ("Lampu jalan mati.", "<p>Lampu</p>", "nul-text") in stored
    assert any(m == storable_id("<" + "p" * 9000 + ">") for _, _, m in stored)


# -- Gammu rows ----------------------------------------------------------------------------------


def test_gammu_rows_the_store_cannot_hold_are_quarantined_and_the_rest_filed(
    hostile: Inbox, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Rows of a Gammu gateway: a NUL in the text is removed and the SMS filed; a NUL in the
    sender quarantines that SMS; a PartCount of 10**18 is not a message's (it stands alone
    instead of making the decoder count every missing part); every row is claimed and nothing
    is left unfiled."""
    gateway = open_gateway(request, "sqlite-18", tmp_path)
    try:
        text = "Jalan\x00 rusak di Bontoa."
        gateway.insert(
            SenderNumber="081234567890",
            Text=text.encode("utf-16-be").hex(),
            TextDecoded=text,
            Coding="Default_No_Compression",
        )
        gateway.insert(
            SenderNumber="0812\x0034567890",
            Text="Lampu mati.".encode("utf-16-be").hex(),
            TextDecoded="Lampu mati.",
            Coding="Default_No_Compression",
        )
        gateway.insert(
            SenderNumber="081299990000",
            Text="Selokan tersumbat.".encode("utf-16-be").hex(),
            TextDecoded="Selokan tersumbat.",
            Coding="Default_No_Compression",
            MessageID=77,
            SequencePosition=1,
            PartCount=10**18,
        )
        results = poll(hostile, connector(gateway, clock=Clock()))
        assert sorted(r.outcome.value for r in results) == ["new", "new", "quarantined"]
        assert all(gateway.processed().values())
    finally:
        gateway.dispose()
    bodies = {b for (b,) in rows(hostile, sa.select(messages.c.body))}
    assert bodies == {"Jalan rusak di Bontoa.", "Selokan tersumbat."}
    errors = [e for (e,) in rows(hostile, sa.select(quarantine.c.error))]
    assert errors == ["sender.phone: contains a NUL character"]


# -- the Python API and the rules themselves -----------------------------------------------------


def test_receive_inbound_refuses_what_the_store_cannot_hold_before_storing(
    hostile: Inbox,
) -> None:
    """``receive_inbound`` (a portal's own form, from Python) raises UnstorableValue naming
    the field, and stores nothing."""
    message = InboundMessage(
        channel="web", external_id="form-1", text="Jalan rusak.", sender=Sender(name="\ud800")
    )
    with pytest.raises(UnstorableValue) as caught:
        hostile.receive_inbound(message, connector="files")
    assert caught.value.field == "sender.name"
    assert count(hostile, raw_messages) == 0


def test_a_value_only_the_database_refuses_quarantines_its_message_alone(
    hostile: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were a value to get past the checks and fail on INSERT (a lone surrogate, on either
    backend), the batch is filed again in parts: that message alone is quarantined with a
    clean error, the rest are filed, and filing ends."""
    from omnichannel import pipeline

    monkeypatch.setattr(pipeline, "storable_inbound", lambda message: message)
    monkeypatch.setattr(pipeline, "storable_normalized", lambda message: message)
    results = hostile.receive_many(
        [
            raw_json("ok-1", "Jalan rusak."),
            raw_json("poison", "Lampu mati.", sender={"handle": "warga\ud800"}),
            raw_json("ok-2", "Jembatan retak."),
        ]
    )
    assert [r.outcome for r in results] == [Outcome.NEW, Outcome.QUARANTINED, Outcome.NEW]
    assert "surrogate" in (results[1].error or "")
    assert "received" not in statuses(hostile)


def test_loads_json_refuses_or_marks_numbers_out_of_range() -> None:
    """NaN, Infinity, 1e999 and integers past Python's conversion limit raise ValueError; in
    the lenient mode they become markers, so that the field holding one can be named."""
    for text in ("NaN", "[-Infinity]", '{"a": 1e999}', HUGE, "-" + HUGE):
        with pytest.raises(ValueError):
            loads_json(text)
    marked = loads_json('{"a": NaN, "b": ' + HUGE + ', "c": 1.5, "d": 7}', strict=False)
    assert repr(marked["a"]) == repr(marked["b"]) == "<number out of range>"
    assert (marked["c"], marked["d"]) == (1.5, 7)
    assert loads_json("9" * 4300) == int("9" * 4300)


def test_free_text_loses_nul_and_identifiers_are_refused() -> None:
    """The rule per field: free text (text, subject, html, names, addresses, header values)
    loses its NUL characters; an identifier or bounded field with one is refused, and the
    error names the field but never quotes the value."""
    message = InboundMessage(
        channel="sms",
        external_id="sms-1",
        text="Ja\x00lan",
        html="<b>\x00</b>",
        subject="Su\x00bjek",
        sender=Sender(name="An\x00di"),
        headers={"x-note": "a\x00b"},
    )
    storable_inbound(message)
    assert (message.text, message.html, message.subject) == ("Jalan", "<b></b>", "Subjek")
    assert message.sender.name == "Andi" and message.headers == {"x-note": "ab"}
    for field, change in [
        ("external_id", {"external_id": "sms\x001"}),
        ("in_reply_to", {"in_reply_to": "<a\x00@b>"}),
        ("references[1]", {"references": ["<a@b>", "<c\x00@d>"]}),
        ("sender.email", {"sender": Sender(email="rahasia\x00@example.id")}),
        ("agency", {"agency": "PUPR\x00"}),
    ]:
        fields: dict[str, Any] = {"channel": "sms", "external_id": "sms-2"} | change
        with pytest.raises(UnstorableValue) as caught:
            storable_inbound(InboundMessage(**fields))
        assert caught.value.field == field
        assert "rahasia" not in str(caught.value)


def test_the_key_of_a_meta_message_without_an_id_is_stable() -> None:
    """The key of a Meta message without a usable id is the sha256 of its content: the same
    for a redelivery, different for another message."""
    from normalizer.whatsapp import content_key

    one, other = wa_text("satu"), wa_text("dua")
    assert content_key(one) == content_key(json.loads(json.dumps(one)))
    assert content_key(one) != content_key(other)
    assert content_key(one).startswith("sha256:")


# -- property-based: any value in any portal field -----------------------------------------------

_FIELDS = ["message", "subject", "name", "email", "phone", "category", "agency", "id"]
_NUMBERS = [
    "9" * 5000,
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-2e308",
    str(2**63),
    str(-(2**70)),
]
_TOKENS = st.one_of(
    st.builds(lambda text: json.dumps(text), st.text(max_size=400)),  # any code point, NUL too
    st.builds(lambda n: json.dumps(n), st.integers() | st.floats(allow_nan=False)),
    st.sampled_from(_NUMBERS),
    st.sampled_from(['"\\ud800"', '"a\\u0000b"', '"' + "x" * 600 + '"']),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.dictionaries(st.sampled_from(_FIELDS), _TOKENS, min_size=1))
def test_any_value_in_any_portal_field_is_filed_or_refused_naming_it(
    hostile: Inbox, values: dict[str, str]
) -> None:
    """A signed portal submission with any text (NUL, lone surrogates, every plane), any
    number (NaN, infinities, 5,000 digits) or an over-long value in any of its fields is
    either filed (200, never quarantined: what the store cannot hold is found before) or
    refused with 400 naming a field it holds (or the message it lacks); never a 500, and
    nothing is left unfiled."""
    body = ("{" + ", ".join(f'"{key}": {token}' for key, token in values.items()) + "}").encode()
    webhook_id = f"msg_{hashlib.sha256(body).hexdigest()[:40]}"
    headers = {
        "Content-Type": "application/json",
        **standard_webhooks_headers(SECRET, body, webhook_id=webhook_id),
    }
    request = WebhookRequest.build("POST", "http://x/webhooks/portal", headers, body)
    answer = post_webhook(hostile, "portal", request)
    assert answer.status in (200, 400), answer.body
    result = json.loads(answer.body)
    if answer.status == 400:
        assert result["field"] in [*values, "message"]  # (a message is required)
    else:
        assert result["outcome"] in ("new", "merged", "duplicate", "ignored")
    assert "received" not in statuses(hostile)
