"""The twilio connector over real HTTP on loopback: signed webhooks into the WSGI app, a local
server playing Twilio's API (message log, media, CDN redirects), storage failures on PostgreSQL.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, quote_plus, urlencode, urlsplit

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from connectors.twilio import TwilioConnector, host_allowed, signature_url
from connectors.twilio import twiml_messages as twiml_reply
from omnichannel import Inbox, Outcome
from omnichannel.config import AcknowledgementConfig, default_config, parse_config
from omnichannel.connector import PollingConnector
from omnichannel.errors import ConfigError, FatalError, RetryableError, SkippableError
from omnichannel.http import create_app
from omnichannel.registry import connector_class
from omnichannel.store.tables import attachments, metadata, outbox, raw_messages
from omnichannel.testing import (
    PollingContract,
    WebhookCase,
    WebhookContract,
    form_fields,
    twilio_signature,
    with_headers,
)
from omnichannel.testing.http import serve_wsgi
from omnichannel.webhook import WebhookConnector, WebhookRejected, WebhookRequest
from tests.proxy import SwitchableProxy
from tests.test_twilio_decode import contract_cases

ACCOUNT = "AC" + "5e" * 16
TOKEN = "token-uji-9f8e7d6c5b4a3210"
CITIZEN = "+6281234567890"
CITIZEN_DIGITS = "81234567890"  # the number without country code or trunk prefix
OUR_NUMBER = "+6281100000001"
FORM = "application/x-www-form-urlencoded"
API_PREFIX = f"/2010-04-01/Accounts/{ACCOUNT}"
PHOTO = b"\xff\xd8\xff\xe0" + b"foto jalan rusak " * 40
SCAN = b"%PDF-1.4 surat keterangan " * 30


def sid(n: int, prefix: str = "SM") -> str:
    return f"{prefix}{n:032x}"


def sms_fields(n: int, body: str = "", sender: str = CITIZEN, **extra: str) -> dict[str, str]:
    """An inbound SMS webhook as Twilio posts it."""
    fields = {
        "ToCountry": "ID",
        "SmsMessageSid": sid(n),
        "NumMedia": "0",
        "SmsSid": sid(n),
        "SmsStatus": "received",
        "Body": body or f"Pengaduan nomor {n}: izin usaha saya belum diproses.",
        "FromCountry": "ID",
        "To": OUR_NUMBER,
        "MessagingServiceSid": "MG" + "ab" * 16,
        "NumSegments": "1",
        "MessageSid": sid(n),
        "AccountSid": ACCOUNT,
        "From": sender,
        "ApiVersion": "2010-04-01",
        "SomeKeyTwilioAddsLater": "x",
    }
    fields.update(extra)
    return fields


def sign(url: str, fields: dict[str, str], token: str = TOKEN) -> str:
    """``X-Twilio-Signature`` of ``fields`` posted to ``url``, by the shared signer."""
    return twilio_signature(url, fields, token)


@dataclass
class Answer:
    """An HTTP answer, read whole."""

    status_code: int
    content_type: str
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


def http_post(url: str, body: bytes, headers: dict[str, str]) -> Answer:
    """POST over a fresh connection that is closed afterwards (no keep-alive left behind)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        connection.request(
            "POST", parts.path + (f"?{parts.query}" if parts.query else ""), body, headers
        )
        response = connection.getresponse()
        return Answer(response.status, response.getheader("Content-Type", ""), response.read())
    finally:
        connection.close()


