"""The web connector: Standard Webhooks and HMAC signing, the portal form, mapped foreign
payloads, precise 4xx answers with nothing stored — over real HTTP on loopback."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from omnichannel import Inbox, Outcome
from omnichannel.config import parse_config
from omnichannel.http import create_app
from omnichannel.testing import (
    DecodeCase,
    WebhookCase,
    WebhookContract,
    hmac_header,
    post_webhook,
    standard_webhooks_headers,
    with_headers,
)
from omnichannel.testing.http import serve_wsgi
from omnichannel.webhook import WebhookRequest

KEY = b"kunci-portal-32-bytes-panjangnya!"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OLD_SECRET = "rahasia-lama-portal"
GATEWAY_SECRET = "rahasia-gateway-sms"
GATEWAY_MAPPING = {
    "channel": "=sms",
    "external_id": "data.id",
    "sender.phone": "data.from",
    "text": "data.message",
    "sent_at": "data.sentStamp",
}


@pytest.fixture
def web_inbox(database_url: str) -> Iterator[Inbox]:
    config = parse_config(
        {
            "database": {"url": database_url},
            "connectors": [
                {
                    "name": "portal",
                    "type": "web",
                    "secret": SECRET,
                    "previous_secrets": [OLD_SECRET],
                    "max_bytes": 200_000,
                    "max_attachments": 2,
                    "max_attachment_bytes": 50_000,
                },
                {
                    "name": "gateway",
                    "type": "web",
                    "secret": GATEWAY_SECRET,
                    "signature": "hmac-header",
                    "hmac_header": "X-Gateway-Signature",
                    "mapping": GATEWAY_MAPPING,
                    "required": ["sender.phone"],
                },
            ],
        }
    )
    with Inbox(config) as inbox:
        yield inbox


@pytest.fixture
def base_url(web_inbox: Inbox) -> Iterator[str]:
    with serve_wsgi(create_app(web_inbox)) as url:
        yield url


def signed_headers(
    body: bytes,
    webhook_id: str = "msg_1",
    *,
    key: bytes | str = KEY,
    at: float | None = None,
    content_type: str = "application/json",
) -> dict[str, str]:
    """The portal's headers: its content type and the shared Standard Webhooks signer's."""
    signature = standard_webhooks_headers(key, body, webhook_id=webhook_id, timestamp=at)
    return {"Content-Type": content_type, **signature}


def post(url: str, body: bytes, headers: dict[str, str], name: str = "portal") -> requests.Response:
    return requests.post(f"{url}/webhooks/{name}", data=body, headers=headers, timeout=10)


FORM = {
    "name": "Andi",
    "email": "andi@example.id",
    "phone": "0812-3456-7890",
    "subject": "Calo di loket",
    "message": "Ada calo yang meminta uang pelicin.",
    "location": {"lat": -5.147, "lon": 119.432, "address": "Jl. A. P. Pettarani"},
}


def test_portal_json_gets_a_ticket_and_a_replay_is_a_duplicate(
    base_url: str, web_inbox: Inbox
) -> None:
    """A signed portal form gives 200 with a ticket; the same webhook-id again is a duplicate."""
    body = json.dumps(FORM).encode()
    first = post(base_url, body, signed_headers(body))
    again = post(base_url, body, signed_headers(body))
    assert first.status_code == 200 and first.json()["outcome"] == "new"
    assert first.json()["ticket"].startswith("ADU-")
    assert again.json() == first.json() | {"outcome": "duplicate"}
    complaint = web_inbox.complaint(first.json()["ticket"])
    assert complaint is not None and complaint.sender.phone == "+6281234567890"
    assert complaint.location is not None and complaint.location.lat == -5.147


@pytest.mark.parametrize("offset", [-360, 360])
def test_timestamps_six_minutes_off_are_refused(
    base_url: str, web_inbox: Inbox, offset: int
) -> None:
    """A timestamp 6 minutes old or ahead is 403 and nothing is stored."""
    body = json.dumps(FORM).encode()
    response = post(base_url, body, signed_headers(body, at=time.time() + offset))
    assert response.status_code == 403 and web_inbox.complaints() == []


def test_key_rotation_accepts_any_listed_signature_and_previous_secrets(base_url: str) -> None:
    """Several signatures in the header (rotation) and the previous secret are accepted."""
    body = json.dumps(FORM).encode()
    headers = signed_headers(body, "msg_rot", key=b"some-other-key")
    ours = signed_headers(body, "msg_rot")["webhook-signature"]
    headers["webhook-signature"] = f"{headers['webhook-signature']} {ours}"
    assert post(base_url, body, headers).status_code == 200
    old = signed_headers(body, "msg_old", key=OLD_SECRET)
    assert post(base_url, body, old).status_code == 200


@pytest.mark.parametrize(
    ("change", "status", "answer"),
    [
        ({"message": None}, 400, {"error": "is required", "field": "message"}),
        ({"anonymous": "mungkin"}, 400, {"error": "must be true or false", "field": "anonymous"}),
        (
            {"location": {"lat": "utara", "lon": 1}},
            400,
            {"error": "must be a number", "field": "location.lat"},
        ),
        ({"email": ["a@b.id"]}, 400, {"error": "must be text", "field": "email"}),
        (
            {
                "attachments": [
                    {"filename": "a.pdf", "content_type": "application/pdf", "content": "QQ=="}
                ]
                * 3
            },
            413,
            {"error": "at most 2 attachments", "field": "attachments"},
        ),
        (
            {
                "attachments": [
                    {
                        "filename": "a.exe",
                        "content_type": "application/x-msdownload",
                        "content": "QQ==",
                    }
                ]
            },
            415,
            {"error": "attachment type not accepted", "field": "attachments[0]"},
        ),
        (
            {
                "attachments": [
                    {
                        "filename": "a.pdf",
                        "content_type": "application/pdf",
                        "content": "not base64!",
                    }
                ]
            },
            400,
            {"error": "content must be base64", "field": "attachments[0]"},
        ),
    ],
)
def test_invalid_forms_get_precise_errors_and_nothing_is_stored(
    base_url: str, web_inbox: Inbox, change: dict[str, Any], status: int, answer: dict[str, str]
) -> None:
    """Missing field, wrong types, too many or wrong attachments: a clear 4xx, nothing stored."""
    form = {k: v for k, v in (FORM | change).items() if v is not None}
    body = json.dumps(form).encode()
    response = post(base_url, body, signed_headers(body))
    assert (response.status_code, response.json()) == (status, answer)
    assert web_inbox.complaints() == [] and web_inbox.quarantined() == []


def test_oversized_and_wrong_content_type(base_url: str, web_inbox: Inbox) -> None:
    """A body over the limit is 413; a content type the connector does not take is 415."""
    big = json.dumps(FORM | {"message": "x" * 300_000}).encode()
    assert post(base_url, big, signed_headers(big)).status_code == 413
    text = b"message=halo"
    assert post(base_url, text, signed_headers(text, content_type="text/plain")).status_code == 415
    assert web_inbox.complaints() == []


def test_form_and_multipart_bodies(base_url: str, web_inbox: Inbox) -> None:
    """URL-encoded forms and multipart uploads are accepted; files become stored attachments."""
    form = b"name=Rina&message=Lampu+jalan+mati&location=-5.1%2C119.4&anonymous=on"
    response = post(
        base_url,
        form,
        signed_headers(form, "msg_form", content_type="application/x-www-form-urlencoded"),
    )
    assert response.status_code == 200, response.text
    complaint = web_inbox.complaint(response.json()["ticket"])
    assert complaint is not None and complaint.anonymous and complaint.location is not None
    prepared = requests.Request(
        "POST",
        "http://x",
        data={"message": "Foto jalan rusak"},
        files={"attachments": ("jalan.jpg", b"\xff\xd8\xffjpeg", "image/jpeg")},
    ).prepare()
    body = bytes(prepared.body or b"")  # type: ignore[arg-type]
    headers = signed_headers(body, "msg_multi", content_type=prepared.headers["Content-Type"])
    response = post(base_url, body, headers)
    assert response.status_code == 200, response.text
    complaint = web_inbox.complaint(response.json()["ticket"])
    assert complaint is not None
    assert [(a.filename, a.content_type, a.size) for a in complaint.attachments] == [
        ("jalan.jpg", "image/jpeg", 7)
    ]


def test_foreign_payload_mapped_by_configuration_only(base_url: str, web_inbox: Inbox) -> None:
    """An SMS-gateway app's own JSON, HMAC-signed, becomes an SMS complaint through the mapping."""
    payload = {
        "data": {
            "id": "gw-991",
            "from": "0062 813 5555 0101",
            "message": "Izin usaha belum keluar",
            "sentStamp": 1796000000,
        }
    }
    body = json.dumps(payload).encode()
    signature = hmac_header(body, GATEWAY_SECRET)
    headers = {"Content-Type": "application/json", "X-Gateway-Signature": signature}
    response = post(base_url, body, headers, name="gateway")
    assert response.status_code == 200, response.text
    complaint = web_inbox.complaint(response.json()["ticket"])
    assert complaint is not None and complaint.channel == "sms"
    assert complaint.sender.phone == "+6281355550101"
    assert complaint.messages[0].external_id == "gw-991"
    again = post(base_url, body, headers, name="gateway")
    assert again.json()["outcome"] == "duplicate"
    bad = {"Content-Type": "application/json", "X-Gateway-Signature": "sha256=" + "0" * 64}
    assert post(base_url, body, bad, name="gateway").status_code == 403


