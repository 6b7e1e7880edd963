"""The pure Twilio decoder: recorded payloads, base64 bodies, status callbacks, odd fields."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.twilio import TwilioConnector
from normalizer.normalize import normalize
from normalizer.twilio import (
    FORM_TYPE,
    JSON_TYPE,
    decode_base64_body,
    decode_form,
    decode_twilio,
    external_id_of,
    is_status_callback,
    parse_form,
)
from omnichannel.errors import DecodeError
from omnichannel.schema import Outcome
from omnichannel.testing import DecodeCase

FIXTURES = Path(__file__).resolve().parent / "testdata" / "twilio"
EXPECTED: dict[str, Any] = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
RECEIVED = datetime(2026, 11, 30, 2, 15, tzinfo=UTC)
ACCOUNT = "AC0123456789abcdef0123456789abcdef"
OPTIONS = {"account_sid": ACCOUNT, "auth_token": "rahasia-token-uji-0123"}
PAYLOADS = sorted(
    p for p in FIXTURES.iterdir() if p.suffix in (".form", ".json") and p.stem in EXPECTED
)


def connector() -> TwilioConnector:
    built = TwilioConnector.from_options("sms", dict(OPTIONS))
    assert isinstance(built, TwilioConnector)
    return built


def mismatches(actual: Any, expected: Any, path: str) -> list[str]:
    """Objects as subsets (``flags`` exactly), lists and values exactly."""
    if isinstance(expected, dict) and not path.endswith(".flags"):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object, got {actual!r}"]
        missing = [f"{path}.{key}: missing" for key in expected if key not in actual]
        return missing + [
            problem
            for key, value in expected.items()
            if key in actual
            for problem in mismatches(actual[key], value, f"{path}.{key}")
        ]
    if isinstance(expected, list) and isinstance(actual, list) and len(actual) == len(expected):
        return [
            p
            for i, (a, e) in enumerate(zip(actual, expected, strict=True))
            for p in mismatches(a, e, f"{path}[{i}]")
        ]
    return [] if actual == expected else [f"{path}: expected {expected!r}, got {actual!r}"]


def test_every_fixture_has_an_expectation() -> None:
    """Each recorded payload is checked, and each expectation names an existing payload."""
    stems = {
        p.stem
        for p in FIXTURES.iterdir()
        if p.suffix in (".form", ".json") and p.name != "expected.json"
    }
    assert stems == set(EXPECTED)
    assert len(PAYLOADS) == len(EXPECTED) >= 14


@pytest.mark.parametrize("path", PAYLOADS, ids=lambda p: p.stem)
def test_recorded_payload_decodes_as_expected(path: Path) -> None:
    """A recorded webhook form or API resource decodes and normalizes to the expected fields."""
    source = connector()
    raw = source.raw_from_file(path, path.read_bytes(), RECEIVED)
    expected = EXPECTED[path.stem]
    if "error" in expected:
        with pytest.raises(DecodeError, match=expected["error"]):
            source.decode(raw)
        return
    assert raw.content_type == (JSON_TYPE if path.suffix == ".json" else FORM_TYPE)
    inbound = source.decode(raw)
    message = normalize(inbound, connector="sms", received_at=RECEIVED, region="ID")
    assert mismatches(message.model_dump(mode="json"), expected, "$") == []


BASE64_TEXTS = [
    "Lampu jalan di depan rumah saya mati sudah seminggu.",
    "Jalan berlubang, mohon segera diperbaiki 🙏",
    "Izin usaha (NIB) belum terbit sejak 3 minggu",
    "Halo",  # one word, but padded: SGFsbw==
]


@pytest.mark.parametrize("text", BASE64_TEXTS)
def test_base64_encoded_text_is_decoded(text: str) -> None:
    """A body that is canonical base64 of readable UTF-8 text is decoded."""
    assert decode_base64_body(base64.b64encode(text.encode()).decode()) == text


NOT_BASE64 = [
    "Halo",  # base64 alphabet, length 4: decodes to bytes that are not UTF-8
    "test",
    "abcd1234",  # length 8, valid alphabet: decodes to binary
    "Terimakasih",  # length 11
    "MohonBantuan",  # length 12, valid alphabet: not UTF-8 text
    "SelamatPagiPak/Bu",
    "Jalan rusak",  # has a space
    "SGFs bw==",  # base64 with a space inside
    "SGFsbw=",  # bad padding
    "SGFsbw",  # missing padding
    "SGFsbx==",  # non-canonical: stray bits in the last character
    "S=GFsbw=",  # padding in the middle
    base64.b64encode(b"\xff\xfe\xfd\xfc\xfb\xfa").decode(),  # not UTF-8
    base64.b64encode(b"\x00\x01\x02 abc def").decode(),  # control characters
    base64.b64encode(b"1234 5678 9012 3456").decode(),  # text, but digits: not clearly words
    base64.b64encode(b"Tolong").decode(),  # one word, unpadded (VG9sb25n): could be anything
    "",
]


@pytest.mark.parametrize("body", NOT_BASE64)
def test_normal_or_doubtful_text_is_never_decoded(body: str) -> None:
    """Normal text, and base64 that does not clearly decode to text, is left as it is."""
    assert decode_base64_body(body) is None


_WORD = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=12
)


@given(st.lists(_WORD, min_size=2, max_size=20))
def test_base64_of_any_sentence_round_trips(words: list[str]) -> None:
    """Any sentence of letter words, base64-encoded, decodes back to itself."""
    text = " ".join(words)
    assert decode_base64_body(base64.b64encode(text.encode()).decode()) == text


@given(st.tuples(st.text(max_size=100), st.text(max_size=100)).map(" ".join))
def test_text_with_a_space_is_never_decoded(text: str) -> None:
    """Text containing a space is never taken for base64."""
    assert decode_base64_body(text) is None


def test_base64_body_on_whatsapp_is_left_alone() -> None:
    """Only SMS bodies are checked for base64; WhatsApp text is taken as sent."""
    encoded = base64.b64encode(b"Jalan rusak parah").decode()
    sms = decode_form(
        {"MessageSid": "SM1", "From": "+6281234567890", "Body": encoded}, connector="t"
    )
    whatsapp = decode_form(
        {"MessageSid": "SM2", "From": "whatsapp:+6281234567890", "Body": encoded}, connector="t"
    )
    assert sms.text == "Jalan rusak parah" and sms.flags == {"body_base64_decoded": True}
    assert whatsapp.text == encoded and whatsapp.flags == {}


@pytest.mark.parametrize(
    ("fields", "callback"),
    [
        ({"SmsStatus": "received"}, False),
        ({}, False),
        ({"SmsStatus": "RECEIVED"}, False),
        ({"MessageStatus": "received"}, True),
        ({"SmsStatus": "received", "MessageStatus": "read"}, True),
        ({"SmsStatus": "sent"}, True),
        ({"SmsStatus": "undelivered", "ErrorCode": "30003"}, True),
    ],
)
def test_status_callbacks_are_recognised(fields: dict[str, str], callback: bool) -> None:
    """``MessageStatus`` present, or ``SmsStatus`` other than ``received``, is a status callback."""
    assert is_status_callback(fields) is callback


def test_status_callback_keeps_each_status_and_its_error_code() -> None:
    """Each status of a message has its own key; a failure's error code is kept as a flag."""
    fields = {"MessageSid": "SMabc", "MessageStatus": "undelivered", "ErrorCode": "30003"}
    message = decode_form(fields, connector="t")
    assert message.external_id == "SMabc#undelivered" == external_id_of(fields)
    assert message.flags == {
        "status_callback": True,
        "message_status": "undelivered",
        "error_code": "30003",
    }
    assert not message.has_content()