def post(
    base_url: str,
    fields: dict[str, str],
    *,
    name: str = "sms",
    signed_url: str | None = None,
    token: str = TOKEN,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """POST a webhook to the app, signed for ``signed_url`` (default: the URL posted to)."""
    url = f"{base_url}/webhooks/{name}"
    default_headers = {
        "Content-Type": FORM,
        "X-Twilio-Signature": sign(signed_url or url, fields, token),
    }
    return http_post(
        url,
        urlencode(fields).encode() if body is None else body,
        headers if headers is not None else default_headers,
    )


def twiml_messages(response: Answer) -> list[str]:
    """The <Message> texts of a TwiML answer (also checks it is TwiML)."""
    assert response.status_code == 200, response.text
    assert response.content_type.startswith("text/xml")
    root = ET.fromstring(response.content)
    assert root.tag == "Response"
    return [element.text or "" for element in root.iter("Message")]


def count(inbox: Inbox, table: sa.Table) -> int:
    with inbox.store.transaction() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def add_twilio(
    inbox: Inbox, name: str = "sms", fake: FakeTwilio | None = None, **options: Any
) -> TwilioConnector:
    """A twilio connector in ``inbox``; with ``fake``, its API is the fake server. Its replies
    carry the acknowledgement (``ack = "inline"``) unless ``ack="outbox"`` is given."""
    options.setdefault("ack", "inline")
    if fake is not None:
        options.setdefault("api_base_url", fake.base_url)
    connector = TwilioConnector.from_options(
        name, {"account_sid": ACCOUNT, "auth_token": TOKEN, **options}, inbox.context
    )
    assert isinstance(connector, TwilioConnector)
    inbox.add_connector(connector)
    if fake is not None:
        fake.clients.append(connector)
    return connector


# -- a local server playing api.twilio.com -----------------------------------------------------


def rfc2822(when: datetime) -> str:
    return format_datetime(when.astimezone(UTC), usegmt=False).replace("-0000", "+0000")


@dataclass
class FakeTwilio:
    """Twilio's REST API as far as we use it: the Messages list (pages, filters), Media lists,
    media with Basic auth and CDN redirects, the account; JSON as Twilio returns it."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    message_media: dict[str, list[str]] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)  # media sid -> base URL of a CDN
    fail: list[int] = field(default_factory=list)  # statuses for the next API requests
    fail_page: dict[int, int] = field(default_factory=dict)  # list page number -> status
    requests: list[tuple[str, dict[str, list[str]], str | None]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    clients: list[TwilioConnector] = field(default_factory=list)  # closed before the server
    base_url: str = ""

    def add(
        self,
        n: int,
        body: str = "",
        *,
        sender: str = CITIZEN,
        to: str = OUR_NUMBER,
        direction: str = "inbound",
        status: str = "received",
        when: datetime | None = None,
        media: Sequence[tuple[bytes, str]] = (),
        prefix: str = "SM",
    ) -> str:
        """Log a message; inbound ones match what ``sms_fields(n, body)`` posts."""
        message_sid = sid(n, prefix)
        sent = rfc2822(when or datetime.now(UTC) - timedelta(minutes=n))
        self.message_media[message_sid] = []
        for index, (content, kind) in enumerate(media):
            media_sid = sid(n * 100 + index, "ME")
            self.media[media_sid] = (content, kind)
            self.message_media[message_sid].append(media_sid)
        self.messages.append(
            {
                "account_sid": ACCOUNT,
                "api_version": "2010-04-01",
                "body": body or f"Pengaduan nomor {n}: izin usaha saya belum diproses.",
                "date_created": sent,
                "date_sent": sent,
                "date_updated": sent,
                "direction": direction,
                "error_code": None,
                "error_message": None,
                "from": sender if direction == "inbound" else to,
                "messaging_service_sid": "MG" + "ab" * 16,
                "num_media": str(len(media)),
                "num_segments": "1",
                "price": None,
                "price_unit": "USD",
                "sid": message_sid,
                "status": status,
                "subresource_uris": {"media": f"{API_PREFIX}/Messages/{message_sid}/Media.json"},
                "to": to if direction == "inbound" else sender,
                "uri": f"{API_PREFIX}/Messages/{message_sid}.json",
            }
        )
        return message_sid

    def media_url(self, message_sid: str, index: int = 0) -> str:
        media_sid = self.message_media[message_sid][index]
        return f"{self.base_url}{API_PREFIX}/Messages/{message_sid}/Media/{media_sid}"

    def api_calls(self, suffix: str) -> list[dict[str, list[str]]]:
        return [query for path, query, _ in self.requests if path.endswith(suffix)]

    # -- WSGI ----------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path, query = environ["PATH_INFO"], parse_qs(environ.get("QUERY_STRING", ""))
        auth = environ.get("HTTP_AUTHORIZATION")
        self.requests.append((path, query, auth))
        status, headers, body = self.route(path, query, auth)
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [body]

    def route(
        self, path: str, query: dict[str, list[str]], auth: str | None
    ) -> tuple[str, list[tuple[str, str]], bytes]:
        if path.startswith("/cdn/"):
            return self.cdn(path, auth)
        expected = "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
        if auth != expected:
            return self.error(401, 20003, "Authenticate")
        if self.fail:
            code = self.fail.pop(0)
            return self.error(code, 20500 if code >= 500 else 20429, "failure for the test")
        if path == f"{API_PREFIX}.json":
            return self.json({"sid": ACCOUNT, "status": "active", "friendly_name": "Pengaduan"})
        if path == f"{API_PREFIX}/Messages.json":
            page = int(query.get("Page", ["0"])[0])
            if page in self.fail_page:
                return self.error(self.fail_page[page], 20500, "failure for the test")
            return self.json(self.page(path, query))
        parts = path.removeprefix(f"{API_PREFIX}/Messages/").split("/")
        if len(parts) == 2 and parts[1] == "Media.json" and parts[0] in self.message_media:
            return self.json(self.media_list(parts[0]))
        if len(parts) == 3 and parts[1] == "Media" and parts[2] in self.media:
            return self.serve_media(parts[2])
        return self.error(404, 20404, "not found")

    def page(self, path: str, query: dict[str, list[str]]) -> dict[str, Any]:
        since, to = query.get("DateSent>", [""])[0], query.get("To", [None])[0]
        size, number = int(query.get("PageSize", ["50"])[0]), int(query.get("Page", ["0"])[0])
        chosen = [
            m
            for m in sorted(self.messages, key=lambda m: m["sid"], reverse=True)
            if (to is None or m["to"] == to) and (not since or _date(m["date_sent"]) >= since[:10])
        ]
        items = chosen[number * size : (number + 1) * size]
        params = {k: v[0] for k, v in query.items() if k not in ("Page", "PageToken")}
        more = (number + 1) * size < len(chosen)
        following = {**params, "Page": number + 1, "PageToken": f"PA{number + 1}"}
        next_uri = f"{path}?{urlencode(following)}"
        return {
            "end": number * size + len(items) - 1,
            "first_page_uri": f"{path}?{urlencode({**params, 'Page': 0})}",
            "messages": items,
            "next_page_uri": next_uri if more else None,
            "page": number,
            "page_size": size,
            "previous_page_uri": None,
            "start": number * size,
            "uri": f"{path}?{urlencode(params)}",
        }

    def media_list(self, message_sid: str) -> dict[str, Any]:
        items = [
            {
                "account_sid": ACCOUNT,
                "content_type": self.media[media_sid][1],
                "parent_sid": message_sid,
                "sid": media_sid,
                "uri": f"{API_PREFIX}/Messages/{message_sid}/Media/{media_sid}.json",
            }
            for media_sid in self.message_media[message_sid]
        ]
        uri = f"{API_PREFIX}/Messages/{message_sid}/Media.json"
        return {"media_list": items, "next_page_uri": None, "page": 0, "uri": uri}

    def serve_media(self, media_sid: str) -> tuple[str, list[tuple[str, str]], bytes]:
        if media_sid in self.redirects:
            target = f"{self.redirects[media_sid]}/cdn/{media_sid}"
            return "307 Temporary Redirect", [("Location", target)], b""
        content, kind = self.media[media_sid]
        if content == b"slow":
            self.release.wait(10)
        return "200 OK", [("Content-Type", kind)], content

    def cdn(self, path: str, auth: str | None) -> tuple[str, list[tuple[str, str]], bytes]:
        if auth is not None:  # the CDN URL is pre-signed: our credentials must not go there
            return "400 Bad Request", [], b"credentials sent to the CDN"
        content, kind = self.media[path.removeprefix("/cdn/")]
        return "200 OK", [("Content-Type", kind)], content

    @staticmethod
    def json(data: Any) -> tuple[str, list[tuple[str, str]], bytes]:
        return "200 OK", [("Content-Type", "application/json")], json.dumps(data).encode()

    @staticmethod
    def error(code: int, twilio_code: int, text: str) -> tuple[str, list[tuple[str, str]], bytes]:
        body = {"code": twilio_code, "message": text, "more_info": "", "status": code}
        return f"{code} Error", [("Content-Type", "application/json")], json.dumps(body).encode()


def _date(rfc: str) -> str:
    from email.utils import parsedate_to_datetime

    return parsedate_to_datetime(rfc).date().isoformat()


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    """The fake Twilio API on a real loopback server."""
    api = FakeTwilio()
    with serve_wsgi(api) as base_url:
        api.base_url = base_url
        yield api
        api.release.set()
        for client in api.clients:  # their keep-alive connections would hold the server open
            client.close()


@pytest.fixture
def sms(sqlite_inbox: Inbox, fake: FakeTwilio) -> TwilioConnector:
    """A twilio connector named ``sms`` on a SQLite inbox, its API on the fake server."""
    return add_twilio(sqlite_inbox, fake=fake, poll_page_size=3)


@pytest.fixture
def app(sqlite_inbox: Inbox, sms: TwilioConnector) -> Iterator[str]:
    """The WSGI app serving ``sqlite_inbox`` on loopback (base URL)."""
    with serve_wsgi(create_app(sqlite_inbox)) as base_url:
        yield base_url


# -- the class and its configuration -----------------------------------------------------------


def test_registered_polling_and_webhook_connector_with_typed_options() -> None:
    """``type = "twilio"`` loads through the entry point; it polls and takes webhooks; bad
    options are reported by key path without echoing the token."""
    cls = connector_class("twilio")
    assert cls is TwilioConnector
    assert issubclass(cls, PollingConnector) and issubclass(cls, WebhookConnector)
    config = parse_config(
        {
            "connectors": [
                {"name": "sms", "type": "twilio", "account_sid": ACCOUNT, "auth_token": TOKEN}
            ]
        }
    )
    with Inbox(config, database_url="sqlite://") as inbox:
        connector = inbox.connector("sms")
        assert isinstance(connector, TwilioConnector) and connector.secrets() == [TOKEN]
        assert TOKEN not in repr(connector.options) and connector.max_bytes() == 1024 * 1024
    with pytest.raises(ConfigError) as problem:
        parse_config(
            {"connectors": [{"name": "sms", "type": "twilio", "account_sid": "x", "mode": "push"}]}
        )
    lines = problem.value.problems
    assert "connectors[0].auth_token: missing" in lines
    assert any(line.startswith("connectors[0].mode:") for line in lines)
    assert any(line.startswith("connectors[0].account_sid:") for line in lines)


# -- signatures --------------------------------------------------------------------------------

VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
VECTOR_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_public_test_vector_with_the_official_validator_and_behind_a_proxy() -> None:
    """Twilio's published vector holds for the official validator, and for the connector when
    the request reached us on an internal URL and the public URL is configured; the AccountSid
    check comes only after the signature passed."""
    assert (
        RequestValidator("12345").compute_signature(VECTOR_URL, VECTOR_PARAMS) == VECTOR_SIGNATURE
    )
    assert twilio_signature(VECTOR_URL, VECTOR_PARAMS, "12345") == VECTOR_SIGNATURE  # the kit's
    internal = "http://127.0.0.1:8080/myapp.php?foo=1&bar=2"
    assert signature_url(internal, "https://mycompany.com/") == VECTOR_URL
    assert signature_url(internal, None) == internal

    def verify(public_url: str | None, signature: str = VECTOR_SIGNATURE) -> str:
        connector = TwilioConnector.from_options(
            "sms", {"account_sid": ACCOUNT, "auth_token": "12345", "public_url": public_url}
        )
        assert isinstance(connector, TwilioConnector)
        request = WebhookRequest.build(
            "POST",
            internal,
            {"Content-Type": FORM, "X-Twilio-Signature": signature},
            urlencode(VECTOR_PARAMS).encode(),
        )
        with pytest.raises(WebhookRejected) as rejected:
            connector.verify(request)
        return f"{rejected.value.status} {rejected.value.reason}"

    assert verify("https://mycompany.com") == "403 not our Twilio account"  # signature passed
    assert verify("https://mycompany.com:443") == "403 not our Twilio account"  # explicit port
    assert verify("https://other.example.com") == "403 bad signature"
    assert verify(None) == "403 bad signature"  # signed for the public URL, not the internal one
    assert verify("https://mycompany.com", VECTOR_SIGNATURE.lower()) == "403 bad signature"


# XML 1.0 text: what an acknowledgement template can hold (ElementTree writes anything else as is)
XML_TEXT = st.text(
    st.characters(codec="utf-8", exclude_characters="\x00\ufffe\uffff"),
    max_size=80,
)


@given(st.lists(XML_TEXT, max_size=3))
def test_twiml_answers_are_the_official_librarys_bytes(texts: list[str]) -> None:
    """The reply put together from the library's own TwiML around the texts is, byte for byte,
    what ``MessagingResponse`` writes for those texts: escaping, several messages, none."""
    reply = MessagingResponse()
    for text in texts:
        reply.message(text)
    assert twiml_reply(texts) == str(reply).encode("utf-8")


def test_signed_sms_is_stored_and_answered_with_the_acknowledgement(
    app: str, sqlite_inbox: Inbox
) -> None:
    """A validly signed SMS (unknown keys and a MessagingServiceSid included) answers 200 TwiML
    with the ticket; the complaint is filed and its acknowledgement marked sent inline."""
    response = post(app, sms_fields(1))
    [complaint] = sqlite_inbox.complaints()
    assert twiml_messages(response) == [
        f"Terima kasih. Pengaduan Anda telah kami terima dengan nomor {complaint.ticket}. "
        "Simpan nomor ini untuk menanyakan perkembangannya."
    ]
    assert complaint.channel == "sms" and complaint.sender.phone == CITIZEN
    assert complaint.body == "Pengaduan nomor 1: izin usaha saya belum diproses."
    assert complaint.messages[0].external_id == sid(1)
    with sqlite_inbox.store.transaction() as conn:
        raw = conn.execute(sa.select(raw_messages)).one()
        statuses = list(conn.execute(sa.select(outbox.c.status)).scalars())
    assert raw.content_type == FORM and bytes(raw.payload) == urlencode(sms_fields(1)).encode()
    assert statuses == ["sent-inline"]


@pytest.mark.parametrize(
    "tamper",
    ["body altered", "wrong token", "missing header", "other account", "signed for another URL"],
)
def test_forged_webhooks_are_403_and_nothing_is_stored(
    app: str, sqlite_inbox: Inbox, tamper: str
) -> None:
    """Altered body, wrong token, no signature, another AccountSid, or a signature for another
    URL: 403, and nothing at all is stored."""
    fields, url = sms_fields(2), f"{app}/webhooks/sms"
    headers = {"Content-Type": FORM, "X-Twilio-Signature": sign(url, fields)}
    body = urlencode(fields).encode()
    if tamper == "body altered":
        body = body.replace(b"belum", b"sudah")
    elif tamper == "wrong token":
        headers["X-Twilio-Signature"] = sign(url, fields, "another-token-0000")
    elif tamper == "missing header":
        del headers["X-Twilio-Signature"]
    elif tamper == "other account":
        fields["AccountSid"] = "AC" + "00" * 16
        body, headers["X-Twilio-Signature"] = urlencode(fields).encode(), sign(url, fields)
    else:
        headers["X-Twilio-Signature"] = sign("https://elsewhere.example/webhooks/sms", fields)
    response = post(app, fields, body=body, headers=headers)
    assert response.status_code == 403 and "belum" not in response.text
    assert count(sqlite_inbox, raw_messages) == 0


def test_a_repeated_field_must_be_signed_too(app: str, sqlite_inbox: Inbox) -> None:
    """A field appended to a validly signed body (a second ``Body``) breaks the signature."""
    fields = sms_fields(3)
    body = urlencode([("Body", "Pengaduan palsu"), *fields.items()]).encode()
    headers = {"Content-Type": FORM, "X-Twilio-Signature": sign(f"{app}/webhooks/sms", fields)}
    assert post(app, fields, body=body, headers=headers).status_code == 403
    assert count(sqlite_inbox, raw_messages) == 0


def test_behind_a_tls_proxy_the_public_url_is_what_was_signed(tmp_path: Any) -> None:
    """The request arrives at http://127.0.0.1:PORT/webhooks/sms, signed by Twilio for
    https://pengaduan.example.go.id/webhooks/sms?… (server.public_url, from the TOML config,
    raw query kept): valid; the internal URL's signature is not."""
    public = "https://pengaduan.example.go.id"
    config = parse_config(
        {
            "database": {"url": f"sqlite:///{tmp_path / 'o.db'}"},
            "server": {"public_url": public},
            "connectors": [
                {"name": "sms", "type": "twilio", "account_sid": ACCOUNT, "auth_token": TOKEN}
            ],
        }
    )
    with Inbox(config) as inbox, serve_wsgi(create_app(inbox)) as base_url:
        query = "?rc=2&label=a%2Fb"
        fields = sms_fields(4)
        body = urlencode(fields).encode()
        internal = f"{base_url}/webhooks/sms{query}"

        def send(signed_for: str) -> int:
            headers = {"Content-Type": FORM, "X-Twilio-Signature": sign(signed_for, fields)}
            return http_post(internal, body, headers).status_code

        assert send(internal) == 403
        assert send(f"{public}/webhooks/sms{query}") == 200
        assert send(f"{public}:443/webhooks/sms{query}") == 200  # Twilio may sign with the port
        assert [c.messages[0].external_id for c in inbox.complaints()] == [sid(4)]


