"""The WSGI app and Inbox.handle_webhook with a small signed test connector, over real HTTP."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, SecretStr

from omnichannel import DecodeError, InboundMessage, Inbox, RawMessage
from omnichannel.errors import StorageUnavailable
from omnichannel.http import create_app
from omnichannel.testing import hmac_header, post_webhook
from omnichannel.testing.http import serve_wsgi
from omnichannel.webhook import WebhookConnector, WebhookRejected, WebhookRequest

SECRET = "kunci-rahasia-uji"


class EchoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    secret: SecretStr
    max_bytes: int = 1024


class EchoConnector(WebhookConnector):
    """JSON {id, text} signed with HMAC-SHA256 in X-Signature."""

    type = "echo"
    channel = "web"
    Options = EchoOptions
    options: EchoOptions

    def verify(self, request: WebhookRequest) -> None:
        key = self.options.secret.get_secret_value().encode()
        expected = hmac.new(key, request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("x-signature", "")):
            raise WebhookRejected(403, "bad signature")

    def parse(self, request: WebhookRequest) -> list[RawMessage]:
        try:
            external_id = str(json.loads(request.body)["id"])
        except (ValueError, KeyError, TypeError):
            raise WebhookRejected(400, "body must be a JSON object with an id") from None
        return [
            RawMessage(
                connector=self.name,
                external_id=external_id,
                received_at="2026-11-30T02:00:00Z",
                content_type="application/json",
                payload=request.body,
            )
        ]

    def decode(self, raw: RawMessage) -> InboundMessage:
        data = json.loads(raw.payload)
        if not isinstance(data.get("text"), str):
            raise DecodeError("text: missing")
        return InboundMessage(channel="web", external_id=raw.external_id, text=data["text"])


@pytest.fixture
def app_inbox(sqlite_inbox: Inbox) -> Inbox:
    sqlite_inbox.add_connector(EchoConnector.from_options("echo", {"secret": SECRET}))
    return sqlite_inbox


@pytest.fixture
def server(app_inbox: Inbox) -> Iterator[tuple[str, int]]:
    """The app on a real waitress server on loopback."""
    with serve_wsgi(create_app(app_inbox)) as base_url:
        host, port = base_url.removeprefix("http://").split(":")
        yield host, int(port)


def call(
    server: tuple[str, int],
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(*server, timeout=10)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data


def post(server: tuple[str, int], body: bytes, **headers: str) -> tuple[int, Any]:
    status, data = call(
        server, "POST", "/webhooks/echo", body, {"Content-Type": "application/json", **headers}
    )
    return status, json.loads(data)


def test_signed_webhook_is_stored_and_a_redelivery_is_a_duplicate(
    server: Any, app_inbox: Inbox
) -> None:
    """A valid signature gives 200 with the outcome; the same id again is a duplicate."""
    body = b'{"id": "w1", "text": "Jalan rusak di depan sekolah."}'
    first = post(server, body, **{"X-Signature": hmac_header(body, SECRET, prefix="")})
    again = post(server, body, **{"X-Signature": hmac_header(body, SECRET, prefix="")})
    assert first[0] == 200 and first[1]["results"][0]["outcome"] == "new"
    assert again[0] == 200 and again[1]["results"][0]["outcome"] == "duplicate"
    assert len(app_inbox.complaints()) == 1


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "00" * 32,
        hmac_header(b"other body", SECRET, prefix=""),
        hmac_header(b'{"id": "w2", "text": "x"}', "wrong-secret", prefix=""),
    ],
)
def test_bad_signatures_are_403_and_nothing_is_stored(
    server: Any, app_inbox: Inbox, signature: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Missing, malformed, for another body, or with another secret: 403, nothing stored,
    and one log line that says so without the payload."""
    caplog.set_level(logging.INFO, logger="omnichannel")
    status, data = post(server, b'{"id": "w2", "text": "rahasia"}', **{"X-Signature": signature})
    assert status == 403 and data == {"error": "bad signature"}
    assert app_inbox.complaints() == [] and app_inbox.quarantined() == []
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert lines == ["webhook echo refused: 403 bad signature"]
    assert not any("rahasia" in r.getMessage() for r in caplog.records)