header_names = st.sampled_from(
    [
        "content-type",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x-gateway-signature",
        "x-other",
    ]
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda d: json.dumps(d).encode(),
            st.dictionaries(st.text(max_size=8), st.text(max_size=20)),
        ),
    ),
    headers=st.dictionaries(header_names, st.text(max_size=60)),
    name=st.sampled_from(["portal", "gateway"]),
)
def test_random_requests_never_500_and_never_store_unsigned(
    sqlite_inbox: Inbox, body: bytes, headers: dict[str, str], name: str
) -> None:
    """Random bodies and headers at both endpoints: never a 500, never a stored complaint."""
    if "portal" not in sqlite_inbox.connector_names():
        from connectors.web import WebConnector

        sqlite_inbox.add_connector(WebConnector.from_options("portal", {"secret": SECRET}))
        sqlite_inbox.add_connector(
            WebConnector.from_options(
                "gateway",
                {"secret": GATEWAY_SECRET, "signature": "hmac-header", "mapping": GATEWAY_MAPPING},
            )
        )
    request = WebhookRequest.build("POST", f"http://x/webhooks/{name}", headers, body)
    response = post_webhook(sqlite_inbox, name, request)
    assert response.status in (400, 403, 413, 415)
    assert sqlite_inbox.complaints() == []