def test_connector_public_url_overrides_the_server_one(
    sqlite_inbox: Inbox, fake: FakeTwilio
) -> None:
    """A connector's own ``public_url`` is used instead of ``server.public_url``."""
    add_twilio(sqlite_inbox, public_url="https://sms.example.go.id/gateway")
    with serve_wsgi(create_app(sqlite_inbox)) as base_url:
        signed = "https://sms.example.go.id/gateway/webhooks/sms"
        assert post(base_url, sms_fields(5), signed_url=signed).status_code == 200


# -- outcomes and replies ----------------------------------------------------------------------


def test_by_default_the_acknowledgement_goes_through_the_outbox(inbox: Inbox) -> None:
    """With ``ack = "outbox"`` (the default) a new SMS is answered with an empty <Response/>
    and its acknowledgement waits in the outbox, due at once; inline, the reply carries it and
    the outbox row says so, so that it is never sent twice."""
    add_twilio(inbox, ack="outbox")
    add_twilio(inbox, name="inline", ack="inline")
    with serve_wsgi(create_app(inbox)) as base_url:
        quiet = post(base_url, sms_fields(60))
        loud = post(base_url, sms_fields(61), name="inline")
    assert quiet.status_code == 200 and twiml_messages(quiet) == []
    assert len(twiml_messages(loud)) == 1
    with inbox.store.transaction() as conn:
        rows = conn.execute(
            sa.select(outbox.c.status, outbox.c.payload).order_by(outbox.c.id)
        ).all()
    assert [(status, payload["via"]) for status, payload in rows] == [
        ("pending", "sms"),
        ("sent-inline", "inline"),
    ]