@pytest.mark.parametrize(
    "fields",
    [{}, {"MessageSid": ""}, {"MessageSid": "SM 123"}, {"MessageSid": "x" * 80}, {"Body": "x"}],
)
def test_missing_or_malformed_sid_is_a_decode_error(fields: dict[str, str]) -> None:
    """Without a well-formed MessageSid there is no dedupe key: DecodeError (quarantine)."""
    with pytest.raises(DecodeError, match="MessageSid"):
        external_id_of(fields)


def test_deprecated_sid_fields_are_used_when_message_sid_is_absent() -> None:
    """``SmsMessageSid`` / ``SmsSid`` carry the same value and stand in for ``MessageSid``."""
    assert external_id_of({"SmsMessageSid": "SM1"}) == "SM1"
    assert external_id_of({"SmsSid": "SM2"}) == "SM2"


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe", b"a=1&b", b"Body=%FF%FE", b" "],
    ids=["binary", "no-equals", "latin1", "blank"],
)
def test_parse_form_refuses_what_is_not_a_utf8_form(body: bytes) -> None:
    """Bodies that are not a UTF-8 urlencoded form are a DecodeError, not a guess."""
    with pytest.raises(DecodeError, match="not a form body"):
        parse_form(body)


def test_parse_form_keeps_every_value_of_a_repeated_field() -> None:
    """Repeated fields keep all their values (the signature covers all of them)."""
    assert parse_form(b"a=1&a=2&b=") == {"a": ["1", "2"], "b": [""]}
    assert parse_form(b"") == {}