# -- the shared contract -----------------------------------------------------------------------


@pytest.mark.parametrize("secret", [SECRET, OLD_SECRET])
def test_the_shared_signer_is_what_the_reference_library_verifies(secret: str) -> None:
    """The kit's Standard Webhooks headers verify with the ``standardwebhooks`` library (not
    our code, which the web connector and the signer share), and a changed body does not."""
    body = json.dumps(FORM).encode()
    headers = standard_webhooks_headers(secret, body)
    key = secret if secret.startswith("whsec_") else base64.b64encode(secret.encode()).decode()
    reference = Webhook(key)
    assert reference.verify(body, headers) == FORM
    with pytest.raises(WebhookVerificationError):
        reference.verify(body.replace(b"Andi", b"Anda"), headers)


PORTAL_JSON = json.dumps(FORM | {"id": "portal-2291"}).encode()
PORTAL_FORM = (
    b"name=Rina&message=Lampu+jalan+mati+di+Jl.+Veteran&location=-5.1%2C119.4&anonymous=on"
)
_UPLOAD = requests.Request(
    "POST",
    "http://x",
    data={"message": "Foto saluran air tersumbat di pasar", "phone": "0813 4444 5555"},
    files={"attachments": ("saluran.jpg", b"\xff\xd8\xffjpeg", "image/jpeg")},
).prepare()
PORTAL_UPLOAD = bytes(_UPLOAD.body or b"")  # type: ignore[arg-type]
UPLOAD_TYPE = str(_UPLOAD.headers["Content-Type"])
FORM_TYPE = "application/x-www-form-urlencoded"


class TestWebContract(WebhookContract):
    """The portal's form, Standard Webhooks signed, passes the shared webhook contract."""

    connector_type = "web"
    options: ClassVar[dict[str, Any]] = {"secret": SECRET, "previous_secrets": [OLD_SECRET]}
    replay_tolerance = 300
    cases: ClassVar[list[DecodeCase]] = [
        DecodeCase(
            "json",
            PORTAL_JSON,
            {"channel": "web", "external_id": "portal-2291", "text": FORM["message"]},
            "application/json",
        ),
        DecodeCase("form", PORTAL_FORM, {"anonymous": True}, FORM_TYPE),
        DecodeCase("multipart", PORTAL_UPLOAD, {"channel": "web"}, UPLOAD_TYPE),
    ]
    webhook_cases: ClassVar[list[WebhookCase]] = [
        WebhookCase("json", PORTAL_JSON, expect={"external_id": "portal-2291"}),
        WebhookCase(
            "form", PORTAL_FORM, FORM_TYPE, expect={"text": "Lampu jalan mati di Jl. Veteran"}
        ),
        WebhookCase(
            "multipart",
            PORTAL_UPLOAD,
            UPLOAD_TYPE,
            expect={"text": "Foto saluran air tersumbat di pasar"},
        ),
    ]

    def sign(
        self, request: WebhookRequest, *, options: Mapping[str, Any], now: float
    ) -> WebhookRequest:
        headers = standard_webhooks_headers(options["secret"], request.body, timestamp=now)
        return with_headers(request, headers)


class TestWebMappedContract(WebhookContract):
    """An SMS-gateway app's own JSON, HMAC-header signed and mapped by configuration, passes
    the shared webhook contract (no timestamp is signed: no replay window to check)."""

    connector_type = "web"
    options: ClassVar[dict[str, Any]] = {
        "secret": GATEWAY_SECRET,
        "signature": "hmac-header",
        "hmac_header": "X-Gateway-Signature",
        "mapping": GATEWAY_MAPPING,
        "required": ["sender.phone"],
    }
    payload = json.dumps(
        {"data": {"id": "gw-7", "from": "0812 7777 0101", "message": "Pungli di terminal"}}
    ).encode()
    cases: ClassVar[list[DecodeCase]] = [
        DecodeCase(
            "gateway",
            payload,
            {"channel": "sms", "external_id": "gw-7", "text": "Pungli di terminal"},
            "application/json",
        )
    ]
    webhook_cases: ClassVar[list[WebhookCase]] = [
        WebhookCase("gateway", payload, outcome=Outcome.NEW, expect={"external_id": "gw-7"})
    ]

    def sign(
        self, request: WebhookRequest, *, options: Mapping[str, Any], now: float
    ) -> WebhookRequest:
        signature = hmac_header(request.body, options["secret"])
        return with_headers(request, {"X-Gateway-Signature": signature})