def test_the_same_message_sid_three_times_is_one_complaint(inbox: Inbox, fake: FakeTwilio) -> None:
    """Three deliveries of one MessageSid: three 200s, one complaint; the last two are
    duplicates answered with an empty <Response/>."""
    add_twilio(inbox)
    with serve_wsgi(create_app(inbox)) as base_url:
        answers = [post(base_url, sms_fields(6)) for _ in range(3)]
    assert [len(twiml_messages(a)) for a in answers] == [1, 0, 0]
    assert len(inbox.complaints()) == 1 and count(inbox, raw_messages) == 1


@pytest.mark.parametrize(
    "status",
    [
        {"MessageStatus": "delivered"},
        {"SmsStatus": "sent"},
        {"MessageStatus": "read", "SmsStatus": "received"},
    ],
)
def test_status_callbacks_are_200_empty_and_stored_as_ignored(
    app: str, sqlite_inbox: Inbox, status: dict[str, str]
) -> None:
    """A delivery/status callback is answered 200 with empty TwiML and stored as ``ignored``
    with the ``status_callback`` flag; no complaint."""
    fields = {"MessageSid": sid(7), "AccountSid": ACCOUNT, "From": OUR_NUMBER, "To": CITIZEN}
    response = post(app, fields | status)
    assert twiml_messages(response) == []
    assert sqlite_inbox.complaints() == []
    with sqlite_inbox.store.transaction() as conn:
        raw = conn.execute(sa.select(raw_messages)).one()
        flags = conn.execute(sa.text("SELECT flags FROM messages")).scalar_one()
    assert raw.outcome == "ignored" and raw.external_id.startswith(sid(7) + "#")
    assert json.loads(flags)["status_callback"] is True


