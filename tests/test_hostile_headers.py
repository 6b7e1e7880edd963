"""Malformed security headers and Host headers are refusals, never crashes: for every webhook
connector (web in both signing modes, Twilio, WhatsApp Cloud), a signature, timestamp or id
header with non-ASCII bytes, thousands of digits or an impossible value, and a Host that is not
a valid ``host[:port]``, get 403 (400 for the Host) with one log line and no traceback, and
nothing is stored — over real HTTP with raw header bytes, and through ``Inbox.handle_webhook``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, SecretStr
from twilio.request_validator import RequestValidator

from omnichannel import InboundMessage, Inbox, RawMessage
from omnichannel.config import parse_config
from omnichannel.http import create_app
from omnichannel.store.tables import raw_messages
from omnichannel.testing.http import serve_wsgi
from omnichannel.webhook import (
    WebhookConnector,
    WebhookRejected,
    WebhookRequest,
    standard_signature,
    valid_host,
)

PORTAL_KEY = b"kunci-portal-uji-32-byte-panjang"
PORTAL_SECRET = "whsec_" + base64.b64encode(PORTAL_KEY).decode()
GATEWAY_SECRET = "rahasia-gateway-uji"
ACCOUNT = "AC" + "7c" * 16
AUTH_TOKEN = "token-twilio-uji-0123456789"
APP_SECRET = "rahasia-aplikasi-meta-uji"
PNID = "106540352242922"
PUBLIC = "https://pengaduan.example.go.id"
SECRETS = (PORTAL_SECRET, GATEWAY_SECRET, AUTH_TOKEN, APP_SECRET)

HOSTILE_VALUES: list[bytes] = [
    "é".encode(),  # non-ASCII, UTF-8
    b"\xe9\xff",  # not UTF-8 at all
    "Ã©Ã¯".encode(),  # latin-1 mojibake
    b"9" * 5000,  # beyond int()'s 4300-digit limit
    b"1e999",
    b"-1",
    b"NaN",
    b"99999999999999999999999999",
    b"",
    "²³".encode(),  # str.isdigit() says yes, int() says no
    "\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660".encode(),  # Arabic-Indic
    b"v1,\xc3\xa9 sha256=\xe9",
    b"x" * 6000,
]
"""Values for each security header; the other headers of the request stay valid."""

BAD_HOSTS: list[bytes] = [
    b"exa mple.com",
    b"evil.com:99999",
    b"evil.com:0",
    b"[::1",
    b"[not-ipv6]",
    b"a" * 5000,
    "\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com".encode(),  # full-width letters
    b"\xff\xfe.example",
    b"host:port:extra",
    b"host:80:81",
    b"user@evil.com",
    b"evil.com/path",
    b"evil.com?x=1",
    b"evil.com#frag",
    b"evil.com\\x",
    b"%65vil.com",
    b"a..b",
]
"""Host headers that are not a valid ``host[:port]``."""

FORM = "application/x-www-form-urlencoded"
PORTAL_BODY = json.dumps({"message": "Jalan di depan kantor camat berlubang."}).encode()
GATEWAY_BODY = json.dumps(
    {"id": "gw-1", "from": "+6281234567890", "message": "Lampu jalan mati."}
).encode()


def sms_fields() -> dict[str, str]:
    return {
        "MessageSid": "SM" + "ab" * 16,
        "AccountSid": ACCOUNT,
        "From": "+6281234567890",
        "To": "+6281100000001",
        "Body": "Izin usaha saya belum diproses.",
        "NumMedia": "0",
        "SmsStatus": "received",
    }


def wa_body() -> bytes:
    message = {
        "from": "6281234567890",
        "id": "wamid.HBgNNjI4MTIzNDU2Nzg5MBUCABIYFjNFQjBCNkE0",
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": "Pelayanan izin lambat sekali."},
    }
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "6281100000002", "phone_number_id": PNID},
        "contacts": [{"profile": {"name": "Andi"}, "wa_id": "6281234567890"}],
        "messages": [message],
    }
    envelope = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }
    return json.dumps(envelope).encode()


def config(database_url: str, public_url: str | None = None) -> dict[str, Any]:
    return {
        "database": {"url": database_url},
        "server": {"public_url": public_url} if public_url else {},
        "connectors": [
            {"name": "portal", "type": "web", "secret": PORTAL_SECRET},
            {
                "name": "gateway",
                "type": "web",
                "secret": GATEWAY_SECRET,
                "signature": "hmac-header",
                "mapping": {
                    "channel": "=sms",
                    "external_id": "id",
                    "sender.phone": "from",
                    "text": "message",
                },
            },
            {
                "name": "sms",
                "type": "twilio",
                "account_sid": ACCOUNT,
                "auth_token": AUTH_TOKEN,
                "mode": "webhook",
            },
            {
                "name": "wa",
                "type": "whatsapp-cloud",
                "app_secret": APP_SECRET,
                "verify_token": "token-verifikasi-uji",
                "access_token": "EAAG-akses-uji",
                "phone_number_ids": [PNID],
            },
        ],
    }


@pytest.fixture
def hostile_inbox(database_url: str) -> Iterator[Inbox]:
    with Inbox(parse_config(config(database_url))) as inbox:
        yield inbox


@pytest.fixture
def base_url(hostile_inbox: Inbox) -> Iterator[str]:
    with serve_wsgi(create_app(hostile_inbox)) as url:
        yield url


# -- requests with raw header bytes --------------------------------------------------------------


def send_raw(base_url: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    """POST with exactly these header bytes (http.client would refuse some); the status."""
    parts = urlsplit(base_url)
    lines = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    head = b"POST " + path.encode() + b" HTTP/1.1\r\n" + lines
    head += b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=30) as sock:
        sock.sendall(head + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def host_of(base_url: str) -> bytes:
    return urlsplit(base_url).netloc.encode()


def portal_headers(stamp: str | None = None, webhook_id: str = "msg_uji_1") -> dict[str, bytes]:
    stamp = stamp or str(int(time.time()))
    signature = standard_signature(PORTAL_KEY, webhook_id, stamp, PORTAL_BODY)
    return {
        "Content-Type": b"application/json",
        "webhook-id": webhook_id.encode(),
        "webhook-timestamp": stamp.encode(),
        "webhook-signature": signature.encode(),
    }


def gateway_headers() -> dict[str, bytes]:
    digest = hmac.new(GATEWAY_SECRET.encode(), GATEWAY_BODY, hashlib.sha256).hexdigest()
    return {"Content-Type": b"application/json", "X-Signature": b"sha256=" + digest.encode()}


def twilio_headers(url: str) -> dict[str, bytes]:
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, sms_fields())
    return {"Content-Type": FORM.encode(), "X-Twilio-Signature": signature.encode()}


def wa_headers(body: bytes) -> dict[str, bytes]:
    digest = hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": b"application/json",
        "X-Hub-Signature-256": b"sha256=" + digest.encode(),
    }


def valid_request(name: str, base_url: str, host: bytes) -> tuple[dict[str, bytes], bytes]:
    """The headers and body of a request ``name`` accepts when sent with Host ``host``."""
    if name == "portal":
        return portal_headers(), PORTAL_BODY
    if name == "gateway":
        return gateway_headers(), GATEWAY_BODY
    if name == "sms":
        url = f"http://{host.decode('latin-1')}/webhooks/sms"
        return twilio_headers(url), urlencode(sms_fields()).encode()
    body = wa_body()
    return wa_headers(body), body


SECURITY_HEADERS = [
    ("portal", "webhook-id"),
    ("portal", "webhook-timestamp"),
    ("portal", "webhook-signature"),
    ("gateway", "X-Signature"),
    ("sms", "X-Twilio-Signature"),
    ("wa", "X-Hub-Signature-256"),
]


def stored(inbox: Inbox) -> int:
    with inbox.store.transaction() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(raw_messages)).scalar_one())


def refusal_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The records our code logged since the last ``caplog.clear()``, checked to carry no
    traceback and no secret."""
    records = [r for r in caplog.records if r.name.startswith(("omnichannel", "connectors"))]
    for record in records:
        assert record.exc_info is None and not record.exc_text, record.getMessage()
        assert not any(secret in record.getMessage() for secret in SECRETS)
    return records