def test_media_fewer_than_declared_is_flagged_incomplete() -> None:
    """``NumMedia`` above the media actually listed marks the message incomplete."""
    fields = {
        "MessageSid": "MM1",
        "From": "+6281234567890",
        "NumMedia": "2",
        "MediaUrl0": "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
        "MediaContentType0": "IMAGE/JPEG",
    }
    message = decode_form(fields, connector="t")
    assert [(a.content_type, a.filename) for a in message.attachments] == [
        ("image/jpeg", "ME1.jpg")
    ]
    assert message.flags == {"incomplete": True, "media_missing": 1}


@pytest.mark.parametrize(
    ("lat", "lon", "address", "expected", "flags"),
    [
        ("-0.5", "117.15", "", {"lat": -0.5, "lon": 117.15, "address": None}, {}),
        ("91", "117.15", "", None, {"location_invalid": True}),
        (
            "nan",
            "117.15",
            "Jl. Merdeka",
            {"lat": None, "lon": None, "address": "Jl. Merdeka"},
            {"location_invalid": True},
        ),
        ("", "", "Jl. Merdeka", {"lat": None, "lon": None, "address": "Jl. Merdeka"}, {}),
    ],
)
def test_location_fields(
    lat: str, lon: str, address: str, expected: dict[str, Any] | None, flags: dict[str, Any]
) -> None:
    """Coordinates out of range or not numbers are dropped and flagged; an address is kept."""
    fields = {"MessageSid": "SM1", "From": "whatsapp:+6281234567890", "Latitude": lat}
    fields |= {"Longitude": lon, "Address": address}
    message = decode_form(fields, connector="t")
    assert (message.location.model_dump() if message.location else None) == expected
    assert message.flags == flags


def test_api_resource_without_its_media_list_is_incomplete() -> None:
    """An API message whose media list could not be read is kept, flagged incomplete."""
    resource = {"sid": "MM9", "direction": "inbound", "from": "+6281234567890", "num_media": "1"}
    resource |= {"body": "Foto menyusul", "media": None, "date_sent": "not a date"}
    message = decode_twilio(json.dumps(resource).encode(), JSON_TYPE, connector="t")
    assert message.flags == {"incomplete": True, "media_missing": 1} and message.sent_at is None


@pytest.mark.parametrize(
    ("payload", "content_type", "error"),
    [
        (b"[1, 2]", JSON_TYPE, "sid: missing"),
        (b"{not json", JSON_TYPE, "not a JSON"),
        (b"MessageSid=SM1", "text/plain", "content type"),
        (urlencode({"Body": "x"}).encode(), FORM_TYPE, "MessageSid"),
    ],
)
def test_undecodable_payloads_name_the_problem(
    payload: bytes, content_type: str, error: str
) -> None:
    """Payloads that are not Twilio messages raise DecodeError saying why (never the values)."""
    with pytest.raises(DecodeError, match=error):
        decode_twilio(payload, content_type, connector="t")


def contract_cases() -> list[DecodeCase]:
    """Recorded payloads for the shared contract (run in tests/test_twilio.py, with the
    webhook and polling checks)."""

    def case(name: str, outcome: Outcome = Outcome.NEW, **expect: Any) -> DecodeCase:
        payload = (FIXTURES / f"{name}.form").read_bytes()
        fields = {k: v[0] for k, v in parse_form(payload).items()}
        return DecodeCase(
            name, payload, expect, FORM_TYPE, external_id=external_id_of(fields), outcome=outcome
        )

    return [
        case("sms-basic", channel="sms", text=EXPECTED["sms-basic"]["body"]),
        case("whatsapp-media-location", channel="whatsapp"),
        case("status-callback", Outcome.IGNORED, flags=EXPECTED["status-callback"]["flags"]),
    ]


FORM_TEXT = st.text(alphabet="ab=&%+2F0C3E9éx ", max_size=60) | st.builds(
    urlencode, st.dictionaries(st.text(max_size=8), st.text(max_size=12), max_size=6)
)


@given(FORM_TEXT)
def test_form_splitting_agrees_with_parse_qsl(text: str) -> None:
    """The form splitter gives exactly what the standard library's strict ``parse_qsl`` gives,
    and refuses exactly what it refuses."""
    from urllib.parse import parse_qsl

    from normalizer.twilio import MAX_FIELDS, _split_form

    def standard() -> list[tuple[str, str]]:
        return parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )

    try:
        expected: list[tuple[str, str]] | type[ValueError] = standard()
    except ValueError:
        expected = ValueError
    if expected is ValueError:
        with pytest.raises(ValueError):
            _split_form(text)
    else:
        assert list(_split_form(text)) == expected


def test_too_many_form_fields_are_refused() -> None:
    """A body with more fields than allowed is not a form we read."""
    from normalizer.twilio import MAX_FIELDS, _split_form

    assert len(_split_form("&".join(["a=1"] * MAX_FIELDS))) == MAX_FIELDS
    with pytest.raises(ValueError):
        _split_form("&".join(["a=1"] * (MAX_FIELDS + 1)))