def test_no_acknowledgement_in_the_reply_when_they_are_off(tmp_path: Any, fake: FakeTwilio) -> None:
    """With acknowledgements disabled a new complaint is answered with an empty <Response/>;
    a configured template is used when they are on."""
    for enabled, template, expected in [
        (False, None, []),
        (True, "Nomor pengaduan Anda: {ticket}.", ["Nomor pengaduan Anda: ADU-"]),
    ]:
        config = default_config(url=f"sqlite:///{tmp_path / f'{enabled}.db'}")
        config.acknowledgements = AcknowledgementConfig(enabled=enabled, template=template)
        with Inbox(config) as inbox:
            add_twilio(inbox)
            with serve_wsgi(create_app(inbox)) as base_url:
                texts = twiml_messages(post(base_url, sms_fields(8)))
        assert [t[: len(e)] for t, e in zip(texts, expected, strict=True)] == expected


def test_a_quoted_whatsapp_reply_joins_the_complaint_it_quotes(
    app: str, sqlite_inbox: Inbox
) -> None:
    """``OriginalRepliedMessageSid`` threads a reply onto the complaint of the quoted message."""
    first = sms_fields(9, "Jembatan di Desa Sukamaju retak.", f"whatsapp:{CITIZEN}")
    reply = sms_fields(10, "Sampai hari ini belum ada petugas datang.", f"whatsapp:{CITIZEN}")
    reply["OriginalRepliedMessageSid"] = sid(9)
    assert len(twiml_messages(post(app, first))) == 1
    assert twiml_messages(post(app, reply)) == []  # merged: no second acknowledgement
    [complaint] = sqlite_inbox.complaints()
    assert [m.outcome for m in complaint.messages] == [Outcome.NEW, Outcome.MERGED]


def test_http_errors_oversize_and_wrong_content_type(
    app: str, sqlite_inbox: Inbox, fake: FakeTwilio
) -> None:
    """Over max_bytes 413 (default 1 MiB, configurable); JSON or no content type 415; an
    unparseable signed form 400 (unsigned: 403, before it is parsed); a signed form without a
    MessageSid 400; nothing stored."""
    fields = sms_fields(11, "x" * (1024 * 1024))
    assert post(app, fields).status_code == 413
    add_twilio(sqlite_inbox, name="small", max_bytes=2048)
    fields = sms_fields(12, "y" * 3000)
    assert post(app, fields, name="small").status_code == 413
    assert post(app, sms_fields(13), name="small").status_code == 200
    json_headers = {"Content-Type": "application/json"}
    assert post(app, {}, body=b'{"MessageSid": "SM1"}', headers=json_headers).status_code == 415
    assert post(app, {}, body=b"MessageSid=SM1", headers={}).status_code == 415
    garbage = {"Content-Type": FORM, "X-Twilio-Signature": sign(f"{app}/webhooks/sms", {})}
    assert post(app, {}, body=b"\xff\xfe", headers=garbage).status_code == 400
    unsigned = {"Content-Type": FORM}  # refused before the body is parsed
    assert post(app, {}, body=b"\xff\xfe", headers=unsigned).status_code == 403
    no_sid = {"AccountSid": ACCOUNT, "Body": "tanpa sid"}
    response = post(app, no_sid)
    assert response.status_code == 400 and response.json()["field"] == "MessageSid"
    assert count(sqlite_inbox, raw_messages) == 1  # only the accepted small one


def test_poll_mode_takes_no_webhooks_and_webhook_mode_does_not_poll(
    sqlite_inbox: Inbox, fake: FakeTwilio
) -> None:
    """``mode = poll`` answers webhooks 404; ``mode = webhook`` polls nothing at all."""
    add_twilio(sqlite_inbox, name="logonly", fake=fake, mode="poll")
    add_twilio(sqlite_inbox, name="hookonly", fake=fake, mode="webhook")
    fake.add(14)
    with serve_wsgi(create_app(sqlite_inbox)) as base_url:
        assert post(base_url, sms_fields(14), name="logonly").status_code == 404
    assert sqlite_inbox.poll("hookonly") == [] and fake.requests == []
    assert [r.external_id for r in sqlite_inbox.poll("logonly")] == [sid(14)]


# -- WhatsApp, media -----------------------------------------------------------------------------


def whatsapp_fields(n: int, fake: FakeTwilio, media: list[str], **extra: str) -> dict[str, str]:
    """An inbound WhatsApp webhook with ``media`` URLs, as Twilio posts it."""
    fields = sms_fields(n, f"Laporan {n}: foto jalan rusak terlampir.", "whatsapp:")
    fields |= {"To": f"whatsapp:{OUR_NUMBER}", "WaId": CITIZEN[1:], "ProfileName": "Siti Rahma"}
    fields |= {"MessageType": "image", "NumMedia": str(len(media))}
    for index, url in enumerate(media):
        fields[f"MediaUrl{index}"] = url
        fields[f"MediaContentType{index}"] = "image/jpeg" if index == 0 else "application/pdf"
    return fields | extra