def send(base_url: str, name: str, headers: dict[str, bytes], body: bytes, host: bytes) -> int:
    pairs = [(b"Host", host), *((k.encode(), v) for k, v in headers.items())]
    return send_raw(base_url, f"/webhooks/{name}", pairs, body)


# -- tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "header"), SECURITY_HEADERS)
def test_a_malformed_security_header_is_a_403_with_one_log_line_and_nothing_stored(
    base_url: str,
    hostile_inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
    name: str,
    header: str,
) -> None:
    """Each hostile value in one security header of an otherwise valid request is answered 403,
    logged in exactly one line without a traceback, and stores nothing; the same request with
    its own header is then accepted (so the refusals were the header's doing)."""
    host = host_of(base_url)
    headers, body = valid_request(name, base_url, host)
    for value in HOSTILE_VALUES:
        caplog.clear()
        status = send(base_url, name, headers | {header: value}, body, host)
        assert status == 403, (header, value[:40])
        lines = refusal_lines(caplog)
        assert len(lines) == 1 and "refused: 403" in lines[0].getMessage(), (value[:40], lines)
        assert stored(hostile_inbox) == 0
    assert send(base_url, name, headers, body, host) == 200
    assert stored(hostile_inbox) == 1


@pytest.mark.parametrize(("name", "header"), SECURITY_HEADERS)
def test_a_repeated_security_header_is_refused_not_a_crash(
    base_url: str, hostile_inbox: Inbox, name: str, header: str
) -> None:
    """A security header sent twice (the valid value and a forged one, in either order) is
    refused with 403 and nothing is stored: neither copy is silently preferred. The exception
    is Standard Webhooks' ``webhook-signature``, a list by design (key rotation): there one
    valid signature among forged ones authenticates the request, in either order."""
    host = host_of(base_url)
    headers, body = valid_request(name, base_url, host)
    forged = b"v1,Zm9yZ2Vk" if header == "webhook-signature" else b"sha256=" + b"0" * 64
    expected = 200 if header == "webhook-signature" else 403
    for first, second in ((headers[header], forged), (forged, headers[header]), (forged, forged)):
        pairs = [(b"Host", host)]
        pairs += [(k.encode(), v) for k, v in headers.items() if k != header]
        pairs += [(header.encode(), first), (header.encode(), second)]
        answer = send_raw(base_url, f"/webhooks/{name}", pairs, body)
        assert answer == (403 if first == second else expected), (first[:20], second[:20])
    assert stored(hostile_inbox) == (1 if expected == 200 else 0)


