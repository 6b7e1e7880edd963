"""The ``.json`` document format: an InboundMessage written as JSON."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from normalizer.jsondoc import decode_json_document, json_external_id
from omnichannel.errors import DecodeError
from omnichannel.schema import InboundMessage

RECEIVED = datetime(2026, 11, 30, 2, 15, tzinfo=UTC)
CONNECTOR = "files-inbox"


def _doc(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def _decode(payload: bytes) -> InboundMessage:
    return decode_json_document(payload, connector=CONNECTOR, received_at=RECEIVED)


def test_minimal_document() -> None:
    """channel, external_id and text suffice; connector and received_at are filled in."""
    message = _decode(_doc(channel="sms", external_id="sms-1", text="Ada pungli di loket."))
    assert message.channel == "sms"
    assert message.external_id == "sms-1"
    assert message.text == "Ada pungli di loket."
    assert message.connector == CONNECTOR
    assert message.received_at == RECEIVED
    assert message.sender.is_empty()


def test_full_document() -> None:
    """Sender, location, times, flags and base64 attachments are all read."""
    photo = b"\xff\xd8\xff\xe0 foto kwitansi \xff\xd9"
    payload = _doc(
        channel="whatsapp",
        connector="wa-gateway",
        external_id="wamid.HBgNNjI4MTIwMDAwMTIzNBUCABIYFjNFQjBGMDAx",
        received_at="2026-11-18T01:02:03Z",
        sent_at="2026-11-18T09:01:00+08:00",
        sender={"name": "Ibu Hasnah", "phone": "0812-0000-1234"},
        subject="Izin usaha",
        text="Foto kwitansi terlampir.",
        attachments=[
            {
                "filename": "kwitansi.jpg",
                "content_type": "image/jpeg",
                "size": len(photo),
                "sha256": hashlib.sha256(photo).hexdigest(),
                "content": base64.b64encode(photo).decode(),
            }
        ],
        location={"lat": -5.0057, "lon": 119.5726, "address": "Kec. Turikale, Maros"},
        in_reply_to="wamid.PREVIOUS",
        flags={"forwarded": True},
        anonymous=False,
        confidential=True,
    )
    message = _decode(payload)
    assert message.connector == "wa-gateway"
    assert message.received_at == datetime(2026, 11, 18, 1, 2, 3, tzinfo=UTC)
    assert message.sent_at == datetime(2026, 11, 18, 1, 1, tzinfo=UTC)
    assert message.sender.name == "Ibu Hasnah"
    assert message.sender.phone == "0812-0000-1234"
    assert message.attachments[0].content == photo
    assert message.attachments[0].filename == "kwitansi.jpg"
    assert message.location is not None
    assert (message.location.lat, message.location.lon) == (-5.0057, 119.5726)
    assert message.in_reply_to == "wamid.PREVIOUS"
    assert message.flags == {"forwarded": True}
    assert message.confidential is True


def test_location_alone_is_content() -> None:
    """A shared location without text is a usable document."""
    message = _decode(
        _doc(channel="whatsapp", external_id="w-2", location={"lat": -5.2, "lon": 119.4})
    )
    assert message.location is not None


def test_given_received_at_may_carry_an_offset() -> None:
    """The received_at argument is stored in UTC whatever its offset."""
    wita = timezone(timedelta(hours=8))
    message = decode_json_document(
        _doc(channel="web", external_id="w-3", text="Halo"),
        connector=CONNECTOR,
        received_at=datetime(2026, 11, 30, 10, 15, tzinfo=wita),
    )
    assert message.received_at == RECEIVED


def test_byte_order_mark_is_tolerated() -> None:
    """A UTF-8 byte order mark before the JSON is accepted."""
    payload = b"\xef\xbb\xbf" + _doc(channel="web", external_id="web-1", text="Izin lambat")
    assert _decode(payload).external_id == "web-1"


def test_missing_channel() -> None:
    """A document without channel is rejected, naming the field."""
    with pytest.raises(DecodeError, match="channel: Field required"):
        _decode(_doc(external_id="x-1", text="Halo"))


def test_missing_external_id() -> None:
    """A document without external_id is rejected, naming the field."""
    with pytest.raises(DecodeError, match="external_id: Field required"):
        _decode(_doc(channel="sms", text="Halo"))


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"text": "   "},
        {"text": None, "attachments": []},
        {"subject": "Hanya subjek"},
    ],
)
def test_document_without_content(fields: dict[str, Any]) -> None:
    """Without text, attachments or location the document is rejected."""
    with pytest.raises(DecodeError, match="document has no text, attachments or location"):
        _decode(_doc(channel="sms", external_id="sms-2", **fields))


@pytest.mark.parametrize(
    "payload",
    [b"", b"{", b'{"channel": "sms",}', b"not json", b"\xff\xfe{}", b"[" * 100_000],
)
def test_invalid_json(payload: bytes) -> None:
    """Invalid JSON, bytes that are not UTF-8 and absurd nesting raise DecodeError."""
    with pytest.raises(DecodeError):
        _decode(payload)


@pytest.mark.parametrize(
    ("payload", "kind"),
    [(b"[]", "an array"), (b'"teks"', "a string"), (b"42", "a number"), (b"null", "null")],
)
def test_not_an_object(payload: bytes, kind: str) -> None:
    """A JSON value that is not an object is rejected, saying what it is."""
    with pytest.raises(DecodeError, match=f"must be a JSON object, not {kind}"):
        _decode(payload)


_VALID = {"channel": "sms", "external_id": "sms-9", "text": "Ada pungli."}


@pytest.mark.parametrize(
    ("overrides", "field", "secret"),
    [
        ({"external_id": 6281200001234}, "external_id", "6281200001234"),
        ({"external_id": "e" * 600}, "external_id", "eeeeee"),
        ({"password": "hunter2-rahasia"}, "password", "hunter2-rahasia"),
        ({"text": ["NIK 7309012345670001"]}, "text", "7309012345670001"),
        ({"sender": {"phone": 81200001234}}, "sender.phone", "81200001234"),
        ({"sent_at": "kemarin sore jam 5"}, "sent_at", "kemarin"),
        ({"location": {"lat": 123.456789, "lon": 1}}, "location.lat", "123.456789"),
        ({"attachments": [{"content": "cmFoYXNpYQ!!"}]}, "attachments.0.content", "cmFoYXNpYQ"),
    ],
)
def test_error_names_the_field_but_never_echoes_the_value(
    overrides: dict[str, Any], field: str, secret: str
) -> None:
    """Validation errors say which field is wrong and never repeat what it held."""
    with pytest.raises(DecodeError) as caught:
        _decode(json.dumps(_VALID | overrides).encode())
    message = str(caught.value)
    assert field in message
    assert secret not in message
    assert caught.value.__cause__ is None


def test_json_external_id_uses_the_document_id() -> None:
    """A document with its own external_id is keyed by it."""
    assert json_external_id(_doc(channel="sms", external_id="gammu-4711", text="x")) == "gammu-4711"


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1, 2]",
        _doc(channel="sms", text="x"),
        _doc(channel="sms", external_id="", text="x"),
        _doc(channel="sms", external_id="   ", text="x"),
        _doc(channel="sms", external_id=42, text="x"),
        _doc(channel="sms", external_id="e" * 513, text="x"),
    ],
)
def test_json_external_id_falls_back_to_the_hash(payload: bytes) -> None:
    """Without a usable external_id the key is ``sha256:<hex>`` of the payload."""
    assert json_external_id(payload) == "sha256:" + hashlib.sha256(payload).hexdigest()


@settings(max_examples=300, deadline=None)
@given(st.binary())
def test_json_external_id_never_raises(payload: bytes) -> None:
    """Any bytes get a key of at most 512 characters."""
    assert 0 < len(json_external_id(payload)) <= 512


@settings(max_examples=300, deadline=None)
@given(st.binary())
def test_decode_raises_only_decode_error(payload: bytes) -> None:
    """Whatever the bytes, decoding returns a message or raises DecodeError."""
    with contextlib.suppress(DecodeError):
        _decode(payload)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-30T10:00:00", "2026-11-30T02:00:00Z"),  # naive: WITA local time
        ("2026-11-30T10:00:00+07:00", "2026-11-30T03:00:00Z"),
        ("2026-11-30T10:00:00Z", "2026-11-30T10:00:00Z"),
        (1796000000, "2026-11-30T00:53:20Z"),  # unix seconds
    ],
)
def test_naive_times_are_read_in_the_configured_timezone(value: object, expected: str) -> None:
    """Document times without a zone are local times of the office (Asia/Makassar by default)."""
    doc = json.dumps({"channel": "sms", "external_id": "t", "text": "x", "sent_at": value})
    message = decode_json_document(doc.encode(), connector="files", received_at=RECEIVED)
    assert json.loads(message.model_dump_json())["sent_at"] == expected


def test_unparseable_time_is_a_decode_error_without_the_value() -> None:
    """A time that cannot be read is a DecodeError naming the field, not echoing the value."""
    doc = json.dumps({"channel": "sms", "external_id": "t", "text": "x", "sent_at": "kemarin-sore"})
    with pytest.raises(DecodeError) as caught:
        decode_json_document(doc.encode(), connector="files", received_at=RECEIVED)
    assert "sent_at" in str(caught.value) and "kemarin" not in str(caught.value)
