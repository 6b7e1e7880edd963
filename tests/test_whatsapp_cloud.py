"""WhatsApp Cloud API: handshake, signatures over raw bytes, every message type, batches,
unknown numbers, BSUID senders, and media downloads from a local Graph API — real HTTP."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.whatsapp_cloud import CONTENT_TYPE, WhatsAppCloudConnector
from normalizer.whatsapp import split_webhook
from omnichannel import Inbox, Outcome
from omnichannel.config import parse_config
from omnichannel.http import create_app
from omnichannel.testing import (
    DecodeCase,
    WebhookCase,
    WebhookContract,
    meta_signature,
    post_webhook,
    with_headers,
)
from omnichannel.testing.http import serve_wsgi
from omnichannel.webhook import WebhookRequest

DATA = Path(__file__).parent / "testdata" / "whatsapp"
APP_SECRET, VERIFY, TOKEN = "rahasia-aplikasi-meta", "token-verifikasi", "EAAG-akses"
PNID = "106540352242922"
PHOTO = b"\xff\xd8\xff\xe0" + b"foto jalan rusak" * 10


def fixture(name: str) -> bytes:
    return (DATA / f"{name}.json").read_bytes()


class GraphApi:
    """A local stand-in for graph.facebook.com's media endpoints (bearer checked)."""

    def __init__(self) -> None:
        self.base = ""
        self.files: dict[str, bytes] = {}
        self.expire_first: set[str] = set()
        self.lookups: list[str] = []

    def __call__(self, environ: dict[str, Any], start: Callable[..., Any]) -> list[bytes]:
        if environ.get("HTTP_AUTHORIZATION") != f"Bearer {TOKEN}":
            return self._answer(start, "401 Unauthorized", b"{}")
        parts = environ["PATH_INFO"].strip("/").split("/")
        if parts[0] == "v21.0" and parts[1] in self.files:
            self.lookups.append(parts[1])
            url = f"{self.base}/download/{parts[1]}/{len(self.lookups)}"
            return self._answer(
                start, "200 OK", json.dumps({"url": url}).encode(), "application/json"
            )
        if parts[0] == "download" and parts[1] in self.files:
            if parts[1] in self.expire_first and int(parts[2]) == 1:
                return self._answer(start, "404 Not Found", b"expired")
            return self._answer(start, "200 OK", self.files[parts[1]], "image/jpeg")
        return self._answer(start, "404 Not Found", b"{}")

    @staticmethod
    def _answer(
        start: Callable[..., Any], status: str, body: bytes, kind: str = "text/plain"
    ) -> list[bytes]:
        start(status, [("Content-Type", kind), ("Content-Length", str(len(body)))])
        return [body]


@pytest.fixture
def graph() -> Iterator[GraphApi]:
    api = GraphApi()
    with serve_wsgi(api) as url:
        api.base = url
        yield api


@pytest.fixture
def wa_inbox(database_url: str, graph: GraphApi) -> Iterator[Inbox]:
    config = parse_config(
        {
            "database": {"url": database_url},
            "connectors": [
                {
                    "name": "wa",
                    "type": "whatsapp-cloud",
                    "app_secret": APP_SECRET,
                    "verify_token": VERIFY,
                    "access_token": TOKEN,
                    "phone_number_ids": [PNID],
                    "graph_api_url": graph.base,
                }
            ],
        }
    )
    with Inbox(config) as inbox:
        yield inbox


@pytest.fixture
def base_url(wa_inbox: Inbox) -> Iterator[str]:
    with serve_wsgi(create_app(wa_inbox)) as url:
        yield url


def post(base_url: str, body: bytes, sig: str | None = None) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if sig is not None:
        headers["X-Hub-Signature-256"] = sig
    return requests.post(f"{base_url}/webhooks/wa", data=body, headers=headers, timeout=10)


def outcomes(response: requests.Response) -> int:
    assert response.status_code == 200, response.text
    return int(response.json()["received"])