@pytest.mark.parametrize("name", ["portal", "gateway", "sms", "wa"])
def test_a_malformed_host_header_is_a_400_with_one_log_line_and_nothing_stored(
    base_url: str, hostile_inbox: Inbox, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    """A Host that is not a valid host[:port] is answered 400 (for Twilio the signature URL
    would be rebuilt from it), logged once without a traceback; nothing is stored. Twilio's
    request is signed for the very URL that Host makes, so only the Host check refuses it."""
    for host in BAD_HOSTS:
        caplog.clear()
        headers, body = valid_request(name, base_url, host)
        assert send(base_url, name, headers, body, host) == 400, host[:40]
        lines = refusal_lines(caplog)
        assert len(lines) == 1 and "400 malformed Host header" in lines[0].getMessage()
    assert stored(hostile_inbox) == 0
    host = host_of(base_url)
    assert send(base_url, name, *valid_request(name, base_url, host), host) == 200


def test_a_malformed_host_on_the_whatsapp_handshake_is_a_400(
    base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The GET handshake parses the request URL too: a malformed Host is a 400, not a 500."""
    parts = urlsplit(base_url)
    for host in (b"[::1", b"evil.com:99999", b"a:b:c"):
        caplog.clear()
        request = (
            b"GET /webhooks/wa?hub.mode=subscribe&hub.verify_token=x&hub.challenge=1 HTTP/1.1\r\n"
            b"Host: " + host + b"\r\nConnection: close\r\n\r\n"
        )
        with socket.create_connection((parts.hostname or "", parts.port or 80)) as sock:
            sock.sendall(request)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.split(b" ", 2)[1] == b"400"
        assert len(refusal_lines(caplog)) == 1


def test_proxy_headers_do_not_change_the_signature_url(base_url: str, hostile_inbox: Inbox) -> None:
    """X-Forwarded-Host/Proto/Port, valid or not, are not honoured: a Twilio request signed for
    the URL it was sent to is accepted whatever they say, and one signed for the forwarded
    host is refused."""
    host = host_of(base_url)
    headers, body = valid_request("sms", base_url, host)
    forwarded = {
        "X-Forwarded-Host": b"evil.com:99999",
        "X-Forwarded-Proto": b"gopher\xff",
        "X-Forwarded-Port": b"9" * 5000,
    }
    assert send(base_url, "sms", headers | forwarded, body, host) == 200
    evil, _ = valid_request("sms", base_url, b"evil.example")
    signed_for_forwarded = forwarded | {"X-Forwarded-Host": b"evil.example"}
    assert send(base_url, "sms", evil | signed_for_forwarded, body, host) == 403
    assert stored(hostile_inbox) == 1


def test_with_a_public_url_the_host_header_does_not_matter(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With ``server.public_url`` set, requests signed for the public URL are accepted whatever
    the Host header holds (a malformed one included), and a request signed for the URL its own
    Host makes is refused: the Host is never what a signature is checked against."""
    with (
        Inbox(parse_config(config(database_url, PUBLIC))) as inbox,
        serve_wsgi(create_app(inbox)) as base_url,
    ):
        signed = twilio_headers(f"{PUBLIC}/webhooks/sms")
        body = urlencode(sms_fields()).encode()
        for host in [b"evil.com:99999", b"[::1", b"a" * 5000, b"evil.example"]:
            assert send(base_url, "sms", signed, body, host) == 200, host[:40]
        assert send(base_url, "portal", portal_headers(), PORTAL_BODY, b"exa mple.com") == 200
        own = twilio_headers("http://evil.example/webhooks/sms")
        assert send(base_url, "sms", own, body, b"evil.example") == 403
        assert stored(inbox) == 2  # the SMS once (then duplicates), the portal form once


def test_a_status_url_is_built_from_the_public_url_not_the_host(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A web submission answered 202 names its status URL under ``server.public_url``, never
    under the host the client sent (no Host-header injection into the answer)."""
    with Inbox(parse_config(config(database_url, PUBLIC))) as inbox:
        inbox.worker.start(interval=60)
        monkeypatch.setattr(inbox.worker, "wait_filed", lambda *_: False)  # still filing
        headers = {k: v.decode() for k, v in portal_headers().items()}
        response = inbox.handle_webhook(
            "portal", "POST", "http://evil.example/webhooks/portal", headers, PORTAL_BODY
        )
    assert response.status == 202
    assert json.loads(response.body)["status_url"].startswith(PUBLIC + "/receipts/")


# -- Inbox.handle_webhook directly ---------------------------------------------------------------


def handle(inbox: Inbox, name: str, headers: Any, body: bytes, url: str | None = None) -> int:
    return inbox.handle_webhook(
        name, "POST", url or f"http://127.0.0.1:8080/webhooks/{name}", headers, body
    ).status


def test_handle_webhook_refuses_text_no_http_server_would_send(
    hostile_inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the framework-neutral API, header values with lone surrogates, NULs, non-ASCII
    text and huge numbers (what a framework can hand over) are refused with 403, one log line
    each, and nothing is stored."""
    values = ["\udcff\udcfe", "sha256=\x00", "é" * 64, "9" * 5000, "v1,\u202e", "1e999"]
    for name, header in SECURITY_HEADERS:
        headers, body = valid_request(name, "", b"127.0.0.1:8080")
        text = {k: v.decode() for k, v in headers.items()}
        for value in values:
            caplog.clear()
            assert handle(hostile_inbox, name, text | {header: value}, body) == 403, (
                name,
                header,
                value[:20],
            )
            assert len(refusal_lines(caplog)) == 1
    assert stored(hostile_inbox) == 0


def test_handle_webhook_joins_repeated_headers_instead_of_keeping_the_last(
    hostile_inbox: Inbox,
) -> None:
    """Header pairs given as a list with a security header twice are joined as an HTTP server
    would: a forged copy after the valid one does not replace it, and the pair is refused."""
    headers, body = valid_request("wa", "", b"127.0.0.1:8080")
    pairs = [(k, v.decode()) for k, v in headers.items()]
    pairs.append(("x-hub-signature-256", "sha256=" + "0" * 64))
    assert handle(hostile_inbox, "wa", pairs, body) == 403
    request = WebhookRequest.build("POST", "http://x/", [("A", "1"), ("a", "2")], b"")
    assert request.headers == {"a": "1, 2"}


def test_handle_webhook_refuses_a_url_with_a_malformed_host(hostile_inbox: Inbox) -> None:
    """A URL handed over by a framework whose host part is malformed is a 400, for every
    connector; a relative URL (no host at all) is not refused for it."""
    for name in ("portal", "gateway", "sms", "wa"):
        headers, body = valid_request(name, "", b"127.0.0.1:8080")
        text = {k: v.decode() for k, v in headers.items()}
        for host in ("[::1", "evil.com:99999", "a:b:c", "ex ample", "\udcff"):
            url = f"http://{host}/webhooks/{name}"
            assert handle(hostile_inbox, name, text, body, url) == 400, (name, host)
    headers, body = valid_request("portal", "", b"")
    text = {k: v.decode() for k, v in headers.items()}
    assert handle(hostile_inbox, "portal", text, body, "/webhooks/portal") == 200
    assert stored(hostile_inbox) == 1


class _NaiveOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    secret: SecretStr


class NaiveConnector(WebhookConnector):
    """A third party's connector that checks its header the naive way: ``compare_digest`` on
    text (TypeError on non-ASCII) and ``int()`` on a timestamp (ValueError on 5000 digits)."""

    type = "naive"
    channel = "web"
    Options = _NaiveOptions
    options: _NaiveOptions

    def verify(self, request: WebhookRequest) -> None:
        int(request.headers.get("x-stamp", "0"))
        key = self.options.secret.get_secret_value().encode()
        expected = hmac.new(key, request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("x-signature", "")):
            raise WebhookRejected(403, "bad signature")

    def parse(self, request: WebhookRequest) -> list[RawMessage]:
        return [
            RawMessage(
                connector=self.name,
                external_id="naive-1",
                received_at="2026-11-30T02:00:00Z",
                content_type="application/json",
                payload=request.body,
            )
        ]

    def decode(self, raw: RawMessage) -> InboundMessage:
        return InboundMessage(channel="web", external_id=raw.external_id, text="x")


def test_a_third_party_verify_that_raises_is_a_403_not_a_500(
    sqlite_inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever a connector's ``verify`` raises on a header it could not even check (TypeError,
    ValueError) the core answers 403 with one log line: verification fails closed."""
    sqlite_inbox.add_connector(NaiveConnector.from_options("naive", {"secret": "s"}))
    kind = {"content-type": "application/json"}
    for headers in ({"x-signature": "é"}, {"x-stamp": "9" * 5000, "x-signature": "0"}):
        caplog.clear()
        assert handle(sqlite_inbox, "naive", kind | headers, b"{}") == 403
        lines = refusal_lines(caplog)
        assert len(lines) == 1 and "cannot be checked" in lines[0].getMessage()
    assert stored(sqlite_inbox) == 0
    good = hmac.new(b"s", b"{}", hashlib.sha256).hexdigest()
    assert handle(sqlite_inbox, "naive", kind | {"x-signature": good}, b"{}") == 200


@pytest.fixture(scope="module")
def module_inbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inbox]:
    """One SQLite inbox with the four connectors, for the property tests."""
    url = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'o.db'}"
    with Inbox(parse_config(config(url))) as inbox:
        yield inbox


@settings(max_examples=100, deadline=None)
@given(
    which=st.sampled_from(SECURITY_HEADERS),
    value=st.text(max_size=300) | st.integers(4000, 5000).map(lambda n: "7" * n),
)
def test_any_text_in_a_security_header_is_refused(
    module_inbox: Inbox, which: tuple[str, str], value: str
) -> None:
    """Property: any text at all in one security header of a request of each connector (the
    rest of it valid) is answered 403 and stores nothing."""
    name, header = which
    headers, body = valid_request(name, "", b"127.0.0.1:8080")
    text = {k: v.decode() for k, v in headers.items()}
    assert handle(module_inbox, name, text | {header: value}, body) == 403
    assert stored(module_inbox) == 0


@settings(max_examples=100, deadline=None)
@given(
    host=st.text(max_size=80)
    | st.from_regex(r"[a-z0-9_-]{1,20}(\.[a-z0-9-]{1,20}){0,3}\.?(:[0-9]{1,6})?", fullmatch=True)
    | st.ip_addresses().map(lambda ip: f"[{ip}]" if ip.version == 6 else str(ip))
)
def test_any_host_is_accepted_or_refused_with_400(module_inbox: Inbox, host: str) -> None:
    """Property: whatever host part a request URL has, a Twilio request signed for that very
    URL is answered 200 (a valid host) or 400 — never an exception."""
    url = f"http://{host}/webhooks/sms"
    headers, body = valid_request("sms", "", host.encode("utf-8", "surrogatepass"))
    headers["X-Twilio-Signature"] = twilio_headers(url)["X-Twilio-Signature"]
    text = {k: v.decode() for k, v in headers.items()}
    status = handle(module_inbox, "sms", text, body, url)
    assert status == (200 if valid_host(host) else 400)


@given(host=st.text(min_size=1, max_size=80))
def test_valid_host_accepts_only_host_and_port(host: str) -> None:
    """Property: whatever ``valid_host`` accepts splits into a hostname and a port that
    ``urllib`` reads without error, in range, with nothing left over."""
    if valid_host(host):
        parts = urlsplit(f"http://{host}/")
        assert parts.hostname and (parts.port is None or 0 < parts.port < 65536)
        assert "@" not in host and "/" not in host and " " not in host