def test_whatsapp_with_profile_media_and_location_then_media_downloaded(
    sqlite_inbox: Inbox, fake: FakeTwilio
) -> None:
    """A WhatsApp message (From unusable, WaId given) files with the right channel, E.164
    phone, profile name, location and two pending attachments; the media worker downloads
    them with Basic auth from the API host (one through a CDN redirect, without credentials);
    media on another host, or redirected to one, is refused and recorded."""
    host = fake.base_url.removeprefix("http://")
    cdn = fake.base_url.replace("127.0.0.1", "localhost")
    add_twilio(
        sqlite_inbox,
        fake=fake,
        api_base_url="https://api.twilio.com",  # media_hosts alone must allow the fake host
        media_hosts=["api.twilio.com", host],
        media_redirect_hosts=["*.twiliocdn.com", cdn.removeprefix("http://")],
    )
    message = fake.add(20, media=[(PHOTO, "image/jpeg"), (SCAN, "application/pdf")], prefix="MM")
    fake.redirects[fake.message_media[message][0]] = cdn
    other = fake.add(21, media=[(PHOTO, "image/jpeg"), (PHOTO, "image/jpeg")], prefix="MM")
    fake.redirects[fake.message_media[other][1]] = "https://media.attacker.example"
    location = {"Latitude": "-0.502106", "Longitude": "117.153709", "Label": "Kantor Kelurahan"}
    first = whatsapp_fields(20, fake, [fake.media_url(message, 0), fake.media_url(message, 1)])
    second = whatsapp_fields(
        21, fake, ["https://evil.example.net/ME1.jpg", fake.media_url(other, 1)]
    )
    with serve_wsgi(create_app(sqlite_inbox)) as base_url:
        assert len(twiml_messages(post(base_url, first | location | {"MessageSid": message}))) == 1
        assert len(twiml_messages(post(base_url, second | {"MessageSid": other}))) == 1
    complaint, _ = sqlite_inbox.complaints()
    assert complaint.channel == "whatsapp"
    assert complaint.sender.phone == CITIZEN and complaint.sender.name == "Siti Rahma"
    assert complaint.location is not None
    assert complaint.location.model_dump() == {
        "lat": -0.502106,
        "lon": 117.153709,
        "address": "Kantor Kelurahan",
    }
    assert [a.content_type for a in complaint.attachments] == ["image/jpeg", "application/pdf"]
    assert [row.status for row in attachment_rows(sqlite_inbox)] == ["pending"] * 4

    results = sqlite_inbox.fetch_media()
    assert [r.status for r in results] == ["stored", "stored", "refused", "refused"]
    rows = attachment_rows(sqlite_inbox)
    assert [bytes(r.content or b"") for r in rows[:2]] == [PHOTO, SCAN]
    assert "not on an allowed Twilio API host" in (rows[2].last_error or "")
    assert "redirected to a host that is not allowed" in (rows[3].last_error or "")
    media_requests = [
        (p, a) for p, _, a in fake.requests if "/Media/" in p or p.startswith("/cdn/")
    ]
    assert [p.split("/")[1] for p, _ in media_requests] == [
        "2010-04-01",
        "cdn",
        "2010-04-01",
        "2010-04-01",
    ]
    assert all(a is not None for p, a in media_requests if not p.startswith("/cdn/"))


def attachment_rows(inbox: Inbox) -> list[Any]:
    with inbox.store.transaction() as conn:
        return list(conn.execute(sa.select(attachments).order_by(attachments.c.id)))


def test_media_download_errors_are_retryable_or_refused(
    sqlite_inbox: Inbox, sms: TwilioConnector, fake: FakeTwilio
) -> None:
    """Over the size cap: refused (checked while streaming); 5xx, 429 and timeouts: retry;
    404: refused; no credentials sent outside our account's resources."""
    message = fake.add(22, media=[(PHOTO, "image/jpeg"), (b"slow", "image/jpeg")], prefix="MM")
    url = fake.media_url(message)
    assert sms.fetch_media(url, max_bytes=len(PHOTO)).content == PHOTO
    with pytest.raises(SkippableError, match="larger than"):
        sms.fetch_media(url, max_bytes=len(PHOTO) - 1)
    for status in (503, 429):
        fake.fail.append(status)
        with pytest.raises(RetryableError, match=str(status)):
            sms.fetch_media(url, max_bytes=10**6)
    with pytest.raises(SkippableError, match="404"):
        sms.fetch_media(url[:-32] + "f" * 32, max_bytes=10**6)  # a media SID Twilio lacks
    slow = add_twilio(sqlite_inbox, name="slow", fake=fake, timeout=0.2)
    with pytest.raises(RetryableError, match="Timeout"):
        slow.fetch_media(fake.media_url(message, 1), max_bytes=10**6)
    fake.release.set()
    other_account = url.replace(ACCOUNT, "AC" + "00" * 16)
    with pytest.raises(SkippableError, match="not on an allowed"):
        sms.fetch_media(other_account, max_bytes=10**6)
    assert host_allowed("https://mms.twiliocdn.com/x", ["*.twiliocdn.com"])
    assert not host_allowed("https://eviltwiliocdn.com/x", ["*.twiliocdn.com"])
    assert not host_allowed("https://mms.twiliocdn.com:8443/x", ["*.twiliocdn.com"])
    assert not host_allowed("http://api.twilio.com/x", ["api.twilio.com"])  # clear text
    assert not host_allowed("https://user:pw@api.twilio.com/x", ["api.twilio.com"])
    assert host_allowed("https://api.twilio.com:443/x", ["api.twilio.com"])


# -- polling: reconciliation from the message log ----------------------------------------------