def test_handshake(base_url: str) -> None:
    """The right token gets exactly the challenge back; a wrong token or mode gets 403, no echo."""
    ok = requests.get(
        f"{base_url}/webhooks/wa",
        params={"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"},
        timeout=10,
    )
    assert (ok.status_code, ok.text) == (200, "1158201444")
    for params in (
        {"hub.mode": "subscribe", "hub.verify_token": "salah", "hub.challenge": "c1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY, "hub.challenge": "c2"},
    ):
        bad = requests.get(f"{base_url}/webhooks/wa", params=params, timeout=10)
        assert bad.status_code == 403 and params["hub.challenge"] not in bad.text


@pytest.mark.parametrize(
    "challenge", ["", "<script>alert(1)</script>", "1" * 129, "12 34", "ü", "1\r\nSet-Cookie: x=1"]
)
def test_the_handshake_echoes_only_a_plain_challenge(base_url: str, challenge: str) -> None:
    """Even with the right token, a challenge that is not 1 to 128 letters or digits is a 400
    and is not echoed: the endpoint reflects nothing a link could plant."""
    params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": challenge}
    bad = requests.get(f"{base_url}/webhooks/wa", params=params, timeout=10)
    assert bad.status_code == 400
    assert not challenge or challenge not in bad.text


def test_signature_is_over_the_raw_bytes(base_url: str, wa_inbox: Inbox) -> None:
    """Meta's \\u00e4-escaped JSON verifies as sent; the same JSON re-serialized does not."""
    raw = fixture("text").replace(b"Selamat siang", b"Selamat siang \\u00e4")
    assert b"\\u00e4" in raw
    assert outcomes(post(base_url, raw, meta_signature(raw, APP_SECRET))) == 1
    reserialized = json.dumps(json.loads(raw), ensure_ascii=False).encode()
    assert post(base_url, reserialized, meta_signature(raw, APP_SECRET)).status_code == 403
    assert "Selamat siang ä" in wa_inbox.complaints()[0].body


@pytest.mark.parametrize(
    "header",
    [
        None,
        "sha1=" + "a" * 40,
        "sha256=" + "z" * 64,
        "sha256=" + "a" * 63,
        "sha256=" + "A" * 64,
        "a" * 64,
    ],
)
def test_malformed_signatures_are_403_before_parsing(
    base_url: str, wa_inbox: Inbox, header: str | None
) -> None:
    """Missing, sha1-only, non-hex, wrong-length or unprefixed headers: 403 (even for non-JSON)."""
    assert post(base_url, b"{not json at all", header).status_code == 403
    assert post(base_url, fixture("text"), header).status_code == 403
    assert wa_inbox.complaints() == []


LOCATION = (-5.0069, 119.5736, "Kantor Desa Bontoa, Maros, Sulawesi Selatan")
EXPECTED = {
    "text": {"text": "Selamat siang, izin PBG saya sudah 3 bulan belum terbit."},
    "image": {"text": "Foto bangunan tanpa izin", "attachment": ("image/jpeg", None)},
    "document": {"text": "Surat permohonan", "attachment": ("application/pdf", "permohonan.pdf")},
    "audio": {"attachment": ("audio/ogg; codecs=opus", None)},
    "video": {"text": "Video jalan rusak", "attachment": ("video/mp4", None)},
    "sticker": {"attachment": ("image/webp", None)},
    "location": {"location": LOCATION},
    "interactive-button": {"text": "Lapor pungli"},
    "interactive-list": {"text": "PBG — Persetujuan Bangunan Gedung"},
    "button": {"text": "Cek status pengaduan"},
    "contacts": {"text": "Kontak: Pak Camat +62 411 123456"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_message_types_become_complaints(base_url: str, wa_inbox: Inbox, name: str) -> None:
    """Each complaint-bearing message type maps to the right text, attachment or location."""
    body = fixture(name)
    assert outcomes(post(base_url, body, meta_signature(body, APP_SECRET))) == 1
    [complaint] = wa_inbox.complaints()
    expected = EXPECTED[name]
    assert complaint.channel == "whatsapp" and complaint.sender.phone == "+6281234567890"
    assert complaint.sender.name == "Siti Rahmah"
    if "text" in expected:
        assert complaint.body == expected["text"]
    if "attachment" in expected:
        [attachment] = complaint.attachments
        assert (attachment.content_type, attachment.filename) == expected["attachment"]
        assert (
            attachment.sha256
            == base64.b64decode("JrZNTamx3QzkJVbQdH5LGtsT5SZ0KQqcvZ3l2RyWZ6E=").hex()
        )
    if "location" in expected:
        assert complaint.location is not None
        assert (
            complaint.location.lat,
            complaint.location.lon,
            complaint.location.address,
        ) == expected["location"]


@pytest.mark.parametrize("name", ["reaction", "system", "unsupported"])
def test_reactions_system_and_unsupported_are_ignored(
    base_url: str, wa_inbox: Inbox, name: str
) -> None:
    """Reactions, system notices and unsupported messages are stored, flagged and ignored."""
    body = fixture(name)
    response = post(base_url, body, meta_signature(body, APP_SECRET))
    assert outcomes(response) == 1 and wa_inbox.complaints() == []


def test_statuses_only_and_other_objects_store_nothing(base_url: str, wa_inbox: Inbox) -> None:
    """A delivery-status notification is answered 200 and stores nothing."""
    body = fixture("statuses-only")
    assert outcomes(post(base_url, body, meta_signature(body, APP_SECRET))) == 0
    other = json.dumps({"object": "page", "entry": []}).encode()
    assert outcomes(post(base_url, other, meta_signature(other, APP_SECRET))) == 0


def test_batch_with_a_repeated_wamid_gives_one_outcome_per_distinct_message(
    base_url: str, wa_inbox: Inbox
) -> None:
    """Two entries of three messages with one wamid repeated: five outcomes, five complaints."""
    body = fixture("batch-2x3-repeated")
    assert outcomes(post(base_url, body, meta_signature(body, APP_SECRET))) == 5
    assert len(wa_inbox.complaints()) == 5
    assert (
        outcomes(post(base_url, body, meta_signature(body, APP_SECRET))) == 5
    )  # Meta's retry: all duplicates
    assert len(wa_inbox.complaints()) == 5


def test_unknown_phone_number_id_is_ignored_and_logged_without_payload(
    base_url: str, wa_inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    """A notification for a number we do not serve: 200, nothing stored, a security log line."""
    body = fixture("unknown-number")
    with caplog.at_level("WARNING"):
        assert outcomes(post(base_url, body, meta_signature(body, APP_SECRET))) == 0
    assert "999999999999999" in caplog.text and "Bukan untuk kita" not in caplog.text
    assert wa_inbox.complaints() == []


def test_username_only_sender_is_keyed_on_the_bsuid(base_url: str, wa_inbox: Inbox) -> None:
    """Without a phone, the business-scoped user id is the sender handle."""
    body = fixture("username-only")
    assert outcomes(post(base_url, body, meta_signature(body, APP_SECRET))) == 1
    [complaint] = wa_inbox.complaints()
    assert complaint.sender.phone is None
    assert complaint.sender.handle == "ID.1502576394655843"
    assert complaint.sender.name == "Warga Maros"


def test_quoted_reply_threads_into_the_original(base_url: str, wa_inbox: Inbox) -> None:
    """A reply quoting an earlier message (context.id) is merged into its complaint."""
    for name in ("text", "quoted-reply"):
        body = fixture(name)
        post(base_url, body, meta_signature(body, APP_SECRET))
    [complaint] = wa_inbox.complaints()
    assert [m.outcome for m in complaint.messages] == [Outcome.NEW, Outcome.MERGED]


def test_media_downloaded_in_the_background_with_refresh_and_sha256_check(
    base_url: str, wa_inbox: Inbox, graph: GraphApi
) -> None:
    """Media: looked up, downloaded with the bearer token; an expired URL is refreshed; a file
    whose sha256 does not match Meta's is retried, then flagged failed."""
    good = fixture("image").replace(
        b'"sha256": "JrZNTamx3QzkJVbQdH5LGtsT5SZ0KQqcvZ3l2RyWZ6E="',
        b'"sha256": "' + base64.b64encode(hashlib.sha256(PHOTO).digest()) + b'"',
    )
    bad = fixture("video")  # the fixture's sha256 is not the file's
    graph.files = {"1001": PHOTO, "1004": b"not the declared video"}
    graph.expire_first = {"1001"}
    for body in (good, bad):
        assert outcomes(post(base_url, body, meta_signature(body, APP_SECRET))) == 1
    first = {r.status for r in wa_inbox.fetch_media(max_attempts=2)}
    assert first == {"stored", "pending"}  # the mismatching file waits for a second try
    wa_inbox._clock = lambda: datetime.now(UTC) + timedelta(hours=1)
    second = [r.status for r in wa_inbox.fetch_media(max_attempts=2)]
    assert second == ["failed"]
    stored = {c.body: c.attachments[0] for c in wa_inbox.complaints()}
    photo = stored["Foto bangunan tanpa izin"]
    assert photo.size == len(PHOTO) and photo.sha256 == hashlib.sha256(PHOTO).hexdigest()
    assert graph.lookups.count("1001") == 2  # looked up again after the expired URL


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.one_of(
        st.binary(max_size=300), st.sampled_from([fixture("text"), fixture("batch-2x3-repeated")])
    ),
    signature_header=st.one_of(
        st.none(),
        st.text(max_size=80),
        st.builds(lambda h: "sha256=" + h, st.text("0123456789abcdef", min_size=64, max_size=64)),
    ),
    method=st.sampled_from(["POST", "GET", "PUT"]),
    query=st.text(max_size=40),
)
def test_random_requests_never_500_and_never_store_unsigned(
    sqlite_inbox: Inbox, body: bytes, signature_header: str | None, method: str, query: str
) -> None:
    """Random bodies, signatures, methods and queries: never a 500, never a stored complaint."""
    if "wa" not in sqlite_inbox.connector_names():
        sqlite_inbox.add_connector(
            WhatsAppCloudConnector.from_options(
                "wa",
                {
                    "app_secret": APP_SECRET,
                    "verify_token": VERIFY,
                    "access_token": TOKEN,
                    "phone_number_ids": [PNID],
                },
            )
        )
    headers = {"Content-Type": "application/json"}
    if signature_header is not None:
        headers["X-Hub-Signature-256"] = signature_header
    request = WebhookRequest.build(method, f"http://x/webhooks/wa?{query}", headers, body)
    response = post_webhook(sqlite_inbox, "wa", request)
    assert response.status in (400, 403, 405)
    assert sqlite_inbox.complaints() == []


# -- the shared contract -----------------------------------------------------------------------


def batch_of(*names: str) -> bytes:
    """One notification carrying the messages of several fixtures (Meta batches them)."""
    envelope = json.loads(fixture(names[0]))
    value = envelope["entry"][0]["changes"][0]["value"]
    for name in names[1:]:
        other = json.loads(fixture(name))["entry"][0]["changes"][0]["value"]
        value["messages"] += other["messages"]
    return json.dumps(envelope).encode()


def stored_payload(name: str) -> bytes:
    """The one-message payload stored for a fixture's message (what decode reads)."""
    [(_, message)], _ = split_webhook(json.loads(fixture(name)), {PNID})
    return json.dumps(message).encode()


class TestWhatsAppCloudContract(WebhookContract):
    """Meta's notifications, signed with the app secret, pass the shared webhook contract."""

    connector_type = "whatsapp-cloud"
    options: ClassVar[dict[str, Any]] = {
        "app_secret": APP_SECRET,
        "verify_token": VERIFY,
        "access_token": TOKEN,
        "phone_number_ids": [PNID],
    }
    cases: ClassVar[list[DecodeCase]] = [
        DecodeCase(
            name,
            stored_payload(name),
            {"channel": "whatsapp", **expect},
            CONTENT_TYPE,
            f"wamid.HBgN000{number}",
        )
        for name, number, expect in [
            ("text", 1, {"text": EXPECTED["text"]["text"]}),
            ("image", 2, {"text": EXPECTED["image"]["text"]}),
            (
                "location",
                7,
                {"location": dict(zip(("lat", "lon", "address"), LOCATION, strict=True))},
            ),
        ]
    ]
    webhook_cases: ClassVar[list[WebhookCase]] = [
        WebhookCase("text", fixture("text"), expect={"external_id": "wamid.HBgN0001"}),
        WebhookCase("image", fixture("image"), expect={"text": EXPECTED["image"]["text"]}),
        WebhookCase("location", fixture("location"), expect={"external_id": "wamid.HBgN0007"}),
        WebhookCase("statuses-only", fixture("statuses-only"), messages=0, outcome=None),
        WebhookCase("batch-of-2", batch_of("document", "video"), messages=2),
    ]

    def sign(
        self, request: WebhookRequest, *, options: Mapping[str, Any], now: float
    ) -> WebhookRequest:
        signature = meta_signature(request.body, options["app_secret"])
        return with_headers(request, {"X-Hub-Signature-256": signature})
