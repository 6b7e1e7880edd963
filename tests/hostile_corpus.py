"""Real payloads of every built-in connector, and hostile variants of them as each connector
would store them: the shared corpus of ``tests/test_properties.py`` and ``benchmarks/fuzz.py``."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from connectors.files import FilesConnector
from connectors.gammu import GammuConnector
from connectors.imap import ImapConnector
from connectors.twilio import TwilioConnector
from connectors.web import WebConnector
from connectors.whatsapp_cloud import WhatsAppCloudConnector
from normalizer.email import email_external_id
from normalizer.normalize import normalize
from normalizer.sms import inbox_payload
from omnichannel import NormalizedMessage, RawMessage
from omnichannel.connector import Connector
from omnichannel.testing.hostile import hostile_bytes, hostile_form, hostile_json, hostile_mail
from omnichannel.values import storable_id, storable_inbound, storable_normalized
from omnichannel.webhook import WebhookConnector, WebhookRequest

TESTDATA = Path(__file__).parent / "testdata"
ACCOUNT = "AC" + "0" * 32
AUTH_TOKEN = "twilio-auth-token-uji-123"
APP_SECRET = "meta-app-secret-uji-456"
ACCESS_TOKEN = "meta-access-token-uji-789"
WEB_SECRET = "portal-secret-uji-0123456789"
PNID = "106540352242922"
FORM = "application/x-www-form-urlencoded"


# -- the connectors and their real payloads ----------------------------------------------------


def build_connectors(folder: Path) -> dict[str, Connector]:
    """One connector of every built-in type (nothing here connects to anything)."""
    return {
        "sms": TwilioConnector.from_options(
            "sms", {"account_sid": ACCOUNT, "auth_token": AUTH_TOKEN, "ack": "outbox"}
        ),
        "wa": WhatsAppCloudConnector.from_options(
            "wa",
            {
                "app_secret": APP_SECRET,
                "verify_token": "verify-uji",
                "access_token": ACCESS_TOKEN,
                "phone_number_ids": [PNID],
            },
        ),
        "portal": WebConnector.from_options("portal", {"secret": WEB_SECRET}),
        "files": FilesConnector.from_options("files", {"path": str(folder)}),
        "email": ImapConnector.from_options(
            "email", {"host": "127.0.0.1", "username": "u", "password": "p"}
        ),
        "gsm": GammuConnector.from_options("gsm", {"url": f"sqlite:///{folder / 'smsd.db'}"}),
    }


@cache
def twilio_samples() -> list[list[tuple[str, str]]]:
    return [
        parse_qsl(p.read_text(), keep_blank_values=True)
        for p in sorted((TESTDATA / "twilio").glob("*.form"))
    ]


@cache
def whatsapp_samples() -> list[Any]:
    found = []
    for path in sorted((TESTDATA / "whatsapp").glob("*.json")):
        text = path.read_text().replace("PHONE_NUMBER_ID", PNID)
        found.append(json.loads(text))
    return found


@cache
def mail_samples() -> list[bytes]:
    return [p.read_bytes() for p in sorted((TESTDATA / "email").glob("*.eml"))]


WEB_JSON: dict[str, Any] = {
    "id": "form-2026-0001",
    "name": "Andi",
    "email": "andi@example.id",
    "phone": "0812-3456-7890",
    "subject": "Calo di loket",
    "message": "Ada calo di loket perizinan yang meminta uang tambahan.",
    "location": {"lat": -5.1, "lon": 119.4, "address": "Jl. Veteran"},
    "anonymous": False,
    "attachments": [{"filename": "foto.jpg", "content_type": "image/jpeg", "content": "/9j/4AAQ"}],
}
WEB_FORM = [
    ("name", "Andi"),
    ("email", "andi@example.id"),
    ("phone", "0812-3456-7890"),
    ("subject", "Calo di loket"),
    ("message", "Ada calo di loket perizinan."),
    ("confidential", "on"),
]
JSON_DOC: dict[str, Any] = {
    "channel": "web",
    "external_id": "doc-1",
    "received_at": "2026-11-30T02:00:00Z",
    "sent_at": "2026-11-30T01:59:00+08:00",
    "sender": {"name": "Budi", "phone": "+6281234567890", "email": "budi@example.id"},
    "subject": "Jalan rusak",
    "text": "Jalan di depan pasar rusak parah.",
    "attachments": [{"filename": "a.txt", "content_type": "text/plain", "size": 3}],
    "location": {"lat": -5.1, "lon": 119.4},
    "in_reply_to": "<a@b>",
    "references": ["<a@b>"],
    "flags": {"auto_reply": False},
}


def gammu_doc() -> dict[str, Any]:
    rows = [
        {
            "ID": 7,
            "Text": "004A0061006C0061006E",
            "UDH": "",
            "Coding": "Default_No_Compression",
            "TextDecoded": "Jalan",
            "SenderNumber": "+6281234567890",
            "ReceivingDateTime": "2026-11-30 10:00:00",
            "RecipientID": "modem1",
            "SMSCNumber": "+6281100000",
            "Class": -1,
            "Processed": "false",
        }
    ]
    payload = inbox_payload(rows, gateway="gsm", schema=17, timezone="Asia/Makassar")
    return json.loads(payload)


# -- hostile raw payloads, per decoder ---------------------------------------------------------


def raw_message(connector: str, external_id: str, content_type: str, payload: bytes) -> RawMessage:
    return RawMessage(
        connector=connector,
        external_id=external_id,
        received_at=datetime.now(UTC),
        content_type=content_type,
        payload=payload,
    )


@dataclass(frozen=True)
class Input:
    """One hostile input: a body, and the content type and headers it comes with."""

    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


def hostile_input(kind: str, rng: random.Random) -> Input:
    """A hostile variant of one of ``kind``'s real payloads."""
    if kind == "sms":
        return Input(hostile_form(rng.choice(twilio_samples()), rng), FORM)
    if kind == "wa":
        return Input(hostile_json(rng.choice(whatsapp_samples()), rng), "application/json")
    if kind == "portal":
        webhook_id = {"webhook-id": f"msg_{rng.randrange(10**9)}"}  # (verify has checked it)
        if rng.random() < 0.6:
            return Input(hostile_json(WEB_JSON, rng), "application/json", webhook_id)
        return Input(hostile_form(WEB_FORM, rng), FORM, webhook_id)
    if kind == "email":
        return Input(hostile_mail(rng.choice(mail_samples()), rng), "message/rfc822")
    if kind == "files":
        return Input(hostile_json(JSON_DOC, rng), "application/json")
    if kind == "gsm":
        data = hostile_json(gammu_doc(), rng) if rng.random() < 0.8 else hostile_bytes(b"{}", rng)
        return Input(data, "application/x-gammu-inbox")
    raise AssertionError(kind)