def test_http_errors(server: Any) -> None:
    """Unknown connector 404, wrong method 405, wrong type 415, too large 413, bad JSON 400."""
    body = b'{"id": "w3", "text": "x"}'
    assert call(server, "POST", "/webhooks/nope", body)[0] == 404
    assert call(server, "POST", "/webhooks/files", body)[0] == 404  # not a webhook connector
    assert call(server, "GET", "/webhooks/echo")[0] == 405
    assert call(server, "PUT", "/webhooks/echo", body)[0] == 405
    assert call(server, "POST", "/webhooks/echo", body, {"Content-Type": "text/plain"})[0] == 415
    big = b'{"id": "w4", "text": "' + b"x" * 2000 + b'"}'
    assert post(server, big, **{"X-Signature": hmac_header(big, SECRET, prefix="")})[0] == 413
    assert post(
        server, b"[1, 2]", **{"X-Signature": hmac_header(b"[1, 2]", SECRET, prefix="")}
    ) == (
        400,
        {"error": "body must be a JSON object with an id"},
    )
    assert call(server, "GET", "/nothing-here")[0] == 404


def test_undecodable_but_signed_payload_is_quarantined_with_200(
    server: Any, app_inbox: Inbox
) -> None:
    """A verified payload the decoder cannot read is kept (quarantined) and acknowledged."""
    body = b'{"id": "w5"}'
    status, data = post(server, body, **{"X-Signature": hmac_header(body, SECRET, prefix="")})
    assert status == 200 and data["results"][0]["outcome"] == "quarantined"
    assert len(app_inbox.quarantined()) == 1


def test_declared_oversize_is_refused_before_reading(caplog: pytest.LogCaptureFixture) -> None:
    """A Content-Length over the limit is answered 413 without reading the body, and logged
    in one line."""

    class Exploding(io.BytesIO):
        def read(self, *_: Any) -> bytes:
            raise AssertionError("body was read")

    inbox = Inbox(database_url="sqlite://")
    inbox.add_connector(EchoConnector.from_options("echo", {"secret": SECRET}))
    statuses: list[str] = []
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/webhooks/echo",
        "CONTENT_LENGTH": "999999",
        "CONTENT_TYPE": "application/json",
        "wsgi.input": Exploding(),
        "wsgi.url_scheme": "http",
        "HTTP_HOST": "x",
    }
    body = b"".join(create_app(inbox)(environ, lambda status, headers: statuses.append(status)))
    assert statuses == ["413 Content Too Large"] and b"too large" in body
    assert [r.getMessage() for r in caplog.records if "refused" in r.getMessage()] == [
        "webhook echo refused: 413 request body too large"
    ]
    inbox.close()


def test_storage_unavailable_is_503(app_inbox: Inbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the store cannot be written the answer is 503, so the provider retries."""

    def down(*_: Any, **__: Any) -> None:
        raise StorageUnavailable("storage unavailable (test)")

    monkeypatch.setattr(app_inbox.store, "transaction", down)
    body = b'{"id": "w6", "text": "x"}'
    headers = {
        "Content-Type": "application/json",
        "X-Signature": hmac_header(body, SECRET, prefix=""),
    }
    request = WebhookRequest.build("POST", "http://x/webhooks/echo", headers, body)
    response = post_webhook(app_inbox, "echo", request)
    assert response.status == 503
    assert app_inbox.connector_health("echo")["last_error"] == "storage unavailable"


def test_receipt_lookup_is_503_while_storage_is_down(
    app_inbox: Inbox, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receipt asked for while the store is down is a 503 (ask again), not a 500."""

    def down(*_: Any, **__: Any) -> None:
        raise StorageUnavailable("storage unavailable (test)")

    monkeypatch.setattr(app_inbox.store, "transaction", down)
    status, body = call(server, "GET", "/receipts/" + "a" * 32)
    assert status == 503 and b"storage unavailable" in body


def test_health_and_metrics(server: Any) -> None:
    """/healthz reports the database and connectors; /metrics counts requests and outcomes."""
    body = b'{"id": "w7", "text": "Lampu mati."}'
    post(server, body, **{"X-Signature": hmac_header(body, SECRET, prefix="")})
    status, data = call(server, "GET", "/healthz")
    health = json.loads(data)
    assert status == 200 and health["healthy"] and health["database"] == "ok"
    # filed in the request's own thread (no worker started), nothing left waiting
    assert health["filing"] == {"mode": "caller", "healthy": True, "backlog": 0, "filed": 1}
    assert health["connectors"]["echo"]["last_success"].endswith("Z")
    echo = health["connectors"]["echo"]
    assert echo["state"] == "ok" and echo["backlog"] == 0 and 0 <= echo["lag_seconds"] < 60
    status, data = call(server, "GET", "/metrics")
    text = data.decode()
    assert status == 200
    assert 'omnichannel_webhook_requests_total{connector="echo",status="200"} 1.0' in text
    assert 'omnichannel_messages_total{connector="echo",outcome="new"} 1.0' in text