def test_poll_imports_exactly_the_inbound_messages_of_every_page(
    sqlite_inbox: Inbox, sms: TwilioConnector, fake: FakeTwilio
) -> None:
    """The log (several pages, inbound and outbound mixed, one still being received) gives
    exactly the received inbound messages, media included; a second poll imports nothing and
    lists no media again; the window is the newest date minus a day, as a date."""
    inbound = [
        fake.add(n, f"Keluhan {n}: saluran air tersumbat di RT {n:02d}.") for n in (30, 31, 32, 33)
    ]
    inbound.append(fake.add(34, "Foto banjir", media=[(PHOTO, "image/png")], prefix="MM"))
    for n in (35, 36, 37):
        fake.add(
            n, "Terima kasih, pengaduan diterima.", direction="outbound-reply", status="delivered"
        )
    fake.add(38, "Sedang diterima", status="receiving")
    results = sqlite_inbox.poll("sms")
    assert sorted(r.external_id for r in results) == sorted(inbound)
    assert {r.outcome for r in results} == {Outcome.NEW}
    lists = fake.api_calls("/Messages.json")
    assert len(lists) == 3  # 9 messages, 3 per page
    assert lists[0]["DateSent>"] == [(datetime.now(UTC) - timedelta(days=1)).date().isoformat()]
    assert lists[0]["PageSize"] == ["3"] and len(fake.api_calls("/Media.json")) == 1
    [photo] = [a for c in sqlite_inbox.complaints() for a in c.attachments]
    assert photo.content_type == "image/png"
    assert [r.status for r in sqlite_inbox.fetch_media()] == ["stored"]

    assert sqlite_inbox.poll("sms") == []
    newest = max(datetime.now(UTC) - timedelta(minutes=n) for n in (30, 31, 32, 33, 34))
    assert fake.api_calls("/Messages.json")[3]["DateSent>"] == [
        (newest - timedelta(days=1)).date().isoformat()
    ]
    assert len(fake.api_calls("/Media.json")) == 1


def test_webhook_and_poll_overlap_without_duplicates(inbox: Inbox, fake: FakeTwilio) -> None:
    """Messages that came by webhook and are also in the log are not filed twice; the one
    whose webhook never arrived is recovered; the same again on the next poll."""
    add_twilio(inbox, fake=fake)
    for n in (40, 41, 42):
        fake.add(n)
    with serve_wsgi(create_app(inbox)) as base_url:
        assert post(base_url, sms_fields(40)).status_code == 200
        assert post(base_url, sms_fields(41)).status_code == 200
        outcomes = {r.external_id: r.outcome for r in inbox.poll("sms")}
        assert outcomes == {
            sid(40): Outcome.DUPLICATE,
            sid(41): Outcome.DUPLICATE,
            sid(42): Outcome.NEW,
        }
        fake.add(43)
        assert post(base_url, sms_fields(43)).status_code == 200
    assert {r.external_id: r.outcome for r in inbox.poll("sms")} == {sid(43): Outcome.DUPLICATE}
    assert len(inbox.complaints()) == 4 and count(inbox, raw_messages) == 4


def test_phone_numbers_limit_the_poll_to_our_numbers(sqlite_inbox: Inbox, fake: FakeTwilio) -> None:
    """With ``phone_numbers``, only messages To those numbers (SMS and WhatsApp) are imported,
    and the API is asked with ``To=`` for each."""
    add_twilio(sqlite_inbox, fake=fake, phone_numbers=[OUR_NUMBER])
    mine = [fake.add(50), fake.add(51, sender=f"whatsapp:{CITIZEN}", to=f"whatsapp:{OUR_NUMBER}")]
    fake.add(52, to="+6281100000002")
    assert sorted(r.external_id for r in sqlite_inbox.poll("sms")) == sorted(mine)
    asked = [q.get("To") for q in fake.api_calls("/Messages.json")]
    assert asked == [[OUR_NUMBER], [f"whatsapp:{OUR_NUMBER}"]]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (503, RetryableError),
        (500, RetryableError),
        (429, RetryableError),
        (401, FatalError),
        (403, FatalError),
        (404, FatalError),
    ],
)
def test_api_failures_are_retryable_or_fatal_and_keep_the_cursor(
    sqlite_inbox: Inbox, sms: TwilioConnector, fake: FakeTwilio, status: int, error: type[Exception]
) -> None:
    """5xx and 429 are retryable, 401/403/404 fatal; on a failure on page 2 the messages of
    page 1 stay stored and the cursor does not move."""
    for n in range(60, 66):
        fake.add(n)
    sqlite_inbox.poll("sms")
    with sqlite_inbox.store.transaction() as conn:
        cursor_before = conn.execute(sa.text("SELECT value FROM cursors")).scalar_one()
    for n in range(66, 72):
        fake.add(n, when=datetime.now(UTC) + timedelta(minutes=n))
    fake.fail_page[1] = status
    with pytest.raises(error):
        sqlite_inbox.poll("sms")
    with sqlite_inbox.store.transaction() as conn:
        assert conn.execute(sa.text("SELECT value FROM cursors")).scalar_one() == cursor_before
    assert count(sqlite_inbox, raw_messages) == 9  # 6 before, 3 of the first page now


def test_unreachable_api_is_retryable_and_check_reports_bad_credentials(
    sqlite_inbox: Inbox, fake: FakeTwilio
) -> None:
    """A refused connection is retryable; ``check`` passes with the right token and is fatal
    with a wrong one."""
    with socket.create_server(("127.0.0.1", 0)) as unused:
        closed_port = unused.getsockname()[1]
    down = add_twilio(sqlite_inbox, name="down", api_base_url=f"http://127.0.0.1:{closed_port}")
    with pytest.raises(RetryableError, match="unreachable"):
        list(down.fetch(None))
    add_twilio(sqlite_inbox, name="good", fake=fake).check()
    wrong = TwilioConnector.from_options(
        "wrong",
        {"account_sid": ACCOUNT, "auth_token": "not-the-token", "api_base_url": fake.base_url},
    )
    assert isinstance(wrong, TwilioConnector)
    fake.clients.append(wrong)
    with pytest.raises(FatalError, match="401"):
        wrong.check()


# -- logs ----------------------------------------------------------------------------------------