def raws_of(kind: str, connector: Connector, item: Input) -> list[RawMessage]:
    """What the connector stores of ``item``: a webhook connector's ``parse`` (which may
    refuse it, ``WebhookRejected``), else the payload as its poll would store it."""
    if isinstance(connector, WebhookConnector):
        url = f"https://omni.example/webhooks/{kind}"
        headers = {"content-type": item.content_type, **item.headers}
        return connector.parse(WebhookRequest.build("POST", url, headers, item.body, "127.0.0.1"))
    digest = hashlib.sha256(item.body).hexdigest()
    if kind == "email":
        key = email_external_id(item.body)
    elif kind == "gsm":
        key = f"gsm:{digest[:32]}"
    else:
        key = f"sha256:{digest}"
    return [raw_message(kind, key, item.content_type, item.body)]


def decode_for_filing(connector: Connector, raw: RawMessage) -> NormalizedMessage:
    """What the filing worker does with a stored payload before filing it
    (``pipeline.prepare``, without its catch-all): decode, check, normalize, check. A
    ``DecodeError`` is a clear quarantine; any other exception is a decoder's bug."""
    stored_id = storable_id(raw.external_id)
    if stored_id != raw.external_id:
        raw = raw.model_copy(update={"external_id": stored_id})
    inbound = storable_inbound(connector.decode(raw))
    message = normalize(inbound, connector=raw.connector, received_at=raw.received_at)
    return storable_normalized(message)


def hostile_raws(kind: str, connector: Connector, rng: random.Random) -> list[RawMessage]:
    """Raw payloads of a hostile ``kind`` input as the connector would store them."""
    return raws_of(kind, connector, hostile_input(kind, rng))


KINDS = ["sms", "wa", "portal", "email", "files", "gsm"]