def test_logs_never_show_the_token_the_signature_or_the_phone_number(
    sqlite_inbox: Inbox, sms: TwilioConnector, fake: FakeTwilio, caplog: pytest.LogCaptureFixture
) -> None:
    """Across the whole flow at DEBUG — signed and forged webhooks, a status callback, media
    downloads, a poll with failures — no log line holds the auth token, a signature or the
    citizen's phone number."""
    caplog.set_level(logging.DEBUG)
    message = fake.add(80, media=[(PHOTO, "image/jpeg")], prefix="MM")
    fake.add(81)
    signatures = []
    with serve_wsgi(create_app(sqlite_inbox)) as base_url:
        url = f"{base_url}/webhooks/sms"
        for fields in (
            whatsapp_fields(80, fake, [fake.media_url(message)]) | {"MessageSid": message},
            sms_fields(82),
            {
                "MessageSid": sid(83),
                "AccountSid": ACCOUNT,
                "MessageStatus": "failed",
                "To": CITIZEN,
            },
        ):
            signatures.append(sign(url, fields))
            assert post(base_url, fields).status_code == 200
        forged = sms_fields(84)
        signatures.append(sign(url, forged, "wrong-token-123"))
        assert post(base_url, forged, token="wrong-token-123").status_code == 403
    fake.fail.append(503)
    with pytest.raises(RetryableError):
        sqlite_inbox.poll("sms")
    sqlite_inbox.poll("sms")
    assert [r.status for r in sqlite_inbox.fetch_media()] == ["stored"]
    text = "\n".join(record.getMessage() + (record.exc_text or "") for record in caplog.records)
    assert "twilio sms" in text  # the connector did log
    for secret in (TOKEN, *signatures, CITIZEN_DIGITS, quote_plus(CITIZEN)):
        assert secret not in text


# -- storage down (PostgreSQL through a proxy we can cut) ----------------------------------------


def _empty_database(url: str) -> None:
    engine = sa.create_engine(url)
    names = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


ANSWER_WITHIN = 1.0  # seconds: storage down is answered 503 within a second (issue 4)


@pytest.mark.postgres
@pytest.mark.parametrize("failure", ["refuse", "hang"])
def test_storage_down_answers_503_in_time_and_the_poll_recovers_the_message(
    postgres_url: str, fake: FakeTwilio, failure: str
) -> None:
    """With PostgreSQL unreachable (connections refused, or hanging until connect_timeout=0.5,
    which the store keeps to the fraction of a second) a webhook is answered 503 within a
    second, nothing is acknowledged; once the database is back, the reconciliation poll files
    the lost message, once."""
    _empty_database(postgres_url)
    target = sa.make_url(postgres_url)
    proxy = SwitchableProxy(target.host or "127.0.0.1", target.port or 5432)
    url = target.set(host="127.0.0.1", port=proxy.port, query={"connect_timeout": "0.5"})
    inbox = Inbox(default_config(url=url.render_as_string(hide_password=False)))
    try:
        add_twilio(inbox, fake=fake)
        fake.add(90)
        fake.add(91)  # Twilio logs the message even though our webhook failed
        with serve_wsgi(create_app(inbox)) as base_url:
            assert len(twiml_messages(post(base_url, sms_fields(90)))) == 1
            proxy.down(failure)
            started = time.monotonic()
            answer = post(base_url, sms_fields(91))
            elapsed = time.monotonic() - started
        assert answer.status_code == 503 and answer.json() == {
            "error": "storage unavailable, retry later"
        }
        assert elapsed < ANSWER_WITHIN, elapsed  # the functional deadline, not speed
        proxy.up()
        outcomes = {r.external_id: r.outcome for r in inbox.poll("sms")}
        assert outcomes == {sid(90): Outcome.DUPLICATE, sid(91): Outcome.NEW}
        assert len(inbox.complaints()) == 2
    finally:
        inbox.close()
        proxy.close()


# -- the shared contract -----------------------------------------------------------------------

WHATSAPP_PHOTO = (
    f"https://api.twilio.com{API_PREFIX}/Messages/{sid(102, 'MM')}/Media/{sid(1, 'ME')}"
)


class TestTwilioContract(WebhookContract, PollingContract):
    """Signed webhooks and the message log on the local stand-in of Twilio's API pass the
    shared webhook and polling contract (the connector does both, as memory does)."""

    connector_type = "twilio"
    options: ClassVar[dict[str, Any]] = {"account_sid": ACCOUNT, "auth_token": TOKEN}
    cases = contract_cases()
    webhook_cases: ClassVar[list[WebhookCase]] = [
        WebhookCase(
            "sms",
            urlencode(sms_fields(101)).encode(),
            FORM,
            expect={"channel": "sms", "external_id": sid(101)},
        ),
        WebhookCase(
            "whatsapp-media-location",
            urlencode(
                sms_fields(102, "Foto jalan berlubang di depan pasar.", f"whatsapp:{CITIZEN}")
                | {"MessageSid": sid(102, "MM"), "To": f"whatsapp:{OUR_NUMBER}", "NumMedia": "1"}
                | {"MediaUrl0": WHATSAPP_PHOTO, "MediaContentType0": "image/jpeg"}
                | {"Latitude": "-5.147665", "Longitude": "119.432732"}
            ).encode(),
            FORM,
            expect={"channel": "whatsapp", "text": "Foto jalan berlubang di depan pasar."},
        ),
        WebhookCase(
            "status-callback",
            urlencode(
                {"MessageSid": sid(103), "AccountSid": ACCOUNT, "MessageStatus": "delivered"}
                | {"From": OUR_NUMBER, "To": CITIZEN}
            ).encode(),
            FORM,
            outcome=Outcome.IGNORED,
        ),
    ]
    poll_items: ClassVar[list[int]] = [104, 105, 106]
    _ERRORS: ClassVar[dict[str, int]] = {
        "throttled": 429,
        "server_error": 500,
        "unauthorized": 401,
        "forbidden": 403,
    }

    def sign(
        self, request: WebhookRequest, *, options: Mapping[str, Any], now: float
    ) -> WebhookRequest:
        fields = form_fields(request.body)
        signature = twilio_signature(request.url, fields, options["auth_token"])
        return with_headers(request, {"X-Twilio-Signature": signature})

    def setup_source(self, tmp_path: Path) -> dict[str, Any]:
        self.fake, self.server = FakeTwilio(), contextlib.ExitStack()
        self.fake.base_url = self.server.enter_context(serve_wsgi(self.fake))
        return {"api_base_url": self.fake.base_url, "poll_page_size": 2}

    def deliver(self, item: Any) -> None:
        self.fake.add(item)

    def break_source(self, how: str) -> bool:
        if how == "unavailable":
            self.server.close()  # the port is closed: connections are refused
        else:
            self.fake.fail.append(self._ERRORS[how])
        return True

    def teardown_source(self) -> None:
        self.fake.release.set()
        self.server.close()
